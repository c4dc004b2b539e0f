"""The binary format's primitives, written: LEB128 integers, vectors, names, limits, sections.

One implementation for everything that writes Wasm bytes: the text format's encoder
(``asyncwasm.text``) and the section rewriter (``binary.rewrite``) behind pre-initialisation.
"""

from __future__ import annotations

from collections.abc import Sequence

from .module import I64


def uleb(n: int) -> bytes:
    """Unsigned LEB128."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def sleb(n: int) -> bytes:
    """Signed LEB128."""
    if -64 <= n < 64:
        return bytes((n & 0x7F,))
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if (n == 0 and not b & 0x40) or (n == -1 and b & 0x40):
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def vec(items: Sequence[bytes]) -> bytes:
    """A vector: its length, then its items."""
    return uleb(len(items)) + b"".join(items)


def name(text: str) -> bytes:
    """A name: its UTF-8 bytes with their length first."""
    raw = text.encode("utf-8")
    return uleb(len(raw)) + raw


def limits(lo: int, hi: int | None, address: str) -> bytes:
    """Table or memory limits: flags (bit 0: a maximum follows, bit 2: a 64-bit address type), bounds."""
    flags = (1 if hi is not None else 0) | (4 if address == I64 else 0)
    return bytes((flags,)) + uleb(lo) + (uleb(hi) if hi is not None else b"")


def section(sid: int, payload: bytes) -> bytes:
    """One section: its id, its size, its payload."""
    return bytes((sid,)) + uleb(len(payload)) + payload


__all__ = ["limits", "name", "section", "sleb", "uleb", "vec"]
