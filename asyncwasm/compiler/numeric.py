"""Wasm numeric semantics that Python does not give directly: signed division, float rounding to
single precision, NaN bit patterns, truncation with traps, min/max with signed zeros.

Integers are unsigned canonical ints (0 <= v < 2**N). f64 values are Python floats. f32 values are
Python floats holding an exactly representable single; NaNs keep their payload because f32 bits are
mapped to f64 bits by hand (the hardware conversion would quiet a signalling NaN).
"""

from __future__ import annotations

import math
import struct
from array import array

from ..errors import Trap

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF
S32 = 0x80000000
S64 = 0x8000000000000000

_D = struct.Struct("<d")
_Q = struct.Struct("<Q")
_F = struct.Struct("<f")
_I = struct.Struct("<I")
_f32buf = array("f", [0.0])

INT_OVERFLOW = "integer overflow"
DIV_ZERO = "integer divide by zero"
BAD_CONVERSION = "invalid conversion to integer"


def trap(message: str) -> Trap:
    return Trap(message)


# ---- f32 representation -------------------------------------------------------------------------


def fround(x: float) -> float:
    """Round a double to the nearest single (overflow gives inf, as IEEE wants)."""
    _f32buf[0] = x
    return _f32buf[0]


def f32_from_bits(b: int) -> float:
    if b & 0x7F800000 != 0x7F800000 or not b & 0x7FFFFF:
        return _F.unpack(_I.pack(b))[0]
    # NaN: move the payload by hand so a signalling NaN stays signalling.
    return _D.unpack(_Q.pack(((b & S32) << 32) | 0x7FF0000000000000 | ((b & 0x7FFFFF) << 29)))[0]


def f32_to_bits(x: float) -> int:
    if x != x:
        b = _Q.unpack(_D.pack(x))[0]
        return ((b >> 32) & S32) | 0x7F800000 | ((b >> 29) & 0x7FFFFF) or 0x7FC00000
    return _I.unpack(_F.pack(x))[0]


def f64_from_bits(b: int) -> float:
    return _D.unpack(_Q.pack(b))[0]


def f64_to_bits(x: float) -> int:
    return _Q.unpack(_D.pack(x))[0]


# ---- integer ------------------------------------------------------------------------------------


def i32_div_s(a: int, b: int) -> int:
    if b == 0:
        raise trap(DIV_ZERO)
    if a == S32 and b == M32:
        raise trap(INT_OVERFLOW)
    a = a - ((a & S32) << 1)
    b = b - ((b & S32) << 1)
    q = abs(a) // abs(b)
    return (q if (a < 0) == (b < 0) else -q) & M32


def i64_div_s(a: int, b: int) -> int:
    if b == 0:
        raise trap(DIV_ZERO)
    if a == S64 and b == M64:
        raise trap(INT_OVERFLOW)
    a = a - ((a & S64) << 1)
    b = b - ((b & S64) << 1)
    q = abs(a) // abs(b)
    return (q if (a < 0) == (b < 0) else -q) & M64


def i32_rem_s(a: int, b: int) -> int:
    if b == 0:
        raise trap(DIV_ZERO)
    a = a - ((a & S32) << 1)
    b = b - ((b & S32) << 1)
    r = abs(a) % abs(b)
    return (-r if a < 0 else r) & M32


def i64_rem_s(a: int, b: int) -> int:
    if b == 0:
        raise trap(DIV_ZERO)
    a = a - ((a & S64) << 1)
    b = b - ((b & S64) << 1)
    r = abs(a) % abs(b)
    return (-r if a < 0 else r) & M64


def i32_rotl(a: int, b: int) -> int:
    b &= 31
    return ((a << b) | (a >> (32 - b))) & M32


def i32_rotr(a: int, b: int) -> int:
    b &= 31
    return ((a >> b) | (a << (32 - b))) & M32


def i64_rotl(a: int, b: int) -> int:
    b &= 63
    return ((a << b) | (a >> (64 - b))) & M64


def i64_rotr(a: int, b: int) -> int:
    b &= 63
    return ((a >> b) | (a << (64 - b))) & M64


def i32_ctz(a: int) -> int:
    return (a & -a).bit_length() - 1 if a else 32


def i64_ctz(a: int) -> int:
    return (a & -a).bit_length() - 1 if a else 64


# ---- float arithmetic ---------------------------------------------------------------------------

CANON64 = f64_from_bits(0x7FF8000000000000)


def fdiv(a: float, b: float) -> float:
    try:
        return a / b
    except ZeroDivisionError:
        if a != a or a == 0.0:
            return CANON64
        return math.copysign(math.inf, a) * math.copysign(1.0, b)


def f32_div(a: float, b: float) -> float:
    return fround(fdiv(a, b))


def fsqrt(a: float) -> float:
    if a < 0.0:
        return CANON64
    return math.sqrt(a)  # sqrt(-0.0) is -0.0, sqrt(nan) is nan


def fmin(a: float, b: float) -> float:
    if a != a or b != b:
        return CANON64
    if a == b:
        return a if math.copysign(1.0, a) < 0 else b  # min(-0, +0) is -0
    return a if a < b else b


def fmax(a: float, b: float) -> float:
    if a != a or b != b:
        return CANON64
    if a == b:
        return b if math.copysign(1.0, a) < 0 else a  # max(-0, +0) is +0
    return a if a > b else b


def _rounded(x: float, fn) -> float:
    if x != x:
        return x + 0.0  # quiet the NaN: an arithmetic NaN is what the spec asks
    if math.isinf(x) or x == 0.0:
        return x
    r = float(fn(x))
    return math.copysign(r, x) if r == 0.0 else r


def fceil(x: float) -> float:
    return _rounded(x, math.ceil)


def ffloor(x: float) -> float:
    return _rounded(x, math.floor)


def ftrunc(x: float) -> float:
    return _rounded(x, math.trunc)


def fnearest(x: float) -> float:
    return _rounded(x, round)  # round() on a float rounds half to even


def f32_demote(x: float) -> float:
    if x != x:
        return f32_from_bits(0x7FC00000 | (f64_to_bits(x) >> 32 & S32))
    return fround(x)


def f64_promote(x: float) -> float:
    if x != x:
        return x + 0.0  # quiet it
    return x


# ---- conversions --------------------------------------------------------------------------------


def _trunc(x: float, lo: int, hi: int) -> int:
    """Truncate toward zero, trapping outside [lo, hi]."""
    if x != x:
        raise trap(BAD_CONVERSION)
    if math.isinf(x):
        raise trap(INT_OVERFLOW)
    v = int(x)
    if v < lo or v > hi:
        raise trap(INT_OVERFLOW)
    return v


def i32_trunc_s(x: float) -> int:
    return _trunc(x, -S32, S32 - 1) & M32


def i32_trunc_u(x: float) -> int:
    return _trunc(x, 0, M32)


def i64_trunc_s(x: float) -> int:
    return _trunc(x, -S64, S64 - 1) & M64


def i64_trunc_u(x: float) -> int:
    return _trunc(x, 0, M64)


def _trunc_sat(x: float, lo: int, hi: int) -> int:
    if x != x:
        return 0
    if x == math.inf:
        return hi
    if x == -math.inf:
        return lo
    v = int(x)
    return lo if v < lo else hi if v > hi else v


def i32_trunc_sat_s(x: float) -> int:
    return _trunc_sat(x, -S32, S32 - 1) & M32


def i32_trunc_sat_u(x: float) -> int:
    return _trunc_sat(x, 0, M32)


def i64_trunc_sat_s(x: float) -> int:
    return _trunc_sat(x, -S64, S64 - 1) & M64


def i64_trunc_sat_u(x: float) -> int:
    return _trunc_sat(x, 0, M64)


def f32_convert_u(v: int) -> float:
    """Exact int to nearest single: Python's int->float rounds to a double first (double rounding)."""
    return _int_to_float(v, 24)


def f32_convert_s32(v: int) -> float:
    return _int_to_float(v - ((v & S32) << 1), 24)


def f32_convert_s64(v: int) -> float:
    return _int_to_float(v - ((v & S64) << 1), 24)


def f64_convert_u(v: int) -> float:
    return float(v)  # Python rounds int->double correctly (half to even)


def f64_convert_s64(v: int) -> float:
    return float(v - ((v & S64) << 1))


def _int_to_float(v: int, mant: int) -> float:
    """Round an integer to ``mant`` significant bits, half to even, then to float."""
    neg = v < 0
    a = -v if neg else v
    n = a.bit_length()
    if n > mant:
        shift = n - mant
        q = a >> shift
        rem = a - (q << shift)
        half = 1 << (shift - 1)
        if rem > half or (rem == half and q & 1):
            q += 1
        a = q << shift
    r = float(a)
    return -r if neg else r
