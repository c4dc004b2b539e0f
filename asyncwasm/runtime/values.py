"""Conversions between the raw values compiled code uses and the values Python callers see.

Raw: i32/i64 are unsigned ints, f32 a float holding a single. Public: i32/i64 are signed ints
(as in wasmtime-py), floats are floats, references are ``Func``, any object, or None. A v128 is
one unsigned 128-bit int both ways (lane 0 in the low bits, as wasmtime-py's ``ValType.v128``
values).

``to_raw`` is lenient (it wraps any int, converts with ``int()``/``float()``): the engine uses it
for values that already have their type (a host global's value, an exception's payload).
``arg_converter`` is the strict one for the arguments a Python caller passes to an exported
function: an int for i32/i64/v128, in the range of the signed or the unsigned reading (so both
``-1`` and ``0xFFFFFFFF`` are the i32 of all ones bits, and ``2**32`` is refused rather than
wrapped to 0), a float or an int for f32/f64. What it refuses it raises TypeError, ValueError
or OverflowError for; the caller words the error (``exports.ExportedFunc`` names the function
and the parameter).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from ..binary.module import F32, F64, I32, I64, V128, FuncType
from ..compiler.numeric import fround


def _to_raw_i32(v: Any) -> int:
    return int(v) & 0xFFFFFFFF


def _to_raw_i64(v: Any) -> int:
    return int(v) & 0xFFFFFFFFFFFFFFFF


def _to_raw_f32(v: Any) -> float:
    return fround(float(v))


def _to_raw_f64(v: Any) -> float:
    return float(v)


def _signed32(v: int) -> int:
    v = int(v) & 0xFFFFFFFF
    return v - ((v & 0x80000000) << 1)


def _signed64(v: int) -> int:
    v = int(v) & 0xFFFFFFFFFFFFFFFF
    return v - ((v & 0x8000000000000000) << 1)


def _to_raw_v128(v: Any) -> int:
    return int(v) & 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF


def _same(v: Any) -> Any:
    return v


TO_RAW: dict[str, Callable[[Any], Any]] = {
    I32: _to_raw_i32,
    I64: _to_raw_i64,
    F32: _to_raw_f32,
    F64: _to_raw_f64,
    V128: _to_raw_v128,
}
FROM_RAW: dict[str, Callable[[Any], Any]] = {I32: _signed32, I64: _signed64, F32: _same, F64: _same}


def to_raw(valtype: str, v: Any) -> Any:
    return TO_RAW.get(valtype, _same)(v)


def from_raw(valtype: str, v: Any) -> Any:
    return FROM_RAW.get(valtype, _same)(v)


def signed32(v: int) -> int:
    """An i32 bit pattern as a signed int."""
    return _signed32(v)


def signed64(v: int) -> int:
    """An i64 bit pattern as a signed int."""
    return _signed64(v)


def int_range(bits: int) -> tuple[int, int, int]:
    """What an integer argument of ``bits`` bits may be: [low, high), the signed and the unsigned
    reading of its bits, and the mask that gives its bit pattern."""
    return -(1 << (bits - 1)), 1 << bits, (1 << bits) - 1


INT_BITS: dict[str, int] = {I32: 32, I64: 64}


def _int_arg(bits: int) -> Callable[[Any], int]:
    """The strict converter of an integer argument of ``bits`` bits: ints (and what has
    ``__index__``) in [-2**(bits-1), 2**bits), as their unsigned bit pattern."""
    low, high, mask = int_range(bits)

    def convert(v: Any) -> int:
        if type(v) is not int:
            v = operator.index(v)  # TypeError for a str, a float, None
        if low <= v < high:
            return v & mask
        raise OverflowError(v)

    return convert


def _float_arg(single: bool) -> Callable[[Any], float]:
    """The strict converter of a float argument: a float, or anything ``float()`` takes but text."""

    def convert(v: Any) -> float:
        if type(v) is not float:
            if isinstance(v, (str, bytes, bytearray)):  # float("1.5") parses; an argument is a number
                raise TypeError(v)
            v = float(v)  # TypeError for None or objects, OverflowError for an int past the doubles
        return fround(v) if single else v

    return convert


ARG_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    I32: _int_arg(32),
    I64: _int_arg(64),
    F32: _float_arg(True),
    F64: _float_arg(False),
    V128: _int_arg(128),
}
# What an argument of each type must be, in the words of the TypeError that refuses one.
ARG_EXPECTED: dict[str, str] = {
    I32: "i32 (an int in [-2**31, 2**32))",
    I64: "i64 (an int in [-2**63, 2**64))",
    F32: "f32 (a float or an int)",
    F64: "f64 (a float or an int)",
    V128: "v128 (an int in [-2**127, 2**128))",
    "funcref": "funcref (a Func, an exported function or None)",
}


def arg_converter(valtype: str) -> Callable[[Any], Any] | None:
    """The strict converter of an argument of numeric or vector type ``valtype``; None for a
    reference type (those are checked against their type by ``gc.host_check``)."""
    return ARG_CONVERTERS.get(valtype)


def expected(valtype: str) -> str:
    """What a value of ``valtype`` must be, for an error message."""
    return ARG_EXPECTED.get(valtype, valtype)


def public_results(ft: FuncType, raw: Any) -> Any:
    """A call's raw result(s) as a Python caller sees them: None, one value, or a tuple."""
    if not ft.results:
        return None
    if len(ft.results) == 1:
        return from_raw(ft.results[0], raw)
    return tuple(from_raw(t, v) for t, v in zip(ft.results, raw, strict=True))
