"""The connection server behind ``asyncwasm serve-stdin``: one fresh instance per connection.

The module is compiled once per process; each connection gets its own Linker, WASI context and
Store, so limits (fuel, memory, time) and failures stay inside that connection. The guest's stdin
and stdout are the socket itself (raw mode) or the request body and a CGI response writer (HTTP
mode, in ``http``), streamed both ways while the instance runs.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import resource
import select
import socket
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

from wasi_async import Preopen

from .. import CompiledModule, Snapshot, scheduler_stats
from .config import ServeOptions, Stats, format_scheduler, format_summary
from .connection import (
    LINGER_0,
    Connection,
    CountingStream,
    Outcome,
    close_quietly,
    hold_reads,
    linger_close,
    peer_name,
    raw_socket,
    reset_on_close,
    run_instance,
)
from .http import error_response, serve_http_connection

log = logging.getLogger("asyncwasm.serve")

HANGUP_PERIOD = 0.2  # how often the sockets of running instances are polled for a hang-up
GONE_GRACE = 0.5  # after a reset or a failed write: how long the guest may take to end by itself
ACCEPT_BACKOFF_MIN = 0.05  # out of descriptors: the first wait before accepting again, doubled up to
ACCEPT_BACKOFF_MAX = 1.0
ACCEPT_REMIND = 60.0  # a burst of accept failures is logged when it starts, ends, and this often between
OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


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
        snapshot: Snapshot | None = None,
    ) -> None:
        self.label = label  # how the summary names this server among several workers
        self.options = options
        self.module = module
        self.snapshot = snapshot  # every instance starts from it (serve-stdin --init), else fresh
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
        """The worker's counters, and its scheduler's loop-wide view."""
        return f"{format_summary(self.stats.as_dict(), self.label)}; {format_scheduler(scheduler_stats())}"

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
                        await close_quietly(listener)
                tg.cancel_scope.cancel()  # the reaper and the shutdown watcher
        finally:
            with anyio.CancelScope(shield=True):
                await close_quietly(listener)
            if self._reserve is not None:
                os.close(self._reserve)
                self._reserve = None

    async def _accept_loop(self, listener: anyio.abc.Listener[Any], conns: anyio.abc.TaskGroup) -> None:
        while True:
            if self._slots is not None:
                await self._slots.acquire()
            failure: OSError | None = None
            try:
                stream = await listener.accept()  # type: ignore[attr-defined]  # SocketListener or MultiListener of them
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
        sock = raw_socket(listener)
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
        conn = Connection(f"w{self.worker}#{next(self._ids)}", peer_name(raw))
        limit = self.options.max_connections
        if limit and self.options.overflow == "refuse" and len(self.connections) >= limit:
            await self._refuse(raw, conn)
            return
        self.connections[conn.id] = conn
        self._idle = anyio.Event() if len(self.connections) == 1 else self._idle
        self.stats.add("active")
        hold_reads(raw)
        conn.socket = raw_socket(raw)
        stream = CountingStream(raw, conn)
        try:
            with anyio.CancelScope() as conn.scope:
                if self._force:
                    conn.stop("cancelled: shutdown")
                if self.options.http:
                    await serve_http_connection(self, conn, stream)
                else:
                    conn.outcome = await self.run_instance(conn, stream, stream, self.options.env)
                    await linger_close(stream)
        except Exception as exc:  # noqa: BLE001 - one connection's failure never reaches the others
            log.exception("%s internal error", conn.tag)
            conn.outcome = Outcome(error=f"internal error: {exc!r}")
        finally:
            with anyio.CancelScope(shield=True):
                await close_quietly(raw)
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
                    await raw.send(
                        error_response(503, "too many connections, try again later", retry_after=1)
                    )
                else:
                    reset_on_close(raw)
        finally:
            with anyio.CancelScope(shield=True):
                await close_quietly(raw)
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

    @property
    def stopping(self) -> bool:
        """Whether ``shutdown()`` was called: no new connection or request starts."""
        return self._stopping

    async def run_instance(self, conn: Connection, stdin: Any, stdout: Any, env: dict[str, str]) -> Outcome:
        """Run one instance of the module for ``conn`` (``connection.run_instance``) to its end."""
        return await run_instance(
            self.module, self.options, self.argv, self.preopens, conn, stdin, stdout, env, self.snapshot
        )


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


__all__ = ["Server", "run_server"]
