"""The path group: every name goes through paths.resolve, then one host call with dir_fd and no
symlink following on the final component, so nothing outside the granted directories is touched."""

from __future__ import annotations

import fcntl
import os
import stat
from typing import TYPE_CHECKING

from .errno import Errno, WasiError
from .fdtable import DirEntry, Entry, FileEntry, StreamEntry
from .flags import DIR_RIGHTS, FILE_RIGHTS, LOOKUP_SYMLINK_FOLLOW, Fdflags, Oflags, Rights
from .hostfunc import wasi
from .layout import GuestMemory, filetype_of_mode, pack_filestat, read_path
from .paths import Resolved, check_link_target, resolve
from .streams import FdInput, FdOutput
from .times import check_fstflags, new_times

if TYPE_CHECKING:
    from .context import WasiContext

_SYNC_OPEN_FLAGS = {Fdflags.DSYNC: "O_DSYNC", Fdflags.RSYNC: "O_RSYNC", Fdflags.SYNC: "O_SYNC"}


def _dir(ctx: WasiContext, fd: int, rights: int) -> DirEntry:
    """The directory an operation starts from: ENOTDIR if ``fd`` is open but not a directory."""
    return ctx.fds.get_as(fd, DirEntry, rights, wrong=Errno.NOTDIR)


def _follows(lookupflags: int, path: str) -> bool:
    """A lookup follows a final symlink when asked, and always when the path ends in "/" (POSIX)."""
    return bool(lookupflags & LOOKUP_SYMLINK_FOLLOW) or path.endswith(("/", "/."))


@wasi("path_create_directory", "i32 i32 i32")
def path_create_directory(ctx: WasiContext, mem: GuestMemory, fd: int, path_ptr: int, path_len: int) -> None:
    parent = _dir(ctx, fd, Rights.PATH_CREATE_DIRECTORY)
    with resolve(parent.host_fd, read_path(mem, path_ptr, path_len), follow=False) as r:
        os.mkdir(r.slashed_name, 0o777, dir_fd=r.dir_fd)


@wasi("path_filestat_get", "i32 i32 i32 i32 i32")
def path_filestat_get(
    ctx: WasiContext, mem: GuestMemory, fd: int, flags: int, path_ptr: int, path_len: int, buf: int
) -> None:
    parent = _dir(ctx, fd, Rights.PATH_FILESTAT_GET)
    path = read_path(mem, path_ptr, path_len)
    with resolve(parent.host_fd, path, follow=_follows(flags, path)) as r:
        st = os.stat(r.name, dir_fd=r.dir_fd, follow_symlinks=False)
    if r.trailing_slash and not stat.S_ISDIR(st.st_mode):
        raise WasiError(Errno.NOTDIR)
    mem.write(buf, pack_filestat(st))


@wasi("path_filestat_set_times", "i32 i32 i32 i32 i64 i64 i32")
def path_filestat_set_times(
    ctx: WasiContext,
    mem: GuestMemory,
    fd: int,
    flags: int,
    path_ptr: int,
    path_len: int,
    atim: int,
    mtim: int,
    fst: int,
) -> None:
    parent = _dir(ctx, fd, Rights.PATH_FILESTAT_SET_TIMES)
    check_fstflags(fst)
    path = read_path(mem, path_ptr, path_len)
    with resolve(parent.host_fd, path, follow=_follows(flags, path)) as r:
        st = os.stat(r.name, dir_fd=r.dir_fd, follow_symlinks=False)
        if r.trailing_slash and not stat.S_ISDIR(st.st_mode):
            raise WasiError(Errno.NOTDIR)
        if fst:
            os.utime(r.name, ns=new_times(st, atim, mtim, fst), dir_fd=r.dir_fd, follow_symlinks=False)


@wasi("path_link", "i32 i32 i32 i32 i32 i32 i32")
def path_link(
    ctx: WasiContext,
    mem: GuestMemory,
    old_fd: int,
    old_flags: int,
    old_ptr: int,
    old_len: int,
    new_fd: int,
    new_ptr: int,
    new_len: int,
) -> None:
    src = _dir(ctx, old_fd, Rights.PATH_LINK_SOURCE)
    dst = _dir(ctx, new_fd, Rights.PATH_LINK_TARGET)
    old_path = read_path(mem, old_ptr, old_len)
    new_path = read_path(mem, new_ptr, new_len)
    with (
        resolve(src.host_fd, old_path, follow=bool(old_flags & LOOKUP_SYMLINK_FOLLOW)) as a,
        resolve(dst.host_fd, new_path, follow=False) as b,
    ):
        if a.trailing_slash and not stat.S_ISDIR(
            os.stat(a.name, dir_fd=a.dir_fd, follow_symlinks=False).st_mode
        ):
            raise WasiError(Errno.NOTDIR)
        _check_moved_link(a, b, dst)
        os.link(a.name, b.slashed_name, src_dir_fd=a.dir_fd, dst_dir_fd=b.dir_fd, follow_symlinks=False)


def _check_moved_link(src: Resolved, dst: Resolved, dst_dir: DirEntry) -> None:
    """A symbolic link given a new name (path_rename, or path_link of the link itself) is read from its
    new directory: ENOTCAPABLE if from there it would lead out of the destination's preopen."""
    try:
        st = os.stat(src.name, dir_fd=src.dir_fd, follow_symlinks=False)
    except OSError:
        return  # no such entry: the rename or link itself reports it
    if stat.S_ISLNK(st.st_mode):
        check_link_target(dst.dir_fd, os.readlink(src.name, dir_fd=src.dir_fd), dst_dir.sandbox_root())


def _open_flags(oflags: int, base: int, fdflags: int, directory: bool) -> int:
    write = base & Rights.FD_WRITE
    read = base & (Rights.FD_READ | Rights.FD_READDIR)
    flags = os.O_RDWR if read and write else os.O_WRONLY if write else os.O_RDONLY
    # NOFOLLOW: the walk already expanded the links it should; NONBLOCK: opening a FIFO must not block the loop.
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    if oflags & Oflags.CREAT:
        flags |= os.O_CREAT
    if oflags & Oflags.EXCL:
        flags |= os.O_EXCL
    if oflags & Oflags.TRUNC:
        flags |= os.O_TRUNC
    if directory:
        flags |= os.O_DIRECTORY
    if fdflags & Fdflags.APPEND:
        flags |= os.O_APPEND
    for bit, name in _SYNC_OPEN_FLAGS.items():
        if fdflags & bit:
            flags |= getattr(os, name, os.O_SYNC)
    return flags


def _entry_for(host: int, base: int, inheriting: int, fdflags: int, parent: DirEntry) -> Entry:
    """Wrap a freshly opened host fd by what it turned out to be (a directory keeps its preopen's root)."""
    st = os.fstat(host)
    if stat.S_ISDIR(st.st_mode):
        return DirEntry(
            base & DIR_RIGHTS,
            inheriting,
            fdflags & Fdflags.NONBLOCK,
            host_fd=host,
            root=parent.sandbox_root(),
        )
    if stat.S_ISREG(st.st_mode):
        fcntl.fcntl(host, fcntl.F_SETFL, fcntl.fcntl(host, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return FileEntry(base & FILE_RIGHTS, inheriting, fdflags, host_fd=host)
    # A FIFO, device or socket node: an async stream over the (non-blocking) host fd.
    stream_rights = base & FILE_RIGHTS & ~(Rights.FD_SEEK | Rights.FD_TELL)
    access = fcntl.fcntl(host, fcntl.F_GETFL) & os.O_ACCMODE
    return StreamEntry(
        stream_rights,
        inheriting,
        fdflags & ~Fdflags.APPEND,
        input=FdInput(host) if access != os.O_WRONLY else None,
        output=FdOutput(host) if access != os.O_RDONLY else None,
        owned_fd=host,
        kind=filetype_of_mode(st.st_mode),
    )


@wasi("path_open", "i32 i32 i32 i32 i32 i64 i64 i32 i32")
def path_open(
    ctx: WasiContext,
    mem: GuestMemory,
    fd: int,
    dirflags: int,
    path_ptr: int,
    path_len: int,
    oflags: int,
    base: int,
    inheriting: int,
    fdflags: int,
    fd_ptr: int,
) -> None:
    parent = _dir(ctx, fd, Rights.PATH_OPEN)
    path = read_path(mem, path_ptr, path_len)
    if oflags & ~0xF or fdflags & ~0x1F or oflags & Oflags.CREAT and oflags & Oflags.DIRECTORY:
        raise WasiError(Errno.INVAL)
    if oflags & Oflags.CREAT:
        parent.require(Rights.PATH_CREATE_FILE)
    if oflags & Oflags.TRUNC:
        parent.require(Rights.PATH_FILESTAT_SET_SIZE)
    # A new descriptor gets what it asked for, within what its directory may hand down.
    base &= parent.rights_inheriting
    inheriting &= parent.rights_inheriting
    ctx.fds.check_room()  # EMFILE before anything is opened or created on the host
    with resolve(parent.host_fd, path, follow=_follows(dirflags, path)) as r:
        flags = _open_flags(oflags, base, fdflags, bool(oflags & Oflags.DIRECTORY) or r.trailing_slash)
        host = os.open(r.name, flags, 0o666, dir_fd=r.dir_fd)
    try:
        entry = _entry_for(host, base, inheriting, fdflags, parent)
    except BaseException:
        os.close(host)
        raise
    try:
        new_fd = ctx.fds.add_opened(entry)
    except BaseException:
        entry.close()
        raise
    mem.write_u32(fd_ptr, new_fd)


@wasi("path_readlink", "i32 i32 i32 i32 i32 i32")
def path_readlink(
    ctx: WasiContext,
    mem: GuestMemory,
    fd: int,
    path_ptr: int,
    path_len: int,
    buf: int,
    buf_len: int,
    bufused_ptr: int,
) -> None:
    parent = _dir(ctx, fd, Rights.PATH_READLINK)
    path = read_path(mem, path_ptr, path_len)
    with resolve(parent.host_fd, path, follow=path.endswith("/")) as r:
        target = os.readlink(r.name, dir_fd=r.dir_fd).encode("utf-8", "surrogateescape")
    target = target[:buf_len]
    mem.write(buf, target)
    mem.write_u32(bufused_ptr, len(target))


@wasi("path_remove_directory", "i32 i32 i32")
def path_remove_directory(ctx: WasiContext, mem: GuestMemory, fd: int, path_ptr: int, path_len: int) -> None:
    parent = _dir(ctx, fd, Rights.PATH_REMOVE_DIRECTORY)
    path = read_path(mem, path_ptr, path_len)
    with resolve(parent.host_fd, path, follow=False) as r:
        if path.rstrip("/").rpartition("/")[2] == "..":  # the walk ate the "..": say what rmdir would
            raise WasiError(Errno.NOTEMPTY, "a directory's parent still holds it")
        os.rmdir(r.slashed_name, dir_fd=r.dir_fd)  # a final "." is kept as the name: EINVAL


@wasi("path_rename", "i32 i32 i32 i32 i32 i32")
def path_rename(
    ctx: WasiContext,
    mem: GuestMemory,
    fd: int,
    old_ptr: int,
    old_len: int,
    new_fd: int,
    new_ptr: int,
    new_len: int,
) -> None:
    src = _dir(ctx, fd, Rights.PATH_RENAME_SOURCE)
    dst = _dir(ctx, new_fd, Rights.PATH_RENAME_TARGET)
    old_path = read_path(mem, old_ptr, old_len)
    new_path = read_path(mem, new_ptr, new_len)
    with resolve(src.host_fd, old_path, follow=False) as a, resolve(dst.host_fd, new_path, follow=False) as b:
        _check_moved_link(a, b, dst)
        os.rename(a.slashed_name, b.slashed_name, src_dir_fd=a.dir_fd, dst_dir_fd=b.dir_fd)


@wasi("path_symlink", "i32 i32 i32 i32 i32")
def path_symlink(
    ctx: WasiContext, mem: GuestMemory, old_ptr: int, old_len: int, fd: int, new_ptr: int, new_len: int
) -> None:
    parent = _dir(ctx, fd, Rights.PATH_SYMLINK)
    target = read_path(mem, old_ptr, old_len)
    if target.startswith("/"):
        raise WasiError(Errno.NOTCAPABLE, "symbolic links to absolute paths are not allowed")
    with resolve(parent.host_fd, read_path(mem, new_ptr, new_len), follow=False) as r:
        # Host software follows links with the kernel, not with our walk: one leading out is never made.
        check_link_target(r.dir_fd, target, parent.sandbox_root())
        os.symlink(target, r.slashed_name, dir_fd=r.dir_fd)


@wasi("path_unlink_file", "i32 i32 i32")
def path_unlink_file(ctx: WasiContext, mem: GuestMemory, fd: int, path_ptr: int, path_len: int) -> None:
    parent = _dir(ctx, fd, Rights.PATH_UNLINK_FILE)
    with resolve(parent.host_fd, read_path(mem, path_ptr, path_len), follow=False) as r:
        os.unlink(r.slashed_name, dir_fd=r.dir_fd)
