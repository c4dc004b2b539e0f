"""Linear memory: an anonymous memory map (pages cost nothing until touched, so a fresh or idle
instance holds only what its guest wrote) that grows in place, with bounds-checked helpers for host
code. An empty memory starts as a bytearray, since a map cannot be empty.

Compiled code reads and writes ``data`` directly with precompiled ``struct`` objects: an access past
the end raises ``struct.error``, which the function's frame turns into an out-of-bounds trap.
Host functions use the checked helpers below, which raise ``Trap`` the same way.

A 64-bit memory (memory64) is the same object with a larger spec limit (2^48 pages); what it can
really reach is bounded by the store's page budget, shared by all the memories made in the store.
"""

from __future__ import annotations

import mmap
import struct

from ..binary.module import I64, Limits, MemoryType
from ..errors import MEMORY_OOB, Trap
from .budget import Budget

PAGE_SIZE = 65536
MAX_PAGES = 65536  # 4 GiB, the wasm32 limit
MAX_PAGES64 = 1 << 48  # the memory64 limit

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

OOB = MEMORY_OOB


class Memory:
    """One linear memory; ``limit_pages`` is the embedder's cap on top of the module's own maximum,
    and every page is charged to ``budget`` (the owning store's, for all its memories)."""

    __slots__ = ("data", "type", "max_pages", "budget", "__weakref__")

    def __init__(
        self, type: MemoryType, limit_pages: int | None = None, budget: Budget | None = None
    ) -> None:
        self.type = type
        spec_max = MAX_PAGES64 if type.address == I64 else MAX_PAGES
        cap = spec_max if type.limits.max is None else min(type.limits.max, spec_max)
        if limit_pages is not None:
            cap = min(cap, limit_pages)
        self.max_pages = cap
        self.budget = budget
        if type.limits.min > cap:
            raise Trap(f"memory of {type.limits.min} pages exceeds the limit of {cap} pages")
        if budget is not None and not budget.take(type.limits.min):
            raise Trap(
                f"memory of {type.limits.min} pages exceeds the store's budget of {budget.total} "
                f"pages for all its memories ({budget.remaining} left)"
            )
        size = type.limits.min * PAGE_SIZE
        try:
            self.data: mmap.mmap | bytearray = (
                mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE) if size else bytearray()
            )
        except BaseException:
            if budget is not None:
                budget.give(type.limits.min)
            raise

    @classmethod
    def new(cls, min_pages: int, max_pages: int | None = None, address: str = "i32") -> Memory:
        """A memory of ``min_pages`` 64 KiB pages (at most ``max_pages``), to offer as an import
        (``address="i64"``: a 64-bit memory)."""
        """A memory of ``min_pages`` (at most ``max_pages``); ``address="i64"`` for a 64-bit one."""
        return cls(MemoryType(Limits(min_pages, max_pages), address))

    @property
    def pages(self) -> int:
        """Its size in 64 KiB pages."""
        return len(self.data) // PAGE_SIZE

    def grow(self, delta: int) -> int:
        """memory.grow: the old size in pages, or -1 (as all ones for the guest) when refused."""
        old = len(self.data) // PAGE_SIZE
        new = old + delta
        if new > self.max_pages:
            return -1
        if delta:
            budget = self.budget
            if budget is not None and not budget.take(delta):
                return -1
            try:
                if isinstance(self.data, bytearray):
                    self.data.extend(bytes(delta * PAGE_SIZE))
                else:
                    self.data.resize(new * PAGE_SIZE)
            except (
                MemoryError,
                BufferError,
                OSError,
                ValueError,
                OverflowError,
            ):  # out of memory, or a view is held
                if budget is not None:
                    budget.give(delta)
                return -1
        return old

    # Checked helpers for host functions (WASI and embedders).
    def _check(self, ptr: int, n: int) -> None:
        if ptr < 0 or n < 0 or ptr + n > len(self.data):
            raise Trap(OOB)

    def read(self, ptr: int, n: int) -> bytes:
        """``n`` bytes at ``ptr``, copied; ``Trap`` (out of bounds) past the end."""
        self._check(ptr, n)
        return bytes(self.data[ptr : ptr + n])

    def write(self, ptr: int, value: bytes | bytearray | memoryview) -> None:
        """Write ``value`` at ``ptr``; ``Trap`` (out of bounds) if it does not fit, and then nothing is written."""
        n = len(value)
        self._check(ptr, n)
        self.data[ptr : ptr + n] = value

    def read_u8(self, ptr: int) -> int:
        """The unsigned little-endian 8-bit value at ``ptr``; ``Trap`` past the end."""
        self._check(ptr, 1)
        return self.data[ptr]

    def read_u16(self, ptr: int) -> int:
        """The unsigned little-endian 16-bit value at ``ptr``; ``Trap`` past the end."""
        self._check(ptr, 2)
        return _U16.unpack_from(self.data, ptr)[0]

    def read_u32(self, ptr: int) -> int:
        """The unsigned little-endian 32-bit value at ``ptr``; ``Trap`` past the end."""
        self._check(ptr, 4)
        return _U32.unpack_from(self.data, ptr)[0]

    def read_u64(self, ptr: int) -> int:
        """The unsigned little-endian 64-bit value at ``ptr``; ``Trap`` past the end."""
        self._check(ptr, 8)
        return _U64.unpack_from(self.data, ptr)[0]

    def write_u8(self, ptr: int, value: int) -> None:
        """Store ``value`` (wrapped to 8 bits) little-endian at ``ptr``; ``Trap`` past the end."""
        self._check(ptr, 1)
        self.data[ptr] = value & 0xFF

    def write_u16(self, ptr: int, value: int) -> None:
        """Store ``value`` (wrapped to 16 bits) little-endian at ``ptr``; ``Trap`` past the end."""
        self._check(ptr, 2)
        _U16.pack_into(self.data, ptr, value & 0xFFFF)

    def write_u32(self, ptr: int, value: int) -> None:
        """Store ``value`` (wrapped to 32 bits) little-endian at ``ptr``; ``Trap`` past the end."""
        self._check(ptr, 4)
        _U32.pack_into(self.data, ptr, value & 0xFFFFFFFF)

    def write_u64(self, ptr: int, value: int) -> None:
        """Store ``value`` (wrapped to 64 bits) little-endian at ``ptr``; ``Trap`` past the end."""
        self._check(ptr, 8)
        _U64.pack_into(self.data, ptr, value & 0xFFFFFFFFFFFFFFFF)

    def read_cstr(self, ptr: int, n: int) -> str:
        """``n`` bytes at ``ptr`` decoded as UTF-8 (invalid sequences raise UnicodeDecodeError)."""
        return self.read(ptr, n).decode("utf-8")
