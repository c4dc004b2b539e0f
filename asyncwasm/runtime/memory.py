"""Linear memory: an anonymous memory map (pages cost nothing until touched, so a fresh or idle
instance holds only what its guest wrote) that grows in place, with bounds-checked helpers for host
code. An empty memory starts as a bytearray, since a map cannot be empty.

Compiled code reads and writes ``data`` directly with precompiled ``struct`` objects: an access past
the end raises ``struct.error``, which the function's frame turns into an out-of-bounds trap.
Host functions use the checked helpers below, which raise ``Trap`` the same way.
"""

from __future__ import annotations

import mmap
import struct

from ..binary.module import Limits, MemoryType
from ..errors import MEMORY_OOB, Trap

PAGE_SIZE = 65536
MAX_PAGES = 65536  # 4 GiB, the wasm32 limit

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

OOB = MEMORY_OOB


class Memory:
    """One linear memory; ``limit_pages`` is the embedder's cap on top of the module's own maximum."""

    __slots__ = ("data", "type", "max_pages", "__weakref__")

    def __init__(self, type: MemoryType, limit_pages: int | None = None) -> None:
        self.type = type
        cap = MAX_PAGES if type.limits.max is None else type.limits.max
        if limit_pages is not None:
            cap = min(cap, limit_pages)
        self.max_pages = cap
        if type.limits.min > cap:
            raise Trap(f"memory of {type.limits.min} pages exceeds the limit of {cap} pages")
        size = type.limits.min * PAGE_SIZE
        self.data: mmap.mmap | bytearray = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE) if size else bytearray()

    @classmethod
    def new(cls, min_pages: int, max_pages: int | None = None) -> Memory:
        return cls(MemoryType(Limits(min_pages, max_pages)))

    @property
    def pages(self) -> int:
        return len(self.data) // PAGE_SIZE

    def grow(self, delta: int) -> int:
        """memory.grow: the old size in pages, or -1 (as 0xFFFFFFFF for the guest) when refused."""
        old = len(self.data) // PAGE_SIZE
        new = old + delta
        if new > self.max_pages:
            return -1
        if delta:
            try:
                if isinstance(self.data, bytearray):
                    self.data.extend(bytes(delta * PAGE_SIZE))
                else:
                    self.data.resize(new * PAGE_SIZE)
            except (MemoryError, BufferError, OSError, ValueError):  # out of memory, or a view is held
                return -1
        return old

    # Checked helpers for host functions (WASI and embedders).
    def _check(self, ptr: int, n: int) -> None:
        if ptr < 0 or n < 0 or ptr + n > len(self.data):
            raise Trap(OOB)

    def read(self, ptr: int, n: int) -> bytes:
        self._check(ptr, n)
        return bytes(self.data[ptr:ptr + n])

    def write(self, ptr: int, value: bytes | bytearray | memoryview) -> None:
        n = len(value)
        self._check(ptr, n)
        self.data[ptr:ptr + n] = value

    def read_u8(self, ptr: int) -> int:
        self._check(ptr, 1)
        return self.data[ptr]

    def read_u16(self, ptr: int) -> int:
        self._check(ptr, 2)
        return _U16.unpack_from(self.data, ptr)[0]

    def read_u32(self, ptr: int) -> int:
        self._check(ptr, 4)
        return _U32.unpack_from(self.data, ptr)[0]

    def read_u64(self, ptr: int) -> int:
        self._check(ptr, 8)
        return _U64.unpack_from(self.data, ptr)[0]

    def write_u8(self, ptr: int, value: int) -> None:
        self._check(ptr, 1)
        self.data[ptr] = value & 0xFF

    def write_u16(self, ptr: int, value: int) -> None:
        self._check(ptr, 2)
        _U16.pack_into(self.data, ptr, value & 0xFFFF)

    def write_u32(self, ptr: int, value: int) -> None:
        self._check(ptr, 4)
        _U32.pack_into(self.data, ptr, value & 0xFFFFFFFF)

    def write_u64(self, ptr: int, value: int) -> None:
        self._check(ptr, 8)
        _U64.pack_into(self.data, ptr, value & 0xFFFFFFFFFFFFFFFF)

    def read_cstr(self, ptr: int, n: int) -> str:
        """``n`` bytes at ``ptr`` decoded as UTF-8 (invalid sequences raise UnicodeDecodeError)."""
        return self.read(ptr, n).decode("utf-8")
