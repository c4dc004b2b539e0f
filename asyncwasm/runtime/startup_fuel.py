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
function's call, whatever else it computes (measured against wasmtime 50). The image is mapped
into each memory that has data; wasmtime still runs its start-up code (one unit) when some memory
the module defines has no data of its own (multi-memory). A module that imports a memory gets no
mapped image at all: its start-up code copies each memory's image, padded out to whole 4 KiB host
pages, and is charged for everything as without an image.

A trap on the way (a segment out of bounds) loses the start-up's fuel, since nothing saved it; running
out of fuel keeps it. The start function's call saves it first.
"""

from __future__ import annotations

from ..binary.module import Module
from ..binary.simd_opcodes import SIMD_NAMES
from ..errors import FuelExhausted
from ..store import Store

_NUMERIC_CONSTS = frozenset({0x41, 0x42, 0x43, 0x44, SIMD_NAMES["v128.const"]})  # i32/i64/f32/f64/v128.const
_ALWAYS_DENSE = 16 << 20  # an image spanning no more than this is always made
_PAGE = 4096  # the host page size wasmtime pads images to
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


def image_sizes(module: Module) -> list[int]:
    """The bytes of each data image wasmtime builds, for the memories that have data, in memory
    order: the span of their non-empty segments with leading and trailing zero bytes cut (when
    there is a nonzero one), widened to whole host pages. Call only when ``static_data`` holds."""
    images: dict[int, bytearray] = {}
    starts: dict[int, int] = {}
    for d in module.datas:
        if d.mode != "active" or not d.init:
            continue
        off = _const_offset(d.offset)
        assert off is not None
        lo = min(starts.get(d.memory, off), off)
        image = images.setdefault(d.memory, bytearray())
        if lo < starts.get(d.memory, lo):
            image[:0] = bytes(starts[d.memory] - lo)
        starts[d.memory] = lo
        at = off - lo
        if len(image) < at + len(d.init):
            image.extend(bytes(at + len(d.init) - len(image)))
        image[at : at + len(d.init)] = d.init
    sizes = []
    for mem in sorted(images):
        image, start = images[mem], starts[mem]
        end = start + len(image)
        lead = len(image) - len(image.lstrip(b"\0"))
        if lead < len(image):  # some byte is nonzero: cut the zeros at both ends
            end -= len(image) - len(image.rstrip(b"\0"))
            start += lead
        sizes.append(-(-end // _PAGE) * _PAGE - start // _PAGE * _PAGE)
    return sizes


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
        with_data = {d.memory for d in module.datas if d.mode == "active" and d.init}
        # With a memory image (some static data), wasmtime charges the start-up code its entry
        # and the start function's call, and nothing for constant expressions and segments ...
        self.free = self.data_static and bool(with_data)
        # ... unless the module imports a memory: then no image is mapped, and the start-up code
        # copies each image (so ``image_copies``, instead of the segments one by one)
        self.image_copies: list[int] = []
        if self.free and n_imported_memories:
            self.free = False
            self.image_copies = image_sizes(module)
        self.needed = (
            bool(self.image_copies)
            or (self.free and len(with_data) < len(module.memories))  # a memory without an image
            or module.start is not None
            or not all(simple_global(gl.init) for gl in module.globals)
            or any(
                seg.mode == "passive" or (seg.mode == "active" and not static)
                for seg, static in zip(module.elems, self.elem_static, strict=True)
            )
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
