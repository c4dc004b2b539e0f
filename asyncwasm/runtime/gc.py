"""The GC object model and the helpers compiled code calls for references and GC instructions.

GC objects are plain Python objects left to Python's collector: a ``Struct`` holds its canonical
type id and a list of field values, an ``Array`` its id and a list of elements (packed i8/i16
elements stored as their unsigned bits). ``i31`` references are Python ints (no other reference is
an int, so ``type(v) is int`` is the i31 test); null is None everywhere. An externref may be any
Python object: ``any.convert_extern`` wraps a host value in ``HostAny`` (unless it is a GC
reference that left through ``extern.convert_any``), and an i31 leaving as an externref is boxed in
``ExternI31`` so that a host int passed in is never mistaken for one.

Casts compare canonical type ids (``binary.types.REGISTRY``): a value's id is its type or one of its
declared subtypes, found in constant time from the supertype chain.
"""

from __future__ import annotations

import struct
from typing import Any

from ..binary.module import FuncType
from ..binary.types import NUMERIC_DEFAULTS, REGISTRY, parse_ref
from ..errors import MEMORY_OOB, TABLE_OOB, Trap
from .objects import Func

ARRAY_OOB = "out of bounds array access"
# Elements per array, as many as a table may hold: each is a pointer in a Python list, and a guest
# must not make the host allocate gigabytes with one instruction.
MAX_ARRAY_LENGTH = 10_000_000


class Struct:
    """A struct instance: ``tid`` its canonical type id, ``fields`` its values."""

    __slots__ = ("tid", "fields", "__weakref__")

    def __init__(self, tid: int, fields: list[Any]) -> None:
        self.tid = tid
        self.fields = fields

    def __repr__(self) -> str:
        return f"<Struct type {self.tid} {self.fields!r}>"


class Array:
    """An array instance: ``tid`` its canonical type id, ``elems`` its elements."""

    __slots__ = ("tid", "elems", "__weakref__")

    def __init__(self, tid: int, elems: list[Any]) -> None:
        self.tid = tid
        self.elems = elems

    def __repr__(self) -> str:
        return f"<Array type {self.tid} of {len(self.elems)}>"


class HostAny:
    """A host value (an externref) seen as an anyref after ``any.convert_extern``."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HostAny) and other.value is self.value

    def __hash__(self) -> int:
        return id(self.value)


class ExternI31:
    """An i31 reference seen as an externref after ``extern.convert_any``."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExternI31) and other.value == self.value

    def __hash__(self) -> int:
        return hash(("i31", self.value))

    def __repr__(self) -> str:
        return f"<i31 {self.value}>"


def internalize(v: Any) -> Any:
    if v is None or type(v) is Struct or type(v) is Array:
        return v
    if type(v) is ExternI31:
        return v.value
    return HostAny(v)


def externalize(v: Any) -> Any:
    if type(v) is int:
        return ExternI31(v)
    if type(v) is HostAny:
        return v.value
    return v


# ---- casts -----------------------------------------------------------------------------------------


def _is_eq(v: Any) -> bool:
    t = type(v)
    return t is int or t is Struct or t is Array


_ABSTRACT_TESTS = {
    "any": lambda v: True,
    "eq": _is_eq,
    "i31": lambda v: type(v) is int,
    "struct": lambda v: type(v) is Struct,
    "array": lambda v: type(v) is Array,
    "func": lambda v: True,
    "extern": lambda v: True,
    "exn": lambda v: True,
    "none": lambda v: False,
    "nofunc": lambda v: False,
    "noextern": lambda v: False,
    "noexn": lambda v: False,
}
_KIND_CLASS = {"struct": Struct, "array": Array, "func": Func}


def make_test(nullable: bool, heap: str | int) -> Any:
    """A predicate for ``ref.test``/``ref.cast``/``br_on_cast`` to (ref null? heap); ``heap`` is an
    abstract name or a canonical id."""
    if isinstance(heap, str):
        base = _ABSTRACT_TESTS[heap]
    else:
        cls = _KIND_CLASS[REGISTRY.kind(heap)]
        is_sub = REGISTRY.is_sub

        def base(v: Any, cls: Any = cls, cid: int = heap) -> bool:
            return type(v) is cls and (v.tid == cid or is_sub(v.tid, cid))

    if nullable:
        return lambda v: v is None or base(v)
    return lambda v: v is not None and base(v)


def make_cast(nullable: bool, heap: str | int) -> Any:
    test = make_test(nullable, heap)

    def cast(v: Any) -> Any:
        if test(v):
            return v
        raise Trap("cast failure")

    return cast


# ---- typed function references --------------------------------------------------------------------


def non_null(v: Any) -> Any:
    if v is None:
        raise Trap("null reference")
    return v


def call_ref_target(f: Any) -> Any:
    if f is None:
        raise Trap("null function reference")
    return f.fn


# ---- i31 -------------------------------------------------------------------------------------------


def i31_get_s(v: Any) -> int:
    if v is None:
        raise Trap("null i31 reference")
    return ((v ^ 0x40000000) - 0x40000000) & 0xFFFFFFFF


def i31_get_u(v: Any) -> int:
    if v is None:
        raise Trap("null i31 reference")
    return v  # type: ignore[no-any-return]


# ---- structs ---------------------------------------------------------------------------------------


def struct_get(s: Struct | None, i: int) -> Any:
    if s is None:
        raise Trap("null structure reference")
    return s.fields[i]


def struct_set(s: Struct | None, i: int, v: Any) -> None:
    if s is None:
        raise Trap("null structure reference")
    s.fields[i] = v


# ---- arrays ----------------------------------------------------------------------------------------


def _length(n: int) -> int:
    if n > MAX_ARRAY_LENGTH:
        raise Trap(f"out of memory: array of {n} elements exceeds the limit of {MAX_ARRAY_LENGTH}")
    return n


def array_new(tid: int, v: Any, n: int) -> Array:
    return Array(tid, [v] * _length(n))


_DATA_FORMATS = {"i8": "B", "i16": "H", "i32": "I", "i64": "Q", "f32": "f", "f64": "d"}
_DATA_SIZES = {"i8": 1, "i16": 2, "i32": 4, "i64": 8, "f32": 4, "f64": 8, "v128": 16}


def _from_data(storage: str, data: bytes, s: int, n: int) -> list[Any]:
    size = _DATA_SIZES[storage]
    if s + n * size > len(data):
        raise Trap(MEMORY_OOB)
    if storage == "v128":
        return [int.from_bytes(data[s + k * 16 : s + k * 16 + 16], "little") for k in range(n)]
    return list(struct.unpack_from(f"<{n}{_DATA_FORMATS[storage]}", data, s))


def array_new_data(tid: int, storage: str, datas: list[bytes], d: int, s: int, n: int) -> Array:
    return Array(tid, _from_data(storage, datas[d], s, n))  # bounded by the segment's size


def array_new_elem(tid: int, segs: list[list[Any]], e: int, s: int, n: int) -> Array:
    seg = segs[e]
    if s + n > len(seg):
        raise Trap(TABLE_OOB)
    return Array(tid, seg[s : s + n])


def _array(a: Array | None) -> list[Any]:
    if a is None:
        raise Trap("null array reference")
    return a.elems


def array_get(a: Array | None, i: int) -> Any:
    elems = _array(a)
    if i >= len(elems):
        raise Trap(ARRAY_OOB)
    return elems[i]


def array_set(a: Array | None, i: int, v: Any) -> None:
    elems = _array(a)
    if i >= len(elems):
        raise Trap(ARRAY_OOB)
    elems[i] = v


def array_len(a: Array | None) -> int:
    return len(_array(a))


def array_fill(a: Array | None, i: int, v: Any, n: int) -> None:
    elems = _array(a)
    if i + n > len(elems):
        raise Trap(ARRAY_OOB)
    elems[i : i + n] = [v] * n


def array_copy(dst: Array | None, d: int, src: Array | None, s: int, n: int) -> None:
    de = _array(dst)
    se = _array(src)
    if d + n > len(de) or s + n > len(se):
        raise Trap(ARRAY_OOB)
    de[d : d + n] = se[s : s + n]


def array_init_data(
    a: Array | None, storage: str, datas: list[bytes], seg: int, d: int, s: int, n: int
) -> None:
    elems = _array(a)
    if d + n > len(elems):
        raise Trap(ARRAY_OOB)
    elems[d : d + n] = _from_data(storage, datas[seg], s, n)


def array_init_elem(a: Array | None, segs: list[list[Any]], e: int, d: int, s: int, n: int) -> None:
    elems = _array(a)
    if d + n > len(elems):
        raise Trap(ARRAY_OOB)
    seg = segs[e]
    if s + n > len(seg):
        raise Trap(TABLE_OOB)
    elems[d : d + n] = seg[s : s + n]


def eval_const(op: int, imm: Any, stack: list[Any], types: list[Any], cids: list[int]) -> bool:
    """One GC instruction of a constant expression on ``stack``; False when ``op`` is not one."""
    if op == 0xFB00:
        fields = types[imm].fields
        n = len(fields)
        vals = stack[len(stack) - n :] if n else []
        del stack[len(stack) - n :]
        stack.append(Struct(cids[imm], [_pack(f.storage, v) for f, v in zip(fields, vals, strict=True)]))
    elif op == 0xFB01:
        stack.append(Struct(cids[imm], [NUMERIC_DEFAULTS.get(f.storage) for f in types[imm].fields]))
    elif op == 0xFB06:
        n = stack.pop()
        v = stack.pop()
        stack.append(array_new(cids[imm], _pack(types[imm].field.storage, v), n))
    elif op == 0xFB07:
        stack.append(array_new(cids[imm], NUMERIC_DEFAULTS.get(types[imm].field.storage), stack.pop()))
    elif op == 0xFB08:
        x, n = imm
        vals = stack[len(stack) - n :] if n else []
        del stack[len(stack) - n :]
        stack.append(Array(cids[x], [_pack(types[x].field.storage, v) for v in vals]))
    elif op == 0xFB1C:
        stack.append(stack.pop() & 0x7FFFFFFF)
    elif op == 0xFB1A:
        stack.append(internalize(stack.pop()))
    elif op == 0xFB1B:
        stack.append(externalize(stack.pop()))
    else:
        return False
    return True


def _pack(storage: str, v: Any) -> Any:
    return v & 0xFF if storage == "i8" else v & 0xFFFF if storage == "i16" else v


def check_range(a: Array | None, i: int, n: int) -> None:
    """The null and bounds checks of an array operation on elements i..i+n (before its fuel)."""
    if i + n > len(_array(a)):
        raise Trap(ARRAY_OOB)


def check_data(storage: str, datas: list[bytes], d: int, s: int, n: int) -> None:
    if s + n * _DATA_SIZES[storage] > len(datas[d]):
        raise Trap(MEMORY_OOB)


def check_elem(segs: list[list[Any]], e: int, s: int, n: int) -> None:
    if s + n > len(segs[e]):
        raise Trap(TABLE_OOB)


# ---- values from the host ---------------------------------------------------------------------------


def _host_test(nullable: bool, heap: str | int) -> Any:
    """Whether a value from Python may stand for (ref null? heap): compiled code trusts its types,
    so a host value of the wrong kind must be refused at the boundary, not met by an instruction."""
    if heap in ("any", "extern", "exn"):

        def base(v: Any) -> bool:
            return True
    elif heap == "func":

        def base(v: Any) -> bool:
            return type(v) is Func
    elif heap == "i31":

        def base(v: Any) -> bool:
            return type(v) is int and 0 <= v < 0x80000000
    elif heap == "eq":

        def base(v: Any) -> bool:
            return type(v) is Struct or type(v) is Array or (type(v) is int and 0 <= v < 0x80000000)
    else:
        return make_test(nullable, heap)
    if nullable:
        return lambda v: v is None or base(v)
    return lambda v: v is not None and base(v)


_HOST_CHECKS: dict[str, Any] = {}


def host_check(t: str) -> Any:
    """A converter that returns a host value given for canonical reference type ``t`` or raises
    TypeError; None for a type any value is right for (numbers convert elsewhere)."""
    if t in _HOST_CHECKS:
        return _HOST_CHECKS[t]
    r = parse_ref(t)
    check = None
    if r is not None and not (r[0] and r[1] in ("any", "extern", "exn")):
        test = _host_test(*r)

        def check(v: Any, test: Any = test, t: str = t) -> Any:
            if not test(v):
                raise TypeError(f"{v!r} is not a value of type {t}")
            return v

    _HOST_CHECKS[t] = check
    return check


_ARG_CHECKS: dict[int, tuple[Any, ...] | None] = {}


def arg_checks(tid: int) -> tuple[Any, ...] | None:
    """Per parameter of the function type with canonical id ``tid``, its host check or None; None
    when no parameter needs one (every 2.0 signature but those with funcref parameters)."""
    if tid in _ARG_CHECKS:
        return _ARG_CHECKS[tid]
    ct = REGISTRY.defs.get(tid)
    params = ct.comp.params if ct is not None and isinstance(ct.comp, FuncType) else ()
    checks = tuple(host_check(p) for p in params)
    out = checks if any(c is not None for c in checks) else None
    _ARG_CHECKS[tid] = out
    return out


_CASTS: dict[tuple[bool, str | int], Any] = {}


def ref_cast(v: Any, nullable: bool, heap: str | int) -> Any:
    """ref.cast: ``v`` when it is of type (ref null? heap) (heap a name or canonical id), else a trap."""
    cast = _CASTS.get((nullable, heap))
    if cast is None:
        cast = _CASTS[(nullable, heap)] = make_cast(nullable, heap)
    return cast(v)


def test_sub(v: Any, cid: int, cls: Any) -> bool:
    """Whether non-null ``v`` is an object of class ``cls`` whose type is ``cid`` or a subtype of it."""
    if type(v) is not cls:
        return False
    tid: int = v.tid
    return tid == cid or REGISTRY.is_sub(tid, cid)


HELPERS: dict[str, Any] = {
    "_crange": check_range,
    "_cdata": check_data,
    "_celem": check_elem,
    "_rcast": ref_cast,
    "_tsub": test_sub,
    "_is_eq": _is_eq,
    "_Func": Func,
    "_Struct": Struct,
    "_Array": Array,
    "_nonnull": non_null,
    "_cref": call_ref_target,
    "_i31s": i31_get_s,
    "_i31u": i31_get_u,
    "_intern": internalize,
    "_extern": externalize,
    "_sget": struct_get,
    "_sset": struct_set,
    "_anew": array_new,
    "_anewd": array_new_data,
    "_anewe": array_new_elem,
    "_aget": array_get,
    "_aset": array_set,
    "_alen": array_len,
    "_afill": array_fill,
    "_acopy": array_copy,
    "_ainitd": array_init_data,
    "_ainite": array_init_elem,
}
