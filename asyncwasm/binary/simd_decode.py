"""Decoding of one 0xFD-prefixed instruction (SIMD, relaxed SIMD) and its immediates.

The body decoder's byte loop hands every 0xFD byte here, so the scalar hot path pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import MalformedModule
from ..features import Features
from .simd_opcodes import RELAXED_FIRST, SIMD_BASE, SUB_KINDS

__all__ = ["decode_simd"]

U32Reader = Callable[[bytes, int], tuple[int, int]]


def decode_simd(
    data: bytes, pos: int, start: int, features: Features, u32: U32Reader
) -> tuple[tuple[int, Any, int], int]:
    """Decode the instruction whose 0xFD prefix is at ``start`` (``pos`` is just after it).

    Returns ``((op, imm, start), next position)``. The caller has checked that SIMD is enabled;
    relaxed SIMD is checked here. ``u32`` is the decoder's LEB128 reader.
    """
    sub, pos = u32(data, pos)
    kind = SUB_KINDS.get(sub)
    if kind is None:
        raise MalformedModule(f"illegal opcode fd {sub:#x}", start)
    if sub >= RELAXED_FIRST:
        features.require("relaxed_simd", start)
    op = SIMD_BASE + sub
    imm: Any
    if kind == "none":
        imm = None
    elif kind == "memarg" or kind == "lanemem":
        memarg, pos = _memarg(data, pos, features, u32)
        if kind == "lanemem":
            imm = (memarg, data[pos])
            pos += 1
        else:
            imm = memarg
    elif kind == "lane":
        imm = data[pos]
        pos += 1
    elif kind == "shuffle":
        if pos + 16 > len(data):
            raise IndexError(pos)
        imm = tuple(data[pos : pos + 16])
        pos += 16
    else:  # "v128"
        if pos + 16 > len(data):
            raise IndexError(pos)
        imm = int.from_bytes(data[pos : pos + 16], "little")
        pos += 16
    return (op, imm, start), pos


def _memarg(data: bytes, pos: int, features: Features, u32: U32Reader) -> tuple[tuple[int, ...], int]:
    """A memarg as scalar loads read it: ``(align, offset)`` for memory 0, ``(align, offset, memidx)``
    for another (multi-memory sets bit 6 of the flags and puts the index after them); the offset is
    a u64 under memory64."""
    start = pos
    flags, pos = u32(data, pos)
    mem = 0
    if not features.multi_memory:
        if flags >= 32:
            raise MalformedModule("malformed memop flags", pos - 1)
    else:
        if flags >= 0x80:
            raise MalformedModule("malformed memop flags", start)
        if flags & 0x40:
            mem, pos = u32(data, pos)
        flags &= 0x3F
    if features.memory64:
        offset, pos = _u64(data, pos)
    else:
        offset, pos = u32(data, pos)
    return ((flags, offset) if mem == 0 else (flags, offset, mem)), pos


def _u64(data: bytes, pos: int) -> tuple[int, int]:
    """An unsigned LEB128 of at most 64 bits (a memory64 offset)."""
    result = shift = 0
    while True:
        b = data[pos]
        if shift == 63 and b > 1:
            raise MalformedModule("integer too large" if b < 0x80 else "integer representation too long", pos)
        result |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return result, pos
        shift += 7
