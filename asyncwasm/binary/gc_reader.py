"""Decoding of typed function references and GC: reference types, the 3.0 type section, 0xFB opcodes.

Kept apart from ``reader`` so the 2.0 paths there stay as they were: the reader calls in here only
on a byte its own tables do not know (a reference type other than funcref/externref, a type section
entry other than a plain ``func``, the 0xFB prefix). Every use of a feature is checked against the
feature set, so a 2.0 module using one fails with ``UnsupportedFeature`` naming it.
"""

from __future__ import annotations

from typing import Any

from ..errors import MalformedModule
from ..features import Features
from .module import ArrayType, FieldType, FuncType, StructType, SubType
from .types import HEAP_CODES, ref_type

_FUNC_REF_HEAPS = {"func", "extern"}  # what function references alone allow (exn comes with exceptions)
_EXN_HEAPS = {"exn", "noexn"}


def _uleb32(data: bytes, pos: int) -> tuple[int, int]:
    from .reader import _u32

    return _u32(data, pos)


def _check_heap_feature(h: str | int, features: Features, pos: int) -> None:
    if isinstance(h, int) or h in _FUNC_REF_HEAPS:
        features.require("function_references", pos)
    elif h in _EXN_HEAPS:
        features.require("exceptions", pos)
    else:
        features.require("gc", pos)


def read_heap(data: bytes, pos: int, features: Features) -> tuple[str | int, int]:
    """A heap type (an s33: negative one-byte codes are abstract, others a type index)."""
    from .reader import _sleb

    b = data[pos]
    if b & 0xC0 == 0x40:  # one byte, negative: an abstract heap type
        h = HEAP_CODES.get(b)
        if h is None:
            raise MalformedModule(f"malformed heap type {b:#04x}", pos)
        return h, pos + 1
    v, end = _sleb(data, pos, 33)
    if v < 0:
        raise MalformedModule("malformed heap type", pos)
    return v, end


def read_reftype(b: int, data: bytes, pos: int, features: Features) -> tuple[str, int] | None:
    """A reference type starting with byte ``b`` at ``pos``; None when ``b`` starts none."""
    if b == 0x63 or b == 0x64:
        h, end = read_heap(data, pos + 1, features)
        _check_heap_feature(h, features, pos)
        return ref_type(b == 0x63, h), end
    name = HEAP_CODES.get(b)
    if name is None:
        return None
    if name not in _FUNC_REF_HEAPS:
        _check_heap_feature(name, features, pos)
    return ref_type(True, name), pos + 1


def read_null_heap(data: bytes, pos: int, features: Features) -> tuple[str, int]:
    """``ref.null``'s immediate: a heap type, read back as the nullable reference type."""
    h, end = read_heap(data, pos, features)
    if h not in _FUNC_REF_HEAPS:
        _check_heap_feature(h, features, pos)
    return ref_type(True, h), end


# ---- the type section --------------------------------------------------------------------------------


def rec_type(dec: Any) -> None:
    """One entry of the type section: a recursion group, or a single (sub)type; appended to the
    decoder's module with its subtype and group information."""
    m = dec.module
    data = dec.data
    pos = dec.pos
    if data[pos] == 0x4E:
        dec.features.require("gc", pos)
        dec.pos += 1
        n = dec.len32()
        start = len(m.types)
        for _ in range(n):
            _sub_type(dec)
        m.rec_groups.append((start, n))
        return
    m.rec_groups.append((len(m.types), 1))
    _sub_type(dec)


def _sub_type(dec: Any) -> None:
    m = dec.module
    pos = dec.pos
    form = dec.data[pos]
    final, supers = True, ()
    if form in (0x50, 0x4F):
        dec.features.require("gc", pos)
        dec.pos += 1
        final = form == 0x4F
        supers = tuple(dec.u32() for _ in range(dec.len32()))
    m.types.append(_comp_type(dec))
    m.subtypes.append(SubType(final, supers))


def _comp_type(dec: Any) -> Any:
    pos = dec.pos
    form = dec.byte()
    if form == 0x60:
        params = tuple(dec.valtype() for _ in range(dec.len32()))
        results = tuple(dec.valtype() for _ in range(dec.len32()))
        return FuncType(params, results)
    if form == 0x5F:
        dec.features.require("gc", pos)
        return StructType(tuple(_field_type(dec) for _ in range(dec.len32())))
    if form == 0x5E:
        dec.features.require("gc", pos)
        return ArrayType(_field_type(dec))
    if form & 0x80:
        raise MalformedModule("integer representation too long", pos + 1)
    raise MalformedModule(f"malformed function type {form:#04x}", pos)


def _field_type(dec: Any) -> FieldType:
    b = dec.data[dec.pos]
    if b == 0x78:
        dec.pos += 1
        storage = "i8"
    elif b == 0x77:
        dec.pos += 1
        storage = "i16"
    else:
        storage = dec.valtype()
    pos = dec.pos
    mut = dec.byte()
    if mut > 1:
        raise MalformedModule("malformed mutability", pos)
    return FieldType(storage, mut == 1)


# ---- instructions -------------------------------------------------------------------------------------

# 0xFB sub-opcode -> (name, immediate shape): "" none, "t" a type index, "tf" type and field,
# "tn" type and count, "td" type and data, "te" type and elem, "tt" two types, "ref"/"refnull" a
# heap type, "cast" br_on_cast's flags, label and two heap types.
GC_OPS: dict[int, tuple[str, str]] = {
    0x00: ("struct.new", "t"),
    0x01: ("struct.new_default", "t"),
    0x02: ("struct.get", "tf"),
    0x03: ("struct.get_s", "tf"),
    0x04: ("struct.get_u", "tf"),
    0x05: ("struct.set", "tf"),
    0x06: ("array.new", "t"),
    0x07: ("array.new_default", "t"),
    0x08: ("array.new_fixed", "tn"),
    0x09: ("array.new_data", "td"),
    0x0A: ("array.new_elem", "te"),
    0x0B: ("array.get", "t"),
    0x0C: ("array.get_s", "t"),
    0x0D: ("array.get_u", "t"),
    0x0E: ("array.set", "t"),
    0x0F: ("array.len", ""),
    0x10: ("array.fill", "t"),
    0x11: ("array.copy", "tt"),
    0x12: ("array.init_data", "td"),
    0x13: ("array.init_elem", "te"),
    0x14: ("ref.test", "ref"),
    0x15: ("ref.test", "refnull"),
    0x16: ("ref.cast", "ref"),
    0x17: ("ref.cast", "refnull"),
    0x18: ("br_on_cast", "cast"),
    0x19: ("br_on_cast_fail", "cast"),
    0x1A: ("any.convert_extern", ""),
    0x1B: ("extern.convert_any", ""),
    0x1C: ("ref.i31", ""),
    0x1D: ("i31.get_s", ""),
    0x1E: ("i31.get_u", ""),
}
GC_NAMES = {0xFB00 | sub: name for sub, (name, _shape) in GC_OPS.items()}
_USES_DATA = {0x09, 0x12}


def decode_gc_instr(data: bytes, pos: int, start: int, features: Features) -> tuple[int, Any, int, bool]:
    """The 0xFB instruction at ``start`` (``pos`` after the prefix): (op, imm, next pos, uses data)."""
    sub, pos = _uleb32(data, pos)
    spec = GC_OPS.get(sub)
    if spec is None:
        raise MalformedModule(f"illegal opcode fb {sub:#x}", start)
    features.require("gc", start)
    shape = spec[1]
    imm: Any = None
    if shape == "t":
        imm, pos = _uleb32(data, pos)
    elif shape in ("tf", "tn", "td", "te", "tt"):
        x, pos = _uleb32(data, pos)
        y, pos = _uleb32(data, pos)
        imm = (x, y)
    elif shape in ("ref", "refnull"):
        h, pos = read_heap(data, pos, features)
        imm = ref_type(shape == "refnull", h)
    elif shape == "cast":
        flags = data[pos]
        if flags > 3:
            raise MalformedModule("malformed cast flags", pos)
        label, pos = _uleb32(data, pos + 1)
        h1, pos = read_heap(data, pos, features)
        h2, pos = read_heap(data, pos, features)
        imm = (label, ref_type(bool(flags & 1), h1), ref_type(bool(flags & 2), h2))
    return 0xFB00 | sub, imm, pos, sub in _USES_DATA
