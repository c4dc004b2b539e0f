"""The WebAssembly 2.0 binary decoder: bytes in, a plain ``Module`` out.

Scope: MVP, sign extension, non-trapping float-to-int, multi-value, bulk memory and reference
types; memory64 and table64 (limits flags 4 and 5, u64 bounds and memarg offsets) and multiple
memories (memory indices in memargs, flagged by bit 6, and in the memory instructions), each read
only when the feature set enables it, else as 2.0 reads those bytes; SIMD and relaxed SIMD when
the feature set enables them (``simd_decode``), else refused with ``UnsupportedFeature``. The
reference types of typed function references and GC, the 3.0 type section and the 0xFB
instructions are read by ``gc_reader``. Every other problem raises ``MalformedModule`` whose
message contains the text the spec test suite expects, with the absolute byte offset.

The reading model follows the spec's reference decoder: everything reads from the whole file and
sizes are checked afterwards ("section size mismatch"), so a body that runs past its declared size
is reported the same way the spec tests expect. Function bodies are the hot path (a big module
has millions of instructions), so they are decoded by one flat byte loop over a 256-entry table of
immediate kinds, with inline fast paths for one-byte LEB128s; running off the end of the input
surfaces as ``IndexError`` / ``struct.error`` and is turned into "unexpected end" in one place
instead of bounds-checking every byte.
"""

from __future__ import annotations

import struct
from typing import Any, Literal

from ..errors import MalformedModule, UnsupportedFeature
from ..features import WASM3, Features
from .gc_reader import decode_gc_instr, read_null_heap, read_reftype, rec_type
from .module import (
    EXTERNREF,
    F32,
    F64,
    FUNCREF,
    I32,
    I64,
    V128,
    Code,
    Data,
    Elem,
    Export,
    ExternKind,
    FuncType,
    Global,
    GlobalType,
    Import,
    Instr,
    Limits,
    MemoryType,
    Module,
    Names,
    SubType,
    TableType,
)
from .opcodes import OPCODES
from .simd_decode import decode_simd

__all__ = ["decode_module", "MAX_LOCALS"]

MAGIC = b"\x00asm"
VERSION = b"\x01\x00\x00\x00"
MAX_LOCALS = 50_000  # declared locals per function; the same cap wasm-tools uses

EOS = "unexpected end of section or function"

_VALTYPES = {0x7F: I32, 0x7E: I64, 0x7D: F32, 0x7C: F64, 0x70: FUNCREF, 0x6F: EXTERNREF}
_REFTYPES = {0x70: FUNCREF, 0x6F: EXTERNREF}
_V128 = 0x7B
_VALTYPES_SIMD = {**_VALTYPES, _V128: V128}  # with SIMD enabled
_EXTERN_KINDS: tuple[ExternKind, ...] = ("func", "table", "memory", "global", "tag")
_FINAL = SubType(True, ())

# Where each known section may appear: a section must come strictly after the previous one.
# The data count section (12) sits between element (9) and code (10).
# The tag section (13, exception handling) sits between memory (5) and global (6).
_SECTION_ORDER: dict[int, float] = {
    1: 1,
    2: 2,
    3: 3,
    4: 4,
    5: 5,
    13: 5.5,
    6: 6,
    7: 7,
    8: 8,
    9: 9,
    12: 10,
    10: 11,
    11: 12,
}

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


# --- immediate kinds --------------------------------------------------------------------------

(
    K_ILLEGAL,
    K_NONE,
    K_IDX,
    K_BLOCK,
    K_END,
    K_ELSE,
    K_I32,
    K_I64,
    K_F32,
    K_F64,
    K_MEMARG,
    K_BR_TABLE,
    K_CALL_INDIRECT,
    K_ZERO,
    K_REFTYPE,
    K_SELECT_T,
    K_PREFIX_FC,
    K_SIMD,
    K_PREFIX_FB,
    K_EXT,
) = range(20)

_KIND_CODES = {
    "none": K_NONE,
    "label": K_IDX,
    "func": K_IDX,
    "local": K_IDX,
    "global": K_IDX,
    "table": K_IDX,
    "elem": K_IDX,
    "data": K_IDX,
    "block": K_BLOCK,
    "i32": K_I32,
    "i64": K_I64,
    "f32": K_F32,
    "f64": K_F64,
    "memarg": K_MEMARG,
    "br_table": K_BR_TABLE,
    "call_indirect": K_CALL_INDIRECT,
    "memory": K_ZERO,
    "reftype": K_REFTYPE,
    "select_t": K_SELECT_T,
    "type": K_IDX,
    "tag": K_EXT,
    "try_table": K_EXT,
}


# Opcodes decoded by ``_decode_ext``: tail calls and exception handling, each gated on its feature.
_EXT_FEATURE = {
    0x12: "tail_call",
    0x13: "tail_call",
    0x15: "tail_call",
    0x08: "exceptions",
    0x0A: "exceptions",
    0x1F: "exceptions",
    0x06: "legacy_exceptions",
    0x07: "legacy_exceptions",
    0x09: "legacy_exceptions",
    0x18: "legacy_exceptions",
    0x19: "legacy_exceptions",
}


def _build_kinds() -> list[int]:
    kinds = [K_ILLEGAL] * 256
    for op, (_name, kind) in OPCODES.items():
        if op < 0x100:
            kinds[op] = _KIND_CODES[kind]
    kinds[0x0B] = K_END
    kinds[0x05] = K_ELSE
    kinds[0xFC] = K_PREFIX_FC
    kinds[0xFD] = K_SIMD
    kinds[0xFB] = K_PREFIX_FB
    for op in _EXT_FEATURE:
        kinds[op] = K_EXT
    return kinds


_KINDS = _build_kinds()
# 0xFC sub-opcodes: sub -> kind name from the opcode table.
_FC_KINDS: dict[int, str] = {op & 0xFF: kind for op, (_n, kind) in OPCODES.items() if op >= 0xFC00}


# --- LEB128 (slow paths; callers inline the one-byte case) ------------------------------------


def _uleb(data: bytes, pos: int, bits: int) -> tuple[int, int]:
    """Unsigned LEB128 of at most ``bits`` bits, with the spec's two distinct error texts."""
    result = 0
    shift = 0
    n = bits
    while True:
        if n <= 0:
            raise MalformedModule("integer representation too long", pos)
        b = data[pos]
        if n < 7 and (b & 0x7F) >= (1 << n):
            raise MalformedModule("integer too large", pos)
        result |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return result, pos
        shift += 7
        n -= 7


def _sleb(data: bytes, pos: int, bits: int) -> tuple[int, int]:
    """Signed LEB128 of at most ``bits`` bits; unused high bits must all equal the sign bit."""
    result = 0
    shift = 0
    n = bits
    while True:
        if n <= 0:
            raise MalformedModule("integer representation too long", pos)
        b = data[pos]
        if n < 7:
            mask = (-1 << (n - 1)) & 0x7F
            if (b & mask) != 0 and (b & mask) != mask:
                raise MalformedModule("integer too large", pos)
        result |= (b & 0x7F) << shift
        pos += 1
        shift += 7
        if not b & 0x80:
            if b & 0x40:
                result -= 1 << shift
            return result, pos
        n -= 7


def _u32(data: bytes, pos: int) -> tuple[int, int]:
    b = data[pos]
    if b < 0x80:
        return b, pos + 1
    return _uleb(data, pos, 32)


# --- instruction sequences ----------------------------------------------------------------------


def _valtype_error(b: int, pos: int) -> MalformedModule:
    if b == _V128:
        return UnsupportedFeature("simd (not enabled in this feature set)", pos)
    if b & 0x80:  # read by the spec as a 7-bit signed LEB: a continuation byte is too long
        return MalformedModule("integer representation too long", pos + 1)
    return MalformedModule(f"malformed value type {b:#04x}", pos)


def _reftype_error(b: int, pos: int) -> MalformedModule:
    if b & 0x80:
        return MalformedModule("integer representation too long", pos + 1)
    return MalformedModule(f"malformed reference type {b:#04x}", pos)


def _memarg(data: bytes, pos: int, multi: bool, offset_bits: int) -> tuple[tuple[int, ...], int]:
    """A memarg whose flags are not a plain one-byte alignment below 32 (the decoder's fast path).

    With multiple memories, bit 6 of the flags says a memory index follows (flags must stay below
    128); without, the flags are the alignment alone and must stay below 32, as 2.0 reads them.
    The offset is a u64 under memory64, else a u32. Returns the immediate and the position after it.
    """
    start = pos
    flags, pos = _u32(data, pos)
    mem = 0
    if not multi:
        if flags >= 32:
            hint = " (a memory index needs multi-memory)" if 0x40 <= flags < 0x80 else ""
            raise MalformedModule(f"malformed memop flags{hint}", pos - 1)
    else:
        if flags >= 0x80:
            raise MalformedModule("malformed memop flags", start)
        if flags & 0x40:
            mem, pos = _u32(data, pos)
        flags &= 0x3F
    b = data[pos]
    if b < 0x80:
        pos += 1
    else:
        b, pos = _uleb(data, pos, offset_bits)
    return ((flags, b) if mem == 0 else (flags, b, mem)), pos


def _memidx(data: bytes, pos: int, multi: bool) -> tuple[int, int]:
    """A memory index: any u32 with multiple memories, else the reserved zero byte of 2.0."""
    if multi:
        return _u32(data, pos)
    if data[pos] != 0:
        raise MalformedModule("zero byte expected (a memory index needs multi-memory)", pos)
    return 0, pos + 1


def _gate(features: Features, name: str, as_2_0: str, offset: int) -> None:
    """Refuse what feature ``name`` brings when it is off: an ``UnsupportedFeature`` naming it, whose
    message also says what Wasm 2.0 calls the same bytes (the 2.0 spec tests expect those words)."""
    if not getattr(features, name):
        raise UnsupportedFeature(f"{name.replace('_', '-')} is not enabled ({as_2_0} in Wasm 2.0)", offset)


def _blocktype(data: bytes, pos: int, start: int, features: Features) -> tuple[Any, int]:
    """A block type (as in ``block``): None, a value type, or a type index."""
    b = data[pos]
    if b == 0x40:
        return None, pos + 1
    if b & 0xC0 == 0x40:
        t = (_VALTYPES_SIMD if features.simd else _VALTYPES).get(b)
        if t is None:
            ref = read_reftype(b, data, pos, features)  # exnref, (ref exn), ...
            if ref is None:
                raise _valtype_error(b, pos)
            return ref
        return t, pos + 1
    x, pos = _sleb(data, pos, 33)
    if x < 0:
        raise MalformedModule("malformed block type", start + 1)
    return x, pos


def _decode_ext(
    op: int, data: bytes, pos: int, start: int, ctl: list[int], features: Features
) -> tuple[Instr, int]:
    """One tail-call or exception instruction (``_EXT_FEATURE``), keeping the block nesting in
    ``ctl`` (3 an open ``try``, 4 a ``try`` past its first ``catch``)."""
    feature = _EXT_FEATURE[op]
    if not getattr(features, feature):
        _gate(features, feature, f"illegal opcode {op:#04x}", start)
    imm: Any = None
    if op in (0x12, 0x15, 0x08, 0x07, 0x09):  # an index: function, type, tag, tag, label
        imm, pos = _u32(data, pos)
    elif op == 0x13:
        typeidx, pos = _u32(data, pos)
        tableidx, pos = _u32(data, pos)
        imm = (typeidx, tableidx)
    elif op == 0x06:  # try
        imm, pos = _blocktype(data, pos, start, features)
        ctl.append(3)
    elif op == 0x1F:  # try_table: a block type and its catch clauses
        bt, pos = _blocktype(data, pos, start, features)
        catches = []
        n, pos = _len32(data, pos)
        for _ in range(n):
            kpos = pos
            kind = data[pos]
            pos += 1
            if kind > 3:
                raise MalformedModule("malformed catch clause", kpos)
            tag = None
            if kind < 2:
                tag, pos = _u32(data, pos)
            label, pos = _u32(data, pos)
            catches.append((kind, tag, label))
        imm = (bt, tuple(catches))
        ctl.append(0)
    if op in (0x07, 0x19):
        if not ctl or ctl[-1] not in (3, 4):
            raise MalformedModule("END opcode expected", start)
        ctl[-1] = 4
    elif op == 0x18:  # delegate ends its try
        imm, pos = _u32(data, pos)
        if not ctl or ctl[-1] != 3:
            raise MalformedModule("END opcode expected", start)
        ctl.pop()
    return (op, imm, start), pos


def _decode_instrs(data: bytes, pos: int, features: Features = WASM3) -> tuple[list[Instr], int, bool]:
    """Decode instructions up to and including the ``end`` that closes the sequence.

    Returns the instructions (ending with that ``end``), the position after it, and whether
    ``memory.init`` or ``data.drop`` occurred (they require a data count section).
    """
    kinds = _KINDS
    multi = features.multi_memory
    offset_bits = 64 if features.memory64 else 32
    valtypes = _VALTYPES_SIMD if features.simd else _VALTYPES
    out: list[Instr] = []
    append = out.append
    ctl: list[int] = []  # open blocks: 0 block/loop, 1 if, 2 if after its else
    uses_data = False
    while True:
        start = pos
        op = data[pos]
        pos += 1
        k = kinds[op]
        if k == K_NONE:
            append((op, None, start))
        elif k == K_IDX:
            b = data[pos]
            if b < 0x80:
                pos += 1
            else:
                b, pos = _uleb(data, pos, 32)
            append((op, b, start))
        elif k == K_I32:
            b = data[pos]
            if b < 0x40:
                pos += 1
            elif b < 0x80:
                b = (b - 0x80) & 0xFFFFFFFF
                pos += 1
            else:
                b, pos = _sleb(data, pos, 32)
                b &= 0xFFFFFFFF
            append((op, b, start))
        elif k == K_END:
            append((op, None, start))
            if not ctl:
                return out, pos, uses_data
            ctl.pop()
        elif k == K_MEMARG:
            align = data[pos]
            if align < 0x20:  # memory 0, a one-byte alignment: the common case
                pos += 1
                b = data[pos]
                if b < 0x80:
                    pos += 1
                else:
                    b, pos = _uleb(data, pos, offset_bits)
                append((op, (align, b), start))
            else:
                marg, pos = _memarg(data, pos, multi, offset_bits)
                append((op, marg, start))
        elif k == K_BLOCK:
            b = data[pos]
            if b == 0x40:
                append((op, None, start))
                pos += 1
            elif b & 0xC0 == 0x40:
                t = valtypes.get(b)
                if t is None:
                    ref = read_reftype(b, data, pos, features)
                    if ref is None:
                        raise _valtype_error(b, pos)
                    t, pos = ref
                else:
                    pos += 1
                append((op, t, start))
            else:  # a type index, encoded as a positive s33
                b, pos = _sleb(data, pos, 33)
                if b < 0:
                    raise MalformedModule("malformed block type", start + 1)
                append((op, b, start))
            ctl.append(1 if op == 0x04 else 0)
        elif k == K_ELSE:
            if not ctl or ctl[-1] != 1:
                raise MalformedModule("END opcode expected", start)
            ctl[-1] = 2
            append((op, None, start))
        elif k == K_I64:
            b = data[pos]
            if b < 0x40:
                pos += 1
            elif b < 0x80:
                b = (b - 0x80) & 0xFFFFFFFFFFFFFFFF
                pos += 1
            else:
                b, pos = _sleb(data, pos, 64)
                b &= 0xFFFFFFFFFFFFFFFF
            append((op, b, start))
        elif k == K_F32:
            append((op, _U32.unpack_from(data, pos)[0], start))
            pos += 4
        elif k == K_F64:
            append((op, _U64.unpack_from(data, pos)[0], start))
            pos += 8
        elif k == K_BR_TABLE:
            count, pos = _len32(data, pos)
            labels = []
            for _ in range(count):
                b = data[pos]
                if b < 0x80:
                    pos += 1
                else:
                    b, pos = _uleb(data, pos, 32)
                labels.append(b)
            default, pos = _u32(data, pos)
            append((op, (tuple(labels), default), start))
        elif k == K_CALL_INDIRECT:
            typeidx, pos = _u32(data, pos)
            tableidx, pos = _u32(data, pos)
            append((op, (typeidx, tableidx), start))
        elif k == K_ZERO:  # memory.size and memory.grow: a memory index
            if data[pos] == 0:
                pos += 1
                append((op, 0, start))
            else:
                mem, pos = _memidx(data, pos, multi)
                append((op, mem, start))
        elif k == K_REFTYPE:
            b = data[pos]
            t = _REFTYPES.get(b)
            if t is None:
                if not (features.function_references or features.gc):
                    raise _reftype_error(b, pos)
                t, pos = read_null_heap(data, pos, features)
            else:
                pos += 1
            append((op, t, start))
        elif k == K_SELECT_T:
            count, pos = _len32(data, pos)
            types = []
            for _ in range(count):
                b = data[pos]
                t = valtypes.get(b)
                if t is None:
                    ref = read_reftype(b, data, pos, features)
                    if ref is None:
                        raise _valtype_error(b, pos)
                    t, pos = ref
                else:
                    pos += 1
                types.append(t)
            append((op, tuple(types), start))
        elif k == K_PREFIX_FC:
            sub, pos = _u32(data, pos)
            kind = _FC_KINDS.get(sub)
            full = 0xFC00 | sub
            if kind is None:
                raise MalformedModule(f"illegal opcode fc {sub:#x}", start)
            if kind == "none":
                imm: Any = None
            elif kind in ("table", "elem", "data"):
                imm, pos = _u32(data, pos)
                if sub == 0x09:
                    uses_data = True
            elif kind == "memory_init":
                x, pos = _u32(data, pos)
                y, pos = _memidx(data, pos, multi)
                imm = (x, y)
                uses_data = True
            elif kind == "memory_copy":
                x, pos = _memidx(data, pos, multi)
                y, pos = _memidx(data, pos, multi)
                imm = (x, y)
            elif kind == "memory":
                imm, pos = _memidx(data, pos, multi)
            else:  # table_init (elemidx, tableidx) and table_copy (dst, src): two indices
                x, pos = _u32(data, pos)
                y, pos = _u32(data, pos)
                imm = (x, y)
            append((full, imm, start))
        elif k == K_SIMD:
            features.require("simd", start)
            instr, pos = decode_simd(data, pos, start, features, _u32)
            append(instr)
        elif k == K_PREFIX_FB:
            op, imm, pos, gc_data = decode_gc_instr(data, pos, start, features)
            uses_data = uses_data or gc_data
            append((op, imm, start))
        elif k == K_EXT:
            ins, pos = _decode_ext(op, data, pos, start, ctl, features)
            append(ins)
        else:
            raise MalformedModule(f"illegal opcode {op:#04x}", start)


def _len32(data: bytes, pos: int) -> tuple[int, int]:
    """A length or count: it can never exceed the bytes left, which bounds every allocation."""
    n, after = _u32(data, pos)
    if n > len(data) - pos:
        raise MalformedModule("length out of bounds", pos)
    return n, after


# --- sections -----------------------------------------------------------------------------------


class _Decoder:
    """Section-level reading: one cursor over the whole module."""

    def __init__(self, data: bytes, features: Features = WASM3) -> None:
        self.data = data
        self.features = features
        self.pos = 0
        self.module = Module()
        self.uses_data = False  # memory.init / data.drop seen in a function body
        self.valtypes = _VALTYPES_SIMD if features.simd else _VALTYPES

    # primitives

    def byte(self) -> int:
        b = self.data[self.pos]
        self.pos += 1
        return b

    def u32(self) -> int:
        v, self.pos = _u32(self.data, self.pos)
        return v

    def len32(self) -> int:
        v, self.pos = _len32(self.data, self.pos)
        return v

    def flag(self) -> int:
        """A one-bit LEB128 (limits flags): the spec reads it as an unsigned 1-bit integer."""
        pos = self.pos
        b = self.data[pos]
        if b & 0x7E:
            raise MalformedModule("integer too large: malformed limits flags", pos)
        if b & 0x80:
            raise MalformedModule("integer representation too long", pos + 1)
        self.pos = pos + 1
        return b

    def bytes_(self) -> bytes:
        n = self.len32()
        start = self.pos
        if start + n > len(self.data):
            raise MalformedModule(EOS, len(self.data))
        self.pos = start + n
        return self.data[start : start + n]

    def name(self) -> str:
        start = self.pos
        raw = self.bytes_()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedModule("malformed UTF-8 encoding", start) from None

    def valtype(self) -> str:
        b = self.data[self.pos]
        t = self.valtypes.get(b)
        if t is None:
            ref = read_reftype(b, self.data, self.pos, self.features)
            if ref is None:
                raise _valtype_error(b, self.pos)
            t, self.pos = ref
            return t
        self.pos += 1
        return t

    def reftype(self) -> str:
        b = self.data[self.pos]
        t = _REFTYPES.get(b)
        if t is None:
            ref = read_reftype(b, self.data, self.pos, self.features)
            if ref is None:
                raise _reftype_error(b, self.pos)
            t, self.pos = ref
            return t
        self.pos += 1
        return t

    def limits(self) -> tuple[Limits, str]:
        """Limits and the address type their flags give (bit 2: i64, memory64 and table64).

        Under memory64 the flags are a byte with bits 0 (a maximum follows) and 2 (i64) and the
        bounds are u64s, whatever the address type (validation bounds them); without it, 2.0's
        one-bit flag and u32 bounds.
        """
        if not self.features.memory64:
            b = self.data[self.pos]
            if b in (0x04, 0x05):
                self.features.require("memory64", self.pos)
            has_max = self.flag()
            lo = self.u32()
            return Limits(lo, self.u32() if has_max else None), I32
        pos = self.pos
        flags = self.byte()
        if flags & 0xFA:
            raise MalformedModule("malformed limits flags", pos)
        lo, self.pos = _uleb(self.data, self.pos, 64)
        hi = None
        if flags & 1:
            hi, self.pos = _uleb(self.data, self.pos, 64)
        return Limits(lo, hi), I64 if flags & 4 else I32

    def table_type(self) -> TableType:
        elem = self.reftype()
        limits, address = self.limits()
        return TableType(elem, limits, address)

    def memory_type(self) -> MemoryType:
        limits, address = self.limits()
        return MemoryType(limits, address)

    def global_type(self) -> GlobalType:
        t = self.valtype()
        pos = self.pos
        m = self.byte()
        if m > 1:
            raise MalformedModule("malformed mutability", pos)
        return GlobalType(t, m == 1)

    def const_expr(self) -> list[Instr]:
        instrs, self.pos, _ = _decode_instrs(self.data, self.pos, self.features)
        instrs.pop()  # the final end
        return instrs

    # the module

    def module_(self) -> Module:
        data = self.data
        n = len(data)
        if n < 4:
            raise MalformedModule("unexpected end", n)
        if data[:4] != MAGIC:
            raise MalformedModule("magic header not detected", 0)
        if n < 8:
            raise MalformedModule("unexpected end", n)
        if data[4:8] != VERSION:
            raise MalformedModule("unknown binary version", 4)
        self.pos = 8
        last = 0.0
        readers = {
            1: self.type_section,
            2: self.import_section,
            3: self.function_section,
            4: self.table_section,
            5: self.memory_section,
            6: self.global_section,
            7: self.export_section,
            8: self.start_section,
            9: self.elem_section,
            10: self.code_section,
            11: self.data_section,
            12: self.datacount_section,
            13: self.tag_section,
        }
        while self.pos < n:
            id_pos = self.pos
            sid = data[id_pos]
            if sid > 13:
                raise MalformedModule("malformed section id", id_pos)
            if sid == 13:
                _gate(self.features, "exceptions", "malformed section id", id_pos)
            if sid != 0:
                rank = _SECTION_ORDER[sid]
                if rank <= last:
                    raise MalformedModule("unexpected content after last section", id_pos)
                last = rank
            self.pos += 1
            size = self.len32()
            start = self.pos
            if sid == 0:
                self.custom_section(size)
            else:
                readers[sid]()
            if self.pos != start + size:
                raise MalformedModule("section size mismatch", start)
        m = self.module
        if len(m.funcs) != len(m.codes):
            raise MalformedModule("function and code section have inconsistent lengths", n)
        if m.data_count is not None and m.data_count != len(m.datas):
            raise MalformedModule("data count and data section have inconsistent lengths", n)
        if m.data_count is None and self.uses_data:
            raise MalformedModule("data count section required", n)
        return m

    def custom_section(self, size: int) -> None:
        start = self.pos
        name = self.name()
        rest = size - (self.pos - start)
        if rest < 0 or self.pos + rest > len(self.data):
            raise MalformedModule(EOS, len(self.data))
        payload = self.data[self.pos : self.pos + rest]
        self.pos += rest
        self.module.customs.append((name, payload))
        if name == "name":
            self.module.names = _decode_names(payload)

    def type_section(self) -> None:
        m = self.module
        types, subtypes, groups = m.types, m.subtypes, m.rec_groups
        for _ in range(self.len32()):
            pos = self.pos
            form = self.data[pos]
            if form != 0x60:  # a recursion group, a subtype, a struct or an array (GC)
                rec_type(self)
                continue
            self.pos += 1
            params = tuple(self.valtype() for _ in range(self.len32()))
            results = tuple(self.valtype() for _ in range(self.len32()))
            groups.append((len(types), 1))
            types.append(FuncType(params, results))
            subtypes.append(_FINAL)

    def import_section(self) -> None:
        imports = self.module.imports
        for _ in range(self.len32()):
            mod = self.name()
            name = self.name()
            pos = self.pos
            kind = self.byte()
            desc: Any
            if kind == 0:
                desc = self.u32()
            elif kind == 1:
                desc = self.table_type()
            elif kind == 2:
                desc = self.memory_type()
            elif kind == 3:
                desc = self.global_type()
            elif kind == 4:
                _gate(self.features, "exceptions", "malformed import kind 0x04", pos)
                desc = self.tag_type()
            else:
                raise MalformedModule(f"malformed import kind {kind:#04x}", pos)
            imports.append(Import(mod, name, _EXTERN_KINDS[kind], desc))

    def function_section(self) -> None:
        self.module.funcs = [self.u32() for _ in range(self.len32())]

    def table_section(self) -> None:
        m = self.module
        for _ in range(self.len32()):
            pos = self.pos
            init = None
            if self.data[pos] == 0x40:  # a table with an initializer expression (typed references)
                self.features.require("function_references", pos)
                if self.data[pos + 1] != 0x00:
                    raise MalformedModule("malformed table type", pos + 1)
                self.pos += 2
                m.tables.append(self.table_type())
                init = self.const_expr()
            else:
                m.tables.append(self.table_type())
            m.table_inits.append(init)

    def memory_section(self) -> None:
        self.module.memories = [self.memory_type() for _ in range(self.len32())]

    def global_section(self) -> None:
        globals_ = self.module.globals
        for _ in range(self.len32()):
            t = self.global_type()
            globals_.append(Global(t, self.const_expr()))

    def export_section(self) -> None:
        exports = self.module.exports
        for _ in range(self.len32()):
            name = self.name()
            pos = self.pos
            kind = self.byte()
            if kind > 4:
                raise MalformedModule(f"malformed export kind {kind:#04x}", pos)
            if kind == 4:
                _gate(self.features, "exceptions", "malformed export kind 0x04", pos)
            exports.append(Export(name, _EXTERN_KINDS[kind], self.u32()))

    def tag_type(self) -> int:
        """A tag's type: the attribute byte (0, an exception) and a function type index."""
        pos = self.pos
        if self.byte() != 0:
            raise MalformedModule("malformed tag attribute", pos)
        return self.u32()

    def tag_section(self) -> None:
        self.module.tags = [self.tag_type() for _ in range(self.len32())]

    def start_section(self) -> None:
        self.module.start = self.u32()

    def elem_kind(self) -> str:
        pos = self.pos
        if self.byte() != 0x00:
            raise MalformedModule("malformed element kind", pos)
        return FUNCREF

    def func_indices(self) -> list[list[Instr]]:
        data = self.data
        out = []
        for _ in range(self.len32()):
            pos = self.pos
            idx, self.pos = _u32(data, pos)
            out.append([(0xD2, idx, pos)])
        return out

    def const_exprs(self) -> list[list[Instr]]:
        return [self.const_expr() for _ in range(self.len32())]

    def elem_section(self) -> None:
        elems = self.module.elems
        for _ in range(self.len32()):
            pos = self.pos
            flags = self.u32()
            if flags > 7:
                raise MalformedModule("malformed elements segment kind", pos)
            # bit 0: passive or declarative (bit 1 tells which); else active, with an explicit table
            # index when bit 1 is set; bit 2: initializers are expressions, not function indices.
            exprs = flags & 4
            table, offset = 0, None
            if flags & 1:
                mode: Literal["active", "passive", "declarative"] = "declarative" if flags & 2 else "passive"
            else:
                mode = "active"
                if flags & 2:
                    table = self.u32()
                offset = self.const_expr()
            t = (self.reftype() if exprs else self.elem_kind()) if flags & 3 else FUNCREF
            if not exprs and self.features.function_references:
                t = "(ref func)"  # function indices are never null (3.0 types such a segment so)
            init = self.const_exprs() if exprs else self.func_indices()
            elems.append(Elem(mode, t, init, table, offset, bool(exprs)))

    def datacount_section(self) -> None:
        self.module.data_count = self.u32()

    def code_section(self) -> None:
        data = self.data
        codes = self.module.codes
        for _ in range(self.len32()):
            size_pos = self.pos
            size = self.len32()
            start = self.pos
            locals_: list[str] = []
            total = 0
            entries = []
            for _ in range(self.len32()):
                count = self.u32()
                entries.append((count, self.valtype()))
                total += count
            if total > MAX_LOCALS:
                raise MalformedModule("too many locals", start)
            for count, t in entries:
                locals_ += [t] * count
            body, self.pos, uses_data = _decode_instrs(data, self.pos, self.features)
            if uses_data:
                self.uses_data = True
            if self.pos != start + size:
                raise MalformedModule("section size mismatch", start)
            codes.append(Code(tuple(locals_), body, size_pos))

    def data_section(self) -> None:
        datas = self.module.datas
        for _ in range(self.len32()):
            pos = self.pos
            flags = self.u32()
            if flags == 0:
                offset = self.const_expr()
                datas.append(Data("active", self.bytes_(), 0, offset))
            elif flags == 1:
                datas.append(Data("passive", self.bytes_()))
            elif flags == 2:
                memory = self.u32()
                offset = self.const_expr()
                datas.append(Data("active", self.bytes_(), memory, offset))
            else:
                raise MalformedModule("malformed data segment kind", pos)


# --- the "name" custom section ------------------------------------------------------------------


def _decode_names(payload: bytes) -> Names:
    """Read the name section; engines ignore a malformed one, so any problem yields no names."""
    try:
        return _read_names(payload)
    except (MalformedModule, IndexError, struct.error):
        return Names()


def _read_names(payload: bytes) -> Names:
    names = Names()
    r = _Decoder(payload)
    n = len(payload)
    while r.pos < n:
        sub = r.byte()
        size = r.len32()
        end = r.pos + size
        if end > n:
            raise MalformedModule("length out of bounds", r.pos)
        if sub == 0:
            names.module = r.name()
        elif sub == 1:
            names.funcs = _name_map(r)
        elif sub == 2:
            for _ in range(r.len32()):
                func = r.u32()
                names.locals[func] = _name_map(r)
        else:  # extended name subsections: not needed here
            r.pos = end
        if r.pos != end:
            raise MalformedModule("section size mismatch", r.pos)
    return names


def _name_map(r: _Decoder) -> dict[int, str]:
    out: dict[int, str] = {}
    for _ in range(r.len32()):
        idx = r.u32()
        out[idx] = r.name()
    return out


# --- entry point --------------------------------------------------------------------------------


def decode_module(data: bytes | bytearray | memoryview, features: Features = WASM3) -> Module:
    """Decode a binary module; raises ``MalformedModule`` (or ``UnsupportedFeature``) only."""
    raw = bytes(data)
    try:
        return _Decoder(raw, features).module_()
    except MalformedModule:
        raise
    except (IndexError, struct.error):
        # Some read went past the last byte of the file.
        raise MalformedModule(EOS, len(raw)) from None
