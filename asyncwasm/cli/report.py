"""How the commands report: exit statuses, one-line errors, and wasmtime's trap report.

Every command says what went wrong in one ``error:`` line and a status that tells the kind of
failure apart (docs/cli.md lists them beside wasmtime's)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from ..errors import Interrupted, Trap, WasmError
from ..features import Features
from ..runtime.instance import CompiledModule

TRAP_EXIT = 134  # what wasmtime returns on a trap (128 + SIGABRT)
ERROR_EXIT = 1  # the module or something else the command names cannot be used
INTERRUPT_EXIT = 130  # Ctrl-C (128 + SIGINT)


class CliError(Exception):
    """A problem with what the command names (the module, a directory, an export): one line, status 1."""


def fail(message: str, code: int = ERROR_EXIT) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def exit_with(run: Callable[[], int]) -> NoReturn:
    """Run a command's work and exit with its status: a ``CliError`` is its ``error:`` line and
    status 1, Ctrl-C status 130 (what every command that runs a guest does the same way)."""
    try:
        code = run()
    except CliError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", INTERRUPT_EXIT)
    sys.exit(code)


def compile_module(path: str, features: Features | None = None, cache: Any = True) -> CompiledModule:
    """Compile a module file (``cache``: as ``Module(cache=)``); every way it can be wrong is a
    ``CliError`` of one line."""
    try:
        return CompiledModule.from_file(path, features=features, cache=cache)
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


def timeout_worded(trap: Trap, timeout: float | None) -> Trap:
    """The store's wall-clock trap in the command line's words (it names --timeout), same frames."""
    if not isinstance(trap, Interrupted) or timeout is None:
        return trap
    shown = Interrupted(f"interrupt: the guest ran longer than the {timeout:g}s timeout (--timeout)")
    shown.frames, shown.omitted = trap.frames, trap.omitted
    return shown
