"""Conversions between the raw values compiled code uses and the values Python callers see.

Raw: i32/i64 are unsigned ints, f32 a float holding a single. Public: i32/i64 are signed ints
(as in wasmtime-py), floats are floats, references are ``Func``, any object, or None. A v128 is
one unsigned 128-bit int both ways (lane 0 in the low bits, as wasmtime-py's ``ValType.v128``
values); a Python int given for one is wrapped to 128 bits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..binary.module import F32, F64, I32, I64, V128
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
