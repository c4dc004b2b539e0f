"""One client connection of the server: its bookkeeping, its counted stream, its guest's stderr,
and the one way an instance runs for it (``run_instance``, through ``wasi_async.run_command``),
from a fresh instantiation or from the snapshot ``initialise`` took (``serve-stdin --init``).

The server (``server.py``) and the HTTP mode (``http.py``) both build on this module; it knows
neither of them. ``ConnectionHost`` is what the HTTP mode may ask of the server that runs it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

from wasi_async import Preopen, WasiConfig, run_command, wasi_instance

from .. import CompiledModule, Interrupted, Snapshot, Store, WasmException
from .config import ServeOptions

log = logging.getLogger("asyncwasm.serve")

STDERR_LINE_MAX = 2000  # longer guest stderr lines are cut (the log is one line per record)
STDERR_TOTAL_MAX = 64 * 1024  # per connection; the rest is dropped with one notice
LINGER_SECONDS = 1.0  # after the instance ends: how long to wait for the client to finish sending
LINGER_BYTES = 1 << 20
LINGER_0 = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # SO_LINGER on with 0 s: close() resets the connection


@dataclass
class Outcome:
    """How an instance ended: an exit code, or a reason it was stopped."""

    exit_code: int | None = None
    error: str | None = None  # "trap: ...", "timeout", "idle timeout", "cancelled: shutdown", ...

    @property
    def ok(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        if self.error is not None:
            return self.error
        return "no request" if self.exit_code is None else f"exit {self.exit_code}"


class Connection:
    """Bookkeeping of one client connection: traffic, activity and the scope that can stop it."""

    def __init__(self, ident: str, peer: str) -> None:
        self.id = ident
        self.peer = peer
        self.started = time.monotonic()
        self.last_activity = self.started
        self.bytes_in = 0
        self.bytes_out = 0
        self.fuel = 0
        self.scope: anyio.CancelScope | None = None
        self.stop_reason: str | None = None  # set by whoever cancels the scope
        self.outcome: Outcome | None = None
        self.requests = 0  # HTTP: requests served on this connection
        self.failed_requests = 0
        self.last_status: int | None = None
        self.between_requests = False
        self.socket: Any = None  # the raw socket, polled for a hang-up while an instance runs
        self.running = False  # an instance is running for this connection
        self.eof_at: float | None = None  # when the client was first seen to have closed its side
        self.gone_at: float | None = None  # when the client was seen to be gone (reset, failed write)

    @property
    def tag(self) -> str:
        return f"[{self.id} {self.peer}]"

    def fileno(self) -> int:
        """The socket's descriptor, -1 once it is closed (asyncio closes it itself after a reset)."""
        try:
            return -1 if self.socket is None else int(self.socket.fileno())
        except OSError:
            return -1

    def gone(self) -> None:
        """The client is gone (the connection was reset, or a write to it failed)."""
        if self.gone_at is None:
            self.gone_at = time.monotonic()

    def stop(self, reason: str) -> None:
        """Cancel this connection's work (its instance unwinds, also inside a blocking WASI call)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.scope is not None:
            self.scope.cancel()


def peer_name(stream: anyio.abc.SocketStream) -> str:
    try:
        addr = stream.extra(SocketAttribute.remote_address)
    except Exception:  # noqa: BLE001 - a peer that is already gone has no address
        return "?"
    if isinstance(addr, tuple):
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr) or "unix"


class CountingStream(anyio.abc.SocketStream):
    """A socket stream that counts bytes both ways and notes when they moved (for --idle-timeout).

    It stays a SocketStream, so the guest sees its stdio as a socket (it may shut it down)."""

    def __init__(self, inner: anyio.abc.SocketStream, conn: Connection) -> None:
        self.inner = inner
        self.conn = conn
        self.saw_eof = False

    @property
    def _raw_socket(self) -> socket.socket:
        return self.inner._raw_socket  # type: ignore[attr-defined, no-any-return]

    @property
    def extra_attributes(self) -> Any:
        return self.inner.extra_attributes

    async def receive(self, max_bytes: int = 65536) -> bytes:
        try:
            data = await self.inner.receive(max_bytes)
        except anyio.EndOfStream:
            self.saw_eof = True
            raise
        except anyio.BrokenResourceError:
            self.saw_eof = True
            self.conn.gone()
            raise
        conn = self.conn
        conn.bytes_in += len(data)
        conn.last_activity = time.monotonic()
        return data

    async def send(self, item: bytes) -> None:
        try:
            await self.inner.send(item)
        except anyio.BrokenResourceError:
            self.conn.gone()
            raise
        conn = self.conn
        conn.bytes_out += len(item)
        conn.last_activity = time.monotonic()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


class GuestLog(anyio.abc.ByteSendStream):
    """The guest's stderr: each line goes to the server's log, tagged with its connection.

    Bounded: a line is cut at STDERR_LINE_MAX and a connection may log STDERR_TOTAL_MAX bytes."""

    def __init__(self, conn: Connection, stream: str = "stderr") -> None:
        self.conn = conn
        self.stream = stream
        self._partial = bytearray()
        self._total = 0
        self._muted = False

    async def send(self, item: bytes) -> None:
        if self._muted:
            return
        self._total += len(item)
        if self._total > STDERR_TOTAL_MAX:
            self._muted = True
            self.flush()
            log.warning(
                "%s stderr: (more than %d bytes; the rest is dropped)", self.conn.tag, STDERR_TOTAL_MAX
            )
            return
        self._partial += item
        while True:
            nl = self._partial.find(b"\n")
            if nl < 0:
                break
            self._emit(bytes(self._partial[:nl]))
            del self._partial[: nl + 1]
        if len(self._partial) > STDERR_LINE_MAX:
            self.flush()

    def _emit(self, line: bytes) -> None:
        text = line[:STDERR_LINE_MAX].decode("utf-8", "replace").rstrip("\r")
        log.info("%s %s: %s", self.conn.tag, self.stream, text)

    def flush(self) -> None:
        if self._partial:
            self._emit(bytes(self._partial))
            self._partial.clear()

    async def send_eof(self) -> None:
        self.flush()

    async def aclose(self) -> None:
        self.flush()


class ConnectionHost(Protocol):
    """What a connection's protocol (raw or HTTP) needs of the server serving it."""

    options: ServeOptions

    @property
    def stopping(self) -> bool:
        """The server is shutting down: no new request should start."""
        ...

    async def run_instance(self, conn: Connection, stdin: Any, stdout: Any, env: dict[str, str]) -> Outcome:
        """Run one instance for ``conn`` to its end (see ``run_instance``)."""
        ...


async def run_instance(
    module: CompiledModule,
    options: ServeOptions,
    argv: list[str],
    preopens: list[Preopen],
    conn: Connection,
    stdin: Any,
    stdout: Any,
    env: dict[str, str],
    snapshot: Snapshot | None = None,
) -> Outcome:
    """Instantiate the module for one connection (or request) and run ``_start`` to its end.

    The guest runs through ``wasi_async.run_command`` with a fresh Store carrying the limits (the
    store's timeout is the wall-clock limit), from ``snapshot`` when given (``initialise``). Returns how it ended; a trap, an exit, a limit or a
    broken pipe is an Outcome, not an exception. Cancellation of the connection's scope propagates
    (the caller's scope owns it)."""
    stderr = GuestLog(conn)
    store = limited_store(options)
    conn.running = True
    try:
        result = await run_command(
            module,
            argv,
            env=env,
            preopens=preopens,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            store=store,
            max_open_files=options.max_open_files,
            snapshot=snapshot,
        )
    except OSError as exc:  # a preopened directory could not be opened
        return Outcome(error=f"cannot start an instance: {exc.strerror or exc}")
    except WasmException as exc:  # thrown by the guest, caught by none of its handlers: no internal error
        return Outcome(error=str(exc).partition("\n")[0])
    finally:
        conn.running = False
        conn.fuel += store.fuel_used
        stderr.flush()
    if isinstance(result.trap, Interrupted):
        return Outcome(error=f"timeout ({options.timeout:g}s)")
    if result.trap is not None:
        return Outcome(error=f"trap: {result.trap.message}")
    return Outcome(exit_code=result.exit_code)


def limited_store(options: ServeOptions) -> Store:
    """A fresh Store with the limits of one connection (or request)."""
    return Store(
        fuel=options.fuel,
        timeout=options.timeout,
        max_memory_pages=options.max_memory_pages,
        max_table_elements_total=options.max_table_elements,
        max_depth=options.max_depth,
    )


async def initialise(
    module: CompiledModule, options: ServeOptions, argv: list[str], preopens: list[Preopen], init: str
) -> Snapshot:
    """Run the module's start function and its export ``init`` once, and capture the state they left:
    every connection then starts from it (``run_instance(snapshot=)``) instead of initialising again.

    The initialiser sees what a connection's instance sees (the arguments, ``--env``, the ``--dir``
    grants, the limits), but an empty stdin; what it writes to stdout or stderr goes to the log. A
    trap, a ``WasiExit``, ``KeyError`` (no such export) or ``SnapshotError`` passes through."""
    who = Connection("init", init)
    log_out, log_err = GuestLog(who, "stdout"), GuestLog(who)
    config = WasiConfig(
        args=argv,
        env=dict(options.env),
        preopens=preopens,
        stdin=None,
        stdout=log_out,
        stderr=log_err,
        max_open_files=options.max_open_files,
    )
    try:
        async with wasi_instance(module, config, store=limited_store(options)) as inst:
            await inst.call(init)
            return inst.snapshot()
    finally:
        log_out.flush()
        log_err.flush()


async def linger_close(stream: CountingStream) -> None:
    """End the connection without losing what the guest wrote: half-close, then let the client
    finish sending (bounded), so closing with unread input does not reset the connection."""
    if stream.saw_eof or stream.conn.gone_at is not None:
        return
    try:
        with anyio.move_on_after(LINGER_SECONDS):
            await stream.send_eof()
            drained = 0
            while drained < LINGER_BYTES:
                drained += len(await stream.inner.receive())
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass


def hold_reads(stream: anyio.abc.SocketStream) -> None:
    """Read from the socket only when asked to (backpressure on the client's input).

    On asyncio, anyio's socket stream is a protocol whose transport starts reading as soon as it
    is made, into a queue with no bound, and pauses only after a receive() that had to wait: a
    client could push gigabytes at a guest that reads late or never. Paused here, the transport
    reads only inside receive() (anyio resumes it while a receive waits and pauses it after), so
    what is held per connection is one read's worth plus the kernel's socket buffer. On trio a
    receive is a recv() call, which needs nothing of this."""
    transport = getattr(stream, "_transport", None)
    if isinstance(transport, asyncio.ReadTransport) and transport.is_reading():
        transport.pause_reading()


def raw_socket(stream: Any) -> Any:
    try:
        return stream.extra(SocketAttribute.raw_socket)
    except (anyio.TypedAttributeLookupError, AttributeError):
        return None


def reset_on_close(stream: anyio.abc.SocketStream) -> None:
    """Make the coming close an RST (a refused client sees ECONNRESET, not an empty answer)."""
    try:
        sock = stream.extra(SocketAttribute.raw_socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
    except (OSError, anyio.TypedAttributeLookupError):
        pass


async def close_quietly(stream: anyio.abc.AsyncResource) -> None:
    try:
        await stream.aclose()
    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass
