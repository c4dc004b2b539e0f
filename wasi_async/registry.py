"""All 46 wasi_snapshot_preview1 functions, gathered from the per-group modules."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from asyncwasm.binary.module import FuncType

from . import args, clock, environ, fd, fd_io, path, poll, proc, random, sched, sock  # noqa: F401  (registration)
from .hostfunc import SPECS, bind

MODULE = "wasi_snapshot_preview1"
_ORDERED = sorted(SPECS.items())


def build_functions(
    ctx: Any, names: Iterable[str] | None = None
) -> dict[str, tuple[FuncType, Callable[..., Any]]]:
    """name -> (core function type, host function bound to ``ctx``), in witx order of names: every
    WASI function, or those of ``names`` that exist (a name WASI has not is left out)."""
    if names is None:
        return {name: (spec.type, bind(spec, ctx)) for name, spec in _ORDERED}
    wanted = set(names)
    return {name: (spec.type, bind(spec, ctx)) for name, spec in _ORDERED if name in wanted}
