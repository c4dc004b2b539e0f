"""The options every command that runs a WASI program shares, as click types and decorators.

``asyncwasm run`` and ``asyncwasm serve-stdin`` take the same limits (``--fuel``, ``--timeout``,
``--max-memory``, ``--max-table-elements``), the same WASI grants (``--dir``, ``--env``,
``--max-open-files``) and wasmtime's option groups beside them: ``-W`` for the engine (the limits,
``max-wasm-stack``, the Wasm feature names: ``-W fuel=1000,simd=n``) and ``-S`` for WASI
(``inherit-env``, ``inherit-stdin``, ``tcplisten=HOST:PORT``). Both commands get them by
composition: ``@run_common`` adds the options to a command and hands it one ``RunCommon`` value, as
wasmtime's ``serve`` reuses its ``RunCommon``. A bad value is a usage error (status 2) named by
click, never a traceback later. This module imports no command.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import click

from ..features import Features
from ..store import Store

USAGE_EXIT = 2  # the command line itself is wrong (click's usage status)
PAGE_SIZE = 65536

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SIZE = re.compile(r"^\s*(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$", re.I)
_SIZE_UNITS = {
    None: 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1 << 30,
    "gib": 1 << 30,
}
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

F = TypeVar("F", bound=Callable[..., Any])


def parse_duration(text: str) -> float:
    """``500ms``, ``2s``, ``1.5m``, ``1h`` or plain seconds -> seconds; ValueError otherwise."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration (try 500ms, 2s or 1m)")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def parse_size(text: str) -> int:
    """``64MiB``, ``1G``, ``65536`` (bytes) -> bytes; ValueError otherwise."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a size (try 64MiB or 1GiB)")
    unit = m.group(2).lower() if m.group(2) else None
    return int(m.group(1)) * _SIZE_UNITS[unit]


# --- click types -----------------------------------------------------------------------------------


class Duration(click.ParamType):
    """A wall-clock duration in seconds. ``allow_zero``: 0 is accepted (it means "no limit")."""

    name = "duration"

    def __init__(self, *, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float | int) and not isinstance(value, bool):
            return float(value)
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if seconds < 0 or (seconds == 0 and not self.allow_zero):
            self.fail(f"{value!r} is not a positive duration", param, ctx)
        return seconds


class Size(click.ParamType):
    """A size in bytes: ``64MiB``, ``1GiB``, ``65536``."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Count(click.ParamType):
    """A whole number >= 0 (``_`` may group digits: ``10_000_000``)."""

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


class FeatureSet(click.ParamType):
    """A Wasm feature set: ``2.0``, ``3.0``, or a list such as ``2.0,+simd`` or ``-gc`` (wasmtime's names)."""

    name = "features"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Features:
        if isinstance(value, Features):
            return value
        try:
            return Features.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class DirSpec(click.ParamType):
    """``HOST[::GUEST]``: a host directory and where the guest sees it (default: the same path)."""

    name = "HOST[::GUEST]"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        host, sep, guest = value.partition("::")
        if not host or (sep and not guest):
            self.fail(f"{value!r} is not HOST or HOST::GUEST", param, ctx)
        return host, guest or host


class EnvSpec(click.ParamType):
    """``NAME[=VAL]``: a variable, or (NAME alone) the host's value of it."""

    name = "NAME[=VAL]"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, str | None]:
        if isinstance(value, tuple):
            return value
        name, eq, val = value.partition("=")
        if not name:
            self.fail(f"{value!r} has no variable name", param, ctx)
        return name, val if eq else None


# --- usage mistakes in one line -------------------------------------------------------------------


class UsageLine(click.ClickException):
    """A usage mistake as one line (click's own form is three), with click's usage status."""

    exit_code = USAGE_EXIT

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class OneLineCommand(click.Command):
    """A command that reports usage mistakes in one ``error:`` line, naming ``--help``."""

    def _one_line(self, ctx: click.Context, exc: click.UsageError) -> UsageLine:
        message = exc.format_message().rstrip(".")
        return UsageLine(f"{message}; see '{ctx.command_path} --help'")

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


# --- the shared options, composed ------------------------------------------------------------------


@dataclass
class RunCommon:
    """What every command running a WASI program was told: its limits and its grants."""

    fuel: int | None = None
    timeout: float | None = None
    max_memory: int | None = None  # bytes
    max_table_elements: int | None = None
    dirs: tuple[tuple[str, str], ...] = ()
    envs: tuple[tuple[str, str | None], ...] = ()
    max_open_files: int | None = None
    max_wasm_stack: int | None = None  # nested Wasm calls (Store.max_depth)
    features: Features | None = None  # None: the default, all of Wasm 3.0
    inherit_env: bool = False
    inherit_stdin: bool | None = None  # None: the command's default
    tcplisten: tuple[tuple[str, int], ...] = ()
    cache_dir: str | None = None  # None: $ASYNCWASM_CACHE_DIR, else the user cache directory
    no_cache: bool = False

    @property
    def cache(self) -> str | bool:
        """The ``cache=`` argument of ``Module``: off, a directory, or the default (True)."""
        if self.no_cache:
            return False
        return self.cache_dir if self.cache_dir is not None else True

    @property
    def max_memory_pages(self) -> int | None:
        """``--max-memory`` as a number of 64 KiB Wasm pages (rounded down), or None."""
        return None if self.max_memory is None else self.max_memory // PAGE_SIZE

    def env(self, environ: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, str]:
        """The guest's environment: all of the host's with ``-S inherit-env``, then ``NAME=VAL`` as
        given and a bare ``NAME`` with the host's value if it has one."""
        env = dict(environ) if self.inherit_env else {}
        env.update(
            {
                name: environ[name] if val is None else val
                for name, val in self.envs
                if val is not None or name in environ
            }
        )
        return env

    def dir_problem(self) -> str | None:
        """Why a ``--dir`` host path cannot be granted (it is missing or not a directory), or None.

        Not a usage error: the command line is well formed, what it names cannot be used."""
        for host, _guest in self.dirs:
            if not os.path.isdir(host):
                return (
                    f"--dir {host}: {'no such directory' if not os.path.exists(host) else 'not a directory'}"
                )
        return None

    def store(self) -> Store:
        """A fresh Store with these limits (one per run, connection or request)."""
        return Store(
            fuel=self.fuel,
            timeout=self.timeout,
            max_memory_pages=self.max_memory_pages,
            max_table_elements_total=self.max_table_elements,
            max_depth=self.max_wasm_stack,
        )


_COMMON_NAMES = (
    "fuel",
    "timeout",
    "max_memory",
    "max_table_elements",
    "dirs",
    "envs",
    "max_open_files",
    "tcplisten",
    "cache_dir",
    "no_cache",
)


class KeyValues(click.ParamType):
    """``-W``/``-S`` values: ``KEY[=VALUE]`` items, several per option when comma-separated."""

    name = "KEY[=VAL,...]"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> list[tuple[str, str | None]]:
        if isinstance(value, list):
            return value
        out: list[tuple[str, str | None]] = []
        for item in (i.strip() for i in value.split(",")):
            if item:
                key, eq, val = item.partition("=")
                out.append((key.strip().replace("_", "-"), val.strip() if eq else None))
        if not out:
            self.fail(f"{value!r} names no option", param, ctx)
        return out


class HostPort(click.ParamType):
    """``HOST:PORT`` (``[::1]:8080`` for IPv6; port 0 picks a free one)."""

    name = "HOST:PORT"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, int]:
        if isinstance(value, tuple):
            return value
        host, sep, port = value.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            self.fail(f"{value!r} is not HOST:PORT", param, ctx)
        return host, int(port)


W_LIMITS = {
    "fuel": Count(),
    "timeout": Duration(),
    "max-memory-size": Size(),
    "max-table-elements": Count(),
    "max-wasm-stack": Count(),
}
S_KEYS = ("inherit-env", "inherit-stdin", "tcplisten")
_YES, _NO = ("y", "yes", "true", "1"), ("n", "no", "false", "0")


def _flag(key: str, value: str | None, opt: str) -> bool:
    if value is None or value.lower() in _YES:
        return True
    if value.lower() in _NO:
        return False
    raise click.BadParameter(f"{key}: expected y or n, got {value!r}", param_hint=f"'{opt}'")


def apply_groups(
    common: RunCommon, w: list[list[tuple[str, str | None]]], s: list[list[tuple[str, str | None]]]
) -> RunCommon:
    """``-W`` and ``-S`` items over the long options; a limit given both ways must agree."""
    changes: dict[str, Any] = {}
    features: list[str] = []
    fields_of = {
        "fuel": "fuel",
        "timeout": "timeout",
        "max-memory-size": "max_memory",
        "max-table-elements": "max_table_elements",
        "max-wasm-stack": "max_wasm_stack",
    }
    for key, value in (kv for group in w for kv in group):
        if key in W_LIMITS:
            if value is None:
                raise click.BadParameter(f"{key} needs a value ({key}=...)", param_hint="'-W'")
            converted = W_LIMITS[key].convert(value, None, None)
            field_name = fields_of[key]
            given = getattr(common, field_name)
            if given is not None and given != converted:
                raise click.BadParameter(
                    f"{key}={value} contradicts the long option given for it", param_hint="'-W'"
                )
            changes[field_name] = converted
        elif key in Features.names():
            features.append(f"{key}={'y' if _flag(key, value, '-W') else 'n'}")
        else:
            known = ", ".join([*W_LIMITS, *Features.names()])
            raise click.BadParameter(f"unknown option {key!r} (known: {known})", param_hint="'-W'")
    if features:
        changes["features"] = Features.parse(",".join(features))
    listen = list(common.tcplisten)
    for key, value in (kv for group in s for kv in group):
        if key == "inherit-env":
            changes["inherit_env"] = _flag(key, value, "-S")
        elif key == "inherit-stdin":
            changes["inherit_stdin"] = _flag(key, value, "-S")
        elif key == "tcplisten":
            listen.append(HostPort().convert(value or "", None, None))
        else:
            raise click.BadParameter(
                f"unknown option {key!r} (known: {', '.join(S_KEYS)})", param_hint="'-S'"
            )
    changes["tcplisten"] = tuple(listen)
    return replace(common, **changes)


def run_common(*, max_open_files: int, per: str = "run") -> Callable[[F], F]:
    """Add the shared limit and WASI options to a command; it receives them as ``common: RunCommon``.

    ``max_open_files`` is the command's default for ``--max-open-files``; ``per`` names what one limit
    applies to in the help ("run", "connection"...)."""

    def decorate(f: F) -> F:
        def collect(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in _COMMON_NAMES}
            values["tcplisten"] = tuple(values["tcplisten"])
            w, s = kwargs.pop("w_options"), kwargs.pop("s_options")
            common = apply_groups(RunCommon(**values), list(w), list(s))
            return f(*args, common=common, **kwargs)

        functools.update_wrapper(collect, f)  # the name, the help text, and options added before
        options = [
            click.option(
                "--dir",
                "dirs",
                multiple=True,
                type=DirSpec(),
                metavar="HOST[::GUEST]",
                help="Grant the guest a host directory, seen at GUEST (default: the same path). Repeatable.",
            ),
            click.option(
                "--env",
                "envs",
                multiple=True,
                type=EnvSpec(),
                metavar="NAME[=VAL]",
                help="Set a guest environment variable; NAME alone passes the host's value. "
                "Repeatable. The guest sees only these.",
            ),
            click.option(
                "--fuel",
                type=Count(),
                metavar="N",
                help=f"Fuel per {per}: a trap after N units (about one per instruction).",
            ),
            click.option(
                "--timeout",
                type=Duration(),
                metavar="DURATION",
                help=f"Wall-clock limit per {per}: a trap after DURATION (500ms, 2s, 1m).",
            ),
            click.option(
                "--max-memory",
                "max_memory",
                type=Size(),
                metavar="SIZE",
                help="Most linear memory, all memories together, rounded down to 64 KiB pages "
                "(64MiB, 1GiB; default 4GiB); memory.grow past it returns -1.",
            ),
            click.option(
                "--max-table-elements",
                "max_table_elements",
                type=Count(),
                metavar="N",
                help="Most elements all tables together may hold (default 10,000,000); "
                "table.grow past it returns -1.",
            ),
            click.option(
                "--max-open-files",
                "max_open_files",
                type=Count(),
                metavar="N",
                default=max_open_files,
                show_default=True,
                help="Descriptors the guest may open itself; one more is EMFILE.",
            ),
            click.option(
                "--tcplisten",
                "tcplisten",
                multiple=True,
                type=HostPort(),
                metavar="HOST:PORT",
                help="Grant the guest a listening TCP socket (for sock_accept), numbered after "
                "the --dir descriptors. Repeatable.",
            ),
            click.option(
                "--cache-dir",
                "cache_dir",
                type=click.Path(file_okay=False),
                metavar="DIR",
                help="The code cache big modules are kept in between runs (default: "
                "$ASYNCWASM_CACHE_DIR, else the user cache directory; `asyncwasm compile` "
                "fills it ahead of time).",
            ),
            click.option(
                "--no-cache",
                "no_cache",
                is_flag=True,
                help="Neither read nor write the code cache (also: ASYNCWASM_NO_CACHE=1).",
            ),
            click.option(
                "-W",
                "w_options",
                multiple=True,
                type=KeyValues(),
                metavar="OPT[=VAL,...]",
                help="Engine options, as wasmtime spells them: fuel=N, timeout=DURATION, "
                "max-memory-size=BYTES, max-table-elements=N, max-wasm-stack=N (nested "
                f"calls), and the Wasm features ({', '.join(Features.names())}) =y|n.",
            ),
            click.option(
                "-S",
                "s_options",
                multiple=True,
                type=KeyValues(),
                metavar="OPT[=VAL,...]",
                help="WASI options, as wasmtime spells them: inherit-env[=y|n] (the host's whole "
                "environment), inherit-stdin[=y|n], tcplisten=HOST:PORT.",
            ),
        ]
        decorated: Any = collect
        for option in reversed(options):
            decorated = option(decorated)
        return decorated  # type: ignore[no-any-return]

    return decorate
