"""``asyncwasm run``: run a WASI command, or call one export of a module with ``--invoke``.

A command runs through ``wasi_async.run_command`` (the one path every application takes to run a
WASI command); ``--invoke`` uses ``wasi_async.wasi_instance``, the step beneath it. The limits are
those of ``RunCommon`` (``cli/options.py``), all enforced by the store: fuel, and the wall clock
through ``Store(timeout=)``, whose trap is reported like any other, with its backtrace.
"""

from __future__ import annotations

import math
import os
import struct
import sys
import time
from typing import Any

import anyio
import click

from wasi_async import INHERIT, NotACommand, Preopen, WasiConfig, WasiExit, run_command, wasi_instance

from ..binary.module import F32, F64, I32, I64
from ..errors import LinkError, Trap
from ..runtime.instance import CompiledModule, Instance
from ..runtime.objects import WasmException
from ..store import Store
from .options import OneLineCommand, RunCommon, run_common
from .report import TRAP_EXIT, CliError, compile_module, exit_with, format_trap, timeout_worded

# --- --invoke: arguments in, results out ----------------------------------------------------------

_INT_RANGE = {I32: (-(1 << 31), 1 << 32), I64: (-(1 << 63), 1 << 64)}


def _parse_arg(valtype: str, text: str) -> int | float:
    """An --invoke argument: i32/i64 in decimal or 0x hex (signed or unsigned), f32/f64 as Python floats."""
    if valtype in _INT_RANGE:
        low, high = _INT_RANGE[valtype]
        try:
            value = int(text, 0)
        except ValueError:
            raise CliError(f"{text!r} is not a valid {valtype}") from None
        if not low <= value < high:
            raise CliError(f"{text} does not fit in an {valtype}")
        return value
    if valtype in (F32, F64):
        try:
            return float(text)
        except ValueError:
            raise CliError(f"{text!r} is not a valid {valtype}") from None
    raise CliError(f"cannot pass a {valtype} argument from the command line")


def _f32_text(value: float) -> str:
    """The shortest decimal that reads back as the same single-precision float."""
    if not math.isfinite(value):
        return repr(value)
    want = struct.pack("<f", value)
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == want:
            return repr(candidate)
    return repr(value)


def _show(valtype: str, value: Any) -> str:
    """A result as --invoke prints it: integers signed, floats in their shortest exact form, a v128 as
    32 hex digits (as wasmtime prints it)."""
    if valtype == "v128":
        return f"0x{value:032x}"
    if valtype == F32:
        return _f32_text(value)
    if isinstance(value, float):
        return repr(value)
    if value is None:
        return "null"
    return str(value)


@click.command(cls=OneLineCommand, context_settings={"allow_interspersed_args": False})
@run_common(max_open_files=1024)
@click.option("--argv0", metavar="NAME", help="The guest's argv[0] (default: the module's file name).")
@click.option(
    "--invoke",
    metavar="NAME",
    help="Call this export instead of _start, with ARGS as its arguments, and print its results.",
)
@click.option("--stats", is_flag=True, help="Print fuel used, slices and time to stderr when done.")
@click.argument("module", metavar="MODULE")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(
    common: RunCommon, argv0: str | None, invoke: str | None, stats: bool, module: str, args: tuple[str, ...]
) -> None:
    """Run a WebAssembly MODULE: a WASI command, or one export with --invoke.

    Options go before the module; everything after it is the guest's own arguments, passed as they
    are (argv[0] is the module's file name, or --argv0). `asyncwasm MODULE ARGS` without `run`
    means the same. The guest sees only what it is granted: the --dir directories, the --env
    variables (or the host's with -S inherit-env), stdin (unless -S inherit-stdin=n), stdout,
    stderr, and the --tcplisten sockets. With --invoke, ARGS are the export's arguments: i32 and
    i64 in decimal or 0x hex, f32 and f64 as decimals; each result is printed on its own line.

    Limits are the long options or wasmtime's -W spellings (both may be given if they agree):
    --fuel N is -W fuel=N, --timeout 2s is -W timeout=2s, --max-memory 64MiB is
    -W max-memory-size=64MiB; -W max-wasm-stack=N bounds nested calls; -W simd=n (or any
    feature name) turns a Wasm feature off, so a module using it fails to load, naming it.

    The exit statuses, compared with wasmtime's, are in docs/cli.md.

    \b
    Exit status:
      N    the guest called proc_exit(N), 0-255 (0 when _start returns)
      134  the guest trapped, ran out of fuel, ran past --timeout, or threw a Wasm
           exception nothing caught: stderr shows "error while executing at wasm
           backtrace:", numbered frames "N: 0xOFFSET - module!function", then the trap
           message (or "uncaught wasm exception" with its tag and payload)
      1    MODULE or something else named cannot be used: a missing file or directory,
           a malformed or invalid module, a missing import, an unknown export, wrong
           --invoke arguments, or a proc_exit code above 255 (one "error:" line)
      2    the command line itself is wrong: an unknown option, a bad option value,
           no MODULE (one "error:" line)
      130  interrupted (Ctrl-C)

    \b
    Examples:
      asyncwasm run hello.wasm
      asyncwasm hello.wasm                                    # the same: run is the default
      asyncwasm run --dir ./data::/data --env LANG=C app.wasm --verbose in.txt
      asyncwasm run --fuel 1000000 --timeout 5s --max-memory 64MiB untrusted.wasm
      asyncwasm run -W fuel=1000000,timeout=5s,max-memory-size=64MiB untrusted.wasm
      asyncwasm run -W simd=n,gc=n app.wasm                   # refuse SIMD and GC modules
      asyncwasm run -S inherit-env -S inherit-stdin=n app.wasm
      asyncwasm run --tcplisten 127.0.0.1:8080 server.wasm    # a listening socket at fd 3
      asyncwasm run --argv0 app app.wasm --version
      asyncwasm run --invoke add math.wasm 2 3
    """
    exit_with(lambda: execute(common, module, args, invoke=invoke, stats=stats, argv0=argv0))


def execute(
    common: RunCommon,
    module: str,
    args: tuple[str, ...],
    *,
    invoke: str | None = None,
    stats: bool = False,
    argv0: str | None = None,
) -> int:
    """Compile and run ``module`` as the command line asked; the process's exit status."""
    problem = common.dir_problem()
    if problem is not None:
        raise CliError(problem)
    cm = compile_module(module, common.features, common.cache)
    pages = common.max_memory_pages
    if pages is not None:
        for i, mem in enumerate(cm.module.memories):
            if mem.limits.min > pages:
                raise CliError(
                    f"{module}: memory {i} starts at {mem.limits.min} pages "
                    f"({mem.limits.min * 65536} bytes), more than --max-memory allows ({pages} pages)"
                )
        start = sum(mem.limits.min for mem in cm.module.memories)  # the limit is for all memories together
        if start > pages:
            raise CliError(
                f"{module}: its memories start at {start} pages together ({start * 65536} bytes), "
                f"more than --max-memory allows ({pages} pages)"
            )
    store = common.store()
    argv = [argv0 if argv0 is not None else os.path.basename(module), *args]
    started = time.perf_counter()
    code = anyio.run(_main, cm, store, module, common, argv, invoke)
    if stats:
        click.echo(
            f"fuel used: {store.fuel_used}, slices: {store.slices}, "
            f"time: {time.perf_counter() - started:.3f}s",
            err=True,
        )
    return code


async def _main(
    cm: CompiledModule, store: Store, path: str, common: RunCommon, argv: list[str], invoke: str | None
) -> int:
    preopens = [Preopen(host=host, guest=guest) for host, guest in common.dirs]
    stdin = INHERIT if common.inherit_stdin is not False else None
    sockets = []
    try:
        for host, port in common.tcplisten:
            try:
                sockets.append(await anyio.create_tcp_listener(local_host=host, local_port=port))
            except OSError as exc:
                raise CliError(f"--tcplisten {host}:{port}: {exc.strerror or exc}") from None
        if invoke is None:
            result = await run_command(
                cm,
                argv,
                env=common.env(),
                preopens=preopens,
                stdin=stdin,
                stdout=INHERIT,
                stderr=INHERIT,
                store=store,
                max_open_files=common.max_open_files,
                sockets=sockets,
            )
            if result.trap is not None:
                raise result.trap
            assert result.exit_code is not None
            return _exit_status(result.exit_code)
        config = WasiConfig.inherit_stdio(
            args=argv,
            env=common.env(),
            preopens=preopens,
            max_open_files=common.max_open_files,
            sockets=sockets,
            **({} if stdin is INHERIT else {"stdin": None}),
        )
        async with wasi_instance(cm, config, store=store) as inst:
            return await _invoke(cm, inst, invoke, argv[1:], path)
    except NotACommand:
        funcs = ", ".join(e.name for e in cm.exports if e.kind == "func") or "none"
        raise CliError(
            f"{path} has no _start export; name one to call with --invoke (exports: {funcs})"
        ) from None
    except LinkError as exc:
        raise CliError(f"failed to link {path}: {exc}") from None
    except Trap as trap:
        sys.stdout.flush()
        click.echo(format_trap(timeout_worded(trap, common.timeout), path), err=True)
        return TRAP_EXIT
    except WasmException as exc:  # thrown by the guest and caught by none of its handlers
        sys.stdout.flush()
        shown = Trap(str(exc).partition("\n")[0], exc.frames)
        click.echo(format_trap(shown, path).replace("wasm trap: uncaught", "uncaught"), err=True)
        return TRAP_EXIT
    except WasiExit as exc:
        return _exit_status(exc.code)
    finally:
        for listener in sockets:
            with anyio.CancelScope(shield=True):
                await listener.aclose()


def _exit_status(code: int) -> int:
    """A proc_exit code as the process's status: 0-255 as they are; a process cannot carry more."""
    if 0 <= code <= 255:
        return code
    raise CliError(
        f"the guest exited with status {code}, which does not fit in a process exit status (0-255)"
    )


async def _invoke(cm: CompiledModule, inst: Instance, name: str, args: list[str], path: str) -> int:
    """Call one export (after a reactor's ``_initialize``) and print each result on its own line."""
    try:
        f = inst.get_func(name)
    except KeyError:
        funcs = ", ".join(e.name for e in cm.exports if e.kind == "func") or "none"
        raise CliError(f"{path} exports no function named {name!r} (exports: {funcs})") from None
    params = f.type.params
    if len(args) != len(params):
        raise CliError(
            f"{name} takes {len(params)} argument{'s' * (len(params) != 1)} ({f.type}), {len(args)} given"
        )
    values = [_parse_arg(t, a) for t, a in zip(params, args, strict=True)]
    if name != "_initialize" and "_initialize" in inst.exports:
        await inst.call("_initialize")
    result = await inst.call(name, *values)
    results = [] if not f.type.results else [result] if len(f.type.results) == 1 else list(result)
    for t, v in zip(f.type.results, results, strict=True):
        click.echo(_show(t, v))
    return 0
