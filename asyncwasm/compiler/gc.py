"""Translation of typed function references and GC instructions into Python.

Each handler takes the function translator, the instruction's immediate and its index, like those of
``translate``. Allocations and anything that can trap call the helpers of ``runtime.gc`` (bound in
every instance's builtins) and land in a stack slot at once; ``ref.eq``, ``ref.i31`` and
``ref.test`` fold like the numeric operators. The conditional branches (``br_on_null``,
``br_on_non_null``, ``br_on_cast``, ``br_on_cast_fail``) put the reference in its slot and reuse the
translator's own ``br_if`` with a condition on that slot, so both the flat and the structured shape
get them for free.
"""

from __future__ import annotations

import re
from typing import Any

from ..binary.module import ArrayType, FuncType, StructType
from ..binary.types import NUMERIC_DEFAULTS, parse_ref, unpacked

_MASKS = {"i8": "0xFF", "i16": "0xFFFF"}
_SIGN = {"i8": "0x80", "i16": "0x8000"}
_ABSTRACT_EXPR = {
    "any": "{v} is not None",
    "func": "{v} is not None",
    "extern": "{v} is not None",
    "exn": "{v} is not None",
    "eq": "_is_eq({v})",
    "i31": "type({v}) is int",
    "struct": "type({v}) is _Struct",
    "array": "type({v}) is _Array",
    "none": "False",
    "nofunc": "False",
    "noextern": "False",
    "noexn": "False",
}
_KIND_CLASS = {"struct": "_Struct", "array": "_Array", "func": "_Func"}
_NAME = re.compile(r"[ls]\d+")


def _store(storage: str, code: str) -> str:
    """A value as a field of ``storage`` keeps it: packed fields hold the low bits, unsigned."""
    mask = _MASKS.get(storage)
    return code if mask is None else f"({code} & {mask})"


def _load(storage: str, code: str, op_kind: int) -> str:
    """A packed field read signed (``op_kind`` 1) or unsigned (2); others as they are."""
    if op_kind == 1 and storage in _SIGN:
        s = _SIGN[storage]
        return f"((({code} ^ {s}) - {s}) & 0xFFFFFFFF)"
    return code


def _default(storage: str) -> str:
    v = NUMERIC_DEFAULTS.get(storage)
    return "None" if v is None else repr(v)


def _names(t: Any, n: int) -> list[str]:
    """Pop the top ``n`` operands as plain names (a local or a slot; others are put in their
    slots first), so that inline code may read each more than once."""
    stack = t.stack
    for pos in range(len(stack) - n, len(stack)):
        if not _NAME.fullmatch(stack[pos].code):
            t.materialize(pos)
    return [str(e.code) for e in [t.pop() for _ in range(n)][::-1]]


def _top_slot(t: Any) -> str:
    """Put the top of the stack in its own slot and return the slot's name."""
    pos = len(t.stack) - 1
    t.materialize(pos)
    return str(t.stack[pos].code)


def test_expr(t: Any, v: str, rt: str) -> str:
    """A Python expression: whether the value in variable ``v`` is of reference type ``rt``."""
    r = parse_ref(rt)
    assert r is not None
    nullable, heap = r
    if isinstance(heap, str):
        base = _ABSTRACT_EXPR[heap].format(v=v)
    else:
        cid = t.info.type_ids[heap]
        kind = (
            "func"
            if isinstance(t.info.types[heap], FuncType)
            else "struct"
            if isinstance(t.info.types[heap], StructType)
            else "array"
        )
        base = f"_tsub({v}, {cid}, {_KIND_CLASS[kind]})"
    if nullable:
        return f"({v} is None or {base})"
    return f"({v} is not None and {base})"


def _canon(t: Any, rt: str) -> tuple[bool, Any]:
    r = parse_ref(rt)
    assert r is not None
    nullable, heap = r
    return nullable, heap if isinstance(heap, str) else t.info.type_ids[heap]


# ---- typed function references --------------------------------------------------------------------


def call_ref(t: Any, x: int, i: int) -> None:
    ref = t.pop()
    t.push_slot_value(f"_cref({ref.code})")
    slot = t.pop()
    t.emit_call(slot.code, t.info.types[x])


def ref_eq(t: Any, imm: Any, i: int) -> None:
    b = t.pop()
    a = t.pop()
    t.push(f"({a.code} == {b.code})", a.deps | b.deps, max(a.depth, b.depth) + 1)


def ref_as_non_null(t: Any, imm: Any, i: int) -> None:
    a = t.pop()
    t.push_slot_value(f"_nonnull({a.code})")


def _branch_on(t: Any, depth: int, i: int, cond: str, keep: bool) -> None:
    """Branch to ``depth`` when ``cond`` (on the top slot) holds; the reference stays on the stack
    for the branch when ``keep`` and is dropped from it otherwise (then left for the fall-through)."""
    v = _top_slot(t)
    if keep:
        t.push(cond, frozenset((v,)))
        t.do_br_if(depth, i)
    else:
        e = t.pop()
        t.push(cond, e.deps)
        t.do_br_if(depth, i)
        t.push(e.code, e.deps)


def br_on_null(t: Any, depth: int, i: int) -> None:
    v = _top_slot(t)
    _branch_on(t, depth, i, f"({v} is None)", keep=False)


def br_on_non_null(t: Any, depth: int, i: int) -> None:
    v = _top_slot(t)
    _branch_on(t, depth, i, f"({v} is not None)", keep=True)
    t.pop()


def br_on_cast(t: Any, imm: tuple[int, str, str], i: int) -> None:
    depth, _rt1, rt2 = imm
    v = _top_slot(t)
    _branch_on(t, depth, i, test_expr(t, v, rt2), keep=True)


def br_on_cast_fail(t: Any, imm: tuple[int, str, str], i: int) -> None:
    depth, _rt1, rt2 = imm
    v = _top_slot(t)
    _branch_on(t, depth, i, f"(not {test_expr(t, v, rt2)})", keep=True)


def ref_test(t: Any, rt: str, i: int) -> None:
    v = _top_slot(t)
    e = t.pop()
    t.push(test_expr(t, v, rt), e.deps, e.depth + 1)


def ref_cast(t: Any, rt: str, i: int) -> None:
    nullable, heap = _canon(t, rt)
    a = t.pop()
    t.push_slot_value(f"_rcast({a.code}, {nullable}, {heap!r})")


def convert(helper: str) -> Any:
    def handler(t: Any, imm: Any, i: int) -> None:
        a = t.pop()
        t.push_slot_value(f"{helper}({a.code})")

    return handler


def ref_i31(t: Any, imm: Any, i: int) -> None:
    a = t.pop()
    t.push(f"({a.code} & 0x7FFFFFFF)", a.deps, a.depth + 1)


# ---- structs --------------------------------------------------------------------------------------


def struct_new(t: Any, x: int, i: int) -> None:
    fields = t.info.types[x].fields
    vals = [t.pop() for _ in fields][::-1]
    body = ", ".join(_store(f.storage, v.code) for f, v in zip(fields, vals, strict=True))
    t.push_slot_value(f"_Struct({t.info.type_ids[x]}, [{body}])")


def struct_new_default(t: Any, x: int, i: int) -> None:
    body = ", ".join(_default(f.storage) for f in t.info.types[x].fields)
    t.push_slot_value(f"_Struct({t.info.type_ids[x]}, [{body}])")


def struct_get(kind: int) -> Any:
    def handler(t: Any, imm: tuple[int, int], i: int) -> None:
        x, k = imm
        storage = t.info.types[x].fields[k].storage
        (a,) = _names(t, 1)
        # inline when not null; the helper raises the trap otherwise
        t.push_slot_value(_load(storage, f"({a}.fields[{k}] if {a} is not None else _sget({a}, {k}))", kind))

    return handler


def struct_set(t: Any, imm: tuple[int, int], i: int) -> None:
    x, k = imm
    storage = t.info.types[x].fields[k].storage
    v = t.pop()
    (a,) = _names(t, 1)
    t.emit(f"if {a} is not None: {a}.fields[{k}] = {_store(storage, v.code)}")
    t.emit(f"else: _sset({a}, {k}, 0)")


# ---- arrays ---------------------------------------------------------------------------------------


def _bulk(t: Any, nargs: int, check: str | None) -> None:
    """Fuel before an array operation on n elements (n the top operand), as wasmtime charges it:
    one unit per element besides the instruction's own. A constant n costing at most SMALL_BULK
    joins the chunk; any other is charged once ``check`` (a runtime call raising the operation's
    trap, formatted with the operands) has passed, and then the fuel is checked, so a huge
    operation runs out of fuel before it is done and one that traps traps first."""
    from .translate import CHECK, SMALL_BULK  # translate imports this module's handlers

    n = t.stack[-1]
    if n.code.isdigit() and int(n.code) <= SMALL_BULK:
        t.chunk_cost += int(n.code)
        return
    for pos in range(len(t.stack) - nargs, len(t.stack)):
        t.materialize(pos)  # each operand is used twice
    args = [e.code for e in t.stack[len(t.stack) - nargs :]]
    t.close_chunk()
    if check is not None:
        t.emit(check.format(*args))
    t.emit(f"fu -= {args[-1]}")
    t.emit(CHECK)
    t.open_chunk()


def _elem(t: Any, x: int) -> str:
    at = t.info.types[x]
    assert isinstance(at, ArrayType)
    return at.field.storage


def _codes(t: Any, n: int) -> list[str]:
    vals = [t.pop() for _ in range(n)][::-1]
    return [v.code for v in vals]


def array_new(t: Any, x: int, i: int) -> None:
    _bulk(t, 1, None)
    v, n = _codes(t, 2)
    t.push_slot_value(f"_anew({t.info.type_ids[x]}, {_store(_elem(t, x), v)}, {n})")


def array_new_default(t: Any, x: int, i: int) -> None:
    _bulk(t, 1, None)
    (n,) = _codes(t, 1)
    t.push_slot_value(f"_anew({t.info.type_ids[x]}, {_default(_elem(t, x))}, {n})")


def array_new_fixed(t: Any, imm: tuple[int, int], i: int) -> None:
    x, n = imm
    storage = _elem(t, x)
    body = ", ".join(_store(storage, c) for c in _codes(t, n))
    t.push_slot_value(f"_Array({t.info.type_ids[x]}, [{body}])")


def array_new_data(t: Any, imm: tuple[int, int], i: int) -> None:
    x, d = imm
    _bulk(t, 2, f"_cdata({_elem(t, x)!r}, _D, {d}, {{0}}, {{1}})")
    s, n = _codes(t, 2)
    t.push_slot_value(f"_anewd({t.info.type_ids[x]}, {_elem(t, x)!r}, _D, {d}, {s}, {n})")


def array_new_elem(t: Any, imm: tuple[int, int], i: int) -> None:
    x, e = imm
    _bulk(t, 2, f"_celem(_E, {e}, {{0}}, {{1}})")
    s, n = _codes(t, 2)
    t.push_slot_value(f"_anewe({t.info.type_ids[x]}, _E, {e}, {s}, {n})")


def array_get(kind: int) -> Any:
    def handler(t: Any, x: int, i: int) -> None:
        a, k = _names(t, 2)
        inline = f"({a}.elems[{k}] if {a} is not None and {k} < len({a}.elems) else _aget({a}, {k}))"
        t.push_slot_value(_load(_elem(t, x), inline, kind))

    return handler


def array_set(t: Any, x: int, i: int) -> None:
    v = t.pop()
    a, k = _names(t, 2)
    t.emit(f"if {a} is not None and {k} < len({a}.elems): {a}.elems[{k}] = {_store(_elem(t, x), v.code)}")
    t.emit(f"else: _aset({a}, {k}, 0)")


def array_len(t: Any, imm: Any, i: int) -> None:
    (a,) = _codes(t, 1)
    t.push_slot_value(f"_alen({a})")


def array_fill(t: Any, x: int, i: int) -> None:
    _bulk(t, 4, "_crange({0}, {1}, {3})")
    a, k, v, n = _codes(t, 4)
    t.emit(f"_afill({a}, {k}, {_store(_elem(t, x), v)}, {n})")


def array_copy(t: Any, imm: tuple[int, int], i: int) -> None:
    _bulk(t, 5, "_crange({0}, {1}, {4}); _crange({2}, {3}, {4})")
    dst, d, src, s, n = _codes(t, 5)
    t.emit(f"_acopy({dst}, {d}, {src}, {s}, {n})")


def array_init_data(t: Any, imm: tuple[int, int], i: int) -> None:
    x, seg = imm
    _bulk(t, 4, f"_crange({{0}}, {{1}}, {{3}}); _cdata({_elem(t, x)!r}, _D, {seg}, {{2}}, {{3}})")
    a, d, s, n = _codes(t, 4)
    t.emit(f"_ainitd({a}, {_elem(t, x)!r}, _D, {seg}, {d}, {s}, {n})")


def array_init_elem(t: Any, imm: tuple[int, int], i: int) -> None:
    _x, seg = imm
    _bulk(t, 4, f"_crange({{0}}, {{1}}, {{3}}); _celem(_E, {seg}, {{2}}, {{3}})")
    a, d, s, n = _codes(t, 4)
    t.emit(f"_ainite({a}, _E, {seg}, {d}, {s}, {n})")


HANDLERS: dict[int, Any] = {
    0x14: call_ref,
    0xD3: ref_eq,
    0xD4: ref_as_non_null,
    0xD5: br_on_null,
    0xD6: br_on_non_null,
    0xFB00: struct_new,
    0xFB01: struct_new_default,
    0xFB02: struct_get(0),
    0xFB03: struct_get(1),
    0xFB04: struct_get(2),
    0xFB05: struct_set,
    0xFB06: array_new,
    0xFB07: array_new_default,
    0xFB08: array_new_fixed,
    0xFB09: array_new_data,
    0xFB0A: array_new_elem,
    0xFB0B: array_get(0),
    0xFB0C: array_get(1),
    0xFB0D: array_get(2),
    0xFB0E: array_set,
    0xFB0F: array_len,
    0xFB10: array_fill,
    0xFB11: array_copy,
    0xFB12: array_init_data,
    0xFB13: array_init_elem,
    0xFB14: ref_test,
    0xFB15: ref_test,
    0xFB16: ref_cast,
    0xFB17: ref_cast,
    0xFB18: br_on_cast,
    0xFB19: br_on_cast_fail,
    0xFB1A: convert("_intern"),
    0xFB1B: convert("_extern"),
    0xFB1C: ref_i31,
    0xFB1D: convert("_i31s"),
    0xFB1E: convert("_i31u"),
}

__all__ = ["HANDLERS", "test_expr", "unpacked"]
