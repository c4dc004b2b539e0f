"""Validation rules of the SIMD and relaxed SIMD instructions, plugged into ``validate``'s body checker.

Most vector operators have a uniform type (``[v128 v128] -> [v128]``, ``[v128] -> [i32]``, ...): they
join the checker's inline table of simple signatures, typed without a call. The rest (lanes, shifts,
memory, ternary operators) are handlers, as for the scalar instructions with immediates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .binary.module import F32, F64, I32, I64, V128
from .binary.simd_opcodes import LANES, SIMD_ACCESS, SIMD_OPCODES

__all__ = ["SIMD_SIGNATURES", "simd_handlers"]

_LANE_TYPE = {"i8x16": I32, "i16x8": I32, "i32x4": I32, "i64x2": I64, "f32x4": F32, "f64x2": F64}
_TERNARY = (
    "bitselect",
    "relaxed_madd",
    "relaxed_nmadd",
    "relaxed_laneselect",
    "relaxed_dot_i8x16_i7x16_add_s",
)
_TO_I32 = ("any_true", "all_true", "bitmask")
_UNARY = (
    "not",
    "abs",
    "neg",
    "popcnt",
    "ceil",
    "floor",
    "trunc",
    "nearest",
    "sqrt",
    "extend_",
    "extadd_",
    "convert_",
    "trunc_sat_",
    "demote_",
    "promote_",
    "relaxed_trunc_",
)


def _signatures() -> dict[int, tuple[int, str | None, str]]:
    """``op -> (operand count, operand type, result type)`` for every uniformly typed vector operator."""
    table: dict[int, tuple[int, str | None, str]] = {}
    for op, (name, kind) in SIMD_OPCODES.items():
        shape, _, rest = name.partition(".")
        if name == "v128.const":
            table[op] = (0, None, V128)
        elif kind != "none" or rest.startswith("load") or rest.startswith("store"):
            continue
        elif rest == "splat":
            table[op] = (1, _LANE_TYPE[shape], V128)
        elif rest in _TERNARY or rest in ("shl", "shr_s", "shr_u"):
            continue
        elif rest in _TO_I32:
            table[op] = (1, V128, I32)
        elif any(rest == u or (u.endswith("_") and rest.startswith(u)) for u in _UNARY):
            table[op] = (1, V128, V128)
        else:
            table[op] = (2, V128, V128)
    return table


SIMD_SIGNATURES = _signatures()


class _Checker(Protocol):
    vals: list[str | None]
    memories: int

    def pop(self, expect: str | None) -> str | None: ...

    def memarg(self, imm: tuple[int, ...], natural: int) -> str: ...


def simd_handlers(c: _Checker, error: type[Exception]) -> dict[int, Callable[[int, Any], None]]:
    """The vector instructions that are not uniformly typed, bound to checker ``c``; a broken rule
    raises ``error`` (the checker's own, to which it adds the function and offset)."""

    def memarg(op: int, imm: tuple[int, ...]) -> str:
        """Check the memory, alignment and offset of an access as scalar ones are checked (the
        offset of a 32-bit memory below 2^32); return the memory's address type (i64 for a 64-bit
        memory)."""
        return c.memarg(imm, SIMD_ACCESS[op].bit_length() - 1)

    def lane(op: int, x: int) -> None:
        if x >= LANES[op]:
            raise error(f"invalid lane index {x} (the shape has {LANES[op]} lanes)")

    def load(op: int, imm: tuple[int, ...]) -> None:
        c.pop(memarg(op, imm))
        c.vals.append(V128)

    def store(op: int, imm: tuple[int, ...]) -> None:
        at = memarg(op, imm)
        c.pop(V128)
        c.pop(at)

    def load_lane(op: int, imm: tuple[tuple[int, ...], int]) -> None:
        at = memarg(op, imm[0])
        lane(op, imm[1])
        c.pop(V128)
        c.pop(at)
        c.vals.append(V128)

    def store_lane(op: int, imm: tuple[tuple[int, ...], int]) -> None:
        at = memarg(op, imm[0])
        lane(op, imm[1])
        c.pop(V128)
        c.pop(at)

    def extract(op: int, x: int) -> None:
        lane(op, x)
        c.pop(V128)
        c.vals.append(_LANE_TYPE[SIMD_OPCODES[op][0][:5]])

    def replace(op: int, x: int) -> None:
        lane(op, x)
        c.pop(_LANE_TYPE[SIMD_OPCODES[op][0][:5]])
        c.pop(V128)
        c.vals.append(V128)

    def shuffle(op: int, lanes: tuple[int, ...]) -> None:
        for x in lanes:
            if x >= 32:
                raise error(f"invalid lane index {x} (a shuffle picks from 32 lanes)")
        c.pop(V128)
        c.pop(V128)
        c.vals.append(V128)

    def shift(op: int, imm: Any) -> None:
        c.pop(I32)
        c.pop(V128)
        c.vals.append(V128)

    def ternary(op: int, imm: Any) -> None:
        c.pop(V128)
        c.pop(V128)
        c.pop(V128)
        c.vals.append(V128)

    handlers: dict[int, Callable[[int, Any], None]] = {}
    for op, (name, kind) in SIMD_OPCODES.items():
        rest = name.partition(".")[2]
        if kind == "memarg":
            handlers[op] = load if rest.startswith("load") else store
        elif kind == "lanemem":
            handlers[op] = load_lane if rest.startswith("load") else store_lane
        elif kind == "lane":
            handlers[op] = extract if rest.startswith("extract") else replace
        elif kind == "shuffle":
            handlers[op] = shuffle
        elif rest in ("shl", "shr_s", "shr_u"):
            handlers[op] = shift
        elif rest in _TERNARY:
            handlers[op] = ternary
    return handlers
