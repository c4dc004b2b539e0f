"""sock_accept, sock_recv, sock_send, sock_shutdown on socket descriptors (preopened sockets, the
connections accepted from them, and stdio backed by an anyio socket stream); ENOTSOCK elsewhere."""

from __future__ import annotations

import select
from typing import TYPE_CHECKING

import anyio.abc

from .errno import Errno, WasiError
from .fd_io import read_stream, write_stream
from .fdtable import ListenerEntry, StreamEntry
from .flags import (
    SHUT_RD,
    SHUT_WR,
    SOCK_RECV_PEEK,
    SOCK_RECV_WAITALL,
    SOCKET_RIGHTS,
    Fdflags,
    Filetype,
    Rights,
)
from .hostfunc import wasi
from .layout import GuestMemory, gather_chunks, io_limit, read_iovecs, scatter, total_len
from .streams import StreamInput, StreamOutput, poll_now

if TYPE_CHECKING:
    from .context import WasiContext


def _socket(ctx: WasiContext, fd: int, rights: int) -> StreamEntry:
    entry = ctx.fds.get(fd)
    if not isinstance(entry, StreamEntry) or not entry.socket:
        raise WasiError(Errno.NOTSOCK)
    entry.require(rights)
    return entry


def socket_entry(stream: anyio.abc.ByteStream, fdflags: int = 0, *, owned: bool) -> StreamEntry:
    """A connected socket as one descriptor: both directions over the same anyio stream."""
    return StreamEntry(
        SOCKET_RIGHTS,
        0,
        fdflags,
        input=StreamInput(stream, owned=owned),
        output=StreamOutput(stream),
        kind=Filetype.SOCKET_STREAM,
    )


@wasi("sock_accept", "i32 i32 i32")
async def sock_accept(ctx: WasiContext, mem: GuestMemory, fd: int, flags: int, fd_ptr: int) -> None:
    entry = ctx.fds.get(fd)
    if isinstance(entry, StreamEntry) and entry.socket:
        raise WasiError(Errno.INVAL, "not a listening socket")
    if not isinstance(entry, ListenerEntry) or entry.listener is None:
        raise WasiError(Errno.NOTSOCK)
    entry.require(Rights.SOCK_ACCEPT)
    if flags & ~int(Fdflags.NONBLOCK):
        raise WasiError(Errno.INVAL)
    accept = getattr(entry.listener, "accept", None)
    if accept is None:
        raise WasiError(Errno.NOTSUP, "this listener can only serve(), not accept()")
    ctx.fds.check_room()  # at the limit, the connection stays queued (accept(2) says EMFILE too)
    if entry.fdflags & Fdflags.NONBLOCK:
        sock = entry.listener.extra(anyio.abc.SocketAttribute.raw_socket, None)
        if sock is None or not poll_now(sock.fileno(), select.POLLIN):
            raise WasiError(Errno.AGAIN)
    stream = await accept()
    new = socket_entry(stream, flags, owned=True)
    try:
        fd_new = ctx.fds.add_opened(new)
    except BaseException:
        await new.aclose()
        raise
    mem.write_u32(fd_ptr, fd_new)


@wasi("sock_recv", "i32 i32 i32 i32 i32 i32")
async def sock_recv(
    ctx: WasiContext,
    mem: GuestMemory,
    fd: int,
    ri_data: int,
    ri_data_len: int,
    ri_flags: int,
    ro_datalen_ptr: int,
    ro_flags_ptr: int,
) -> None:
    entry = _socket(ctx, fd, Rights.FD_READ)
    if ri_flags & ~(SOCK_RECV_PEEK | SOCK_RECV_WAITALL):
        raise WasiError(Errno.INVAL)
    spans = read_iovecs(mem, ri_data, ri_data_len, io_limit(mem))
    n = total_len(spans)
    stream = entry.input
    if stream is None:
        raise WasiError(Errno.NOTCONN)
    if ri_flags & SOCK_RECV_PEEK:
        await stream.wait_readable()
        data = stream.peek(n)
    elif ri_flags & SOCK_RECV_WAITALL and isinstance(stream, StreamInput):
        data = await stream.read_exactly(n)
    else:
        data = await read_stream(entry, n)
    scatter(mem, spans, data)
    mem.write_u32(ro_datalen_ptr, len(data))
    mem.write_u16(ro_flags_ptr, 0)


@wasi("sock_send", "i32 i32 i32 i32 i32")
async def sock_send(
    ctx: WasiContext,
    mem: GuestMemory,
    fd: int,
    si_data: int,
    si_data_len: int,
    si_flags: int,
    so_datalen_ptr: int,
) -> None:
    entry = _socket(ctx, fd, Rights.FD_WRITE)
    if entry.output is None:
        raise WasiError(Errno.NOTCONN)
    chunks = gather_chunks(mem, read_iovecs(mem, si_data, si_data_len, io_limit(mem)))
    mem.write_u32(so_datalen_ptr, await write_stream(entry.output, chunks))


@wasi("sock_shutdown", "i32 i32")
async def sock_shutdown(ctx: WasiContext, mem: GuestMemory, fd: int, how: int) -> None:
    entry = _socket(ctx, fd, Rights.SOCK_SHUTDOWN)
    if how == 0 or how & ~(SHUT_RD | SHUT_WR):
        raise WasiError(Errno.INVAL)
    if how & SHUT_RD and entry.input is not None:
        entry.input.shutdown_read()
    if how & SHUT_WR and entry.output is not None:
        await entry.output.shutdown_write()
