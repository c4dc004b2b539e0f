"""The connection server behind ``asyncwasm serve-stdin``: one fresh instance per connection.

The module is compiled once per process; each connection gets its own Linker, WASI context and
Store, so limits (fuel, memory, time) and failures stay inside that connection. The guest's stdin
and stdout are the socket itself (raw mode) or the request body and a CGI response writer (HTTP
mode, in ``serve_http``), streamed both ways while the instance runs.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import os
import resource
import select
import socket
import time
from collections.abc import Callable, MutableSequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

from . import CompiledModule, Linker, Store, Trap, WasmException

log = logging.getLogger("asyncwasm.serve")

STDERR_LINE_MAX = 2000  # longer guest stderr lines are cut (the log is one line per record)
STDERR_TOTAL_MAX = 64 * 1024  # per connection; the rest is dropped with one notice
LINGER_SECONDS = 1.0  # after the instance ends: how long to wait for the client to finish sending
LINGER_BYTES = 1 << 20
DEFAULT_IDLE_TIMEOUT = 30.0  # seconds without a byte moving either way: the connection is stopped
DEFAULT_EOF_IDLE_TIMEOUT = 1.0  # the same once the client has closed its side (sent FIN)
HANGUP_PERIOD = 0.2  # how often the sockets of running instances are polled for a hang-up
GONE_GRACE = 0.5  # after a reset or a failed write: how long the guest may take to end by itself
DEFAULT_MAX_OPEN_FILES = 64  # descriptors a guest may open itself (with --dir): WasiConfig.max_open_files
ACCEPT_BACKOFF_MIN = 0.05  # out of descriptors: the first wait before accepting again, doubled up to
ACCEPT_BACKOFF_MAX = 1.0
ACCEPT_REMIND = 60.0  # a burst of accept failures is logged when it starts, ends, and this often between
DEFAULT_MAX_BODY = 16 << 20  # --http: request body bytes (--max-body); more is 413
OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
LINGER_0 = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # SO_LINGER on with 0 s: close() resets the connection


@dataclass
class ServeOptions:
    """Everything a worker needs to serve; plain data, so it crosses a fork unchanged."""

    module_path: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    preopens: tuple[tuple[str, str], ...] = ()  # (host, guest)
    fuel: int | None = None
    timeout: float | None = None
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT  # None or 0: no limit
    eof_idle_timeout: float | None = DEFAULT_EOF_IDLE_TIMEOUT  # None or 0: only idle_timeout
    max_open_files: int | None = DEFAULT_MAX_OPEN_FILES  # per instance; None: no cap of its own
    max_body: int | None = DEFAULT_MAX_BODY  # --http: request body bytes, more is 413; None or 0: no limit
    nofile: int | None = None  # the descriptor limit the connection limit was fitted to (for the log)
    max_memory_pages: int | None = None
    max_connections: int | None = None
    overflow: str = "wait"  # or "refuse": what happens to a connection over max_connections
    grace: float = 10.0
    http: bool = False
    keepalive_timeout: float = 15.0


# ---- counters ---------------------------------------------------------------------------------

STAT_FIELDS = ("served", "failed", "refused", "active", "bytes_in", "bytes_out", "fuel")


class Stats:
    """Counters of one worker. They may live in shared memory so a supervisor can sum the workers
    on demand; each worker is the only writer of its own slots, so no lock is needed."""

    def __init__(self, slots: MutableSequence[int] | None = None) -> None:
        self.slots: MutableSequence[int] = slots if slots is not None else [0] * len(STAT_FIELDS)

    def add(self, name: str, n: int = 1) -> None:
        i = STAT_FIELDS.index(name)
        self.slots[i] += n

    def get(self, name: str) -> int:
        return int(self.slots[STAT_FIELDS.index(name)])

    def as_dict(self) -> dict[str, int]:
        return {name: int(self.slots[i]) for i, name in enumerate(STAT_FIELDS)}


def format_summary(stats: dict[str, int], who: str = "") -> str:
    return (
        f"summary{who}: served {stats['served']}, active {stats['active']}, failed {stats['failed']}, "
        f"refused {stats['refused']}, bytes in {stats['bytes_in']}, out {stats['bytes_out']}, "
        f"fuel {stats['fuel']}"
    )


# ---- one connection -----------------------------------------------------------------------------


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


def _peer_name(stream: anyio.abc.SocketStream) -> str:
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

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
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
        log.info("%s stderr: %s", self.conn.tag, text)

    def flush(self) -> None:
        if self._partial:
            self._emit(bytes(self._partial))
            self._partial.clear()

    async def send_eof(self) -> None:
        self.flush()

    async def aclose(self) -> None:
        self.flush()


# ---- the server ---------------------------------------------------------------------------------


class Server:
    """Accepts connections on a listener and runs one instance per connection (or per request)."""

    def __init__(
        self,
        options: ServeOptions,
        module: CompiledModule,
        *,
        worker: int = 0,
        stats: Stats | None = None,
        label: str = "",
    ) -> None:
        from wasi_async import Preopen

        self.label = label  # how the summary names this server among several workers
        self.options = options
        self.module = module
        self.worker = worker
        self.stats = stats if stats is not None else Stats()
        self.preopens = [Preopen(host=h, guest=g) for h, g in options.preopens]
        self.argv = [os.path.basename(options.module_path), *options.args]
        self.connections: dict[str, Connection] = {}
        self._ids = itertools.count(1)
        self._accept_scope: anyio.CancelScope | None = None
        self._stopping = False
        self._idle = anyio.Event()
        self._idle.set()
        self._shutdown_requested = anyio.Event()
        self._force = False
        self._slots: anyio.Semaphore | None = None
        self.ready = anyio.Event()
        self._reserve: int | None = None  # a spare descriptor, given up to refuse clients when none is left
        self._freed = anyio.Event()  # set when a connection ends (its descriptors are free again)
        self._accept_trouble: AcceptTrouble | None = None

    # -- lifecycle

    def shutdown(self, *, force: bool = False) -> None:
        """Stop accepting; running connections get the grace period (none with ``force``)."""
        self._stopping = True
        self._force = self._force or force
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        self._shutdown_requested.set()
        if self._force:
            for conn in list(self.connections.values()):
                conn.stop("cancelled: shutdown")

    def summary(self) -> str:
        return format_summary(self.stats.as_dict(), self.label)

    async def serve(self, listener: anyio.abc.Listener[Any]) -> None:
        """Serve until ``shutdown()``; then drain within the grace period and cancel the rest."""
        opts = self.options
        if opts.max_connections and opts.overflow == "wait":
            self._slots = anyio.Semaphore(opts.max_connections)
        self._reserve = _open_reserve()
        try:
            async with anyio.create_task_group() as tg:
                if opts.idle_timeout:
                    tg.start_soon(self._reap_idle, opts.idle_timeout)
                tg.start_soon(self._watch_hangups)
                tg.start_soon(self._watch_shutdown)
                async with anyio.create_task_group() as conns:
                    with anyio.CancelScope() as self._accept_scope:
                        if self._stopping:
                            self._accept_scope.cancel()
                        self.ready.set()
                        await self._accept_loop(listener, conns)
                    # stop accepting at once: new clients are refused by the kernel, not kept waiting
                    with anyio.CancelScope(shield=True):
                        await _close_quietly(listener)
                tg.cancel_scope.cancel()  # the reaper and the shutdown watcher
        finally:
            with anyio.CancelScope(shield=True):
                await _close_quietly(listener)
            if self._reserve is not None:
                os.close(self._reserve)
                self._reserve = None

    async def _accept_loop(self, listener: anyio.abc.Listener[Any], conns: anyio.abc.TaskGroup) -> None:
        while True:
            if self._slots is not None:
                await self._slots.acquire()
            failure: OSError | None = None
            try:
                stream = await listener.accept()
            except anyio.ClosedResourceError:
                return
            except anyio.BrokenResourceError as exc:  # trio's listener wraps an accept's OSError in this
                if not isinstance(exc.__cause__, OSError):
                    return
                failure = exc.__cause__
            except OSError as exc:
                failure = exc
            if failure is not None and failure.errno in (errno.EBADF, errno.EINVAL, errno.ENOTSOCK):
                log.error("accept failed: %s; the listener is unusable, no longer accepting", failure)
                return
            if failure is not None:  # never die: refuse what waits, back off, go on
                if self._slots is not None:
                    self._slots.release()
                await self._accept_failed(listener, failure)
                continue
            if self._accept_trouble is not None:
                self._accept_trouble.end()
                self._accept_trouble = None
            conns.start_soon(self._handle, stream)

    async def _accept_failed(self, listener: anyio.abc.Listener[Any], exc: OSError) -> None:
        """An accept failed: log it once for the whole burst of failures, and wait before the next.

        Out of descriptors (EMFILE, ENFILE), the clients waiting in the accept queue would wait
        until some connection ends: they are refused at once instead, with the spare descriptor
        kept for that (a reset in raw mode, 503 with --http). Then the loop waits, from 50 ms
        doubling to 1 s, or until a connection ends, and tries again; running connections are
        served all along."""
        trouble = self._accept_trouble
        if trouble is None:
            trouble = self._accept_trouble = AcceptTrouble(exc)
        else:
            trouble.again(exc)
        if exc.errno in OUT_OF_DESCRIPTORS:
            refused = self._refuse_queued(listener)
            trouble.refused += refused
            self.stats.add("refused", refused)
        self._freed = anyio.Event()
        with anyio.move_on_after(trouble.backoff):
            await self._freed.wait()
        trouble.backoff = min(trouble.backoff * 2, ACCEPT_BACKOFF_MAX)

    def _refuse_queued(self, listener: anyio.abc.Listener[Any]) -> int:
        """Accept and refuse the connections queued on the listener, through the spare descriptor."""
        sock = _raw_socket(listener)
        if sock is None:
            return 0
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None
        refused = 0
        try:
            while refused < 1000:
                try:
                    client, _ = sock.accept()
                except OSError:  # nothing more waits (EAGAIN), or even the spare did not do
                    break
                refused += 1
                with client:
                    client.setblocking(False)
                    try:
                        if self.options.http:
                            from .serve_http import error_response

                            client.send(
                                error_response(503, "out of descriptors, try again later", retry_after=1)
                            )
                        else:
                            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
                    except OSError:
                        pass
        finally:
            self._reserve = _open_reserve()
        return refused

    async def _watch_shutdown(self) -> None:
        await self._shutdown_requested.wait()
        for conn in list(self.connections.values()):
            if conn.between_requests:  # an idle keep-alive connection has nothing to finish
                conn.stop("closed: shutdown")
        if self.connections and not self._force:
            log.info(
                "shutting down: %d connection(s) get %gs to finish", len(self.connections), self.options.grace
            )
        with anyio.move_on_after(self.options.grace):
            await self._idle.wait()
        for conn in list(self.connections.values()):
            conn.stop("cancelled: shutdown")

    async def _reap_idle(self, idle: float) -> None:
        """One timer for all connections: stop those that moved no byte for ``idle`` seconds."""
        period = min(max(idle / 8, 0.005), 1.0)
        while True:
            await anyio.sleep(period)
            now = time.monotonic()
            for conn in list(self.connections.values()):
                if now - conn.last_activity > idle:
                    conn.stop("idle timeout")

    async def _watch_hangups(self) -> None:
        """Stop the instances whose client has gone, whether they read, write or compute.

        The sockets of running instances are polled (without reading them) for a reset (POLLERR,
        POLLHUP) and for the client's end of input (POLLRDHUP, which shows even with unread data
        ahead of it). A reset, like a failed write, means the client is gone: the instance gets
        GONE_GRACE to end by itself, then it is stopped. After the client's FIN, the connection
        is stopped once no byte has moved either way for ``eof_idle_timeout``: a guest still
        writing to a half-closed client that reads goes on, one computing for nobody does not."""
        eof_idle = self.options.eof_idle_timeout
        hangup = select.POLLERR | select.POLLHUP | select.POLLNVAL
        while True:
            await anyio.sleep(HANGUP_PERIOD)
            watched = [c for c in self.connections.values() if c.running and c.stop_reason is None]
            if not watched:
                continue
            poller = select.poll()
            by_fd: dict[int, Connection] = {}
            for conn in watched:
                fd = conn.fileno()
                if fd < 0:
                    conn.gone()  # asyncio's transport closed the socket after an error
                else:
                    poller.register(fd, select.POLLRDHUP)
                    by_fd[fd] = conn
            now = time.monotonic()
            for fd, events in poller.poll(0) if by_fd else ():
                conn = by_fd[fd]
                if events & hangup:
                    conn.gone()
                elif events & select.POLLRDHUP and conn.eof_at is None:
                    conn.eof_at = now
            for conn in watched:
                if conn.gone_at is not None and now - conn.gone_at >= GONE_GRACE:
                    conn.stop("client gone")
                elif (
                    eof_idle
                    and conn.eof_at is not None
                    and now - max(conn.eof_at, conn.last_activity) >= eof_idle
                ):
                    conn.stop("client gone")

    # -- one connection

    async def _handle(self, raw: anyio.abc.SocketStream) -> None:
        conn = Connection(f"w{self.worker}#{next(self._ids)}", _peer_name(raw))
        limit = self.options.max_connections
        if limit and self.options.overflow == "refuse" and len(self.connections) >= limit:
            await self._refuse(raw, conn)
            return
        self.connections[conn.id] = conn
        self._idle = anyio.Event() if len(self.connections) == 1 else self._idle
        self.stats.add("active")
        hold_reads(raw)
        conn.socket = _raw_socket(raw)
        stream = CountingStream(raw, conn)
        try:
            with anyio.CancelScope() as conn.scope:
                if self._force:
                    conn.stop("cancelled: shutdown")
                if self.options.http:
                    from .serve_http import serve_http_connection

                    await serve_http_connection(self, conn, stream)
                else:
                    conn.outcome = await self.run_instance(conn, stream, stream, self.options.env)
                    await _linger_close(stream)
        except Exception as exc:  # noqa: BLE001 - one connection's failure never reaches the others
            log.exception("%s internal error", conn.tag)
            conn.outcome = Outcome(error=f"internal error: {exc!r}")
        finally:
            with anyio.CancelScope(shield=True):
                await _close_quietly(raw)
            if conn.outcome is None:
                quiet = self.options.http and conn.stop_reason in (None, "closed: shutdown")
                conn.outcome = Outcome() if quiet else Outcome(error=conn.stop_reason or "cancelled")
            del self.connections[conn.id]
            self._freed.set()
            if not self.connections:
                self._idle.set()
            self._finish(conn)
            if self._slots is not None:
                self._slots.release()

    async def _refuse(self, raw: anyio.abc.SocketStream, conn: Connection) -> None:
        """Over --max-connections with --overflow refuse: say so, never drop silently."""
        self.stats.add("refused")
        try:
            with anyio.move_on_after(1.0):
                if self.options.http:
                    from .serve_http import error_response

                    await raw.send(
                        error_response(503, "too many connections, try again later", retry_after=1)
                    )
                else:
                    _reset_on_close(raw)
        finally:
            with anyio.CancelScope(shield=True):
                await _close_quietly(raw)
        log.warning(
            "%s refused: %d connections already running (--max-connections)", conn.tag, len(self.connections)
        )

    def _finish(self, conn: Connection) -> None:
        out = conn.outcome or Outcome(error="cancelled")
        st = self.stats
        st.add("active", -1)
        st.add("served")
        if not out.ok:
            st.add("failed")
        st.add("bytes_in", conn.bytes_in)
        st.add("bytes_out", conn.bytes_out)
        st.add("fuel", conn.fuel)
        took = time.monotonic() - conn.started
        extra = ""
        if self.options.http:
            extra = (
                f", requests {conn.requests} (failed {conn.failed_requests}, last status {conn.last_status})"
            )
        log.info(
            "%s %s in %.1fms, bytes in %d out %d, fuel %d%s",
            conn.tag,
            out.describe(),
            took * 1000,
            conn.bytes_in,
            conn.bytes_out,
            conn.fuel,
            extra,
        )

    async def run_instance(self, conn: Connection, stdin: Any, stdout: Any, env: dict[str, str]) -> Outcome:
        """Instantiate the module for one connection (or request) and run ``_start`` to its end.

        Returns how it ended; a trap, an exit, a limit or a broken pipe is an Outcome, not an
        exception. Cancellation of the connection's scope propagates (the caller's scope owns it)."""
        from wasi_async import WasiConfig, WasiContext, WasiExit

        opts = self.options
        stderr = GuestLog(conn)
        config = WasiConfig(
            args=self.argv,
            env=env,
            preopens=self.preopens,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            max_open_files=opts.max_open_files,
        )
        try:
            ctx = WasiContext(config)  # opens the preopened directories
        except OSError as exc:
            return Outcome(error=f"cannot start an instance: {exc.strerror or exc}")
        store = Store(fuel=opts.fuel, max_memory_pages=opts.max_memory_pages)
        conn.running = True
        try:
            linker = Linker()
            ctx.add_to_linker(linker)
            with anyio.fail_after(opts.timeout) if opts.timeout else nullcontext():
                inst = await linker.instantiate(self.module, store)
                await inst.call("_start")
            return Outcome(exit_code=0)
        except WasiExit as exc:
            return Outcome(exit_code=exc.code)
        except Trap as trap:
            return Outcome(error=f"trap: {trap.message}")
        except WasmException as exc:  # thrown by the guest, caught by none of its handlers: no internal error
            return Outcome(error=str(exc).partition("\n")[0])
        except TimeoutError:
            return Outcome(error=f"timeout ({opts.timeout:g}s)")
        finally:
            conn.running = False
            conn.fuel += store.fuel_used
            stderr.flush()
            with anyio.CancelScope(shield=True):
                await ctx.aclose()


async def _linger_close(stream: CountingStream) -> None:
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


class AcceptTrouble:
    """A burst of failed accepts: logged when it starts, when it ends, and once a minute between."""

    def __init__(self, exc: OSError) -> None:
        self.started = self.reminded = time.monotonic()
        self.failures = 1
        self.refused = 0
        self.backoff = ACCEPT_BACKOFF_MIN
        log.error("accept failed: %s%s; retrying with backoff", exc.strerror or exc, _fd_census(exc))

    def again(self, exc: OSError) -> None:
        self.failures += 1
        now = time.monotonic()
        if now - self.reminded >= ACCEPT_REMIND:
            self.reminded = now
            log.error(
                "accept still failing after %.0fs: %s (%d failures, %d connections refused)%s",
                now - self.started,
                exc.strerror or exc,
                self.failures,
                self.refused,
                _fd_census(exc),
            )

    def end(self) -> None:
        log.warning(
            "accepting again after %.1fs (%d failed accepts, %d connections refused meanwhile)",
            time.monotonic() - self.started,
            self.failures,
            self.refused,
        )


def _fd_census(exc: OSError) -> str:
    if exc.errno not in (errno.EMFILE, errno.ENFILE):
        return ""
    try:
        held = len(os.listdir("/proc/self/fd")) - 1  # (listdir's own)
    except OSError:  # the listing needs a descriptor too
        held = -1
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    held_text = f"{held} descriptors open" if held >= 0 else "every descriptor in use"
    return f" ({held_text}, limit {soft}); clients waiting are refused until some are free"


def _open_reserve() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _raw_socket(stream: Any) -> Any:
    try:
        return stream.extra(SocketAttribute.raw_socket)
    except (anyio.TypedAttributeLookupError, AttributeError):
        return None


def _reset_on_close(stream: anyio.abc.SocketStream) -> None:
    """Make the coming close an RST (a refused client sees ECONNRESET, not an empty answer)."""
    try:
        sock = stream.extra(SocketAttribute.raw_socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
    except (OSError, anyio.TypedAttributeLookupError):
        pass


async def _close_quietly(stream: anyio.abc.AsyncResource) -> None:
    try:
        await stream.aclose()
    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass


async def run_server(
    options: ServeOptions,
    module: CompiledModule,
    listener: anyio.abc.Listener[Any],
    *,
    worker: int = 0,
    stats: Stats | None = None,
    on_ready: Callable[[Server], None] | None = None,
) -> Server:
    """Serve on ``listener`` until shut down; returns the server (for its counters)."""
    server = Server(options, module, worker=worker, stats=stats)
    if on_ready is not None:
        on_ready(server)
    await server.serve(listener)
    return server


__all__ = ["Connection", "Outcome", "ServeOptions", "Server", "Stats", "format_summary", "run_server"]
