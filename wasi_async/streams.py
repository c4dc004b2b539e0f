"""stdio and sockets as async byte streams: a guest waiting for input suspends, the event loop runs on.

Three kinds of source: in-memory bytes, any anyio byte stream (a socket, a memory object stream, a
process pipe), and the host process's own file descriptors. Host fds are waited on with
``anyio.wait_readable``/``wait_writable`` and only then read or written, so a quiet terminal or pipe
never blocks the loop; regular files (which every poller reports as always ready) are read directly.
"""

from __future__ import annotations

import asyncio
import io
import os
import select
import socket
import stat
import sys
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
import anyio.abc

from .errno import Errno, WasiError, from_oserror
from .flags import Filetype

PIPE_BUF = 4096  # a write of at most this many bytes to a pipe reported writable does not block (Linux)
RECEIVE_CHUNK = 65536


class InputStream(ABC):
    """A readable byte source; ``read`` waits until at least one byte or end of stream."""

    filetype: Filetype = Filetype.UNKNOWN

    @abstractmethod
    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes, at least one unless the stream has ended (then b"")."""

    @abstractmethod
    async def wait_readable(self) -> None:
        """Return once ``read`` would not wait (data buffered, or end of stream)."""

    @abstractmethod
    def is_ready(self) -> bool:
        """Whether ``read`` would return without waiting (for NONBLOCK reads and poll)."""

    def ready_bytes(self) -> int:
        """Bytes known to be readable now (for poll's nbytes); 1 when unknown but ready."""
        return 1

    @property
    def at_eof(self) -> bool:
        return False

    def peek(self, n: int) -> bytes:
        """Buffered bytes without consuming them (sock_recv with MSG_PEEK)."""
        raise WasiError(Errno.NOTSUP)

    def shutdown_read(self) -> None:
        """Stop delivering data: later reads see end of stream."""
        return None

    async def aclose(self) -> None:
        """Release what this stream owns (nothing, for borrowed streams)."""
        return None

    def close_now(self) -> None:
        """``aclose`` for callers that cannot await (``WasiContext.close``)."""
        return None


class OutputStream(ABC):
    """A writable byte sink; ``write`` waits until every byte is accepted."""

    filetype: Filetype = Filetype.UNKNOWN

    @abstractmethod
    async def write(self, data: bytes) -> int: ...

    async def wait_writable(self) -> None:
        return None

    def is_ready(self) -> bool:
        """Whether a write would be accepted without waiting (for poll)."""
        return True

    async def shutdown_write(self) -> None:
        raise WasiError(Errno.NOTSOCK)

    async def aclose(self) -> None:
        """Release what this stream owns (nothing, for borrowed streams)."""
        return None

    def close_now(self) -> None:
        """``aclose`` for callers that cannot await (``WasiContext.close``)."""
        return None


class BytesInput(InputStream):
    """A fixed stdin: reads return its bytes, then end of stream."""

    def __init__(self, data: bytes | bytearray | memoryview = b"") -> None:
        self._data = bytes(data)
        self._pos = 0

    async def read(self, n: int) -> bytes:
        chunk = self._data[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk

    async def wait_readable(self) -> None:
        return None

    def is_ready(self) -> bool:
        return True

    def ready_bytes(self) -> int:
        return len(self._data) - self._pos

    @property
    def at_eof(self) -> bool:
        return self._pos >= len(self._data)

    def peek(self, n: int) -> bytes:
        return self._data[self._pos : self._pos + n]

    def shutdown_read(self) -> None:
        self._pos = len(self._data)


class StreamInput(InputStream):
    """An anyio byte stream (or object stream of bytes); what a receive returns beyond the guest's
    buffer is kept for the next read."""

    def __init__(
        self,
        stream: anyio.abc.ByteReceiveStream | anyio.abc.ObjectReceiveStream[bytes],
        *,
        owned: bool = False,
    ) -> None:
        self.stream = stream
        self._chunked = isinstance(stream, anyio.abc.ByteReceiveStream)
        self.filetype = (
            Filetype.SOCKET_STREAM if isinstance(stream, anyio.abc.SocketStream) else Filetype.UNKNOWN
        )
        self._buffer = bytearray()
        self._eof = False
        self._owned = owned

    async def _receive_more(self) -> None:
        try:
            if self._chunked:
                chunk = await self.stream.receive(RECEIVE_CHUNK)  # type: ignore[call-arg]
            else:
                chunk = await self.stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._eof = True
            return
        self._buffer += chunk

    async def _fill(self) -> None:
        while not self._buffer and not self._eof:  # an empty item is not the end of the stream
            await self._receive_more()

    async def read(self, n: int) -> bytes:
        await self._fill()
        chunk = bytes(self._buffer[:n])
        del self._buffer[:n]
        return chunk

    async def read_exactly(self, n: int) -> bytes:
        """Up to ``n`` bytes, waiting for all of them unless the stream ends (MSG_WAITALL)."""
        while len(self._buffer) < n and not self._eof:
            await self._receive_more()
        return await self.read(n)

    async def wait_readable(self) -> None:
        await self._fill()

    def is_ready(self) -> bool:
        return bool(self._buffer) or self._eof

    def ready_bytes(self) -> int:
        return len(self._buffer) or 1

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._buffer

    def peek(self, n: int) -> bytes:
        return bytes(self._buffer[:n])

    def shutdown_read(self) -> None:
        self._buffer.clear()
        self._eof = True

    async def aclose(self) -> None:
        if self._owned:
            self._owned = False
            self._eof = True
            await self.stream.aclose()

    def close_now(self) -> None:
        if self._owned:
            self._owned = False
            self._eof = True
            close_without_waiting(self.stream)


class StreamOutput(OutputStream):
    """An anyio ``ByteSendStream``: the guest's write waits for the stream's backpressure."""

    def __init__(
        self, stream: anyio.abc.ByteSendStream | anyio.abc.ObjectSendStream[bytes], *, owned: bool = False
    ) -> None:
        self.stream = stream
        self.filetype = (
            Filetype.SOCKET_STREAM if isinstance(stream, anyio.abc.SocketStream) else Filetype.UNKNOWN
        )
        self._owned = owned

    async def write(self, data: bytes) -> int:
        if not data:
            return 0
        try:
            await self.stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise WasiError(Errno.PIPE) from exc
        return len(data)

    async def shutdown_write(self) -> None:
        if not isinstance(self.stream, anyio.abc.ByteStream):
            raise WasiError(Errno.NOTSOCK)
        try:
            await self.stream.send_eof()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise WasiError(Errno.NOTCONN) from exc

    async def aclose(self) -> None:
        if self._owned:
            self._owned = False
            await self.stream.aclose()

    def close_now(self) -> None:
        if self._owned:
            self._owned = False
            close_without_waiting(self.stream)


_closing: set[asyncio.Task[None]] = (
    set()
)  # asyncio keeps only weak references to tasks: these are ours until done


def close_without_waiting(stream: anyio.abc.AsyncResource) -> None:
    """Close an anyio stream from synchronous code.

    A socket is shut down at once, so the peer sees the connection end now; the stream's own
    ``aclose`` (which releases the fd) is then handed to the running event loop. Without a running
    loop there is nothing left to drive the stream, and the fd goes when the stream is collected.
    """
    raw = None
    if isinstance(stream, anyio.TypedAttributeProvider):
        raw = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
    if raw is not None:
        try:
            raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already disconnected
    closer = _quietly(stream.aclose)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        task = loop.create_task(closer())
        _closing.add(task)
        task.add_done_callback(_closing.discard)
        return
    trio = sys.modules.get("trio")  # if trio was never imported, it is not running either
    if trio is not None:
        try:
            trio.lowlevel.spawn_system_task(closer)
        except RuntimeError:
            pass  # no event loop runs here


def _quietly(aclose: Callable[[], Awaitable[None]]) -> Callable[[], Coroutine[Any, Any, None]]:
    async def run() -> None:
        try:
            await aclose()
        except Exception:  # noqa: BLE001 - a stream that fails to close is closed enough
            pass

    return run


class DiscardOutput(OutputStream):
    """stdout or stderr that nobody reads: writes succeed and vanish."""

    async def write(self, data: bytes) -> int:
        return len(data)


def _fd_filetype(fd: int) -> tuple[Filetype, bool]:
    """(WASI filetype, waitable) of a host stdio fd.

    Like wasmtime, only a terminal is a character device and anything else but a socket is
    "unknown": reporting a redirected file as a regular file would invite fd_seek on a stream.
    Regular files and devices such as /dev/null are always ready and cannot be given to a poller.
    """
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return Filetype.UNKNOWN, False
    if os.isatty(fd):
        return Filetype.CHARACTER_DEVICE, True
    if stat.S_ISSOCK(mode):
        return Filetype.SOCKET_STREAM, True
    return Filetype.UNKNOWN, stat.S_ISFIFO(mode)


def poll_now(fd: int, event: int) -> bool:
    """Is ``fd`` ready for ``event`` right now? (poll, not select: no FD_SETSIZE limit.)"""
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(0))


def _host_errno(exc: OSError) -> WasiError:
    return WasiError(from_oserror(exc))


class FdInput(InputStream):
    """The host process's stdin (or any host fd we do not own)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.filetype, self._waitable = _fd_filetype(fd)
        self._eof = False

    async def read(self, n: int) -> bytes:
        while not self._eof:
            if self._waitable and not self.is_ready():
                await anyio.wait_readable(self.fd)
            try:
                return os.read(self.fd, n)
            except BlockingIOError:
                continue  # another reader was faster
            except OSError as exc:
                raise _host_errno(exc) from exc
        return b""

    async def wait_readable(self) -> None:
        if self._waitable and not self._eof:
            await anyio.wait_readable(self.fd)

    def is_ready(self) -> bool:
        return self._eof or not self._waitable or poll_now(self.fd, select.POLLIN)

    def shutdown_read(self) -> None:
        self._eof = True


class FdOutput(OutputStream):
    """The host process's stdout/stderr: waits for writability, then writes at most PIPE_BUF at a time."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.filetype, self._waitable = _fd_filetype(fd)

    async def write(self, data: bytes) -> int:
        view = memoryview(data)
        try:
            while view:
                if self._waitable:
                    if not self.is_ready():  # a select() costs a syscall, a wait costs a loop turn
                        await anyio.wait_writable(self.fd)
                    try:
                        n = os.write(self.fd, view[:PIPE_BUF])
                    except BlockingIOError:
                        continue
                else:
                    n = os.write(self.fd, view)
                view = view[n:]
        except OSError as exc:
            raise _host_errno(exc) from exc
        return len(data)

    async def wait_writable(self) -> None:
        if self._waitable:
            await anyio.wait_writable(self.fd)

    async def shutdown_write(self) -> None:
        if self.filetype != Filetype.SOCKET_STREAM:
            raise WasiError(Errno.NOTSOCK)
        try:  # the process's stdio is a socket (inetd style): shut down a duplicate, keep the fd
            with socket.socket(fileno=os.dup(self.fd)) as sock:
                sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise _host_errno(exc) from exc

    def is_ready(self) -> bool:
        return not self._waitable or poll_now(self.fd, select.POLLOUT)


class CollectStream(anyio.abc.ByteSendStream):
    """A stdout or stderr that keeps what the guest writes: ``data`` is all of it so far, as bytes.

    With a ``limit``, only the first ``limit`` bytes are kept: later writes still succeed for the
    guest (a log it cannot stop writing must not make it fail) but are dropped, and ``truncated``
    says so. Memory stays bounded however long the guest writes. No limit keeps everything. The
    bytes gather in a BytesIO, whose ``getvalue()`` hands over its buffer (in CPython) rather than
    copying it, so taking ``data`` at the end does not hold the output twice.
    """

    def __init__(self, limit: int | None = None) -> None:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, not {limit!r}")
        self._kept = io.BytesIO()
        self.limit = limit
        self.truncated = False

    @property
    def data(self) -> bytes:
        return self._kept.getvalue()

    async def send(self, item: bytes) -> None:
        if self.limit is not None:
            room = self.limit - self._kept.tell()
            if len(item) > room:
                self.truncated = True
                if room <= 0:
                    return
                self._kept.write(memoryview(item)[:room])
                return
        self._kept.write(item)

    async def send_eof(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
