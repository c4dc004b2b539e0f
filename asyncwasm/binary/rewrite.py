"""A section-level view of a module's bytes, for tools that rewrite a module rather than build one.

``split`` lists the sections as they are (custom sections included, each where it was); ``put``
replaces, inserts (in the order the format requires) or removes one; ``join`` writes the module
back. Sections nobody touches are copied byte for byte, so a rewrite costs what it changes, not the
size of the code. The ``*_entries`` readers give the raw bytes of each entry's parts that a rewrite
keeps as they are (value and reference types, table initialisers, whole segments), so the writer
never has to re-encode a type it did not change.

The module must already be decoded and validated (this reads without re-checking it).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MalformedModule
from ..features import WASM3, Features
from .encode import section
from .reader import _SECTION_ORDER, MAGIC, VERSION, _Decoder

CUSTOM, TABLE, MEMORY, GLOBAL, EXPORT, START, ELEM, DATA, DATACOUNT = 0, 4, 5, 6, 7, 8, 9, 11, 12

Sections = list[tuple[int, bytes]]  # (section id, payload), in file order


def split(wasm: bytes) -> Sections:
    """Every section of ``wasm`` as (id, payload), in order."""
    if wasm[:4] != MAGIC or wasm[4:8] != VERSION:
        raise ValueError("not a WebAssembly binary module (no \\0asm version 1 header)")
    d = _Decoder(wasm)
    d.pos = 8
    out: Sections = []
    while d.pos < len(wasm):
        sid = d.byte()
        size = d.len32()
        out.append((sid, wasm[d.pos : d.pos + size]))
        d.pos += size
    return out


def join(sections: Sections) -> bytes:
    """The module made of ``sections``."""
    return MAGIC + VERSION + b"".join(section(sid, payload) for sid, payload in sections)


def find(sections: Sections, sid: int) -> bytes | None:
    """The payload of the (non-custom) section ``sid``, or None."""
    return next((payload for s, payload in sections if s == sid), None)


def put(sections: Sections, sid: int, payload: bytes | None) -> None:
    """Replace section ``sid`` with ``payload``, insert it where the format wants it, or (None) remove it."""
    for k, (s, _) in enumerate(sections):
        if s == sid:
            if payload is None:
                del sections[k]
            else:
                sections[k] = (sid, payload)
            return
    if payload is None:
        return
    rank = _SECTION_ORDER[sid]
    at = len(sections)
    for k, (s, _) in enumerate(sections):
        if s != CUSTOM and _SECTION_ORDER[s] > rank:
            at = k
            break
    sections.insert(at, (sid, payload))


NAME_ELEMS, NAME_DATAS = 8, 9  # the name section's subsections naming element and data segments


def drop_names(sections: Sections, subsections: set[int]) -> None:
    """Remove ``subsections`` from the name section (the names of things a rewrite renumbered, so
    that no tool shows an old segment's name on a new one). A malformed name section, which
    engines ignore, is left as it is."""
    for k, (sid, payload) in enumerate(sections):
        if sid != CUSTOM:
            continue
        d = _Decoder(payload)
        try:
            n = d.len32()
            if payload[d.pos : d.pos + n] != b"name":
                continue
            d.pos += n
            kept = [payload[: d.pos]]
            while d.pos < len(payload):
                start = d.pos
                sub = d.byte()
                end = d.len32() + d.pos
                if end > len(payload):
                    raise IndexError(end)
                if sub not in subsections:
                    kept.append(payload[start:end])
                d.pos = end
        except (IndexError, MalformedModule):
            continue
        sections[k] = (CUSTOM, b"".join(kept))


def global_types(payload: bytes, features: Features = WASM3) -> list[bytes]:
    """Each defined global's type as written (value type and mutability byte)."""
    d = _Decoder(payload, features)
    out = []
    for _ in range(d.len32()):
        start = d.pos
        d.global_type()
        out.append(payload[start : d.pos])
        d.const_expr()
    return out


@dataclass(frozen=True)
class TableEntry:
    """A defined table as written: its reference type and its initialiser (``end`` included), if any."""

    reftype: bytes
    init: bytes | None


def table_entries(payload: bytes, features: Features = WASM3) -> list[TableEntry]:
    d = _Decoder(payload, features)
    out = []
    for _ in range(d.len32()):
        has_init = payload[d.pos] == 0x40
        if has_init:
            d.pos += 2
        start = d.pos
        d.reftype()
        reftype = payload[start : d.pos]
        d.limits()
        init = None
        if has_init:
            start = d.pos
            d.const_expr()
            init = payload[start : d.pos]
        out.append(TableEntry(reftype, init))
    return out


@dataclass(frozen=True)
class ElemEntry:
    """An element segment as written: all of it, and its reference type when it has one written
    (segments of expressions); None for segments of function indices."""

    raw: bytes
    reftype: bytes | None


def elem_entries(payload: bytes, features: Features = WASM3) -> list[ElemEntry]:
    d = _Decoder(payload, features)
    out = []
    for _ in range(d.len32()):
        start = d.pos
        flags = d.u32()
        if not flags & 1:
            if flags & 2:
                d.u32()
            d.const_expr()
        reftype = None
        if flags & 4:
            at = d.pos
            if flags & 3:
                d.reftype()
                reftype = payload[at : d.pos]
            else:
                reftype = b"\x70"  # flags 4: funcref, not written
            d.const_exprs()
        else:
            if flags & 3:
                d.byte()
            d.func_indices()
        out.append(ElemEntry(payload[start : d.pos], reftype))
    return out


def data_entries(payload: bytes, features: Features = WASM3) -> list[bytes]:
    """Each data segment as written."""
    d = _Decoder(payload, features)
    out = []
    for _ in range(d.len32()):
        start = d.pos
        flags = d.u32()
        if flags == 2:
            d.u32()
        if flags != 1:
            d.const_expr()
        d.bytes_()
        out.append(payload[start : d.pos])
    return out


def heap_type(reftype: bytes) -> bytes:
    """The heap type of a reference type as written (what ``ref.null`` takes)."""
    return reftype[1:] if reftype[0] in (0x63, 0x64) else reftype


__all__ = [
    "ElemEntry",
    "Sections",
    "TableEntry",
    "data_entries",
    "drop_names",
    "elem_entries",
    "find",
    "global_types",
    "heap_type",
    "join",
    "put",
    "split",
    "table_entries",
]
