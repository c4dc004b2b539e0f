"""How a WASI implementation becomes a host function: declaration, argument masking, errno results.

Implementations are written as ``impl(ctx, mem, *args)`` with unsigned arguments, return None on
success and raise ``WasiError`` (or let an ``OSError`` escape) on failure; ``bind`` wraps them into
the ``fn(caller, *args) -> errno`` shape the engine's ``Linker.define_func(..., access_caller=True)``
calls. A ``Trap`` (bad guest pointer) and ``WasiExit`` pass through untouched: wasmtime traps on
out-of-bounds pointers too, as the witx conventions require.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from asyncwasm.binary.module import FuncType
from asyncwasm.errors import Trap

from .errno import Errno, WasiError, from_oserror

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True)
class Spec:
    """One wasi_snapshot_preview1 import: its core Wasm signature and its implementation
    (with what binding it needs worked out once, not per instance)."""

    name: str
    params: tuple[str, ...]
    results: tuple[str, ...]
    impl: Callable[..., Any]
    type: FuncType = field(init=False)
    masks: tuple[int, ...] = field(init=False)
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", FuncType(self.params, self.results))
        object.__setattr__(self, "masks", tuple(M32 if p == "i32" else M64 for p in self.params))
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.impl))


SPECS: dict[str, Spec] = {}


def wasi(
    name: str, params: str = "", results: str = "i32"
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare ``fn`` as the implementation of the import ``name`` with core types ``params``."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        SPECS[name] = Spec(name, tuple(params.split()), tuple(results.split()), fn)
        return fn

    return register


class _NoMemory:
    """Stands in for a missing ``memory`` export: any access traps, as in wasmtime."""

    def __getattr__(self, name: str) -> Any:
        raise Trap('WASI function called by a module that exports no memory named "memory"')


NO_MEMORY = _NoMemory()


def _memory(caller: Any) -> Any:
    mem = getattr(caller, "memory", None)
    return NO_MEMORY if mem is None else mem


def _errno_of(exc: Exception) -> int:
    if isinstance(exc, WasiError):
        return exc.errno
    if isinstance(exc, OverflowError):
        return Errno.OVERFLOW
    return from_oserror(exc)  # type: ignore[arg-type]


def bind(spec: Spec, ctx: Any) -> Callable[..., Any]:
    """The host function for ``spec`` bound to one instance's context."""
    impl = spec.impl
    masks = spec.masks
    handled = (WasiError, OSError, OverflowError)

    if spec.is_async:

        async def call_async(caller: Any, *args: int) -> int:
            mem = _memory(caller)
            try:
                await impl(ctx, mem, *[a & m for a, m in zip(args, masks, strict=True)])
            except handled as exc:
                return _errno_of(exc)
            return 0

        call_async.__name__ = spec.name
        return call_async

    if not spec.results:  # proc_exit: returns nothing, raises WasiExit

        def call_void(caller: Any, *args: int) -> None:
            impl(ctx, _memory(caller), *[a & m for a, m in zip(args, masks, strict=True)])

        call_void.__name__ = spec.name
        return call_void

    def call(caller: Any, *args: int) -> int:
        mem = _memory(caller)
        try:
            impl(ctx, mem, *[a & m for a, m in zip(args, masks, strict=True)])
        except handled as exc:
            return _errno_of(exc)
        return 0

    call.__name__ = spec.name
    return call
