"""The fd group's descriptor functions: fdstat, filestat, prestat, seek/tell, sync, advise,
allocate, close and renumber. Reads, writes and readdir live in fd_io.py."""

from __future__ import annotations

import fcntl
import os
from typing import TYPE_CHECKING

from .errno import Errno, WasiError
from .fdtable import DirEntry, Entry, FileEntry, StreamEntry
from .flags import Advice, Fdflags, Rights, Whence
from .hostfunc import wasi
from .layout import PRESTAT, GuestMemory, pack_empty_filestat, pack_filestat
from .times import check_fstflags, new_times

if TYPE_CHECKING:
    from .context import WasiContext

I64_MAX = (1 << 63) - 1
_ADVICE = {
    Advice.NORMAL: "POSIX_FADV_NORMAL",
    Advice.SEQUENTIAL: "POSIX_FADV_SEQUENTIAL",
    Advice.RANDOM: "POSIX_FADV_RANDOM",
    Advice.WILLNEED: "POSIX_FADV_WILLNEED",
    Advice.DONTNEED: "POSIX_FADV_DONTNEED",
    Advice.NOREUSE: "POSIX_FADV_NOREUSE",
}


def host_fd(entry: Entry) -> int:
    """The host fd behind a file or directory entry; EBADF for streams and sockets."""
    if isinstance(entry, FileEntry | DirEntry):
        return entry.host_fd
    raise WasiError(Errno.BADF, "not a file or directory")


def file_entry(ctx: WasiContext, fd: int, rights: int) -> FileEntry:
    """A regular file; EISDIR for a directory, ESPIPE for a stream, EBADF otherwise."""
    entry = ctx.fds.get(fd)
    if isinstance(entry, DirEntry):
        raise WasiError(Errno.ISDIR)
    if isinstance(entry, StreamEntry):
        raise WasiError(Errno.SPIPE)
    if not isinstance(entry, FileEntry):
        raise WasiError(Errno.BADF)
    entry.require(rights)
    return entry


@wasi("fd_advise", "i32 i64 i64 i32")
def fd_advise(ctx: WasiContext, mem: GuestMemory, fd: int, offset: int, length: int, advice: int) -> None:
    entry = ctx.fds.get_as(fd, FileEntry, Rights.FD_ADVISE)
    if advice not in _ADVICE or offset > I64_MAX or length > I64_MAX:
        raise WasiError(Errno.INVAL)
    fadvise = getattr(os, "posix_fadvise", None)
    if fadvise is not None:
        fadvise(entry.host_fd, offset, length, getattr(os, _ADVICE[Advice(advice)]))


@wasi("fd_allocate", "i32 i64 i64")
def fd_allocate(ctx: WasiContext, mem: GuestMemory, fd: int, offset: int, length: int) -> None:
    entry = ctx.fds.get_as(fd, FileEntry, Rights.FD_ALLOCATE)
    if offset > I64_MAX or length > I64_MAX or offset + length > I64_MAX:
        raise WasiError(Errno.FBIG)
    if length == 0:
        raise WasiError(Errno.INVAL)
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is None:
        raise WasiError(Errno.NOTSUP)
    fallocate(entry.host_fd, offset, length)


@wasi("fd_close", "i32")
async def fd_close(ctx: WasiContext, mem: GuestMemory, fd: int) -> None:
    await ctx.fds.pop(fd).aclose()


@wasi("fd_datasync", "i32")
def fd_datasync(ctx: WasiContext, mem: GuestMemory, fd: int) -> None:
    entry = ctx.fds.get(fd, Rights.FD_DATASYNC)
    if isinstance(entry, StreamEntry):
        raise WasiError(Errno.INVAL)
    getattr(os, "fdatasync", os.fsync)(host_fd(entry))


@wasi("fd_sync", "i32")
def fd_sync(ctx: WasiContext, mem: GuestMemory, fd: int) -> None:
    entry = ctx.fds.get(fd, Rights.FD_SYNC)
    if isinstance(entry, StreamEntry):
        raise WasiError(Errno.INVAL)
    os.fsync(host_fd(entry))


@wasi("fd_fdstat_get", "i32 i32")
def fd_fdstat_get(ctx: WasiContext, mem: GuestMemory, fd: int, buf: int) -> None:
    mem.write(buf, ctx.fds.get(fd).fdstat())


@wasi("fd_fdstat_set_flags", "i32 i32")
def fd_fdstat_set_flags(ctx: WasiContext, mem: GuestMemory, fd: int, flags: int) -> None:
    entry = ctx.fds.get(fd, Rights.FD_FDSTAT_SET_FLAGS)
    if flags & ~0x1F:
        raise WasiError(Errno.INVAL, "unknown fdflags")
    sync_flags = Fdflags.DSYNC | Fdflags.RSYNC | Fdflags.SYNC
    if (flags ^ entry.fdflags) & sync_flags:
        raise WasiError(Errno.INVAL, "synchronisation flags are fixed at open")
    if isinstance(entry, FileEntry):
        host_flags = fcntl.fcntl(entry.host_fd, fcntl.F_GETFL)
        host_flags = host_flags | os.O_APPEND if flags & Fdflags.APPEND else host_flags & ~os.O_APPEND
        fcntl.fcntl(entry.host_fd, fcntl.F_SETFL, host_flags)
    elif flags & Fdflags.APPEND:
        raise WasiError(Errno.INVAL, "append applies to files only")
    entry.fdflags = flags


@wasi("fd_fdstat_set_rights", "i32 i64 i64")
def fd_fdstat_set_rights(ctx: WasiContext, mem: GuestMemory, fd: int, base: int, inheriting: int) -> None:
    entry = ctx.fds.get(fd)
    base, inheriting = int(base), int(inheriting)
    if base & ~entry.rights_base or inheriting & ~entry.rights_inheriting:
        raise WasiError(Errno.NOTCAPABLE, "rights can only be dropped")
    entry.rights_base = base
    entry.rights_inheriting = inheriting


@wasi("fd_filestat_get", "i32 i32")
def fd_filestat_get(ctx: WasiContext, mem: GuestMemory, fd: int, buf: int) -> None:
    entry = ctx.fds.get(fd, Rights.FD_FILESTAT_GET)
    if isinstance(entry, FileEntry | DirEntry):
        mem.write(buf, pack_filestat(os.fstat(entry.host_fd)))
    elif isinstance(entry, StreamEntry) and entry.owned_fd >= 0:
        mem.write(buf, pack_filestat(os.fstat(entry.owned_fd)))
    else:
        mem.write(buf, pack_empty_filestat(entry.filetype))


@wasi("fd_filestat_set_size", "i32 i64")
def fd_filestat_set_size(ctx: WasiContext, mem: GuestMemory, fd: int, size: int) -> None:
    entry = file_entry(ctx, fd, Rights.FD_FILESTAT_SET_SIZE)
    if size > I64_MAX:
        raise WasiError(Errno.FBIG)
    os.ftruncate(entry.host_fd, size)


@wasi("fd_filestat_set_times", "i32 i64 i64 i32")
def fd_filestat_set_times(
    ctx: WasiContext, mem: GuestMemory, fd: int, atim: int, mtim: int, fst: int
) -> None:
    entry = ctx.fds.get(fd, Rights.FD_FILESTAT_SET_TIMES)
    target = host_fd(entry)
    check_fstflags(fst)
    if fst:
        os.utime(target, ns=new_times(os.fstat(target), atim, mtim, fst))


def _preopen(ctx: WasiContext, fd: int) -> bytes:
    entry = ctx.fds.get(fd)
    if not isinstance(entry, DirEntry) or entry.preopen is None:
        raise WasiError(Errno.BADF, "not a preopened directory")
    return entry.preopen.encode("utf-8", "surrogateescape")


@wasi("fd_prestat_get", "i32 i32")
def fd_prestat_get(ctx: WasiContext, mem: GuestMemory, fd: int, buf: int) -> None:
    mem.write(buf, PRESTAT.pack(0, len(_preopen(ctx, fd))))


@wasi("fd_prestat_dir_name", "i32 i32 i32")
def fd_prestat_dir_name(ctx: WasiContext, mem: GuestMemory, fd: int, path: int, path_len: int) -> None:
    name = _preopen(ctx, fd)
    if len(name) > path_len:
        raise WasiError(Errno.NAMETOOLONG)
    mem.write(path, name)


@wasi("fd_renumber", "i32 i32")
async def fd_renumber(ctx: WasiContext, mem: GuestMemory, fd: int, to: int) -> None:
    displaced = ctx.fds.renumber(fd, to)
    if displaced is not None:
        await displaced.aclose()


@wasi("fd_seek", "i32 i64 i32 i32")
def fd_seek(
    ctx: WasiContext, mem: GuestMemory, fd: int, offset: int, whence: int, newoffset_ptr: int
) -> None:
    entry = ctx.fds.get(fd)
    if isinstance(entry, StreamEntry):
        raise WasiError(Errno.SPIPE)
    if not isinstance(entry, FileEntry):
        raise WasiError(Errno.BADF)
    if offset > I64_MAX:
        offset -= 1 << 64  # filedelta is signed
    entry.require(Rights.FD_TELL if whence == Whence.CUR and offset == 0 else Rights.FD_SEEK)
    if whence not in (Whence.SET, Whence.CUR, Whence.END):
        raise WasiError(Errno.INVAL)
    mem.write_u64(newoffset_ptr, os.lseek(entry.host_fd, offset, whence))


@wasi("fd_tell", "i32 i32")
def fd_tell(ctx: WasiContext, mem: GuestMemory, fd: int, offset_ptr: int) -> None:
    entry = ctx.fds.get(fd)
    if isinstance(entry, StreamEntry):
        raise WasiError(Errno.SPIPE)
    if not isinstance(entry, FileEntry):
        raise WasiError(Errno.BADF)
    entry.require(Rights.FD_TELL)
    mem.write_u64(offset_ptr, os.lseek(entry.host_fd, 0, os.SEEK_CUR))
