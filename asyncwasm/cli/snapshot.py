"""``asyncwasm snapshot``: pre-initialise a module as Wizer does, and write the initialised module.

The module runs as a WASI command would (the ``RunCommon`` grants and limits of ``asyncwasm run``):
its start function, then the initialiser export (``wizer.initialize`` by default); the state it leaves
is written into a standard module (``asyncwasm.preinitialize``) that any engine runs, starting where
the initialiser stopped.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import anyio
import click

from wasi_async import Preopen, ProcessStdio, WasiConfig, WasiExit, wasi_instance

from ..errors import LinkError, Trap
from ..runtime.instance import CompiledModule
from ..runtime.objects import WasmException
from ..runtime.preinit import DEFAULT_INIT, Preinitialized, preinitialize
from ..runtime.snapshot import SnapshotError
from ..text import is_text, wat_to_wasm
from .options import OneLineCommand, RunCommon, run_common
from .report import TRAP_EXIT, CliError, compile_module, exit_with, format_trap, timeout_worded


@click.command("snapshot", cls=OneLineCommand, context_settings={"allow_interspersed_args": False})
@run_common(max_open_files=1024)
@click.option(
    "--init",
    "init",
    metavar="FUNC",
    default=DEFAULT_INIT,
    show_default=True,
    help="The export that initialises the module (no arguments, no results).",
)
@click.option("-o", "--output", required=True, metavar="FILE", help="Where to write the initialised module.")
@click.option("--keep-init-func", is_flag=True, help="Keep the initialiser's export in the output.")
@click.option(
    "--argv0", metavar="NAME", help="The guest's argv[0] while it initialises (default: the file name)."
)
@click.argument("module", metavar="MODULE")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def snapshot(
    common: RunCommon,
    init: str,
    output: str,
    keep_init_func: bool,
    argv0: str | None,
    module: str,
    args: tuple[str, ...],
) -> None:
    """Pre-initialise MODULE: run its initialiser once and write a module that starts initialised.

    MODULE is instantiated as `asyncwasm run` would instantiate it (the --dir, --env and limit
    options are the same; ARGS are its arguments), its start function runs, then the export FUNC
    (--init, `wizer.initialize` by default, as with Wizer). Its memories, globals, tables and
    segments as FUNC left them are written into FILE, a standard module without the start
    function and without FUNC's export: `asyncwasm FILE` (or `wasmtime FILE`) then runs `_start`
    from there. stdin is empty unless -S inherit-stdin; stdout and stderr are the process's own.
    What WASI held (open files, the arguments and environment) is not kept: what the guest copied
    into its memory is.

    \b
    Exit status:
      0    FILE was written
      134  the initialiser trapped or ran out of --fuel or --timeout (a backtrace on stderr)
      1    MODULE cannot be used (missing, malformed, a missing import, no FUNC export), the
           initialiser exited (proc_exit) or left state a module cannot hold (a host reference,
           an imported memory), or FILE cannot be written (one "error:" line)
      2    the command line is wrong (one "error:" line)
      130  interrupted (Ctrl-C)

    \b
    Examples:
      asyncwasm snapshot -o app.init.wasm app.wasm
      asyncwasm snapshot --init init --dir ./lib::/lib -o py.init.wasm python.wasm
      asyncwasm app.init.wasm                     # starts where the initialiser stopped
    """
    if common.tcplisten:
        raise click.UsageError("a socket cannot be kept in a snapshot: --tcplisten is for asyncwasm run")
    exit_with(
        lambda: execute(common, module, args, init=init, output=output, keep_init=keep_init_func, argv0=argv0)
    )


def execute(
    common: RunCommon,
    module: str,
    args: tuple[str, ...],
    *,
    init: str,
    output: str,
    keep_init: bool = False,
    argv0: str | None = None,
) -> int:
    """Initialise ``module`` and write ``output``; the process's exit status."""
    problem = common.dir_problem()
    if problem is not None:
        raise CliError(problem)
    cm = compile_module(module, common.features, common.cache)
    wasm = Path(module).read_bytes()
    if is_text(wasm):  # a .wat file: the output is binary, written from the binary it encodes to
        wasm = wat_to_wasm(wasm)
    argv = [argv0 if argv0 is not None else os.path.basename(module), *args]
    started = time.perf_counter()
    result = anyio.run(_initialise, cm, wasm, module, common, argv, init, keep_init)
    if isinstance(result, int):
        return result
    _write(output, result.wasm)
    click.echo(
        f"wrote {output}: {_size(result.memory_bytes)} memory, {_size(result.data_bytes)} in "
        f"{result.data_segments:,} data segment{'s' * (result.data_segments != 1)} "
        f"({_size(len(result.wasm))} module, initialised in {time.perf_counter() - started:.2f} s)",
        err=True,
    )
    return 0


async def _initialise(
    cm: CompiledModule,
    wasm: bytes,
    path: str,
    common: RunCommon,
    argv: list[str],
    init: str,
    keep_init: bool,
) -> Preinitialized | int:
    config = WasiConfig.inherit_stdio(
        args=argv,
        env=common.env(),
        preopens=[Preopen(host=host, guest=guest) for host, guest in common.dirs],
        max_open_files=common.max_open_files,
        stdin=ProcessStdio(0) if common.inherit_stdin else None,
    )
    try:
        async with wasi_instance(cm, config, store=common.store()) as inst:
            return await preinitialize(inst, wasm, init=init, keep_init=keep_init)
    except LinkError as exc:
        raise CliError(f"failed to link {path}: {exc}") from None
    except SnapshotError as exc:
        raise CliError(f"{path}: {exc}") from None
    except WasiExit as exc:
        raise CliError(
            f"{path} exited with status {exc.code} while it initialised (proc_exit): nothing was written"
        ) from None
    except Trap as trap:
        sys.stdout.flush()
        click.echo(format_trap(timeout_worded(trap, common.timeout), path), err=True)
        return TRAP_EXIT
    except WasmException as exc:
        sys.stdout.flush()
        shown = Trap(str(exc).partition("\n")[0], exc.frames)
        click.echo(format_trap(shown, path).replace("wasm trap: uncaught", "uncaught"), err=True)
        return TRAP_EXIT


def _write(output: str, data: bytes) -> None:
    """Write ``output`` whole or not at all (a temporary file beside it, renamed)."""
    target = Path(output)
    try:
        fd, tmp = tempfile.mkstemp(
            dir=target.parent if str(target.parent) else ".", prefix=f".{target.name}."
        )
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None


def _size(n: int) -> str:
    return f"{n:,} bytes" if n < 10 * 1024 else f"{n / 1024:,.0f} KiB"


__all__ = ["execute", "snapshot"]
