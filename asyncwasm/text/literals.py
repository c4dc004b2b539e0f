"""Numeric literals of the text format: integers and floats to their binary values.

Floats are rounded exactly as the spec requires (round to nearest, ties to even, straight from the
literal's exact value): hexadecimal literals through integer arithmetic, decimal ones through
Python's correctly rounded ``float()`` for f64, and for f32 through ``float()`` followed by an exact
re-rounding whenever the double lands on an f32 half-way point (the only case where rounding twice
differs from rounding once). A literal that rounds to infinity is out of range, as in the spec.
"""

from __future__ import annotations

import re
import struct
from fractions import Fraction

_DEC = r"[0-9](?:_?[0-9])*"
_HEX = r"[0-9a-fA-F](?:_?[0-9a-fA-F])*"
_INT = re.compile(rf"([+-]?)(?:0x({_HEX})|({_DEC}))")
_FLOAT = re.compile(
    rf"([+-]?)(?:(inf)|(nan)(?::0x({_HEX}))?"
    rf"|0x({_HEX})(?:\.({_HEX})?)?(?:[pP]([+-]?{_DEC}))?"
    rf"|({_DEC})(?:\.({_DEC})?)?(?:[eE]([+-]?{_DEC}))?)"
)

# (fraction bits, exponent bits) of each float format
F32_FORMAT = (23, 8)
F64_FORMAT = (52, 11)


class LiteralError(ValueError):
    """The token is not a literal of the wanted kind, or its value is out of range."""


def parse_uint(tok: str) -> int | None:
    """An unsigned integer literal (``u32``/``u64`` positions: indices, limits, offsets), or None."""
    m = _INT.fullmatch(tok)
    if m is None or m.group(1):
        return None
    return int(m.group(2), 16) if m.group(2) is not None else int(m.group(3))


def parse_int(tok: str, bits: int) -> int:
    """An ``iN`` literal as its unsigned N-bit pattern: ``-2**(N-1)`` up to ``2**N - 1``."""
    m = _INT.fullmatch(tok)
    if m is None:
        raise LiteralError("unknown operator or malformed integer literal")
    sign, hexd, dec = m.groups()
    value = int(hexd, 16) if hexd is not None else int(dec)
    if sign == "-":
        if value > 1 << (bits - 1):
            raise LiteralError("constant out of range")
        return -value & ((1 << bits) - 1)
    if value >= 1 << bits:
        raise LiteralError("constant out of range")
    return value


def parse_sint(tok: str, bits: int) -> int:
    """An ``iN`` literal as a signed value, for the signed LEB128 of ``i32.const``/``i64.const``."""
    v = parse_int(tok, bits)
    return v - (1 << bits) if v >> (bits - 1) else v


def round_rational(num: int, den: int, fmt: tuple[int, int]) -> tuple[int, bool]:
    """Bits of the positive value ``num/den`` rounded to the float format, and whether it was a tie.

    A value that rounds past the largest finite float gives the bits of infinity.
    """
    fbits, ebits = fmt
    bias = (1 << (ebits - 1)) - 1
    if num == 0:
        return 0, False
    e = num.bit_length() - den.bit_length()
    # make 2**e <= num/den < 2**(e+1)
    if (num << max(0, -e)) < (den << max(0, e)):
        e -= 1
    e = max(e, 1 - bias)
    shift = fbits - e
    n, d = (num << shift, den) if shift >= 0 else (num, den << -shift)
    q, r = divmod(n, d)
    twice = 2 * r
    tie = twice == d
    if twice > d or (tie and q & 1):
        q += 1
    if q >> (fbits + 1):
        q >>= 1
        e += 1
    if e > bias:
        return ((1 << ebits) - 1) << fbits, tie
    if q >> fbits:
        return ((e + bias) << fbits) | (q & ((1 << fbits) - 1)), tie
    return q, tie  # subnormal (or zero after rounding)


def parse_float(tok: str, fmt: tuple[int, int]) -> int:
    """The IEEE bit pattern of an ``f32``/``f64`` literal (``fmt`` is ``F32_FORMAT``/``F64_FORMAT``)."""
    m = _FLOAT.fullmatch(tok)
    if m is None:
        raise LiteralError("unknown operator or malformed float literal")
    sign, inf, nan, payload, hint, hfrac, hexp, dint, dfrac, dexp = m.groups()
    fbits, ebits = fmt
    signbit = (1 << (fbits + ebits)) if sign == "-" else 0
    expmask = ((1 << ebits) - 1) << fbits
    if inf:
        return signbit | expmask
    if nan:
        p = (1 << (fbits - 1)) if payload is None else int(payload, 16)
        if not 0 < p < (1 << fbits):
            raise LiteralError("constant out of range")
        return signbit | expmask | p
    if hint is not None:
        frac = (hfrac or "").replace("_", "")
        mant = int(hint.replace("_", "") + frac, 16)
        exp = int(hexp.replace("_", "")) if hexp else 0
        exp -= 4 * len(frac)
        bits = round_rational(mant << max(exp, 0), 1 << max(-exp, 0), fmt)[0] if mant else 0
        if bits == expmask:
            raise LiteralError("constant out of range")
        return signbit | bits
    text = dint.replace("_", "") + ("." + dfrac.replace("_", "") if dfrac else "")
    if dexp:
        text += "e" + dexp.replace("_", "")
    d = float(text)
    if d == float("inf"):
        raise LiteralError("constant out of range")
    if fmt == F64_FORMAT:
        return signbit | struct.unpack("<Q", struct.pack("<d", d))[0]
    n, dd = d.as_integer_ratio()
    bits, tie = round_rational(n, dd, fmt)
    if tie:  # the double may itself be rounded: redo from the exact decimal value
        exact = Fraction(text)
        bits = round_rational(exact.numerator, exact.denominator, fmt)[0]
    if bits == expmask:
        raise LiteralError("constant out of range")
    return signbit | bits


def is_int_literal(tok: str) -> bool:
    return _INT.fullmatch(tok) is not None
