"""Listening sockets and worker processes for ``asyncwasm serve-stdin``.

Each worker is a process with its own event loop and its own listening socket; the TCP sockets
share one port through SO_REUSEPORT, so the kernel spreads connections over the workers and the
server uses every core. A Unix socket cannot be shared that way: its workers inherit one socket.
The supervisor forwards signals, sums the workers' counters (kept in shared memory) on SIGUSR1,
and restarts a worker that dies unexpectedly.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import resource
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
from anyio.streams.stapled import MultiListener

from .. import collector
from ..runtime.instance import CompiledModule
from ..runtime.snapshot import Snapshot
from .config import STAT_FIELDS, ServeOptions, Stats, format_summary
from .server import Server

log = logging.getLogger("asyncwasm.serve")

BACKLOG = 1024
FD_RESERVE = 64  # descriptors a worker keeps for itself: listener, event loop, pipes, log, the spare
FD_SLACK = 2  # per connection, beyond its socket and the guest's own: a path walk holds directories open


def raise_fd_limit() -> tuple[int, int]:
    """Raise this process's RLIMIT_NOFILE soft limit to its hard limit (workers inherit it).

    Returns the soft limit before and after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if target == resource.RLIM_INFINITY:
        target = _nr_open()
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            return soft, soft
        return soft, target
    return soft, soft


def _nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def fds_per_connection(options: ServeOptions) -> int:
    """Host descriptors one connection may hold: its socket, the preopened directories, what the
    guest may open itself (only where it has a directory to open from), and some slack."""
    opened = 0
    if options.preopens:
        opened = options.max_open_files if options.max_open_files is not None else 1 << 20
    return 1 + len(options.preopens) + opened + FD_SLACK


def connections_that_fit(options: ServeOptions, nofile: int) -> int:
    """How many connections one worker can hold without running out of descriptors (at least 1)."""
    return max(1, (nofile - FD_RESERVE) // fds_per_connection(options))


class Endpoint:
    """Where to listen: a TCP host and port (0 picks one), or a Unix socket path."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8000, unix: str | None = None) -> None:
        self.host = host
        self.port = port
        self.unix = unix
        self._family: int | None = None
        self._address: Any = None

    def describe(self) -> str:
        if self.unix:
            return f"unix:{self.unix}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def _resolve(self) -> None:
        infos = socket.getaddrinfo(
            self.host or None, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _, _, _, address = infos[0]
        self._family, self._address = family, address

    def tcp_socket(self, reuse_port: bool) -> socket.socket:
        """A listening TCP socket; the first one fixes the port when 0 was asked for."""
        if self._family is None:
            self._resolve()
        assert self._family is not None
        sock = socket.socket(self._family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if self._family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(self._address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        if self.port == 0:
            self.port = sock.getsockname()[1]
            self._address = (self._address[0], self.port, *self._address[2:])
        return sock

    def unix_socket(self) -> socket.socket:
        """A listening Unix socket; a stale socket file left by a dead server is replaced."""
        assert self.unix is not None
        try:
            if stat.S_ISSOCK(os.stat(self.unix).st_mode):
                os.unlink(self.unix)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.unix)
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def new_socket(self, reuse_port: bool) -> socket.socket:
        return self.unix_socket() if self.unix else self.tcp_socket(reuse_port)


async def listener_from_sockets(socks: list[socket.socket]) -> anyio.abc.Listener[Any]:
    """anyio listeners over sockets we made ourselves (SO_REUSEPORT is not among anyio's options)."""
    listeners = [await anyio.abc.SocketListener.from_socket(s) for s in socks]
    return listeners[0] if len(listeners) == 1 else MultiListener(listeners)


# ---- one worker: an event loop serving its listener ---------------------------------------------


async def serve_worker(
    options: ServeOptions,
    module: CompiledModule,
    socks: list[socket.socket],
    *,
    worker: int = 0,
    stats: Stats | None = None,
    signals: tuple[int, ...] = (),
    parent_fd: int | None = None,
    on_ready: Callable[[Server], None] | None = None,
    label: str = "",
    snapshot: Snapshot | None = None,
) -> Server:
    """Serve on ``socks`` until a shutdown signal (or the supervisor's death); log a summary at the end.

    The first SIGINT/SIGTERM starts a graceful shutdown, a second one cancels what still runs;
    SIGUSR1 logs the counters."""
    server = Server(options, module, worker=worker, stats=stats, label=label, snapshot=snapshot)
    listener = await listener_from_sockets(socks)
    async with anyio.create_task_group() as tg:
        if signals:
            tg.start_soon(_watch_signals, server, signals)
        if parent_fd is not None:
            tg.start_soon(_watch_parent, server, parent_fd)
        if on_ready is not None:
            on_ready(server)
        await server.serve(listener)
        tg.cancel_scope.cancel()
    log.info("%s", server.summary())
    return server


async def _watch_signals(server: Server, signals: tuple[int, ...]) -> None:
    with anyio.open_signal_receiver(*(signal.Signals(s) for s in signals)) as received:
        async for signum in received:
            if signum == signal.SIGUSR1:
                log.info("%s", server.summary())
            elif server.stopping:
                log.info("second %s: cancelling the running instances", signal.Signals(signum).name)
                server.shutdown(force=True)
            else:
                log.info(
                    "%s: shutting down (grace period %gs)", signal.Signals(signum).name, server.options.grace
                )
                server.shutdown()


async def _watch_parent(server: Server, fd: int) -> None:
    """The supervisor holds the other end of a pipe: end of file means it is gone, so stop."""
    while True:
        await anyio.wait_readable(fd)
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            continue
        if not data:
            break
    if not server.stopping:
        log.warning("supervisor is gone: shutting down")
        server.shutdown()


def run_single(
    options: ServeOptions,
    module: CompiledModule,
    endpoint: Endpoint,
    backend: str,
    snapshot: Snapshot | None = None,
) -> int:
    """One process, one loop: the server runs in this process."""
    sock = endpoint.new_socket(reuse_port=False)
    log.info("listening on %s (1 worker, %s)", endpoint.describe(), backend)
    collector.tenure(options.tenure)
    try:
        anyio.run(_serve_single, options, module, sock, snapshot, backend=backend)
    finally:
        if endpoint.unix:
            _unlink(endpoint.unix)
    return 0


async def _serve_single(
    options: ServeOptions, module: CompiledModule, sock: socket.socket, snapshot: Snapshot | None
) -> None:
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
    await serve_worker(options, module, [sock], signals=signals, snapshot=snapshot)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# ---- the supervisor: N worker processes ---------------------------------------------------------


def _worker_entry(
    index: int,
    sock: socket.socket,
    options: ServeOptions,
    module: CompiledModule,
    slots: Any,
    parent_fd: int,
    parent_w: int,
    backend: str,
    snapshot: Snapshot | None,
) -> None:
    """A worker process: the supervisor's Ctrl-C handling is the supervisor's (it forwards SIGTERM)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.close(parent_w)  # the fork's copy of the write end: held here, it would hide the supervisor's death
    os.set_blocking(parent_fd, False)
    stats = Stats(slots)
    collector.tenure(options.tenure)  # inherited from the supervisor, which tenured before forking
    try:
        anyio.run(_serve_forked, options, module, sock, index, stats, parent_fd, snapshot, backend=backend)
    except KeyboardInterrupt:  # pragma: no cover - SIGINT is ignored here
        pass
    sys.stdout.flush()
    sys.stderr.flush()


async def _serve_forked(
    options: ServeOptions,
    module: CompiledModule,
    sock: socket.socket,
    index: int,
    stats: Stats,
    parent_fd: int,
    snapshot: Snapshot | None,
) -> None:
    await serve_worker(
        options,
        module,
        [sock],
        worker=index,
        stats=stats,
        signals=(signal.SIGTERM, signal.SIGUSR1),
        parent_fd=parent_fd,
        label=f" (worker {index})",
        snapshot=snapshot,
    )


class Supervisor:
    """Starts the workers, forwards signals to them, reports their summed counters."""

    def __init__(
        self,
        options: ServeOptions,
        module: CompiledModule,
        endpoint: Endpoint,
        workers: int,
        backend: str,
        snapshot: Snapshot | None = None,
    ) -> None:
        self.options = options
        self.module = module
        self.snapshot = snapshot  # taken before the fork: every worker inherits it
        self.endpoint = endpoint
        self.count = workers
        self.backend = backend
        self.ctx = multiprocessing.get_context("fork")
        n = len(STAT_FIELDS)
        self.shared = self.ctx.Array("q", n * workers, lock=False)
        self.slots = [
            memoryview(self.shared).cast("B").cast("q")[i * n : (i + 1) * n] for i in range(workers)
        ]
        self.procs: list[Any] = [None] * workers
        self.unix_sock: socket.socket | None = None
        self.stopping = 0
        self.pending: list[int] = []
        self._pipe_r, self._pipe_w = os.pipe()  # workers see EOF on the read end when we are gone
        os.set_inheritable(self._pipe_r, True)

    def _start(self, index: int) -> None:
        if self.endpoint.unix:
            if self.unix_sock is None:
                self.unix_sock = self.endpoint.unix_socket()
            sock = self.unix_sock
        else:
            sock = self.endpoint.tcp_socket(reuse_port=True)
        proc = self.ctx.Process(
            target=_worker_entry,
            name=f"asyncwasm-worker-{index}",
            args=(
                index,
                sock,
                self.options,
                self.module,
                self.slots[index],
                self._pipe_r,
                self._pipe_w,
                self.backend,
                self.snapshot,
            ),
            daemon=False,
        )
        proc.start()
        if not self.endpoint.unix:
            sock.close()  # the worker owns it: a socket left here would take connections nobody accepts
        self.procs[index] = proc

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.pending.append(signum)

    def totals(self) -> dict[str, int]:
        out = dict.fromkeys(STAT_FIELDS, 0)
        for s in self.slots:
            for i, name in enumerate(STAT_FIELDS):
                out[name] += int(s[i])
        return out

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._on_signal)
        # Tenure before forking: the workers inherit it, and the objects frozen now (the compiled
        # module, the libraries) are never walked again by their collectors, nor copied by that walk.
        collector.tenure(self.options.tenure)
        for i in range(self.count):
            self._start(i)
        log.info("listening on %s (%d workers, %s)", self.endpoint.describe(), self.count, self.backend)
        try:
            while any(p is not None and p.is_alive() for p in self.procs):
                sentinels = [p.sentinel for p in self.procs if p is not None and p.is_alive()]
                multiprocessing.connection.wait(sentinels, timeout=0.2)
                self._handle_signals()
                self._reap()
        finally:
            if self.unix_sock is not None:
                self.unix_sock.close()
                _unlink(self.endpoint.unix or "")
            os.close(self._pipe_w)
            os.close(self._pipe_r)
        log.info("%s", format_summary(self.totals(), f" ({self.count} workers)"))
        return 0

    def _handle_signals(self) -> None:
        while self.pending:
            signum = self.pending.pop(0)
            if signum == signal.SIGUSR1:
                log.info("%s", format_summary(self.totals(), f" ({self.count} workers)"))
                continue
            self.stopping += 1
            if self.stopping == 1:
                log.info(
                    "%s: shutting down %d workers (grace period %gs)",
                    signal.Signals(signum).name,
                    self.count,
                    self.options.grace,
                )
            for p in self.procs:
                if p is not None and p.is_alive():
                    os.kill(p.pid, signal.SIGTERM)

    def _reap(self) -> None:
        for i, p in enumerate(self.procs):
            if p is None or p.is_alive():
                continue
            p.join()
            if self.stopping:
                continue
            log.error("worker %d exited unexpectedly (status %s); starting a new one", i, p.exitcode)
            slot = self.slots[i]
            slot[STAT_FIELDS.index("active")] = 0
            time.sleep(0.1)
            self._start(i)
