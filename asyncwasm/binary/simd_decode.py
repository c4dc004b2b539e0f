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


def decode_simd(data: bytes, pos: int, start: int, features: Features,
                u32: U32Reader) -> tuple[tuple[int, Any, int], int]:
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
        align, pos = u32(data, pos)
        if align >= 32:
            raise MalformedModule("malformed memop flags", pos - 1)
        offset, pos = u32(data, pos)
        if kind == "lanemem":
            imm = (align, offset, data[pos])
            pos += 1
        else:
            imm = (align, offset)
    elif kind == "lane":
        imm = data[pos]
        pos += 1
    elif kind == "shuffle":
        if pos + 16 > len(data):
            raise IndexError(pos)
        imm = tuple(data[pos:pos + 16])
        pos += 16
    else:  # v128
        if pos + 16 > len(data):
            raise IndexError(pos)
        imm = int.from_bytes(data[pos:pos + 16], "little")
        pos += 16
    return (op, imm, start), pos
