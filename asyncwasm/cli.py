"""The ``asyncwasm`` command: run WASI programs, call exports, and run spec test scripts."""

from __future__ import annotations

import math
import os
import re
import struct
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import anyio
import click

from . import Store
from .binary.module import F32, F64, I32, I64
from .errors import LinkError, MalformedModule, Trap, WasmError
from .features import Features
from .runtime.instance import CompiledModule, Instance, Linker
from .runtime.objects import WasmException
from .store import DEFAULT_TABLE_ELEMENTS
from .wast import DEFAULT_KNOWN_FAILURES, ScriptRunner, failure_key, load_known_failures
from .wast import Result as WastResult

TRAP_EXIT = 134  # what wasmtime returns on a trap (128 + SIGABRT)
ERROR_EXIT = 1  # the module or something else the command names cannot be used
USAGE_EXIT = 2  # the command line itself is wrong (click's usage status)
INTERRUPT_EXIT = 130  # Ctrl-C (128 + SIGINT)
PAGE_SIZE = 65536
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


class CliError(Exception):
    """A problem with what the command names (the module, a directory, an export): one line, status 1."""


def _fail(message: str, code: int = ERROR_EXIT) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def load_module(path: str) -> CompiledModule:
    """Compile a module, turning every way it can be wrong into one clear line and status 1."""
    try:
        return _compile(path)
    except CliError as exc:
        _fail(str(exc))


def _compile(path: str) -> CompiledModule:
    try:
        return CompiledModule.from_file(path)
    except FileNotFoundError:
        raise CliError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise CliError(f"{path} is a directory, not a WebAssembly module") from None
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    except WasmError as exc:
        raise CliError(f"failed to load {path}: {exc}") from None
    except RecursionError:
        raise CliError(f"failed to load {path}: nested too deeply for this runtime") from None


def format_trap(trap: Trap, module_path: str) -> str:
    """wasmtime's report: the numbered backtrace frames (innermost first), then the trap message."""
    lines = [f"error: failed to run main module `{module_path}`", "", "Caused by:"]
    if trap.frames:
        lines.append("    0: error while executing at wasm backtrace:")
        for depth, text in trap.numbered_frames():
            lines.append(f"           {text}" if depth is None else f"           {depth}: {text}")
        lines.append(f"    1: wasm trap: {trap.message}")
    else:
        lines.append(f"    wasm trap: {trap.message}")
    return "\n".join(lines)


# --- option types: a bad value is a usage error (status 2) ----------------------------------------


class _Duration(click.ParamType):
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            seconds = parse_duration(value)
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)
        if seconds <= 0:
            self.fail(f"{value!r} is not a positive duration", param, ctx)
        return seconds


class _Size(click.ParamType):
    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


class _FeatureSet(click.ParamType):
    """A Wasm feature set: ``2.0``, ``3.0``, or a list such as ``2.0,+simd`` or ``-gc`` (wasmtime's names)."""

    name = "features"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Features:
        if isinstance(value, Features):
            return value
        try:
            return Features.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _Count(click.ParamType):
    name = "n"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            n = int(value.replace("_", ""))
        except ValueError:
            self.fail(f"{value!r} is not a whole number", param, ctx)
        if n < 0:
            self.fail(f"{value!r} is negative", param, ctx)
        return n


class _DirSpec(click.ParamType):
    name = "HOST[::GUEST]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        host, sep, guest = value.partition("::")
        if not host or (sep and not guest):
            self.fail(f"{value!r} is not HOST or HOST::GUEST", param, ctx)
        return host, guest or host


class _EnvSpec(click.ParamType):
    name = "NAME[=VAL]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, str | None]:
        if isinstance(value, tuple):
            return value
        name, eq, val = value.partition("=")
        if not name:
            self.fail(f"{value!r} has no variable name", param, ctx)
        return name, val if eq else None


class _UsageLine(click.ClickException):
    """A usage mistake as one line (click's own form is three), with click's usage status."""

    exit_code = USAGE_EXIT

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class _RunCommand(click.Command):
    """``run`` reports usage mistakes in one ``error:`` line, naming ``--help``."""

    def _one_line(self, ctx: click.Context, exc: click.UsageError) -> _UsageLine:
        message = exc.format_message().rstrip(".")
        return _UsageLine(f"{message}; see '{ctx.command_path} --help'")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise self._one_line(ctx, exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise self._one_line(ctx, exc) from None


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
    """A result as --invoke prints it: integers signed, floats in their shortest exact form."""
    if valtype == F32:
        return _f32_text(value)
    if isinstance(value, float):
        return repr(value)
    if value is None:
        return "null"
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


# --- run -------------------------------------------------------------------------------------------


@main.command(cls=_RunCommand, context_settings={"allow_interspersed_args": False})
@click.option("--dir", "dirs", multiple=True, type=_DirSpec(), metavar="HOST[::GUEST]",
              help="Grant the guest a host directory, seen at GUEST (default: the same path). Repeatable.")
@click.option("--env", "envs", multiple=True, type=_EnvSpec(), metavar="NAME[=VAL]",
              help="Set a guest environment variable; NAME alone passes the host's value. Repeatable. "
                   "The guest sees only these.")
@click.option("--fuel", type=_Count(), metavar="N",
              help="Stop the guest with a trap after N units of fuel (about one per instruction).")
@click.option("--timeout", type=_Duration(), metavar="DURATION",
              help="Stop the guest with a trap after DURATION of wall-clock time (500ms, 2s, 1m).")
@click.option("--max-memory", "max_memory", type=_Size(), metavar="SIZE",
              help="Most linear memory allowed, all memories together, rounded down to 64 KiB pages "
                   "(64MiB, 1GiB; default 4GiB); memory.grow past it returns -1.")
@click.option("--max-table-elements", "max_table_elements", type=_Count(), metavar="N",
              help="Most elements all tables together may hold (default 10,000,000); table.grow past "
                   "it returns -1.")
@click.option("--max-open-files", "max_open_files", type=_Count(), metavar="N", default=1024,
              show_default=True, help="Descriptors the guest may open itself; past it path_open fails "
                                      "with EMFILE.")
@click.option("--invoke", metavar="NAME",
              help="Call this export instead of _start, with ARGS as its arguments, and print its results.")
@click.option("--stats", is_flag=True, help="Print fuel used, slices and time to stderr when done.")
@click.argument("module", metavar="MODULE")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(dirs: tuple[tuple[str, str], ...], envs: tuple[tuple[str, str | None], ...], fuel: int | None,
        timeout: float | None, max_memory: int | None, max_table_elements: int | None, max_open_files: int,
        invoke: str | None, stats: bool, module: str, args: tuple[str, ...]) -> None:
    """Run a WebAssembly MODULE: a WASI command, or one export with --invoke.

    Options go before the module; everything after it is the guest's own arguments, passed as they
    are (argv[0] is the module's file name). With --invoke, ARGS are the export's arguments: i32 and
    i64 in decimal or 0x hex, f32 and f64 as decimals; each result is printed on its own line.

    \b
    Exit status:
      N    the guest called proc_exit(N) (0 when _start returns)
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
      asyncwasm run --dir ./data::/data --env LANG=C app.wasm --verbose in.txt
      asyncwasm run --fuel 1000000 --timeout 5s --max-memory 64MiB untrusted.wasm
      asyncwasm run --max-open-files 64 --max-table-elements 100000 untrusted.wasm
      asyncwasm run --invoke add math.wasm 2 3
    """
    try:
        code = _run(dirs, envs, fuel, timeout, max_memory, invoke, stats, module, args,
                    max_table_elements=max_table_elements, max_open_files=max_open_files)
    except CliError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted", INTERRUPT_EXIT)
    sys.exit(code)


def _run(dirs: tuple[tuple[str, str], ...], envs: tuple[tuple[str, str | None], ...], fuel: int | None,
         timeout: float | None, max_memory: int | None, invoke: str | None, stats: bool, module: str,
         args: tuple[str, ...], *, max_table_elements: int | None = None, max_open_files: int = 1024) -> int:
    for host, _guest in dirs:
        if not os.path.isdir(host):
            raise CliError(f"--dir {host}: {'no such directory' if not os.path.exists(host) else 'not a directory'}")
    env = {name: os.environ[name] if val is None else val for name, val in envs
           if val is not None or name in os.environ}
    pages = None if max_memory is None else max_memory // PAGE_SIZE
    cm = _compile(module)
    if pages is not None:
        for i, mem in enumerate(cm.module.memories):
            if mem.limits.min > pages:
                raise CliError(f"{module}: memory {i} starts at {mem.limits.min} pages "
                               f"({mem.limits.min * PAGE_SIZE} bytes), more than --max-memory allows ({pages} pages)")
        start = sum(mem.limits.min for mem in cm.module.memories)  # the limit is for all memories together
        if start > pages:
            raise CliError(f"{module}: its memories start at {start} pages together ({start * PAGE_SIZE} bytes), "
                           f"more than --max-memory allows ({pages} pages)")
    store = Store(fuel=fuel, max_memory_pages=pages,
                  max_table_elements_total=DEFAULT_TABLE_ELEMENTS if max_table_elements is None else max_table_elements)
    uses_wasi = any(imp[0].startswith("wasi_") for imp in cm.imports)
    started = time.perf_counter()
    code = anyio.run(_run_main, cm, store, module, dirs, env, timeout, invoke, uses_wasi, args, max_open_files)
    if stats:
        click.echo(f"fuel used: {store.fuel_used}, slices: {store.slices}, "
                   f"time: {time.perf_counter() - started:.3f}s", err=True)
    return code


async def _run_main(cm: CompiledModule, store: Store, path: str, dirs: tuple[tuple[str, str], ...],
                    env: dict[str, str], limit: float | None, invoke: str | None, uses_wasi: bool,
                    args: tuple[str, ...], max_open_files: int = 1024) -> int:
    linker = Linker()
    ctx = None
    if uses_wasi:
        from wasi_async import Preopen, WasiConfig, WasiContext

        preopens = [Preopen(host=host, guest=guest) for host, guest in dirs]
        cfg = WasiConfig.inherit_stdio(args=[os.path.basename(path), *args], env=env, preopens=preopens,
                                       max_open_files=max_open_files)
        ctx = WasiContext(cfg)
        ctx.add_to_linker(linker)
    try:
        with _deadline(limit):
            return await _instantiate_and_call(cm, linker, store, path, invoke, uses_wasi, args)
    except TimeoutError:
        sys.stdout.flush()
        click.echo(format_trap(Trap(f"interrupt: the guest ran longer than the {limit:g}s timeout"), path),
                   err=True)
        return TRAP_EXIT
    finally:
        if ctx is not None:
            await ctx.aclose()


@contextmanager
def _deadline(limit: float | None) -> Iterator[None]:
    if limit is None:
        yield
    else:
        with anyio.fail_after(limit):
            yield


def _exit_status(code: int) -> int:
    """A proc_exit code as the process's status: 0-255 as they are; a process cannot carry more."""
    if 0 <= code <= 255:
        return code
    raise CliError(f"the guest exited with status {code}, which does not fit in a process exit status (0-255)")


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
            raise CliError(f"failed to link {path}: {exc}") from None
        if invoke is None:
            if "_start" in inst.exports:
                await inst.call("_start")
            elif not uses_wasi:
                funcs = ", ".join(n for n, k in cm.exports if k == "func") or "none"
                raise CliError(f"{path} has no _start export; name one to call with --invoke (exports: {funcs})")
            return 0
        return await _invoke(cm, inst, invoke, list(args), path)
    except Trap as trap:
        sys.stdout.flush()
        click.echo(format_trap(trap, path), err=True)
        return TRAP_EXIT
    except WasmException as exc:  # thrown by the guest and caught by none of its handlers
        sys.stdout.flush()
        shown = Trap(str(exc).partition("\n")[0], exc.frames)
        click.echo(format_trap(shown, path).replace("wasm trap: uncaught", "uncaught"), err=True)
        return TRAP_EXIT
    except exit_type as exc:
        return _exit_status(int(getattr(exc, "code", 1)))


class _NoExit(Exception):
    pass


async def _invoke(cm: CompiledModule, inst: Instance, name: str, args: list[str], path: str) -> int:
    """Call one export (after a reactor's ``_initialize``) and print each result on its own line."""
    try:
        f = inst.get_func(name)
    except KeyError:
        funcs = ", ".join(n for n, k in cm.exports if k == "func") or "none"
        raise CliError(f"{path} exports no function named {name!r} (exports: {funcs})") from None
    params = f.type.params
    if len(args) != len(params):
        raise CliError(f"{name} takes {len(params)} argument{'s' * (len(params) != 1)} "
                       f"({f.type}), {len(args)} given")
    values = [_parse_arg(t, a) for t, a in zip(params, args, strict=True)]
    if name != "_initialize" and "_initialize" in inst.exports:
        await inst.call("_initialize")
    result = await inst.call(name, *values)
    results = [] if not f.type.results else [result] if len(f.type.results) == 1 else list(result)
    for t, v in zip(f.type.results, results, strict=True):
        click.echo(_show(t, v))
    return 0


@main.command()
@click.argument("scripts", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--known-failures", type=click.Path(dir_okay=False), default=str(DEFAULT_KNOWN_FAILURES),
              show_default=True, help="File of `SUITE/NAME:LINE reason` lines that are expected to fail "
                   "(e.g. `spec3/simd_lane:42 reason`; one file serves the JSON and .wast forms).")
@click.option("-v", "--verbose", is_flag=True, help="Print each script's counts as it runs.")
@click.option("--features", type=_FeatureSet(), default="3.0", show_default=True,
              help="The Wasm feature set the scripts run under: 2.0, 3.0, or a list such as 2.0,+simd "
                   f"or 3.0,-gc. Names: {', '.join(Features.names())}.")
def wast(scripts: tuple[str, ...], known_failures: str, verbose: bool, features: Features) -> None:
    """Run spec test SCRIPTS: `.wast` text, or JSON from wasm-tools json-from-wast or wabt's wast2json.

    Prints every failure with its file and line, then `N passed, M failed, K skipped`. Text-format
    modules inside JSON scripts are skipped (run the `.wast` to cover them). Exits 0 only when every
    failure is listed in the known-failures file.

    The 2.0 and 3.0 suites disagree in a few places: run ../spec with `--features 2.0` and the 3.0
    suite with the default.
    """
    known = load_known_failures(Path(known_failures))
    total = WastResult()
    keys: list[str] = []
    for s in scripts:
        try:
            r = ScriptRunner(Path(s), features).run()
        except (OSError, ValueError, KeyError) as exc:
            r = WastResult(failed=1, failures=[(f"{Path(s).name}:0", f"cannot read script: {exc}")])
        total.add(r)
        keys += [failure_key(Path(s), where) for where, _m in r.failures]
        if verbose:
            click.echo(f"{Path(s).name}: {r.passed} passed, {r.failed} failed, {r.skipped} skipped")
    unexpected = 0
    for key, (where, message) in zip(keys, total.failures, strict=True):
        tag = "known failure" if key in known else "FAIL"
        if key not in known:
            unexpected += 1
        click.echo(f"{tag}: {where}: {message}")
    click.echo(f"{total.passed} passed, {total.failed} failed, {total.skipped} skipped")
    sys.exit(1 if unexpected else 0)


def _main_guard() -> None:  # pragma: no cover - for `python -m asyncwasm`
    try:
        main()
    except MalformedModule as exc:
        _fail(str(exc))




def _register_server() -> None:
    """`serve-stdin` lives in its own module: the server brings sockets, nothing else here needs them."""
    from .serve import serve_stdin

    main.add_command(serve_stdin)


_register_server()


if __name__ == "__main__":  # pragma: no cover
    _main_guard()
