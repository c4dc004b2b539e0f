"""The runtime objects an instance is made of and can share: functions, tables and globals.

Compiled code calls ``Func.fn`` directly with the raw calling convention: i32/i64 as unsigned ints,
floats as Python floats, references as ``Func``/any object/None; no result is None, one result is the
value, several are a tuple.
"""

from __future__ import annotations

from typing import Any

from ..binary.module import FuncType, GlobalType, TableType
from ..binary.types import REGISTRY
from ..compiler.codegen import canonical_type_id
from ..errors import MEMORY_OOB, TABLE_OOB, Trap

MAX_TABLE_ELEMENTS = 10_000_000


class Func:
    """A function reference: what tables hold, ``ref.func`` makes and instances export."""

    __slots__ = ("fn", "type", "tid", "name", "__weakref__")

    def __init__(self, fn: Any, type: FuncType, name: str | None = None, tid: int | None = None) -> None:
        self.fn = fn
        self.type = type
        self.tid = canonical_type_id(type) if tid is None else tid  # its canonical type id
        self.name = name

    def __repr__(self) -> str:
        return f"<Func {self.name or '?'} {self.type}>"


class ElementBudget:
    """The table elements a store's tables may still hold, all together.

    A per-table cap alone lets a module declare a hundred tables and grow each to the cap; every
    element is a pointer in a Python list, so the store as a whole is what must be bounded.
    """

    __slots__ = ("remaining", "total")

    def __init__(self, total: int) -> None:
        self.total = total
        self.remaining = total

    def take(self, n: int) -> bool:
        """Reserve ``n`` elements; False (and nothing reserved) when that would pass the budget."""
        if n > self.remaining:
            return False
        self.remaining -= n
        return True


class Table:
    """A table of references. Its size is capped at ``MAX_TABLE_ELEMENTS`` (and the embedder's
    limit), and every element is charged to the owning store's ``ElementBudget``: a table is a
    Python list, and a guest must not be able to ask for gigabytes of it."""

    __slots__ = ("elems", "type", "max", "budget")

    def __init__(self, type: TableType, init: Any = None, limit: int | None = None,
                 budget: ElementBudget | None = None) -> None:
        self.type = type
        cap = MAX_TABLE_ELEMENTS if type.limits.max is None else min(type.limits.max, MAX_TABLE_ELEMENTS)
        if limit is not None:
            cap = min(cap, limit)
        self.max = cap
        self.budget = budget
        if type.limits.min > cap:
            raise Trap(f"table of {type.limits.min} elements exceeds the limit of {cap} elements")
        if budget is not None and not budget.take(type.limits.min):
            raise Trap(f"table of {type.limits.min} elements exceeds the store's budget of "
                       f"{budget.total} table elements ({budget.remaining} left)")
        self.elems: list[Any] = [init] * type.limits.min

    @property
    def size(self) -> int:
        """The number of elements."""
        return len(self.elems)

    def grow(self, delta: int, init: Any) -> int:
        """table.grow: the old size, or -1 when the limit refuses it."""
        old = len(self.elems)
        if old + delta > self.max:
            return -1
        if self.budget is not None and not self.budget.take(delta):
            return -1
        self.elems.extend([init] * delta)
        return old


class Global:
    """A global shared through a cell: imported or exported ones."""

    __slots__ = ("value", "type")

    def __init__(self, type: GlobalType, value: Any) -> None:
        self.type = type
        self.value = value


# ---- helpers the compiled code calls ------------------------------------------------------------

def callee(table: Table, i: int, tid: int) -> Any:
    """call_indirect: the function at ``i``, after the bounds, null and signature checks."""
    elems = table.elems
    if i >= len(elems):
        raise Trap("undefined element")
    f = elems[i]
    if f is None:
        raise Trap("uninitialized element")
    if f.tid != tid and not REGISTRY.is_sub(f.tid, tid):
        raise Trap("indirect call type mismatch")
    return f.fn


def table_get(t: Table, i: int) -> Any:
    if i >= len(t.elems):
        raise Trap(TABLE_OOB)
    return t.elems[i]


def table_set(t: Table, i: int, v: Any) -> None:
    if i >= len(t.elems):
        raise Trap(TABLE_OOB)
    t.elems[i] = v


def table_size(t: Table) -> int:
    return len(t.elems)


def table_grow(t: Table, init: Any, n: int) -> int:
    return t.grow(n, init) & 0xFFFFFFFF


def table_grow64(t: Table, init: Any, n: int) -> int:
    """table.grow of a 64-bit table (table64): -1 is an i64."""
    return t.grow(n, init) & 0xFFFFFFFFFFFFFFFF


def check_table_range(t: Table, i: int, n: int) -> None:
    if i + n > len(t.elems):
        raise Trap(TABLE_OOB)


def check_memory_range(mem: bytearray, d: int, n: int) -> None:
    if d + n > len(mem):
        raise Trap(MEMORY_OOB)


def table_fill(t: Table, i: int, v: Any, n: int) -> None:
    if i + n > len(t.elems):
        raise Trap(TABLE_OOB)
    t.elems[i:i + n] = [v] * n


def table_copy(dst: Table, src: Table, d: int, s: int, n: int) -> None:
    if s + n > len(src.elems) or d + n > len(dst.elems):
        raise Trap(TABLE_OOB)
    dst.elems[d:d + n] = src.elems[s:s + n]


def table_init(t: Table, segs: list[list[Any]], seg: int, d: int, s: int, n: int) -> None:
    elems = segs[seg]
    if s + n > len(elems) or d + n > len(t.elems):
        raise Trap(TABLE_OOB)
    t.elems[d:d + n] = elems[s:s + n]


def elem_drop(segs: list[list[Any]], seg: int) -> None:
    segs[seg] = []


def memory_init(mem: bytearray, datas: list[bytes], seg: int, d: int, s: int, n: int) -> None:
    data = datas[seg]
    if s + n > len(data) or d + n > len(mem):
        raise Trap(MEMORY_OOB)
    mem[d:d + n] = data[s:s + n]


def data_drop(datas: list[bytes], seg: int) -> None:
    datas[seg] = b""


def memory_copy(mem: bytearray, d: int, s: int, n: int) -> None:
    if s + n > len(mem) or d + n > len(mem):
        raise Trap(MEMORY_OOB)
    mem[d:d + n] = mem[s:s + n]


def memory_copy2(dst: bytearray, src: bytearray, d: int, s: int, n: int) -> None:
    """memory.copy between two different memories (multi-memory)."""
    if s + n > len(src) or d + n > len(dst):
        raise Trap(MEMORY_OOB)
    dst[d:d + n] = src[s:s + n]


def memory_fill(mem: bytearray, d: int, v: int, n: int) -> None:
    if d + n > len(mem):
        raise Trap(MEMORY_OOB)
    mem[d:d + n] = bytes((v & 0xFF,)) * n
