"""Runtime helpers of the SIMD and relaxed SIMD instructions, over the v128 representation.

Representation: a v128 is one Python int, 0 <= v < 2**128, lane 0 in the low bits (the little-endian
reading of its 16 bytes). Measured on this project's machine (CPython 3.11, ns per operation,
``benchmarks`` style, min of 5): with an int, ``v128.and`` is 101 ns (a tuple of lanes 331, bytes 728),
a load through ``Struct('<QQ')`` 231 and a store 334, ``i32x4.add`` done in SWAR style on the int
200 ns (through lanes 1,612, a tuple of lanes 547), ``f32x4.mul`` 1,477 (a tuple of f32 lanes 853),
an extract_lane 139. An int makes every bitwise operator, constant, splat, extract/replace, select,
local and global as cheap as a scalar, needs no conversion at the host boundary or between lane
shapes (compiled code mixes shapes constantly: ``i32x4`` arithmetic, then ``v128.and``, then an
``i8x16`` shuffle), and only lane-wise arithmetic unpacks (``to_bytes`` + a precompiled ``Struct``),
so it was chosen. Integer add, sub, neg and the shifts stay on the int (carries kept inside lanes).

Floats: an f32 lane is computed in double precision and rounded once to single by ``array('f')``
(exact for + - * / sqrt, as double has more than twice single's precision); a NaN produced or
propagated is a quiet NaN, which the spec allows (``nan:canonical`` when the inputs are canonical,
``nan:arithmetic`` otherwise). Operators that return an operand unchanged (abs, neg, pmin, pmax,
lane moves) work on the bits, so a signalling NaN's payload survives them as it must.

Relaxed SIMD is deterministic, the spec's deterministic profile (every relaxed choice takes the
first of its allowed results), as wasmtime's ``relaxed_simd_deterministic``: relaxed_swizzle is
swizzle (an index >= 16 gives 0), relaxed_trunc is trunc_sat, relaxed_madd is unfused
(``fadd(fmul(a, b), c)``, each rounded), relaxed_nmadd is ``relaxed_madd(-a, b, c)``, relaxed_min/max
are min/max, relaxed_laneselect is bitselect, relaxed_q15mulr is q15mulr_sat, and relaxed_dot treats
the second operand as signed and adds pairs with signed saturation.

Memory accesses are not here: compiled code reads and writes memory inline with C-level ``Struct``
methods, so an access out of bounds raises in the guest's own frame and becomes the same trap as
for scalar loads. These helpers only convert.
"""

from __future__ import annotations

import operator
import struct
from array import array
from collections.abc import Callable
from typing import Any

from .numeric import (
    f32_from_bits,
    f32_to_bits,
    f64_from_bits,
    f64_to_bits,
    fceil,
    fdiv,
    ffloor,
    fmax,
    fmin,
    fnearest,
    fround,
    fsqrt,
    ftrunc,
)

__all__ = ["HELPERS", "M128", "REP"]

M128 = (1 << 128) - 1
M64 = (1 << 64) - 1
M32 = 0xFFFFFFFF


def _rep(bits: int, value: int) -> int:
    """``value`` in every lane of width ``bits``."""
    out = 0
    for k in range(0, 128, bits):
        out |= value << k
    return out


REP = {bits: _rep(bits, 1) for bits in (8, 16, 32, 64)}  # splat multipliers
HIGH = {bits: _rep(bits, 1 << (bits - 1)) for bits in (8, 16, 32, 64)}  # each lane's top bit
LOW = {bits: M128 ^ HIGH[bits] for bits in (8, 16, 32, 64)}

_U = {8: struct.Struct("<16B"), 16: struct.Struct("<8H"), 32: struct.Struct("<4I"), 64: struct.Struct("<2Q")}
_S = {8: struct.Struct("<16b"), 16: struct.Struct("<8h"), 32: struct.Struct("<4i"), 64: struct.Struct("<2q")}
_F4 = struct.Struct("<4f")
_D2 = struct.Struct("<2d")
_from = int.from_bytes


def _bytes(v: int) -> bytes:
    return v.to_bytes(16, "little")


def _f32s(v: int) -> tuple[float, ...]:
    return _F4.unpack(v.to_bytes(16, "little"))


def _f64s(v: int) -> tuple[float, ...]:
    return _D2.unpack(v.to_bytes(16, "little"))


def _pack_f32(lanes: Any) -> int:
    """Four doubles (a sequence) rounded to single into a v128. ``Struct.pack`` rounds as a C cast
    does (measured 2.4x faster than ``array('f')``) but refuses a finite value that rounds to
    infinity, which IEEE (and Wasm) wants as infinity: the array, which casts, takes that case."""
    try:
        return _from(_F4.pack(*lanes), "little")
    except OverflowError:
        return _from(array("f", lanes).tobytes(), "little")


def _pack_f64(lanes: Any) -> int:
    return _from(_D2.pack(*lanes), "little")


H: dict[str, Callable[..., Any]] = {}  # helper name (without the "_v_" prefix) -> function


def helper(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        H[name] = fn
        return fn

    return register


# ---- integer lanes: add and sub on the int ------------------------------------------------------


def _add(bits: int) -> Callable[[int, int], int]:
    hi, lo = HIGH[bits], LOW[bits]

    def add(a: int, b: int) -> int:
        return ((a & lo) + (b & lo)) ^ ((a ^ b) & hi)

    return add


def _sub(bits: int) -> Callable[[int, int], int]:
    hi, lo = HIGH[bits], LOW[bits]

    def sub(a: int, b: int) -> int:
        return ((a | hi) - (b & lo)) ^ ((a ^ ~b) & hi)

    return sub


def _neg(bits: int) -> Callable[[int], int]:
    sub = _sub(bits)

    def neg(a: int) -> int:
        return sub(0, a)

    return neg


def _shl(bits: int) -> Callable[[int, int], int]:
    masks = [_rep(bits, ((1 << bits) - 1) << s & ((1 << bits) - 1)) for s in range(bits)]

    def shl(a: int, s: int) -> int:
        s &= bits - 1
        return (a << s) & masks[s]

    return shl


def _shr_u(bits: int) -> Callable[[int, int], int]:
    masks = [_rep(bits, ((1 << bits) - 1) >> s) for s in range(bits)]

    def shr_u(a: int, s: int) -> int:
        s &= bits - 1
        return (a >> s) & masks[s]

    return shr_u


def _shr_s(bits: int) -> Callable[[int, int], int]:
    masks = [_rep(bits, ((1 << bits) - 1) >> s) for s in range(bits)]
    fills = [((1 << s) - 1) << (bits - s) for s in range(bits)]
    hi = HIGH[bits]

    def shr_s(a: int, s: int) -> int:
        s &= bits - 1
        # the sign bit of each negative lane, moved to the lane's bottom, times the fill pattern:
        # the products stay inside their lanes
        return ((a >> s) & masks[s]) | (((a & hi) >> (bits - 1)) * fills[s])

    return shr_s


def _abs(bits: int) -> Callable[[int], int]:
    hi = HIGH[bits]
    ones = (1 << bits) - 1
    add = _add(bits)

    def abs_(a: int) -> int:
        signs = (a & hi) >> (bits - 1)  # 1 at the bottom of each negative lane
        return add(a ^ (signs * ones), signs)  # two's complement negation of those lanes

    return abs_


def i32x4_mul(a: int, b: int) -> int:
    return (
        (((a & M32) * (b & M32)) & M32)
        | (((((a >> 32) & M32) * ((b >> 32) & M32)) & M32) << 32)
        | (((((a >> 64) & M32) * ((b >> 64) & M32)) & M32) << 64)
        | ((((a >> 96) * (b >> 96)) & M32) << 96)
    )


def i64x2_mul(a: int, b: int) -> int:
    return (((a & M64) * (b & M64)) & M64) | ((((a >> 64) * (b >> 64)) & M64) << 64)


for _bits, _shape in ((8, "i8x16"), (16, "i16x8"), (32, "i32x4"), (64, "i64x2")):
    H[f"{_shape}_abs"] = _abs(_bits)
    H[f"{_shape}_add"] = _add(_bits)
    H[f"{_shape}_sub"] = _sub(_bits)
    H[f"{_shape}_neg"] = _neg(_bits)
    H[f"{_shape}_shl"] = _shl(_bits)
    H[f"{_shape}_shr_u"] = _shr_u(_bits)
    H[f"{_shape}_shr_s"] = _shr_s(_bits)


# ---- integer lanes: lane-wise ---------------------------------------------------------------------


def _ne(bits: int) -> Callable[[int, int], int]:
    """All ones in each lane where ``a`` and ``b`` differ, on the int: a lane of ``a ^ b`` is non-zero
    exactly when adding its low bits to all ones carries into its top bit, or its top bit is set."""
    hi = HIGH[bits]
    lo = M128 ^ hi
    ones = (1 << bits) - 1

    def ne(a: int, b: int) -> int:
        x = a ^ b
        return (((((x & lo) + lo) | x) & hi) >> (bits - 1)) * ones

    return ne


def _eq(bits: int) -> Callable[[int, int], int]:
    ne = _ne(bits)

    def eq(a: int, b: int) -> int:
        return ne(a, b) ^ M128

    return eq


def _lt(bits: int, signed: bool) -> Callable[[int, int], int]:
    """All ones in each lane where ``a < b``, on the int: the borrow out of a lane's subtraction is
    the top bit of ``(~a & b) | (~(a ^ b) & (a - b))`` (signed: both sign bits flipped first)."""
    hi = HIGH[bits]
    ones = (1 << bits) - 1
    sub = _sub(bits)
    flip = hi if signed else 0

    def lt(a: int, b: int) -> int:
        a ^= flip
        b ^= flip
        borrow = ((~a & b) | (~(a ^ b) & sub(a, b))) & hi
        return (borrow >> (bits - 1)) * ones

    return lt


def _relation(bits: int, signed: bool, rel: str) -> Callable[[int, int], int]:
    """lt, gt, le, ge from one less-than: gt swaps the operands, le and ge negate gt and lt."""
    lt = _lt(bits, signed)
    if rel == "lt":
        return lt
    if rel == "gt":
        return lambda a, b: lt(b, a)
    if rel == "le":
        return lambda a, b: lt(b, a) ^ M128
    return lambda a, b: lt(a, b) ^ M128


def _minmax(bits: int, signed: bool, is_max: bool) -> Callable[[int, int], int]:
    """Each lane of ``a`` where it is the smaller (larger), else of ``b``: a select on the int."""
    lt = _lt(bits, signed)

    def pick(a: int, b: int) -> int:
        return b ^ ((a ^ b) & (lt(b, a) if is_max else lt(a, b)))

    return pick


_RELS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "gt": operator.gt,
    "le": operator.le,
    "ge": operator.ge,
}


def _sat(lo: int, hi: int) -> Callable[[int], int]:
    def clamp(v: int) -> int:
        return lo if v < lo else hi if v > hi else v

    return clamp


def _saturating(bits: int, signed: bool, fn: Callable[[int, int], int]) -> Callable[[int, int], int]:
    """add_sat / sub_sat: lane sums or differences clamped to the lane's range."""
    src = _S[bits] if signed else _U[bits]
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)

    def sat(a: int, b: int) -> int:
        r = map(fn, src.unpack(_bytes(a)), src.unpack(_bytes(b)))
        return _from(src.pack(*[lo if v < lo else hi if v > hi else v for v in r]), "little")

    return sat


def _avgr(bits: int) -> Callable[[int, int], int]:
    u = _U[bits]

    def avgr(a: int, b: int) -> int:
        return _from(
            u.pack(*[(v + 1) >> 1 for v in map(operator.add, u.unpack(_bytes(a)), u.unpack(_bytes(b)))]),
            "little",
        )

    return avgr


def _all_true(bits: int) -> Callable[[int], int]:
    """Every lane non-zero, on the int (the test ``ne`` uses)."""
    ne = _ne(bits)

    def all_true(a: int) -> int:
        return ne(a, 0) == M128

    return all_true


def _bitmask(bits: int) -> Callable[[int], int]:
    def bitmask(a: int) -> int:
        out = 0
        for k in range(128 // bits):
            out |= ((a >> (bits * k + bits - 1)) & 1) << k
        return out

    return bitmask


_GATHER = 0x0102040810204080  # moves the bits at 0, 8, ..., 56 of a 64-bit half to bits 56 ... 63


def i8x16_bitmask(a: int) -> int:
    """The top bit of each byte: the products of the gather constant land on distinct bits, so no
    carry disturbs the byte they are gathered into."""
    x = (a >> 7) & REP[8]
    return (((x & M64) * _GATHER) >> 56 & 0xFF) | ((((x >> 64) * _GATHER) >> 56 & 0xFF) << 8)


for _bits, _shape in ((8, "i8x16"), (16, "i16x8"), (32, "i32x4"), (64, "i64x2")):
    for _rel, _fn in _RELS.items():
        if _rel in ("eq", "ne"):
            H[f"{_shape}_{_rel}"] = _eq(_bits) if _rel == "eq" else _ne(_bits)
        else:
            H[f"{_shape}_{_rel}_s"] = _relation(_bits, True, _rel)
            H[f"{_shape}_{_rel}_u"] = _relation(_bits, False, _rel)
    for _sx, _signed in (("s", True), ("u", False)):
        H[f"{_shape}_min_{_sx}"] = _minmax(_bits, _signed, False)
        H[f"{_shape}_max_{_sx}"] = _minmax(_bits, _signed, True)
    H[f"{_shape}_avgr_u"] = _avgr(_bits)
    for _sx, _signed in (("s", True), ("u", False)):
        H[f"{_shape}_add_sat_{_sx}"] = _saturating(_bits, _signed, operator.add)
        H[f"{_shape}_sub_sat_{_sx}"] = _saturating(_bits, _signed, operator.sub)
    H[f"{_shape}_all_true"] = _all_true(_bits)
    H[f"{_shape}_bitmask"] = _bitmask(_bits)

H["i8x16_bitmask"] = i8x16_bitmask


def _i16x8_mul(a: int, b: int) -> int:
    u = _U[16]
    return _from(
        u.pack(*[p & 0xFFFF for p in map(operator.mul, u.unpack(_bytes(a)), u.unpack(_bytes(b)))]), "little"
    )


H["i16x8_mul"] = _i16x8_mul
H["i32x4_mul"] = i32x4_mul
H["i64x2_mul"] = i64x2_mul

_POPCNT = bytes(bin(b).count("1") for b in range(256))


@helper("i8x16_popcnt")
def i8x16_popcnt(a: int) -> int:
    return _from(_bytes(a).translate(_POPCNT), "little")


@helper("i16x8_q15mulr_sat_s")
def i16x8_q15mulr_sat_s(a: int, b: int) -> int:
    s = _S[16]
    return _from(
        s.pack(
            *[
                min((x * y + 0x4000) >> 15, 0x7FFF)
                for x, y in zip(s.unpack(_bytes(a)), s.unpack(_bytes(b)), strict=True)
            ]
        ),
        "little",
    )


H["i16x8_relaxed_q15mulr_s"] = i16x8_q15mulr_sat_s  # deterministic: q15mulr_sat_s


def _narrow(bits: int, signed: bool) -> Callable[[int, int], int]:
    src = _S[bits]
    half = bits // 2
    dst = _S[half] if signed else _U[half]
    clamp = _sat(-(1 << (half - 1)), (1 << (half - 1)) - 1) if signed else _sat(0, (1 << half) - 1)

    def narrow(a: int, b: int) -> int:
        return _from(dst.pack(*map(clamp, src.unpack(_bytes(a)) + src.unpack(_bytes(b)))), "little")

    return narrow


H["i8x16_narrow_i16x8_s"] = _narrow(16, True)
H["i8x16_narrow_i16x8_u"] = _narrow(16, False)
H["i16x8_narrow_i32x4_s"] = _narrow(32, True)
H["i16x8_narrow_i32x4_u"] = _narrow(32, False)


def _extend(bits: int, signed: bool, high: bool) -> Callable[[int], int]:
    src = _S[bits] if signed else _U[bits]
    dst = _S[bits * 2] if signed else _U[bits * 2]
    n = 64 // bits

    def extend(a: int) -> int:
        lanes = src.unpack(_bytes(a))
        return _from(dst.pack(*(lanes[n:] if high else lanes[:n])), "little")

    return extend


def _extmul(bits: int, signed: bool, high: bool) -> Callable[[int, int], int]:
    src = _S[bits] if signed else _U[bits]
    dst = _S[bits * 2] if signed else _U[bits * 2]
    n = 64 // bits
    part = slice(n, None) if high else slice(0, n)

    def extmul(a: int, b: int) -> int:
        return _from(
            dst.pack(
                *[
                    x * y
                    for x, y in zip(src.unpack(_bytes(a))[part], src.unpack(_bytes(b))[part], strict=True)
                ]
            ),
            "little",
        )

    return extmul


def _extadd(bits: int, signed: bool) -> Callable[[int], int]:
    src = _S[bits] if signed else _U[bits]
    dst = _S[bits * 2] if signed else _U[bits * 2]

    def extadd(a: int) -> int:
        lanes = src.unpack(_bytes(a))
        return _from(dst.pack(*[x + y for x, y in zip(lanes[0::2], lanes[1::2], strict=True)]), "little")

    return extadd


for _bits, _from_shape, _to_shape in ((8, "i8x16", "i16x8"), (16, "i16x8", "i32x4"), (32, "i32x4", "i64x2")):
    for _sx, _signed in (("s", True), ("u", False)):
        H[f"{_to_shape}_extend_low_{_from_shape}_{_sx}"] = _extend(_bits, _signed, False)
        H[f"{_to_shape}_extend_high_{_from_shape}_{_sx}"] = _extend(_bits, _signed, True)
        H[f"{_to_shape}_extmul_low_{_from_shape}_{_sx}"] = _extmul(_bits, _signed, False)
        H[f"{_to_shape}_extmul_high_{_from_shape}_{_sx}"] = _extmul(_bits, _signed, True)
        if _bits < 32:
            H[f"{_to_shape}_extadd_pairwise_{_from_shape}_{_sx}"] = _extadd(_bits, _signed)


@helper("i32x4_dot_i16x8_s")
def i32x4_dot_i16x8_s(a: int, b: int) -> int:
    p = [x * y for x, y in zip(_S[16].unpack(_bytes(a)), _S[16].unpack(_bytes(b)), strict=True)]
    return _from(_U[32].pack(*[(x + y) & M32 for x, y in zip(p[0::2], p[1::2], strict=True)]), "little")


_sat16 = _sat(-0x8000, 0x7FFF)


@helper("i16x8_relaxed_dot_i8x16_i7x16_s")
def i16x8_relaxed_dot_i8x16_i7x16_s(a: int, b: int) -> int:
    """Deterministic: both operands signed, pairs added with signed saturation."""
    p = [x * y for x, y in zip(_S[8].unpack(_bytes(a)), _S[8].unpack(_bytes(b)), strict=True)]
    return _from(_S[16].pack(*[_sat16(x + y) for x, y in zip(p[0::2], p[1::2], strict=True)]), "little")


@helper("i32x4_relaxed_dot_i8x16_i7x16_add_s")
def i32x4_relaxed_dot_i8x16_i7x16_add_s(a: int, b: int, c: int) -> int:
    d = _S[16].unpack(_bytes(i16x8_relaxed_dot_i8x16_i7x16_s(a, b)))
    return _from(
        _U[32].pack(
            *[(x + y + z) & M32 for x, y, z in zip(d[0::2], d[1::2], _U[32].unpack(_bytes(c)), strict=True)]
        ),
        "little",
    )


# ---- lanes: shuffles ------------------------------------------------------------------------------


@helper("i8x16_shuffle")
def i8x16_shuffle(a: int, b: int, lanes: tuple[int, ...]) -> int:
    both = _bytes(a) + _bytes(b)
    return _from(bytes([both[k] for k in lanes]), "little")


_ZEROS = bytes(240)


@helper("i8x16_swizzle")
def i8x16_swizzle(a: int, s: int) -> int:
    """Each byte of ``s`` looked up in ``a``'s bytes followed by 240 zeros: one ``bytes.translate``."""
    return _from(_bytes(s).translate(_bytes(a) + _ZEROS), "little")


H["i8x16_relaxed_swizzle"] = i8x16_swizzle  # deterministic: swizzle


@helper("bitselect")
def bitselect(a: int, b: int, c: int) -> int:
    return b ^ ((a ^ b) & c)


for _shape in ("i8x16", "i16x8", "i32x4", "i64x2"):
    H[f"{_shape}_relaxed_laneselect"] = bitselect  # deterministic: bitselect


# ---- float lanes ------------------------------------------------------------------------------


def _fbin(width: int, fn: Callable[[float, float], float]) -> Callable[[int, int], int]:
    if width == 32:

        def op32(a: int, b: int) -> int:
            return _pack_f32(tuple(map(fn, _f32s(a), _f32s(b))))

        return op32

    def op64(a: int, b: int) -> int:
        return _pack_f64(map(fn, _f64s(a), _f64s(b)))

    return op64


def _fun(width: int, fn: Callable[[float], float]) -> Callable[[int], int]:
    if width == 32:

        def op32(a: int) -> int:
            return _pack_f32(tuple(map(fn, _f32s(a))))

        return op32

    def op64(a: int) -> int:
        return _pack_f64(map(fn, _f64s(a)))

    return op64


def _fcompare(width: int, rel: Callable[[Any, Any], bool]) -> Callable[[int, int], int]:
    unpack = _f32s if width == 32 else _f64s
    dst = _U[width]
    ones = (1 << width) - 1

    def cmp(a: int, b: int) -> int:
        return _from(dst.pack(*[ones if r else 0 for r in map(rel, unpack(a), unpack(b))]), "little")

    return cmp


def _pminmax(width: int, is_max: bool) -> Callable[[int, int], int]:
    """pmin ``b < a ? b : a`` and pmax ``a < b ? b : a``: one operand's lane, bit for bit."""
    unpack = _f32s if width == 32 else _f64s
    bits = _U[width]

    def op(a: int, b: int) -> int:
        fa, fb = unpack(a), unpack(b)
        ba, bb = bits.unpack(_bytes(a)), bits.unpack(_bytes(b))
        if is_max:
            lanes = [bb[k] if fa[k] < fb[k] else ba[k] for k in range(len(fa))]
        else:
            lanes = [bb[k] if fb[k] < fa[k] else ba[k] for k in range(len(fa))]
        return _from(bits.pack(*lanes), "little")

    return op


def f32x4_add(a: int, b: int) -> int:
    x = _F4.unpack(a.to_bytes(16, "little"))
    y = _F4.unpack(b.to_bytes(16, "little"))
    return _pack_f32((x[0] + y[0], x[1] + y[1], x[2] + y[2], x[3] + y[3]))


def f32x4_sub(a: int, b: int) -> int:
    x = _F4.unpack(a.to_bytes(16, "little"))
    y = _F4.unpack(b.to_bytes(16, "little"))
    return _pack_f32((x[0] - y[0], x[1] - y[1], x[2] - y[2], x[3] - y[3]))


def f32x4_mul(a: int, b: int) -> int:
    x = _F4.unpack(a.to_bytes(16, "little"))
    y = _F4.unpack(b.to_bytes(16, "little"))
    return _pack_f32((x[0] * y[0], x[1] * y[1], x[2] * y[2], x[3] * y[3]))


def f64x2_add(a: int, b: int) -> int:
    x = _D2.unpack(a.to_bytes(16, "little"))
    y = _D2.unpack(b.to_bytes(16, "little"))
    return _from(_D2.pack(x[0] + y[0], x[1] + y[1]), "little")


def f64x2_sub(a: int, b: int) -> int:
    x = _D2.unpack(a.to_bytes(16, "little"))
    y = _D2.unpack(b.to_bytes(16, "little"))
    return _from(_D2.pack(x[0] - y[0], x[1] - y[1]), "little")


def f64x2_mul(a: int, b: int) -> int:
    x = _D2.unpack(a.to_bytes(16, "little"))
    y = _D2.unpack(b.to_bytes(16, "little"))
    return _from(_D2.pack(x[0] * y[0], x[1] * y[1]), "little")


H.update(
    {
        "f32x4_add": f32x4_add,
        "f32x4_sub": f32x4_sub,
        "f32x4_mul": f32x4_mul,
        "f64x2_add": f64x2_add,
        "f64x2_sub": f64x2_sub,
        "f64x2_mul": f64x2_mul,
    }
)
for _width, _shape in ((32, "f32x4"), (64, "f64x2")):
    H[f"{_shape}_div"] = _fbin(_width, fdiv)
    H[f"{_shape}_min"] = H[f"{_shape}_relaxed_min"] = _fbin(_width, fmin)
    H[f"{_shape}_max"] = H[f"{_shape}_relaxed_max"] = _fbin(_width, fmax)
    H[f"{_shape}_pmin"] = _pminmax(_width, False)
    H[f"{_shape}_pmax"] = _pminmax(_width, True)
    H[f"{_shape}_sqrt"] = _fun(_width, fsqrt)
    H[f"{_shape}_ceil"] = _fun(_width, fceil)
    H[f"{_shape}_floor"] = _fun(_width, ffloor)
    H[f"{_shape}_trunc"] = _fun(_width, ftrunc)
    H[f"{_shape}_nearest"] = _fun(_width, fnearest)
    for _rel, _fn in _RELS.items():
        H[f"{_shape}_{_rel}"] = _fcompare(_width, _fn)


@helper("f32x4_relaxed_madd")
def f32x4_relaxed_madd(a: int, b: int, c: int) -> int:
    """Deterministic: unfused, the product rounded to single before the sum."""
    return _pack_f32([fround(x * y) + z for x, y, z in zip(_f32s(a), _f32s(b), _f32s(c), strict=True)])


@helper("f32x4_relaxed_nmadd")
def f32x4_relaxed_nmadd(a: int, b: int, c: int) -> int:
    return _pack_f32([fround(-x * y) + z for x, y, z in zip(_f32s(a), _f32s(b), _f32s(c), strict=True)])


@helper("f64x2_relaxed_madd")
def f64x2_relaxed_madd(a: int, b: int, c: int) -> int:
    return _pack_f64([x * y + z for x, y, z in zip(_f64s(a), _f64s(b), _f64s(c), strict=True)])


@helper("f64x2_relaxed_nmadd")
def f64x2_relaxed_nmadd(a: int, b: int, c: int) -> int:
    return _pack_f64([-x * y + z for x, y, z in zip(_f64s(a), _f64s(b), _f64s(c), strict=True)])


# ---- conversions ----------------------------------------------------------------------------------


def _trunc_sat(x: float, lo: int, hi: int) -> int:
    if x != x:
        return 0
    if x >= hi:
        return hi
    if x <= lo:
        return lo
    return int(x)


@helper("i32x4_trunc_sat_f32x4_s")
def i32x4_trunc_sat_f32x4_s(a: int) -> int:
    return _from(_S[32].pack(*[_trunc_sat(x, -0x80000000, 0x7FFFFFFF) for x in _f32s(a)]), "little")


@helper("i32x4_trunc_sat_f32x4_u")
def i32x4_trunc_sat_f32x4_u(a: int) -> int:
    return _from(_U[32].pack(*[_trunc_sat(x, 0, M32) for x in _f32s(a)]), "little")


@helper("i32x4_trunc_sat_f64x2_s_zero")
def i32x4_trunc_sat_f64x2_s_zero(a: int) -> int:
    x, y = _f64s(a)
    return _from(
        _S[32].pack(_trunc_sat(x, -0x80000000, 0x7FFFFFFF), _trunc_sat(y, -0x80000000, 0x7FFFFFFF), 0, 0),
        "little",
    )


@helper("i32x4_trunc_sat_f64x2_u_zero")
def i32x4_trunc_sat_f64x2_u_zero(a: int) -> int:
    x, y = _f64s(a)
    return _from(_U[32].pack(_trunc_sat(x, 0, M32), _trunc_sat(y, 0, M32), 0, 0), "little")


H["i32x4_relaxed_trunc_f32x4_s"] = i32x4_trunc_sat_f32x4_s  # deterministic: trunc_sat
H["i32x4_relaxed_trunc_f32x4_u"] = i32x4_trunc_sat_f32x4_u
H["i32x4_relaxed_trunc_f64x2_s_zero"] = i32x4_trunc_sat_f64x2_s_zero
H["i32x4_relaxed_trunc_f64x2_u_zero"] = i32x4_trunc_sat_f64x2_u_zero


@helper("f32x4_convert_i32x4_s")
def f32x4_convert_i32x4_s(a: int) -> int:
    return _pack_f32(_S[32].unpack(_bytes(a)))  # int -> double is exact, then one rounding


@helper("f32x4_convert_i32x4_u")
def f32x4_convert_i32x4_u(a: int) -> int:
    return _pack_f32(_U[32].unpack(_bytes(a)))


@helper("f64x2_convert_low_i32x4_s")
def f64x2_convert_low_i32x4_s(a: int) -> int:
    return _pack_f64(_S[32].unpack(_bytes(a))[:2])


@helper("f64x2_convert_low_i32x4_u")
def f64x2_convert_low_i32x4_u(a: int) -> int:
    return _pack_f64(_U[32].unpack(_bytes(a))[:2])


@helper("f32x4_demote_f64x2_zero")
def f32x4_demote_f64x2_zero(a: int) -> int:
    x, y = _f64s(a)
    return _pack_f32((x, y, 0.0, 0.0))


@helper("f64x2_promote_low_f32x4")
def f64x2_promote_low_f32x4(a: int) -> int:
    return _pack_f64(_f32s(a)[:2])


# ---- loads that widen -----------------------------------------------------------------------------


def _widen(bits: int, signed: bool) -> Callable[[int], int]:
    """The 64 bits a ``v128.loadNxM_sx`` read, each lane extended to twice its width."""
    src = _S[bits] if signed else _U[bits]
    dst = _S[bits * 2] if signed else _U[bits * 2]

    def widen(v: int) -> int:
        return _from(dst.pack(*src.unpack(v.to_bytes(16, "little"))[: 64 // bits]), "little")

    return widen


for _bits, _name in ((8, "8x8"), (16, "16x4"), (32, "32x2")):
    H[f"load{_name}_s"] = _widen(_bits, True)
    H[f"load{_name}_u"] = _widen(_bits, False)


# ---- the host side ----------------------------------------------------------------------------


def lanes_of(v: int, lane_type: str) -> tuple[Any, ...]:
    """The lanes of a v128 as unsigned ints (``i8`` ... ``i64``) or floats (``f32``, ``f64``)."""
    if lane_type == "f32":
        return tuple(f32_from_bits(x) for x in _U[32].unpack(_bytes(v)))
    if lane_type == "f64":
        return tuple(f64_from_bits(x) for x in _U[64].unpack(_bytes(v)))
    return _U[int(lane_type[1:])].unpack(_bytes(v))


def from_lanes(lanes: list[Any], lane_type: str) -> int:
    """A v128 from its lanes: ints (any sign, wrapped to the lane) or floats for ``f32``/``f64``."""
    if lane_type == "f32":
        lanes = [f32_to_bits(x) if isinstance(x, float) else x for x in lanes]
        bits = 32
    elif lane_type == "f64":
        lanes = [f64_to_bits(x) if isinstance(x, float) else x for x in lanes]
        bits = 64
    else:
        bits = int(lane_type[1:])
    mask = (1 << bits) - 1
    return _from(_U[bits].pack(*[int(x) & mask for x in lanes]), "little")


HELPERS: dict[str, Any] = {f"_v_{name}": fn for name, fn in H.items()}
HELPERS.update(
    {
        "_v_f32_to_bits": f32_to_bits,
        "_v_f64_to_bits": f64_to_bits,
        "_v_f32_from_bits": f32_from_bits,
        "_v_f64_from_bits": f64_from_bits,
        "_lqq": struct.Struct("<QQ").unpack_from,
        "_s16s": struct.Struct("<16s").pack_into,
    }
)
