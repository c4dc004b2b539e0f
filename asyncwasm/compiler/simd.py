"""Translation of the SIMD and relaxed SIMD instructions into Python expressions.

A v128 is one unsigned 128-bit Python int (``simd_ops`` says why, with the measurements). Bitwise
operators, constants, splats, lane extraction and replacement are inline integer expressions; lane
arithmetic calls the ``_v_*`` helpers of ``simd_ops``; memory is read and written inline with the
same precompiled ``Struct`` methods as scalar loads, so bounds traps are the scalar ones. Every
operator that cannot trap is pure and folds into the expression that uses it, as scalar operators do.

``SIMD_HANDLERS`` plugs into the translator's handler table: the scalar opcodes never reach this
module, so their translation is unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

from ..binary.simd_opcodes import SIMD_ACCESS, SIMD_OPCODES
from .memories import memory_name
from .simd_ops import HELPERS, HIGH, M128, REP

__all__ = ["SIMD_HANDLERS"]

_M32 = "0xFFFFFFFF"
_M64 = "0xFFFFFFFFFFFFFFFF"
_WIDTH = {"i8x16": 8, "i16x8": 16, "i32x4": 32, "i64x2": 64, "f32x4": 32, "f64x2": 64}


class _Entry(Protocol):
    code: str
    deps: frozenset[str]
    depth: int


class _Translator(Protocol):
    """What a handler uses of ``translate.FunctionTranslator``."""

    info: Any

    def pop(self) -> _Entry: ...

    def temp(self) -> str: ...

    def push(self, code: str, deps: frozenset[str], depth: int = 0) -> None: ...

    def push_slot_value(self, code: str) -> None: ...

    def emit(self, text: str, indent: int = 0) -> None: ...

    def ea(self, addr: Any, offset: int) -> str: ...  # addr: an _Entry

    def static_trap(self, offset: int = 0) -> None: ...


Handler = Callable[[_Translator, Any, int], None]


def _pure(template: str, n: int) -> Handler:
    """An operator of ``n`` operands that cannot trap: a folded expression (``{imm}`` is the immediate)."""

    def handler(t: _Translator, imm: Any, i: int) -> None:
        args = [t.pop() for _ in range(n)][::-1]
        fields = {"abc"[k]: a.code for k, a in enumerate(args)}
        code = template.format(imm=imm, **fields) if n or "{imm}" in template else template
        deps: frozenset[str] = frozenset().union(*(a.deps for a in args)) if args else frozenset()
        depth = max((a.depth for a in args), default=-1) + 1
        t.push(code, deps, depth)

    return handler


def _lane_templates(name: str, k: int) -> tuple[str, int]:
    """extract_lane / replace_lane of lane ``k``: (template, operand count)."""
    shape, _, op = name.partition(".")
    w = _WIDTH[shape]
    sh = w * k
    lane = (1 << w) - 1
    get = f"(({{a}} >> {sh}) & {lane:#x})" if sh else f"({{a}} & {lane:#x})"
    if op == "extract_lane_s":
        sign = 1 << (w - 1)
        return f"((({get} ^ {sign:#x}) - {sign:#x}) & {_M32})", 1
    if op in ("extract_lane_u", "extract_lane"):
        if shape == "f32x4":
            return f"_v_f32_from_bits{get}", 1
        if shape == "f64x2":
            return f"_v_f64_from_bits{get}", 1
        return get, 1
    clear = M128 ^ (lane << sh)
    if shape == "f32x4":
        new = "_v_f32_to_bits({b})"
    elif shape == "f64x2":
        new = "_v_f64_to_bits({b})"
    elif w < 32:
        new = f"({{b}} & {lane:#x})"
    else:
        new = "{b}"
    moved = f"({new} << {sh})" if sh else new
    return f"(({{a}} & {clear:#x}) | {moved})", 2


def _lane_handler(name: str) -> Handler:
    def handler(t: _Translator, imm: Any, i: int) -> None:
        template, n = _lane_templates(name, imm)
        _pure(template, n)(t, imm, i)

    return handler


MAX_SHUFFLE_TERMS = 8  # a shuffle needing more shift-and-mask terms than this calls the byte-wise helper
_SIMPLE = re.compile(r"^[A-Za-z_]\w*$|^(0x)?[0-9a-f]+$")


def shuffle_terms(lanes: tuple[int, ...]) -> dict[tuple[int, int], int]:
    """How a shuffle moves bytes, grouped: (operand 0 or 1, left shift in bits) -> mask of the output
    bytes that operand moves by that shift. Each group is one ``(x << s) & mask`` term."""
    terms: dict[tuple[int, int], int] = {}
    for out, j in enumerate(lanes):
        key = (j >> 4, 8 * (out - (j & 15)))
        terms[key] = terms.get(key, 0) | (0xFF << (8 * out))
    return terms


def _shuffle(t: _Translator, imm: Any, i: int) -> None:
    """A shuffle is a few shift-and-mask terms of its operands when the bytes move in few groups."""
    b = t.pop()
    a = t.pop()
    terms = shuffle_terms(imm)
    deps = a.deps | b.deps
    depth = max(a.depth, b.depth) + 1
    if len(terms) > MAX_SHUFFLE_TERMS:
        t.push(f"_v_i8x16_shuffle({a.code}, {b.code}, {imm!r})", deps, depth)
        return
    uses = [sum(1 for src, _s in terms if src == k) for k in (0, 1)]
    first: list[str] = []
    again: list[str] = []
    for k, e in enumerate((a, b)):
        if uses[k] > 1 and not _SIMPLE.match(e.code):
            var = t.temp()
            first.append(f"({var} := {e.code})")
            again.append(var)
        else:
            first.append(f"({e.code})" if not _SIMPLE.match(e.code) else e.code)
            again.append(first[-1])
    seen = [False, False]
    parts = []
    for (src, shift), mask in sorted(terms.items()):
        v = again[src] if seen[src] else first[src]
        seen[src] = True
        moved = f"({v} << {shift})" if shift > 0 else f"({v} >> {-shift})" if shift < 0 else v
        parts.append(f"({moved} & {mask:#x})")
    t.push("(" + " | ".join(parts) + ")", deps, depth)


def _operands_twice(t: _Translator, a: _Entry, b: _Entry) -> tuple[str, str, str, str]:
    """Source for two operands each used twice: the first use may bind a temporary, the second reads it."""
    out: list[str] = []
    for e in (a, b):
        if _SIMPLE.match(e.code):
            out += [e.code, e.code]
        else:
            var = t.temp()
            out += [f"({var} := {e.code})", var]
    return out[0], out[2], out[1], out[3]


def _lane_add(bits: int, sub: bool) -> Handler:
    """Lane-wise add or sub on the int itself, carries and borrows kept inside each lane (no call)."""
    hi = HIGH[bits]
    lo = M128 ^ hi

    def handler(t: _Translator, imm: Any, i: int) -> None:
        b = t.pop()
        a = t.pop()
        a1, b1, a2, b2 = _operands_twice(t, a, b)
        if sub:
            code = f"((({a1} | {hi:#x}) - ({b1} & {lo:#x})) ^ (({a2} ^ ~{b2}) & {hi:#x}))"
        else:
            code = f"((({a1} & {lo:#x}) + ({b1} & {lo:#x})) ^ (({a2} ^ {b2}) & {hi:#x}))"
        t.push(code, a.deps | b.deps, max(a.depth, b.depth) + 1)

    return handler


# -- memory ----------------------------------------------------------------------------------------

_READ = {1: "{m}[{ea}]", 2: "_lu16({m}, {ea})[0]", 4: "_lu32({m}, {ea})[0]", 8: "_lu64({m}, {ea})[0]"}
_WRITE = {
    1: "{m}[{ea}] = {v}",
    2: "_su16({m}, {ea}, {v})",
    4: "_su32({m}, {ea}, {v})",
    8: "_su64({m}, {ea}, {v})",
}


def _memory(t: _Translator, memarg: tuple[int, ...]) -> tuple[int, str, int]:
    """(offset, the buffer's name, the most bytes the memory can ever have) of an access: memory 0 is
    ``M``, memory k is ``M{k}``, as scalar accesses name them (``compiler.memories``)."""
    k = memarg[2] if len(memarg) == 3 else 0
    return memarg[1], memory_name(k), t.info.memory_limit(k)


def _load_template(name: str) -> str:
    op = name.partition(".")[2]
    if op == "load":  # two halves: measured cheaper than one 16-byte read and int.from_bytes
        return "(({tmp} := _lqq({m}, {ea}))[0] | {tmp}[1] << 64)"
    if op.endswith("_splat"):
        size = int(op[4:-6]) // 8
        return f"({_READ[size]} * {REP[size * 8]:#x})"
    if op.endswith("_zero"):
        return _READ[int(op[4:-5]) // 8]
    return f"_v_{op}({_READ[8]})"  # load8x8_s ...: 64 bits, each lane widened


def _load(name: str, op: int) -> Handler:
    template = _load_template(name)
    size = SIMD_ACCESS[op]

    def handler(t: _Translator, imm: Any, i: int) -> None:
        offset, m, limit = _memory(t, imm)
        a = t.pop()
        if offset + size > limit:
            t.static_trap(offset)
            return
        t.push_slot_value(
            template.format(ea=t.ea(a, offset), m=m, tmp=t.temp() if "{tmp}" in template else "")
        )

    return handler


def _store(t: _Translator, imm: Any, i: int) -> None:
    offset, m, limit = _memory(t, imm)
    v = t.pop()
    a = t.pop()
    if offset + 16 > limit:
        t.static_trap(offset)
        return
    t.emit(f"_s16s({m}, {t.ea(a, offset)}, ({v.code}).to_bytes(16, 'little'))")


def _load_lane(op: int) -> Handler:
    size = SIMD_ACCESS[op]
    read = _READ[size]

    def handler(t: _Translator, imm: Any, i: int) -> None:
        offset, m, limit = _memory(t, imm[0])
        k = imm[1]
        v = t.pop()
        a = t.pop()
        if offset + size > limit:
            t.static_trap(offset)
            return
        sh = size * 8 * k
        clear = M128 ^ (((1 << (size * 8)) - 1) << sh)
        got = read.format(ea=t.ea(a, offset), m=m)
        t.push_slot_value(f"(({v.code}) & {clear:#x}) | ({got} << {sh})")

    return handler


def _store_lane(op: int) -> Handler:
    size = SIMD_ACCESS[op]
    write = _WRITE[size]

    def handler(t: _Translator, imm: Any, i: int) -> None:
        offset, m, limit = _memory(t, imm[0])
        k = imm[1]
        v = t.pop()
        a = t.pop()
        if offset + size > limit:
            t.static_trap(offset)
            return
        sh = size * 8 * k
        part = f"((({v.code}) >> {sh}) & {(1 << (size * 8)) - 1:#x})"
        t.emit(write.format(ea=t.ea(a, offset), m=m, v=part))

    return handler


# -- the table ---------------------------------------------------------------------------------------

_INLINE: dict[str, tuple[str, int]] = {
    "v128.not": (f"({{a}} ^ {M128:#x})", 1),
    "v128.and": ("({a} & {b})", 2),
    "v128.or": ("({a} | {b})", 2),
    "v128.xor": ("({a} ^ {b})", 2),
    "v128.andnot": ("({a} & ~{b})", 2),
    "v128.any_true": ("({a} != 0)", 1),
    "i8x16.splat": (f"(({{a}} & 0xFF) * {REP[8]:#x})", 1),
    "i16x8.splat": (f"(({{a}} & 0xFFFF) * {REP[16]:#x})", 1),
    "i32x4.splat": (f"({{a}} * {REP[32]:#x})", 1),
    "i64x2.splat": (f"({{a}} * {REP[64]:#x})", 1),
    "f32x4.splat": (f"(_v_f32_to_bits({{a}}) * {REP[32]:#x})", 1),
    "f64x2.splat": (f"(_v_f64_to_bits({{a}}) * {REP[64]:#x})", 1),
    "f32x4.abs": (f"({{a}} & {M128 ^ (REP[32] << 31):#x})", 1),
    "f32x4.neg": (f"({{a}} ^ {REP[32] << 31:#x})", 1),
    "f64x2.abs": (f"({{a}} & {M128 ^ (REP[64] << 63):#x})", 1),
    "f64x2.neg": (f"({{a}} ^ {REP[64] << 63:#x})", 1),
    "v128.bitselect": ("_v_bitselect({a}, {b}, {c})", 3),
}


def _helper_arity(name: str) -> int:
    """Operand count of a helper: its parameters without defaults."""
    code = HELPERS["_v_" + name.replace(".", "_")]
    return code.__code__.co_argcount - len(code.__defaults__ or ())


def _build() -> dict[int, Handler]:
    handlers: dict[int, Handler] = {}
    for op, (name, kind) in SIMD_OPCODES.items():
        rest = name.partition(".")[2]
        if name == "v128.const":
            handlers[op] = lambda t, imm, i: t.push(hex(imm), frozenset())
        elif name == "v128.store":
            handlers[op] = _store
        elif kind == "memarg":
            handlers[op] = _load(name, op)
        elif kind == "lanemem":
            handlers[op] = _load_lane(op) if rest.startswith("load") else _store_lane(op)
        elif kind == "lane":
            handlers[op] = _lane_handler(name)
        elif kind == "shuffle":
            handlers[op] = _shuffle
        elif rest in ("add", "sub") and name[0] == "i":
            handlers[op] = _lane_add(_WIDTH[name[:5]], rest == "sub")
        elif name in _INLINE:
            handlers[op] = _pure(*_INLINE[name])
        else:
            helper = "_v_" + name.replace(".", "_")
            n = _helper_arity(name)
            handlers[op] = _pure(f"{helper}({', '.join('{' + 'abc'[k] + '}' for k in range(n))})", n)
    return handlers


SIMD_HANDLERS: dict[int, Handler] = _build()
