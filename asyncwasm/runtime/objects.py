"""The runtime objects an instance is made of and can share: functions, tables, globals and tags.

Compiled code calls ``Func.fn`` directly with the raw calling convention: i32/i64 as unsigned ints,
floats as Python floats, references as ``Func``/any object/None; no result is None, one result is the
value, several are a tuple.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Sequence
from typing import Any

from ..binary.module import FuncType, GlobalType, TableType
from ..binary.types import REGISTRY
from ..compiler.codegen import canonical_type_id
from ..errors import MEMORY_OOB, TABLE_OOB, Frame, Trap, WasmError
from ..scheduler import in_guest, native
from .budget import Budget
from .values import from_raw, to_raw

MAX_TABLE_ELEMENTS = 10_000_000
# per canonical function type: how ``Table.call`` converts the arguments, calls and converts back
_TABLE_CALLERS: dict[int, Callable[[Any, tuple[Any, ...]], Any]] = {}


class Func:
    """A function reference: what tables hold and ``ref.func`` makes, called through ``fn`` with the
    raw convention. ``instance.exports`` wraps an exported one in an ``ExportedFunc`` (the instance
    and this object), which converts Python values; ``instance.get_func(name)`` gives it raw."""

    __slots__ = ("fn", "type", "tid", "name", "__weakref__")

    def __init__(self, fn: Any, type: FuncType, name: str | None = None, tid: int | None = None) -> None:
        self.fn = fn
        self.type = type
        self.tid = canonical_type_id(type) if tid is None else tid  # its canonical type id
        self.name = name

    def __repr__(self) -> str:
        return f"<Func {self.name or '?'} {self.type}>"


class Table:
    """A table of references. Its size is capped at ``MAX_TABLE_ELEMENTS`` (and the embedder's
    limit), and every element is charged to the owning store's element ``Budget``: a table is a
    Python list, and a guest must not be able to ask for gigabytes of it."""

    __slots__ = ("elems", "type", "max", "budget")

    def __init__(
        self, type: TableType, init: Any = None, limit: int | None = None, budget: Budget | None = None
    ) -> None:
        self.type = type
        cap = MAX_TABLE_ELEMENTS if type.limits.max is None else min(type.limits.max, MAX_TABLE_ELEMENTS)
        if limit is not None:
            cap = min(cap, limit)
        self.max = cap
        self.budget = budget
        if type.limits.min > cap:
            raise Trap(f"table of {type.limits.min} elements exceeds the limit of {cap} elements")
        if budget is not None and not budget.take(type.limits.min):
            raise Trap(
                f"table of {type.limits.min} elements exceeds the store's budget of "
                f"{budget.total} table elements ({budget.remaining} left)"
            )
        self.elems: list[Any] = [init] * type.limits.min

    @property
    def size(self) -> int:
        """The number of elements."""
        return len(self.elems)

    def call(self, index: int, *args: Any) -> Any:
        """Call the function at ``index`` now, synchronously, from inside a host function, with the
        values an export call takes and gives (``ExportedFunc``): ints for i32/i64, signed or not,
        floats, references; it returns None, a value, or a tuple of values.

        This is how emscripten-style glue runs its ``invoke_*`` trampolines (setjmp/longjmp through
        exceptions): the guest called the host, and the host calls back into the guest's table. The
        call runs in the calling guest's turn, charged to its fuel and counted in its host-call
        nesting; an index past the size or a null entry traps as ``call_indirect`` does, and a
        wrong argument is a ``TypeError``. Outside a host function, call an export instead
        (``await instance.exports[name](...)``): guest code runs only in a guest's turn."""
        if not native.depth and not in_guest():  # inside a define_func host function, depth >= 1
            raise RuntimeError("Table.call runs guest code: call it from inside a host function")
        elems = self.elems
        if not 0 <= index < len(elems):
            raise Trap("undefined element")
        f = elems[index]
        if f is None:
            raise Trap("uninitialized element")
        if f.__class__ is not Func:  # an externref or GC table holds other things
            raise TypeError(f"Table.call: element {index} of a table of {self.type.elem} is not a function")
        call = _TABLE_CALLERS.get(f.tid)
        if call is None:
            from .host_call import guest_caller  # once per function type

            call = _TABLE_CALLERS[f.tid] = guest_caller(f)
        return call(f.fn, args)

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


def check_memory_range(mem: bytearray | mmap.mmap, d: int, n: int) -> None:
    if d + n > len(mem):
        raise Trap(MEMORY_OOB)


def table_fill(t: Table, i: int, v: Any, n: int) -> None:
    if i + n > len(t.elems):
        raise Trap(TABLE_OOB)
    t.elems[i : i + n] = [v] * n


def table_copy(dst: Table, src: Table, d: int, s: int, n: int) -> None:
    if s + n > len(src.elems) or d + n > len(dst.elems):
        raise Trap(TABLE_OOB)
    dst.elems[d : d + n] = src.elems[s : s + n]


def table_init(t: Table, segs: list[list[Any]], seg: int, d: int, s: int, n: int) -> None:
    elems = segs[seg]
    if s + n > len(elems) or d + n > len(t.elems):
        raise Trap(TABLE_OOB)
    t.elems[d : d + n] = elems[s : s + n]


def elem_drop(segs: list[list[Any]], seg: int) -> None:
    segs[seg] = []


def memory_init(mem: bytearray | mmap.mmap, datas: list[bytes], seg: int, d: int, s: int, n: int) -> None:
    data = datas[seg]
    if s + n > len(data) or d + n > len(mem):
        raise Trap(MEMORY_OOB)
    mem[d : d + n] = data[s : s + n]


def data_drop(datas: list[bytes], seg: int) -> None:
    datas[seg] = b""


def memory_copy(mem: bytearray, d: int, s: int, n: int) -> None:
    if s + n > len(mem) or d + n > len(mem):
        raise Trap(MEMORY_OOB)
    mem[d : d + n] = mem[s : s + n]


def memory_copy2(dst: bytearray, src: bytearray, d: int, s: int, n: int) -> None:
    """memory.copy between two different memories (multi-memory)."""
    if s + n > len(src) or d + n > len(dst):
        raise Trap(MEMORY_OOB)
    dst[d : d + n] = src[s : s + n]


def memory_fill(mem: bytearray, d: int, v: int, n: int) -> None:
    if d + n > len(mem):
        raise Trap(MEMORY_OOB)
    mem[d : d + n] = bytes((v & 0xFF,)) * n


# ---- exception handling -------------------------------------------------------------------------


class Tag:
    """An exception tag: what ``throw`` names and ``catch`` matches, by identity.

    Each tag definition makes a new one (two instances of a module have distinct tags); an import
    shares the exporter's object. A host makes one with ``Tag(FuncType(params, ()))`` to offer as an
    import, or takes a module's from its exports, to raise or catch its ``WasmException``s."""

    __slots__ = ("type", "name", "tid", "__weakref__")

    def __init__(self, type: FuncType, name: str | None = None, tid: int | None = None) -> None:
        if type.results:
            raise ValueError(f"a tag's type has no results, not {type}")
        self.type = type
        self.name = name
        self.tid = canonical_type_id(type) if tid is None else tid  # its canonical type id (imports match it)

    def __repr__(self) -> str:
        return f"<Tag {self.name or hex(id(self))} {self.type}>"


class WasmException(WasmError):
    """A WebAssembly exception (``throw``): a tag and the values it carries.

    It is the ``exnref`` value itself: compiled code raises it as a Python exception, ``try_table``
    catches it by tag identity, and one that leaves Wasm reaches the host as this exception, never
    as a ``Trap`` (traps are not catchable by Wasm, exceptions are). A host function may raise one
    (``raise WasmException(tag, [1, 2.5])``) for Wasm code to catch. ``payload`` holds the values
    as Python sees them (signed integers, as ``Instance.call`` returns them); ``values`` the raw
    ones compiled code uses. ``frames`` is the Wasm backtrace, filled in where it leaves Wasm."""

    def __init__(self, tag: Tag, payload: Sequence[Any] = ()) -> None:
        params = tag.type.params
        if len(payload) != len(params):
            raise TypeError(f"tag {tag.name or ''} carries {len(params)} values, got {len(payload)}")
        super().__init__(tag, tuple(payload))
        self.tag = tag
        self.values = tuple(to_raw(t, v) for t, v in zip(params, payload, strict=True))
        self.frames: list[Frame] = []

    @classmethod
    def raw(cls, tag: Tag, values: tuple[Any, ...]) -> WasmException:
        """The exception ``throw`` makes, from raw values (no conversion: the validator typed them)."""
        exc = cls.__new__(cls)
        exc.args = (tag, values)
        exc.tag = tag
        exc.values = values
        exc.frames = []
        return exc

    @property
    def payload(self) -> tuple[Any, ...]:
        """The values the exception carries, as Python sees them (i32 and i64 as signed ints)."""
        return tuple(from_raw(t, v) for t, v in zip(self.tag.type.params, self.values, strict=True))

    def __str__(self) -> str:
        name = self.tag.name or f"tag {self.tag.type}"
        text = f"uncaught wasm exception ({name}) with payload {list(self.payload)}"
        if self.frames:
            text += "\nwasm backtrace:\n" + "\n".join(
                f"  {i:>3}: {f.describe()}" for i, f in enumerate(self.frames)
            )
        return text


def throw(tag: Tag, values: tuple[Any, ...]) -> WasmException:
    """``throw``: a fresh exception (compiled code raises what this returns)."""
    return WasmException.raw(tag, values)


def rethrow(exn: WasmException | None) -> WasmException:
    """``throw_ref``/``rethrow``: the same exception again, with its old Python traceback dropped
    (a loop that catches and rethrows must not grow it)."""
    if exn is None:
        raise Trap("null exception reference")
    return exn.with_traceback(None)


# ---- tail calls ---------------------------------------------------------------------------------


class TailCall:
    """What the body of a function with tail calls returns for ``return_call``: the callee and its
    arguments, for the trampoline of the nearest ordinary caller to call (see compiler/tailcall.py)."""

    __slots__ = ("fn", "args")

    def __init__(self, fn: Any, args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
