"""The argv/environ layout both groups share: an array of pointers into one NUL-separated buffer."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from .layout import GuestMemory


def write_string_table(mem: GuestMemory, strings: Sequence[bytes], ptrs: int, buf: int) -> None:
    """Write each string NUL-terminated at ``buf`` and its address into the u32 array at ``ptrs``."""
    addresses = []
    offset = 0
    for s in strings:
        addresses.append((buf + offset) & 0xFFFFFFFF)
        offset += len(s) + 1
    mem.write(buf, b"".join(s + b"\0" for s in strings))
    mem.write(ptrs, struct.pack(f"<{len(addresses)}I", *addresses))


def write_sizes(mem: GuestMemory, strings: Sequence[bytes], count_ptr: int, size_ptr: int) -> None:
    mem.write_u32(count_ptr, len(strings))
    mem.write_u32(size_ptr, sum(len(s) + 1 for s in strings))
