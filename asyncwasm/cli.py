"""The ``asyncwasm`` command: run WASI programs, call exports, and run spec test scripts."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import anyio
import click

from .binary.module import F32, F64, I32, I64
from .errors import LinkError, MalformedModule, Trap, WasmError
from .runtime.instance import CompiledModule, Instance, Linker
from .runtime.values import from_raw
from .store import Store
from .wast import DEFAULT_KNOWN_FAILURES, ScriptRunner, load_known_failures
from .wast import Result as WastResult

TRAP_EXIT = 134  # what wasmtime returns on a trap (128 + SIGABRT)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SIZE = re.compile(r"^\s*(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$", re.I)
_SIZE_UNITS = {None: 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
               "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}


def parse_duration(text: str) -> float:
    """``500ms``, ``2s``, ``1.5m``, ``1h`` or plain seconds."""
    m = _DURATION.match(text)
    if not m:
        raise click.BadParameter(f"{text!r} is not a duration (try 500ms, 2s or 1m)")
    value = float(m.group(1))
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def parse_size(text: str) -> int:
    """``64MiB``, ``1G``, ``65536`` (bytes) -> bytes."""
    m = _SIZE.match(text)
    if not m:
        raise click.BadParameter(f"{text!r} is not a size (try 64MiB or 1GiB)")
    unit = m.group(2).lower() if m.group(2) else None
    return int(m.group(1)) * _SIZE_UNITS[unit]


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def load_module(path: str) -> CompiledModule:
    """Compile a module, turning every way it can be wrong into one clear line and status 1."""
    try:
        return CompiledModule.from_file(path)
    except FileNotFoundError:
        _fail(f"no such file: {path}")
    except IsADirectoryError:
        _fail(f"{path} is a directory, not a WebAssembly module")
    except WasmError as exc:
        _fail(f"failed to load {path}: {exc}")
    raise AssertionError("unreachable")


def format_trap(trap: Trap, module_path: str) -> str:
    lines = [f"error: failed to run main module `{module_path}`", "", "Caused by:"]
    if trap.frames:
        lines.append("    0: error while executing at wasm backtrace:")
        for i, f in enumerate(trap.frames):
            lines.append(f"           {i}: {f.describe()}")
        lines.append(f"    1: wasm trap: {trap.message}")
    else:
        lines.append(f"    wasm trap: {trap.message}")
    return "\n".join(lines)


def _parse_arg(valtype: str, text: str) -> Any:
    try:
        if valtype in (I32, I64):
            return int(text, 0)
        if valtype in (F32, F64):
            return float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a valid {valtype}") from None
    raise click.BadParameter(f"cannot pass a {valtype} argument from the command line")


def _show(valtype: str, value: Any) -> str:
    value = from_raw(valtype, value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="asyncwasm")
def main() -> None:
    """Run WebAssembly modules on an async event loop.

    \b
    Examples:
      asyncwasm run hello.wasm                      run a WASI program
      asyncwasm run --dir data::/data app.wasm x    grant a directory, pass an argument
      asyncwasm run --invoke fib math.wasm 25       call an export and print its results
      asyncwasm wast ../shared/spec/json/*/*.json   run spec test scripts
    """


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--dir", "dirs", multiple=True, metavar="HOST[::GUEST]",
              help="Grant the guest a host directory, seen at GUEST (default: the same path). Repeatable.")
@click.option("--env", "envs", multiple=True, metavar="NAME[=VAL]",
              help="Set a guest environment variable; NAME alone passes the host's value. Repeatable.")
@click.option("--fuel", type=click.IntRange(min=0), help="Stop the guest with a trap after N units of fuel.")
@click.option("--timeout", "timeout", metavar="DURATION", help="Stop the guest after DURATION (500ms, 2s, 1m).")
@click.option("--max-memory", "max_memory", metavar="SIZE", help="Largest linear memory allowed (64MiB, 1GiB).")
@click.option("--invoke", metavar="NAME", help="Call this export instead of _start and print what it returns.")
@click.option("--stats", is_flag=True, help="Print fuel used, slices and time to stderr when done.")
@click.argument("module", type=click.Path(dir_okay=False))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(dirs: tuple[str, ...], envs: tuple[str, ...], fuel: int | None, timeout: str | None,
        max_memory: str | None, invoke: str | None, stats: bool, module: str, args: tuple[str, ...]) -> None:
    """Run a WebAssembly MODULE: a WASI command, or one export with --invoke.

    Options go before the module; everything after it is the guest's own arguments (argv[0] is the
    module's file name). The exit status is the guest's proc_exit code, 134 on a trap, and 1 when the
    module cannot be loaded or linked.

    \b
    Examples:
      asyncwasm run --dir ./data::/data --env LANG=C app.wasm --verbose
      asyncwasm run --fuel 1000000 --timeout 5s untrusted.wasm
      asyncwasm run --invoke add math.wasm 2 3
    """
    limit = parse_duration(timeout) if timeout else None
    pages = None
    if max_memory:
        pages = parse_size(max_memory) // 65536
    cm = load_module(module)
    store = Store(fuel=fuel, max_memory_pages=pages)
    uses_wasi = any(imp[0].startswith("wasi_") for imp in cm.imports)
    code = anyio.run(_run_main, cm, store, module, dirs, envs, limit, invoke, uses_wasi, args)
    if stats:
        click.echo(f"fuel used: {store.fuel_used}, slices: {store.slices}", err=True)
    sys.exit(code)


async def _run_main(cm: CompiledModule, store: Store, path: str, dirs: tuple[str, ...], envs: tuple[str, ...],
                    limit: float | None, invoke: str | None, uses_wasi: bool, args: tuple[str, ...]) -> int:
    linker = Linker()
    ctx = None
    if uses_wasi:
        from wasi_async import Preopen, WasiConfig, WasiContext

        preopens = []
        for d in dirs:
            host, _, guest = d.partition("::")
            if not os.path.isdir(host):
                _fail(f"--dir {d}: {host} is not a directory")
            preopens.append(Preopen(host=host, guest=guest or host))
        env: dict[str, str] = {}
        for e in envs:
            name, eq, val = e.partition("=")
            if eq:
                env[name] = val
            elif name in os.environ:
                env[name] = os.environ[name]
        cfg = WasiConfig.inherit_stdio(args=[os.path.basename(path), *args], env=env, preopens=preopens)
        ctx = WasiContext(cfg)
        ctx.add_to_linker(linker)
    try:
        with anyio.fail_after(limit) if limit else _nullcontext():
            return await _instantiate_and_call(cm, linker, store, path, invoke, uses_wasi, args)
    except TimeoutError:
        click.echo(format_trap(Trap(f"interrupt: the guest ran longer than the {limit:g}s timeout"), path), err=True)
        return TRAP_EXIT
    finally:
        if ctx is not None:
            await _maybe_await(ctx.close())


async def _maybe_await(value: Any) -> None:
    if hasattr(value, "__await__"):
        await value


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def _instantiate_and_call(cm: CompiledModule, linker: Linker, store: Store, path: str, invoke: str | None,
                                uses_wasi: bool, args: tuple[str, ...]) -> int:
    exit_type: type[BaseException] = _NoExit
    if uses_wasi:
        from wasi_async import WasiExit

        exit_type = WasiExit
    try:
        try:
            inst = await linker.instantiate(cm, store)
        except LinkError as exc:
            _fail(f"failed to link {path}: {exc}")
        if invoke is None:
            if "_start" in inst.exports:
                await inst.call("_start")
            elif not uses_wasi:
                _fail(f"{path} has no _start export; name one to call with --invoke "
                      f"(exports: {', '.join(n for n, k in cm.exports if k == 'func') or 'none'})")
            return 0
        return await _invoke(inst, invoke, [] if uses_wasi else list(args), path)
    except Trap as trap:
        sys.stdout.flush()
        click.echo(format_trap(trap, path), err=True)
        return TRAP_EXIT
    except exit_type as exc:
        return int(getattr(exc, "code", 1))


class _NoExit(Exception):
    pass


async def _invoke(inst: Instance, name: str, args: list[str], path: str) -> int:
    f = inst.exports.get(name)
    from .runtime.objects import Func

    if not isinstance(f, Func):
        _fail(f"{path} exports no function named {name!r}")
    assert isinstance(f, Func)
    if len(args) != len(f.type.params):
        _fail(f"{name} takes {len(f.type.params)} arguments ({f.type}), {len(args)} given")
    raw = [_parse_arg(t, a) for t, a in zip(f.type.params, args, strict=True)]
    from .runtime.values import to_raw

    result = await inst.call_raw(f, [to_raw(t, v) for t, v in zip(f.type.params, raw, strict=True)])
    results = [] if not f.type.results else [result] if len(f.type.results) == 1 else list(result)
    for t, v in zip(f.type.results, results, strict=True):
        click.echo(_show(t, v))
    return 0


@main.command()
@click.argument("scripts", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--known-failures", type=click.Path(dir_okay=False), default=str(DEFAULT_KNOWN_FAILURES),
              show_default=True, help="File of `file.json:line reason` lines that are expected to fail.")
@click.option("-v", "--verbose", is_flag=True, help="Print each script's counts as it runs.")
def wast(scripts: tuple[str, ...], known_failures: str, verbose: bool) -> None:
    """Run spec test SCRIPTS (JSON from wasm-tools json-from-wast or wabt's wast2json).

    Prints every failure with its file and line, then `N passed, M failed, K skipped`. Text-format
    modules are skipped. Exits 0 only when every failure is listed in the known-failures file.
    """
    known = load_known_failures(Path(known_failures))
    total = WastResult()
    for s in scripts:
        try:
            r = ScriptRunner(Path(s)).run()
        except (OSError, ValueError, KeyError) as exc:
            r = WastResult(failed=1, failures=[(f"{Path(s).name}:0", f"cannot read script: {exc}")])
        total.add(r)
        if verbose:
            click.echo(f"{Path(s).name}: {r.passed} passed, {r.failed} failed, {r.skipped} skipped")
    unexpected = 0
    for where, message in total.failures:
        tag = "known failure" if where in known else "FAIL"
        if where not in known:
            unexpected += 1
        click.echo(f"{tag}: {where}: {message}")
    click.echo(f"{total.passed} passed, {total.failed} failed, {total.skipped} skipped")
    sys.exit(1 if unexpected else 0)


def _main_guard() -> None:  # pragma: no cover - for `python -m asyncwasm`
    try:
        main()
    except MalformedModule as exc:
        _fail(str(exc))


if __name__ == "__main__":  # pragma: no cover
    _main_guard()


def _register_server() -> None:
    """`serve-stdin` lives in its own module (the server brings sockets; the rest needs none)."""
    try:
        from .serve import serve_stdin
    except ImportError:  # not built yet in this checkout
        return
    main.add_command(serve_stdin)


_register_server()
