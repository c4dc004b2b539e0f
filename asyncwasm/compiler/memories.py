"""Memory and table operands past the common case: several memories, 64-bit memories and tables.

Generated code names memory 0 ``M`` and its grow helper ``_grow``, as it always has, so that a
module with one 32-bit memory compiles to exactly the code it did before; memory k > 0 is ``M{k}``
with ``_grow{k}``. Every memory is reached the same way (a precompiled ``struct`` method on the
buffer, or an index for a byte), so another memory costs nothing extra either.

A 64-bit memory needs no extra checks: addresses are unsigned Python ints that never wrap, so an
address plus an offset past 2^64 is simply past the end of the buffer. ``struct`` raises
``struct.error`` for an access past the end, ``OverflowError`` for one past 2^63 (a C ``ssize_t``),
and indexing raises ``IndexError``: the runtime turns all three, raised by generated code, into the
out-of-bounds trap (``traps.as_trap``).

Tables need no names of their own (``T{k}`` already); a 64-bit table differs only in the value
``table.grow`` returns on failure (-1 as an i64) and in the helper that makes it.
"""

from __future__ import annotations

import functools
import re

from ..binary.module import I64
from .ops import LOADS, STORES

U32_FAIL = 0xFFFFFFFF  # memory.grow and table.grow's -1 as an i32
U64_FAIL = 0xFFFFFFFFFFFFFFFF  # ... and as an i64
_MEMORY_0 = re.compile(r"\bM\b")


def memory_name(k: int) -> str:
    """The generated-code name of memory ``k``'s buffer."""
    return "M" if k == 0 else f"M{k}"


def grow_name(k: int) -> str:
    """The generated-code name of memory ``k``'s grow helper (it returns the old size or -1)."""
    return "_grow" if k == 0 else f"_grow{k}"


def grow_fail(address: str) -> int:
    """What a failed ``memory.grow`` or ``table.grow`` returns for this address type."""
    return U64_FAIL if address == I64 else U32_FAIL


def memarg(imm: tuple[int, ...]) -> tuple[int, int, int]:
    """``(align, offset, memidx)`` of a load or store immediate (memory 0 leaves its index out)."""
    if len(imm) == 3:
        return imm  # type: ignore[return-value]
    return imm[0], imm[1], 0


@functools.cache
def load_template(op: int, k: int) -> str:
    """The expression template of load ``op`` from memory ``k`` (over ``{ea}``)."""
    return LOADS[op] if k == 0 else _MEMORY_0.sub(memory_name(k), LOADS[op])


@functools.cache
def store_template(op: int, k: int) -> str:
    """The statement template of store ``op`` into memory ``k`` (over ``{ea}`` and ``{v}``)."""
    return STORES[op] if k == 0 else _MEMORY_0.sub(memory_name(k), STORES[op])


def copy_call(dst: int, src: int) -> tuple[str, str]:
    """The helper and its leading arguments for ``memory.copy dst src``."""
    if dst == src:
        return "_mcopy", memory_name(dst)
    return "_mcopy2", f"{memory_name(dst)}, {memory_name(src)}"
