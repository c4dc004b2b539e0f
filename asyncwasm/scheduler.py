"""Run Wasm code as a coroutine: the guest runs in a greenlet, and whenever it must wait (an async
host call, the end of a fuel slice) it switches back to the driver coroutine with an awaitable; the
driver awaits it on the event loop and switches back in with the result or the exception.
"""

from __future__ import annotations

import struct
import sys
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
from greenlet import getcurrent, greenlet

from .errors import Frame, FuelExhausted, Trap

DEFAULT_MAX_DEPTH = 200_000
FUEL_CHUNK = 4_000  # fuel units between two looks at the clock (about a millisecond)
DEFAULT_SLICE = 0.002  # seconds a guest runs before it lets the loop run

_OOB_MEMORY = "out of bounds memory access"
_HOST_HEADROOM = 200  # frames left for host functions called at the guest's deepest point


class _Suspend:
    """What a guest greenlet hands to its driver: an awaitable to await on its behalf."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.awaitable = awaitable


def await_in_guest(awaitable: Awaitable[Any]) -> Any:
    """Called from guest code (inside its greenlet): suspend until ``awaitable`` completes."""
    current = getcurrent()
    parent = current.parent
    if parent is None or not getattr(current, "asyncwasm_guest", False):
        raise RuntimeError("an async host function was called outside an asyncwasm call")
    return parent.switch(_Suspend(awaitable))


class Store:
    """Execution limits and counters shared by the instances created in it (as in wasmtime)."""

    def __init__(self, *, fuel: int | None = None, max_depth: int = DEFAULT_MAX_DEPTH,
                 slice_seconds: float = DEFAULT_SLICE, max_memory_pages: int | None = None,
                 max_table_elements: int | None = None) -> None:
        self.fuel_limit = fuel
        self.fuel_used = 0
        self.max_depth = max_depth
        self.slice_seconds = slice_seconds
        self.max_memory_pages = max_memory_pages
        self.max_table_elements = max_table_elements
        self.slices = 0
        self._slice_start = time.perf_counter()
        self._globals: list[dict[str, Any]] = []

    def fuel_remaining(self) -> int | None:
        return None if self.fuel_limit is None else max(0, self.fuel_limit - self.fuel_used)

    def next_grant(self) -> int:
        left = self.fuel_remaining()
        return FUEL_CHUNK if left is None else min(FUEL_CHUNK, left)

    def make_refuel(self, g: dict[str, Any]) -> Callable[[], None]:
        """The ``_refuel`` hook of one instance's globals: account, enforce the limit, yield."""

        def refuel() -> None:
            self.account()  # every instance of the store: their code may have run through imports
            if self.fuel_limit is not None and self.fuel_used > self.fuel_limit:
                self.fuel_used = self.fuel_limit
                g["_fuel"] = g["_granted"] = 0
                raise FuelExhausted()
            now = time.perf_counter()
            if now - self._slice_start >= self.slice_seconds:
                cur = getcurrent()
                if getattr(cur, "asyncwasm_guest", False):
                    self.slices += 1
                    cur.parent.switch(_Suspend(anyio.lowlevel.checkpoint()))
                self._slice_start = time.perf_counter()
            grant = self.next_grant()
            g["_fuel"] = g["_granted"] = grant
            if grant == 0:
                g["_fuel"] = -1
        return refuel

    def attach(self, g: dict[str, Any]) -> None:
        """Count this instance's fuel in this store (its code may run through other instances' calls)."""
        self._globals.append(g)

    def account(self) -> None:
        """Add what every instance of the store used of its grant (once: a cancellation while
        suspended must not count it again)."""
        for g in self._globals:
            self.fuel_used += g["_granted"] - g["_fuel"]
            g["_granted"] = g["_fuel"]

    def settle(self) -> None:
        """Account the fuel used and hand every instance a fresh grant."""
        self.account()
        grant = self.next_grant()
        for g in self._globals:
            g["_fuel"] = g["_granted"] = grant if grant else -1


def _set_depth_limit(limit: int) -> int:
    """Set the recursion limit for guest code about to run; return the one to restore."""
    prev = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(limit)
    except RecursionError:  # the caller is already deeper than that: leave it
        pass
    return prev


async def run_guest(fn: Callable[..., Any], args: tuple[Any, ...], store: Store) -> Any:
    """Call ``fn(*args)`` in a fresh greenlet, serving its suspensions until it returns.

    A fresh greenlet starts at recursion depth zero, so the recursion limit set while it runs is
    exactly the store's call-depth bound (plus room for the host functions it calls).
    """
    g = greenlet(fn)
    g.asyncwasm_guest = True  # type: ignore[attr-defined]
    store._slice_start = time.perf_counter()
    limit = store.max_depth + _HOST_HEADROOM
    try:
        prev = _set_depth_limit(limit)
        try:
            value = g.switch(*args)
        finally:
            sys.setrecursionlimit(prev)
        while not g.dead:
            if not isinstance(value, _Suspend):
                raise RuntimeError("guest greenlet switched out without a suspension")
            try:
                result = await value.awaitable
            except BaseException as exc:  # cancellation included: it unwinds the guest
                prev = _set_depth_limit(limit)
                try:
                    value = g.throw(exc)
                finally:
                    sys.setrecursionlimit(prev)
            else:
                prev = _set_depth_limit(limit)
                try:
                    value = g.switch(result)
                finally:
                    sys.setrecursionlimit(prev)
        return value
    except BaseException as exc:
        mapped = as_trap(exc)
        if mapped is exc:
            raise
        raise mapped from None
    finally:
        store.settle()


def run_guest_sync(fn: Callable[..., Any], args: tuple[Any, ...], store: Store) -> Any:
    """Run guest code to completion without an event loop (no async host functions allowed)."""
    depth = 0
    f = sys._getframe()
    while f is not None:
        depth += 1
        f = f.f_back
    prev = _set_depth_limit(depth + store.max_depth + _HOST_HEADROOM)
    try:
        return fn(*args)
    except BaseException as exc:
        mapped = as_trap(exc)
        if mapped is exc:
            raise
        raise mapped from None
    finally:
        sys.setrecursionlimit(prev)
        store.settle()


# ---- turning Python exceptions raised by compiled code into traps --------------------------------

# generated filename -> CompiledModule, for backtraces; weak, so a dropped module is freed
_registry: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def register_code(filename: str, compiled: Any) -> None:
    _registry[filename] = compiled


def wasm_frames(tb: Any, limit: int = 100) -> list[Frame]:
    """The Wasm frames of a traceback, innermost first."""
    frames: list[Frame] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        cm = _registry.get(code.co_filename)
        if cm is not None and code.co_name.startswith("f"):
            idx = int(code.co_name[1:])
            frames.append(Frame(idx, cm.func_name(idx), cm.name, cm.compiled.offset_of(code, tb.tb_lineno)))
        tb = tb.tb_next
    frames.reverse()
    return frames[:limit]


def _raised_in_wasm(tb: Any) -> bool:
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    return last is not None and last.tb_frame.f_code.co_filename in _registry


def as_trap(exc: BaseException) -> BaseException:
    """Map an exception from guest execution to the Trap it stands for (others pass unchanged)."""
    tb = exc.__traceback__
    if isinstance(exc, Trap):
        if not exc.frames:
            exc.frames = wasm_frames(tb)
        return exc
    if isinstance(exc, RecursionError):
        return Trap("call stack exhausted", wasm_frames(tb, 50))
    if isinstance(exc, (struct.error, IndexError)) and _raised_in_wasm(tb):
        return Trap(_OOB_MEMORY, wasm_frames(tb))
    if isinstance(exc, ZeroDivisionError) and _raised_in_wasm(tb):
        return Trap("integer divide by zero", wasm_frames(tb))
    return exc


def current_is_guest() -> bool:
    return bool(getattr(getcurrent(), "asyncwasm_guest", False))


__all__ = ["Store", "run_guest", "run_guest_sync", "await_in_guest", "as_trap", "anyio"]
