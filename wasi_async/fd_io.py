"""fd_read, fd_write, fd_pread, fd_pwrite and fd_readdir.

Regular files are read and written with plain os calls (they do not block for long); streams
(stdio, sockets, pipes) are awaited, so a guest waiting for input suspends and the loop runs on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .errno import Errno, WasiError
from .fd import I64_MAX
from .fdtable import DirEntry, Entry, FileEntry, StreamEntry
from .flags import Fdflags, Filetype, Rights
from .hostfunc import wasi
from .layout import (
    DIRENT,
    GuestMemory,
    filetype_of_mode,
    gather_chunks,
    io_limit,
    memory_size,
    read_iovecs,
    scatter,
    total_len,
)
from .streams import OutputStream

if TYPE_CHECKING:
    from .context import WasiContext


def _readable(ctx: WasiContext, fd: int) -> Entry:
    entry = ctx.fds.get(fd)
    if isinstance(entry, DirEntry):
        raise WasiError(Errno.ISDIR)
    entry.require(Rights.FD_READ)
    return entry


def _writable(ctx: WasiContext, fd: int) -> Entry:
    entry = ctx.fds.get(fd)
    if isinstance(entry, DirEntry):
        raise WasiError(Errno.ISDIR)
    entry.require(Rights.FD_WRITE)
    return entry


async def read_stream(entry: StreamEntry, n: int) -> bytes:
    """Up to ``n`` bytes from a stream entry: waits unless the guest set NONBLOCK (then EAGAIN)."""
    stream = entry.input
    if stream is None:
        raise WasiError(Errno.BADF, "not readable")
    if n == 0:
        return b""
    if entry.fdflags & Fdflags.NONBLOCK and not stream.is_ready():
        raise WasiError(Errno.AGAIN)
    return await stream.read(n)


@wasi("fd_read", "i32 i32 i32 i32")
async def fd_read(
    ctx: WasiContext, mem: GuestMemory, fd: int, iovs: int, iovs_len: int, nread_ptr: int
) -> None:
    entry = _readable(ctx, fd)
    spans = read_iovecs(mem, iovs, iovs_len, io_limit(mem))
    n = total_len(spans)
    if isinstance(entry, FileEntry):
        data = os.read(entry.host_fd, n)
    elif isinstance(entry, StreamEntry):
        data = await read_stream(entry, n)
    else:
        raise WasiError(Errno.BADF)
    scatter(mem, spans, data)
    mem.write_u32(nread_ptr, len(data))


def _positional(entry: object, offset: int) -> FileEntry:
    """fd_pread/fd_pwrite: only a file with the seek right, at an offset that fits an i64."""
    if isinstance(entry, StreamEntry):
        raise WasiError(Errno.SPIPE)
    if not isinstance(entry, FileEntry):
        raise WasiError(Errno.BADF)
    entry.require(Rights.FD_SEEK)
    if offset > I64_MAX:
        raise WasiError(Errno.INVAL)
    return entry


@wasi("fd_pread", "i32 i32 i32 i64 i32")
def fd_pread(
    ctx: WasiContext, mem: GuestMemory, fd: int, iovs: int, iovs_len: int, offset: int, nread_ptr: int
) -> None:
    entry = _positional(_readable(ctx, fd), offset)
    spans = read_iovecs(mem, iovs, iovs_len, io_limit(mem))
    data = os.pread(entry.host_fd, total_len(spans), offset)
    scatter(mem, spans, data)
    mem.write_u32(nread_ptr, len(data))


def write_chunks(chunks: Iterable[bytes], write: Callable[[bytes, int], int]) -> int:
    """Hand the chunks to ``write(chunk, bytes_done_so_far)`` until one is taken short, and return the
    count written. A failure after some bytes went out reports those bytes, as write(2) does; the
    next call then sees the error."""
    done = 0
    for chunk in chunks:
        try:
            n = write(chunk, done)
        except OSError:
            if done:
                return done
            raise
        done += n
        if n < len(chunk):
            break
    return done


async def write_stream(output: OutputStream, chunks: Iterable[bytes]) -> int:
    """``write_chunks`` for a stream: each chunk is awaited (the stream's backpressure applies), and
    one taken short, or failing after earlier ones went out, ends the write with what was written."""
    done = 0
    for chunk in chunks:
        try:
            n = await output.write(chunk)
        except (WasiError, OSError):
            if done:
                return done
            raise
        done += n
        if n < len(chunk):
            break
    return done


@wasi("fd_write", "i32 i32 i32 i32")
async def fd_write(
    ctx: WasiContext, mem: GuestMemory, fd: int, iovs: int, iovs_len: int, nwritten_ptr: int
) -> None:
    entry = _writable(ctx, fd)
    chunks = gather_chunks(mem, read_iovecs(mem, iovs, iovs_len, io_limit(mem)))
    if isinstance(entry, FileEntry):
        host = entry.host_fd
        n = write_chunks(chunks, lambda chunk, _done: os.write(host, chunk))
    elif isinstance(entry, StreamEntry) and entry.output is not None:
        n = await write_stream(entry.output, chunks)
    else:
        raise WasiError(Errno.BADF)
    mem.write_u32(nwritten_ptr, n)


@wasi("fd_pwrite", "i32 i32 i32 i64 i32")
def fd_pwrite(
    ctx: WasiContext, mem: GuestMemory, fd: int, iovs: int, iovs_len: int, offset: int, nwritten_ptr: int
) -> None:
    entry = _positional(_writable(ctx, fd), offset)
    chunks = gather_chunks(mem, read_iovecs(mem, iovs, iovs_len, io_limit(mem)))
    host = entry.host_fd
    mem.write_u32(
        nwritten_ptr, write_chunks(chunks, lambda chunk, done: os.pwrite(host, chunk, offset + done))
    )


def _list_directory(entry: DirEntry) -> list[tuple[str, int, Filetype]]:
    """ "." and ".." first, then the host entries in the host's order. Inode numbers come from lstat,
    as fd_filestat_get's do (a union filesystem's readdir d_ino can differ from st_ino)."""
    own_ino = os.fstat(entry.host_fd).st_ino
    listing = [(".", own_ino, Filetype.DIRECTORY), ("..", own_ino, Filetype.DIRECTORY)]
    with os.scandir(entry.host_fd) as it:
        for item in it:
            try:
                st = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we listed
            listing.append((item.name, st.st_ino, filetype_of_mode(st.st_mode)))
    return listing


@wasi("fd_readdir", "i32 i32 i32 i64 i32")
def fd_readdir(
    ctx: WasiContext, mem: GuestMemory, fd: int, buf: int, buf_len: int, cookie: int, bufused_ptr: int
) -> None:
    entry = ctx.fds.get_as(fd, DirEntry, Rights.FD_READDIR, wrong=Errno.NOTDIR)
    if cookie == 0 or entry.listing is None:
        entry.listing = _list_directory(entry)
    out = bytearray()
    room = min(buf_len, memory_size(mem))  # never build more than the memory holds (the write would trap)
    for index in range(min(cookie, len(entry.listing)), len(entry.listing)):
        if len(out) >= room:
            break
        name, ino, ftype = entry.listing[index]
        raw = name.encode("utf-8", "surrogateescape")
        out += DIRENT.pack(index + 1, ino, len(raw), ftype) + raw
    del out[buf_len:]  # a truncated last entry tells the guest to call again with a bigger buffer
    mem.write(buf, out)
    mem.write_u32(bufused_ptr, len(out))
