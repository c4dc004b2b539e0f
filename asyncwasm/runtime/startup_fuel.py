"""What instantiating a module costs in fuel, as wasmtime charges it.

wasmtime compiles what instantiation must compute into one start-up function and charges it like any
other: one unit on entry (with a check), one per instruction of a constant expression it evaluates,
one per element or byte a segment it applies at run time copies (checked when that is more than 128),
and one for the call of the module's start function. What it can set up before any code runs costs
nothing and makes no start-up function at all:

- a global whose initializer is a single numeric constant;
- an active element segment of function indices at a constant offset in a table of the module's own,
  as long as every active segment before it is set up ahead too;
- the module's data, when every active data segment has a constant offset in a memory of the
  module's own, inside its initial size, and the image is not sparse (a span over 16 MiB holding
  less than half data): it is copied in as one image. Otherwise every active segment is applied,
  and charged, in order.

When the module has such a data image, the start-up code is charged only its entry and the start
function's call, whatever else it computes (measured against wasmtime 50).

A trap on the way (a segment out of bounds) loses the start-up's fuel, since nothing saved it; running
out of fuel keeps it. The start function's call saves it first.
"""

from __future__ import annotations

from ..binary.module import Module
from ..errors import FuelExhausted
from ..store import Store

_NUMERIC_CONSTS = frozenset({0x41, 0x42, 0x43, 0x44})  # i32/i64/f32/f64.const
_ALWAYS_DENSE = 16 << 20  # an image spanning no more than this is always made
_PAGE = 4096
SMALL_BULK = 128  # a copy costing at most this is not checked (as in compiled code)


def simple_global(init: list[tuple[int, object, int]]) -> bool:
    return len(init) == 1 and init[0][0] in _NUMERIC_CONSTS


def _const_offset(expr: list[tuple[int, object, int]] | None) -> int | None:
    if expr is not None and len(expr) == 1 and expr[0][0] in (0x41, 0x42):
        return int(expr[0][1])  # type: ignore[call-overload]
    return None


def static_elem(module: Module, k: int, n_imported_tables: int) -> bool:
    """Whether active element segment ``k`` is set up before any code runs."""
    seg = module.elems[k]
    return not seg.exprs and seg.table >= n_imported_tables and _const_offset(seg.offset) is not None


def static_data(module: Module, n_imported_memories: int, pages: list[int]) -> bool:
    """Whether the module's data goes in as one image (``pages``: the initial size of each memory
    the module defines, which come after the imported ones in the index space)."""
    spans: dict[int, list[int]] = {}  # memory -> [lowest start, highest end, bytes]
    for d in module.datas:
        if d.mode != "active":
            continue
        off = _const_offset(d.offset)
        if d.memory < n_imported_memories or off is None:
            return False
        end = off + len(d.init)
        if end > pages[d.memory - n_imported_memories] * 65536:
            return False
        if not d.init:
            continue
        span = spans.setdefault(d.memory, [off, end, 0])
        span[0], span[1], span[2] = min(span[0], off), max(span[1], end), span[2] + len(d.init)
    for lo, hi, size in spans.values():
        width = -(-hi // _PAGE) * _PAGE - lo // _PAGE * _PAGE
        if width > _ALWAYS_DENSE and size * 2 < width:
            return False
    return True


class Plan:
    """What of a module's instantiation is set up before any code runs, and whether anything is
    left for a start-up function to do (if so it costs one unit on entry)."""

    def __init__(self, module: Module, *, n_imported_tables: int, n_imported_memories: int) -> None:
        # Active segments are set up ahead only up to the first that cannot be: the rest are applied
        # in order at run time, the function-index ones among them too.
        self.elem_static = []
        ahead = True
        for k, seg in enumerate(module.elems):
            if seg.mode == "active":
                ahead = ahead and static_elem(module, k, n_imported_tables)
            self.elem_static.append(seg.mode == "active" and ahead)
        self.data_static = static_data(module, n_imported_memories, [mt.limits.min for mt in module.memories])
        # With a memory image (some static data), wasmtime charges the start-up code its entry
        # and the start function's call, and nothing for constant expressions and segments.
        self.free = self.data_static and any(d.mode == "active" and d.init for d in module.datas)
        self.needed = (
            module.start is not None
            or not all(simple_global(gl.init) for gl in module.globals)
            or any(seg.mode == "passive" or (seg.mode == "active" and not static)
                   for seg, static in zip(module.elems, self.elem_static, strict=True))
            or (not self.data_static and any(d.mode == "active" for d in module.datas))
        )


class StartupFuel:
    """The start-up function's fuel: a count that is only saved (added to the store) when the start
    function is called or when instantiation ends, and checked where wasmtime checks it."""

    def __init__(self, store: Store, needed: bool, free: bool = False) -> None:
        self.store = store
        self.pending = 0
        self.free = free
        if needed:
            self.pending = 1  # the start-up function's own entry
            self.check()

    def charge(self, units: int) -> None:
        if not self.free:
            self.pending += units

    def copy(self, units: int) -> None:
        """A segment applied at run time, once its bounds held: one unit an element or byte."""
        if not self.free:
            self.pending += units
            if units > SMALL_BULK:
                self.check()

    def check(self) -> None:
        store = self.store
        if store.fuel_limit is not None and store.fuel_used + self.pending >= store.fuel_limit:
            store.fuel_used = store.fuel_limit
            self.pending = 0
            raise FuelExhausted()

    def save(self, calls_start: bool) -> None:
        """Add the count to the store (with the start function's call, which saves it)."""
        store = self.store
        store.account()
        store.fuel_used += self.pending + (1 if calls_start else 0)
        self.pending = 0
        store.settle()  # every instance's grant from what is left now
