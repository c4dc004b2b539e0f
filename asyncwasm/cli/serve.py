"""``asyncwasm serve-stdin``: serve a WASI module over TCP or a Unix socket, one instance per connection.

The server is ``asyncwasm.serve`` (``server``: connections and limits, ``http``: the CGI mode, ``net``:
sockets, SO_REUSEPORT workers, signals). This module is its command line; the limits and grants are
the ``RunCommon`` options ``asyncwasm run`` takes too.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import anyio
import click

from wasi_async import Preopen, WasiContext, WasiExit

from ..errors import LinkError, Trap, WasmError
from ..features import Features
from ..runtime.instance import CompiledModule, Linker
from ..runtime.snapshot import Snapshot, SnapshotError
from ..serve.config import (
    DEFAULT_EOF_IDLE_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_OPEN_FILES,
    ServeOptions,
)
from ..serve.connection import initialise
from ..serve.net import (
    Endpoint,
    Supervisor,
    connections_that_fit,
    fds_per_connection,
    raise_fd_limit,
    run_single,
)
from .options import Duration, RunCommon, Size, run_common
from .report import format_trap

DEFAULT_MAX_CONNECTIONS = 512  # per worker

log = logging.getLogger("asyncwasm.serve")


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def load_for_serving(path: str, features: Features | None = None, cache: Any = True) -> CompiledModule:
    """Compile the module and check, once, that WASI is all it imports (so no connection fails to link)."""
    try:
        module = CompiledModule.from_file(path, features=features, cache=cache)
    except FileNotFoundError:
        raise click.UsageError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise click.UsageError(f"{path} is a directory, not a WebAssembly module") from None
    except WasmError as exc:
        raise click.UsageError(f"failed to load {path}: {exc}") from None
    linker = Linker()
    with WasiContext() as ctx:
        ctx.add_to_linker(linker)
        try:
            linker.resolve(module)
        except LinkError as exc:
            raise click.UsageError(f"failed to link {path}: {exc}") from None
    if not any(e.name == "_start" and e.kind == "func" for e in module.exports):
        raise click.UsageError(f"{path} has no _start export: serve-stdin runs WASI commands")
    return module


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
    logger = logging.getLogger("asyncwasm.serve")
    logger.handlers[:] = [handler]
    logger.setLevel(getattr(logging, level.upper()))
    logger.propagate = False


@click.command(
    "serve-stdin",
    context_settings={
        "ignore_unknown_options": True,
        "allow_interspersed_args": False,
        "help_option_names": ["-h", "--help"],
    },
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="TCP port (0 picks a free one; the log says which).",
)
@click.option("--unix", "unix", metavar="PATH", help="Listen on a Unix socket instead of TCP.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Server processes sharing the port (SO_REUSEPORT), "
    "each with its own event loop.  [default: one per core]",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    help="Connections served at once, over all workers (each worker gets its share).  "
    f"[default: {DEFAULT_MAX_CONNECTIONS} per worker, fewer if the descriptor limit cannot hold them]",
)
@click.option(
    "--overflow",
    type=click.Choice(["wait", "refuse"]),
    default="wait",
    show_default=True,
    help="A connection over --max-connections waits to be accepted, or is refused "
    "(reset in raw mode, 503 in --http mode) and logged.",
)
@click.option(
    "--idle-timeout",
    type=Duration(allow_zero=True),
    metavar="DURATION",
    help="Stop a connection after no byte moved either way for DURATION (with --http: also the "
    "keep-alive wait); 0 for no limit.  [default: 30s]",
)
@click.option(
    "--eof-idle-timeout",
    type=Duration(allow_zero=True),
    metavar="DURATION",
    help="Once the client has closed its side, stop the connection after no byte moved for DURATION "
    "(the client is taken to be gone); 0 leaves it to --idle-timeout.  [default: 1s]",
)
@click.option(
    "--max-body",
    type=Size(),
    metavar="SIZE",
    default="16MiB",
    show_default=True,
    help="With --http: the largest request body (Content-Length or chunked); more is 413. 0 for no limit.",
)
@click.option(
    "--grace",
    type=Duration(allow_zero=True),
    metavar="DURATION",
    default="10s",
    show_default=True,
    help="On SIGINT/SIGTERM, how long running instances may finish before they are cancelled.",
)
@click.option(
    "--http",
    is_flag=True,
    help="HTTP/1.1 with CGI: headers as environment variables, the body on "
    "stdin, a CGI response on stdout; keep-alive.",
)
@click.option(
    "--backend",
    type=click.Choice(["asyncio", "trio"]),
    default="asyncio",
    show_default=True,
    help="The event loop each worker runs.",
)
@click.option(
    "--init",
    "init",
    metavar="FUNC",
    help="Initialise once: run the start function and the export FUNC (as `asyncwasm snapshot` "
    "does), then start every connection from that state instead of a fresh instance.",
)
@click.option(
    "--tenure/--no-tenure",
    default=True,
    show_default=True,
    help="Keep the garbage collector's pauses short with thousands of connections: what survives "
    "a collection goes out of its sight, handed back when the live connections no longer explain it "
    "(docs/limits.md).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="info logs one line per connection.",
)
@run_common(max_open_files=DEFAULT_MAX_OPEN_FILES, per="connection (per request with --http)")
@click.argument("module", type=click.Path(dir_okay=False))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def serve_stdin(
    host: str,
    port: int,
    unix: str | None,
    workers: int | None,
    max_connections: int | None,
    overflow: str,
    idle_timeout: float | None,
    eof_idle_timeout: float | None,
    max_body: int,
    grace: float,
    http: bool,
    backend: str,
    common: RunCommon,
    init: str | None,
    tenure: bool,
    log_level: str,
    module: str,
    args: tuple[str, ...],
) -> None:
    """Serve MODULE, a WASI command, with each connection as its stdin and stdout.

    The module is compiled once; every connection gets a fresh instance, and bytes flow both
    ways while it runs. The connection closes when the instance exits; its stderr goes to the
    log, one line per connection is logged when it ends, and SIGUSR1 logs a summary. SIGINT or
    SIGTERM stops accepting and lets running instances finish within --grace.

    With --init FUNC the module is initialised once, before the workers start: its start
    function and FUNC run (with the --env and --dir grants, an empty stdin, their output in the
    log), and every connection's instance starts from the state they left, each its own copy.
    A failure there (a trap, an exit, no such export) stops the server before it listens.

    \b
    Examples:
      asyncwasm serve-stdin --port 7000 cat.wasm                  # an echo server
      asyncwasm serve-stdin --fuel 10000000 --timeout 5s wc.wasm
      asyncwasm serve-stdin --http --port 8080 --env MODE=prod app.wasm
      asyncwasm serve-stdin --init wizer.initialize --port 7000 interpreter.wasm
    """
    problem = common.dir_problem()
    if problem is not None:
        raise click.BadParameter(problem.removeprefix("--dir "), param_hint="'--dir'")
    if common.inherit_stdin is not None or common.tcplisten:
        raise click.UsageError(
            "serve-stdin gives each instance its connection as stdin: "
            "-S inherit-stdin and tcplisten are for asyncwasm run"
        )
    _setup_logging(log_level)
    nworkers = workers or default_workers()
    limit = max_connections
    if limit is not None and limit < nworkers:
        nworkers = limit  # a worker with no share could never accept
    options = ServeOptions(
        module_path=module,
        args=args,
        env=common.env(),
        preopens=common.dirs,
        fuel=common.fuel,
        timeout=common.timeout,
        idle_timeout=DEFAULT_IDLE_TIMEOUT if idle_timeout is None else idle_timeout or None,
        eof_idle_timeout=DEFAULT_EOF_IDLE_TIMEOUT if eof_idle_timeout is None else eof_idle_timeout or None,
        max_memory_pages=common.max_memory_pages,
        max_table_elements=common.max_table_elements,
        max_depth=common.max_wasm_stack,
        max_connections=None if limit is None else _share(limit, nworkers),
        max_open_files=common.max_open_files,
        max_body=max_body or None,
        overflow=overflow,
        grace=grace,
        http=http,
        tenure=tenure,
    )
    if idle_timeout is not None and options.idle_timeout:
        options.keepalive_timeout = options.idle_timeout
    size_for_descriptors(options)
    log.info("%s", describe_limits(options))
    compiled = load_for_serving(module, common.features, common.cache)
    snapshot = None if init is None else initialised(compiled, options, init, backend)
    endpoint = Endpoint(host=host, port=port, unix=unix)
    try:
        if nworkers == 1:
            code = run_single(options, compiled, endpoint, backend, snapshot)
        else:
            code = Supervisor(options, compiled, endpoint, nworkers, backend, snapshot).run()
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {endpoint.describe()}: {exc}") from None
    sys.exit(code)


def initialised(module: CompiledModule, options: ServeOptions, init: str, backend: str) -> Snapshot:
    """The snapshot every connection starts from (``serve.connection.initialise``), taken once in
        this process so that the workers inherit it. An export that is missing or of the wrong type is a
    usage error (status 2); a failure while it runs is one ``error:`` line and status 1."""
    f = next((e for e in module.module.exports if e.name == init and e.kind == "func"), None)
    if f is None:
        funcs = ", ".join(e.name for e in module.exports if e.kind == "func")
        raise click.UsageError(
            f"--init {init}: {options.module_path} exports no such function (exports: {funcs})"
        )
    ft = module.module.func_types()[f.index]
    if ft.params or ft.results:
        raise click.UsageError(
            f"--init {init}: the initialiser must take no arguments and return nothing; it is {ft}"
        )
    argv = [os.path.basename(options.module_path), *options.args]
    preopens = [Preopen(host=h, guest=g) for h, g in options.preopens]
    t0 = time.perf_counter()
    try:
        snap = anyio.run(initialise, module, options, argv, preopens, init, backend=backend)
    except WasiExit as exc:
        raise click.ClickException(
            f"--init {init}: the module exited with status {exc.code} while it initialised"
        ) from None
    except Trap as trap:
        log.error("%s", format_trap(trap, options.module_path))
        raise click.ClickException(f"--init {init}: the initialiser trapped: {trap.message}") from None
    except SnapshotError as exc:
        raise click.ClickException(f"--init {init}: {exc}") from None
    except OSError as exc:
        raise click.ClickException(
            f"--init {init}: cannot start an instance: {exc.strerror or exc}"
        ) from None
    log.info(
        "initialised with %s in %.3fs: %d KiB of memory to start each instance from",
        init,
        time.perf_counter() - t0,
        snap.memory_bytes // 1024,
    )
    return snap


def size_for_descriptors(options: ServeOptions) -> None:
    """Raise the descriptor limit to the hard limit and fit the connection limit to it.

    Without --max-connections each worker takes DEFAULT_MAX_CONNECTIONS, or as many connections
    as the descriptors can hold (each its socket, its preopens and --max-open-files); a
    --max-connections that does not fit is kept, with a warning."""
    before, nofile = raise_fd_limit()
    if nofile != before:
        log.info("descriptor limit (RLIMIT_NOFILE) raised from %d to %d", before, nofile)
    fit = connections_that_fit(options, nofile)
    if options.max_connections is None:
        options.max_connections = min(DEFAULT_MAX_CONNECTIONS, fit)
    elif options.max_connections > fit:
        log.warning(
            "%d connections per worker may need %d descriptors each, more than the limit of %d holds: "
            "clients are refused while none are left (--max-connections, --max-open-files, --dir)",
            options.max_connections,
            fds_per_connection(options),
            nofile,
        )
    options.nofile = nofile


def describe_limits(options: ServeOptions) -> str:
    """One log line with the limits each worker applies."""

    def dur(seconds: float | None) -> str:
        return "none" if not seconds else f"{seconds:g}s"

    eof = (
        f" ({dur(options.eof_idle_timeout)} once the client has closed its side)"
        if options.eof_idle_timeout
        else ""
    )
    return (
        f"limits per worker: {options.max_connections or 'unlimited'} connections (overflow: {options.overflow}), "
        f"idle timeout {dur(options.idle_timeout)}{eof}, timeout {dur(options.timeout)}, "
        f"open files per instance {_files(options)}, descriptors {options.nofile or '?'}"
        + (f", request body {_size(options.max_body)}" if options.http else "")
    )


def _size(n: int | None) -> str:
    if not n:
        return "unlimited"
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return f"{n} bytes"


def _files(options: ServeOptions) -> str:
    if not options.preopens:
        return "none (no --dir)"
    return "unlimited" if options.max_open_files is None else str(options.max_open_files)


def _share(limit: int, workers: int) -> int:
    """Each worker's part of --max-connections (the kernel spreads connections about evenly)."""
    return max(1, limit // workers)


__all__ = ["default_workers", "describe_limits", "load_for_serving", "serve_stdin", "size_for_descriptors"]
