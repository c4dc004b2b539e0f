"""Pre-initialisation as Wizer does it: run a module's initialisation once, then write a standard
module that starts in the state it left.

An interpreter compiled to Wasm spends its start-up building its heap, its modules, its tables;
``preinitialize`` runs that once (the export ``wizer.initialize`` by default, on an instance the caller
made, so the initialiser may use WASI or any other import), captures the instance (``Instance.snapshot``)
and ``write_preinitialized`` writes the module again with that state baked in:

* each memory's contents as active data segments, only the runs that are not zero (a zero run
  shorter than ``MIN_ZERO_GAP`` bytes stays inside its segment, where it costs less than a new
  segment's header; past ``MAX_DATA_SEGMENTS`` per memory the closest segments are joined), and
  its minimum raised to the size it has now;
* every defined global's initialiser replaced by the constant it holds now;
* each table's size raised to its length now and its elements written as active element segments
  of ``ref.func``/``ref.null`` (only the runs that are not null, unless the table has an
  initialiser of its own);
* data and element segments kept at their indices in their state after initialisation: one that
  was dropped (active segments always are) becomes an empty passive segment, so ``memory.init``,
  ``table.init`` and the drops in the code mean what they meant; when the module has no data count
  section no code can name a data segment, and the old ones are left out;
* the start function removed (it has run) and the initialiser's export removed (it has run too).

Everything else (types, imports, code, custom sections) is copied byte for byte, but for the
names of data and element segments in the name section (the segments are renumbered). The result runs
unchanged on any engine: calling its ``_start`` does what initialise-then-``_start`` did on the
original. State that a module cannot express is refused with ``PreinitError``: a host function
that is not one of the module's imports, a non-null ``externref``, GC objects and exception
references (``SnapshotError`` from the capture), imported memories and tables (their contents are the
host's), an imported mutable global the initialiser changed. What WASI held (open files, the
arguments and environment it read) is not carried over, as with Wizer: what the guest copied into
its memory is.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..binary import rewrite
from ..binary.encode import limits, name, sleb, uleb, vec
from ..binary.module import F32, F64, I32, I64, V128, Module
from ..compiler.numeric import f32_to_bits, f64_to_bits
from ..text import is_text, wat_to_wasm
from .exports import ExportedFunc
from .instance import Instance
from .memory import PAGE_SIZE
from .objects import Func, Global
from .snapshot import Snapshot, SnapshotError, _OwnFunc
from .values import signed32, signed64

DEFAULT_INIT = "wizer.initialize"  # the initialiser's export name, as Wizer names it
MIN_ZERO_GAP = 16  # a segment's header costs about 10 bytes: shorter zero runs stay inside a segment
MAX_DATA_SEGMENTS = 10_000  # per memory; engines limit the count (web engines to 100,000)
MAX_NULL_GAP = 2  # nulls inside a table run that are cheaper to write (3 bytes each) than a new segment
_ZEROS = re.compile(b"\\x00{%d,}" % MIN_ZERO_GAP)
_KIND = {"func": 0, "table": 1, "memory": 2, "global": 3, "tag": 4}


class PreinitError(SnapshotError):
    """The initialised state cannot be written as a module (or the initialiser cannot be run)."""


@dataclass(frozen=True)
class Preinitialized:
    """A pre-initialised module and what went into it."""

    wasm: bytes  # the module, a standard binary
    memory_bytes: int  # the size of its memories, all together
    data_bytes: int  # the bytes of memory its data segments hold
    data_segments: int  # the data segments written for the memories' contents


async def preinitialize(
    instance: Instance, wasm: bytes | str, *, init: str = DEFAULT_INIT, keep_init: bool = False
) -> Preinitialized:
    """Call the export ``init`` (a function of no parameters and no results) on ``instance``, then
    write ``wasm`` (the module the instance's module was compiled from, binary or text) with the
    state it left baked in; the export ``init`` is removed unless ``keep_init``.

    ``instance`` must be fresh (its start function run, nothing else called), made however the
    caller likes: with WASI (``wasi_async.wasi_instance``) for a guest that prints or reads its
    environment while it initialises. A trap or a ``WasiExit`` from the initialiser passes through;
    ``PreinitError`` when the state cannot be expressed in a module."""
    m = instance.module.module
    shared = [f"{i.kind} {i.module}::{i.name}" for i in m.imports if i.kind in ("memory", "table")]
    if shared:
        raise PreinitError(
            f"the module imports {', '.join(shared)}: its contents are the host's, and a module "
            "cannot carry them (pre-initialisation needs the module to define its memories and tables)"
        )
    f = instance.exports.get(init)
    if not isinstance(f, ExportedFunc):
        funcs = ", ".join(e.name for e in m.exports if e.kind == "func") or "none"
        raise PreinitError(f"the module exports no function named {init!r} (exports: {funcs})")
    if f.type.params or f.type.results:
        raise PreinitError(
            f"the initialiser {init!r} must take no arguments and return nothing; it is {f.type}"
        )
    watched = _imported_mutable_globals(instance)
    before = [g.value for _where, g in watched]
    await instance.call(init)
    for (where, g), old in zip(watched, before, strict=True):
        if not (g.value is old or g.value == old):
            raise PreinitError(
                f"the initialiser changed the imported global {where}: the host owns it, and a "
                "module cannot carry its new value"
            )
    return write_preinitialized(instance.snapshot(), wasm, remove_exports=() if keep_init else (init,))


def _imported_mutable_globals(instance: Instance) -> list[tuple[str, Global]]:
    out = []
    k = 0
    for imp in instance.module.module.imports:
        if imp.kind == "global":
            cell = instance.state.get(f"g{k}")
            if isinstance(cell, Global) and imp.desc.mutable:
                out.append((f"{imp.module}::{imp.name}", cell))
            k += 1
    return out


def write_preinitialized(
    snapshot: Snapshot, wasm: bytes | str, *, remove_exports: Iterable[str] = ()
) -> Preinitialized:
    """``wasm``, the module ``snapshot.module`` was compiled from (binary or text), rewritten to start
    in the captured state (see the module docstring), without the start function and without the
    exports named in ``remove_exports``. ``PreinitError`` for state a module cannot express; ``ValueError`` when
    ``wasm`` is not the snapshot's module."""
    cm = snapshot.module
    m = cm.module
    if isinstance(wasm, str) or is_text(wasm):  # as Module takes it: the text format is encoded first
        wasm = wat_to_wasm(wasm)
    sections = rewrite.split(bytes(wasm))
    w = _Writer(m, sections, cm.features)
    w.check_same()
    gone = set(remove_exports)
    missing = gone - {e.name for e in m.exports}
    if missing:
        raise ValueError(f"the module has no export named {', '.join(sorted(map(repr, missing)))}")
    declared = _declared_funcs(m, gone)
    w.globals(snapshot.globals)
    w.tables(snapshot.tables)
    w.memories(snapshot.memories)
    w.exports(gone)
    rewrite.put(sections, rewrite.START, None)
    w.elements(snapshot, declared)
    data_bytes, segments = w.datas(snapshot)
    rewrite.drop_names(sections, {rewrite.NAME_ELEMS, rewrite.NAME_DATAS})  # renumbered segments
    return Preinitialized(
        wasm=rewrite.join(sections),
        memory_bytes=sum(pages for pages, _runs in snapshot.memories) * PAGE_SIZE,
        data_bytes=data_bytes,
        data_segments=segments,
    )


def _declared_funcs(m: Module, gone: set[str]) -> set[int]:
    """Functions that ``ref.func`` in the code may name because the module declared them outside
    the code (segments, global initialisers, exports), less those the kept exports still declare:
    a declarative segment keeps them declared when the rest is rewritten."""
    out = {e.index for e in m.exports if e.kind == "func" and e.name in gone}
    exprs = [gl.init for gl in m.globals] + [e for seg in m.elems for e in seg.init]
    for expr in exprs:
        out.update(_funcs_named(expr))
    return out - {e.index for e in m.exports if e.kind == "func" and e.name not in gone}


def _funcs_named(expr: Sequence[Any]) -> set[int]:
    return {imm for op, imm, _off in expr if op == 0xD2}


def data_pieces(runs: Sequence[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """A memory's non-zero pages (``Snapshot.memories``' runs) as (address, bytes) segments: split at
    zero runs of ``MIN_ZERO_GAP`` bytes or more, trimmed of zeros at both ends, and joined across the
    smallest gaps while there are more than ``MAX_DATA_SEGMENTS``."""
    pieces: list[tuple[int, bytes]] = []

    def add(addr: int, blob: bytes) -> None:
        stripped = blob.lstrip(b"\0")
        if stripped:
            pieces.append((addr + len(blob) - len(stripped), stripped.rstrip(b"\0")))

    for base, blob in runs:
        pos = 0
        for zeros in _ZEROS.finditer(blob):
            add(base + pos, blob[pos : zeros.start()])
            pos = zeros.end()
        add(base + pos, blob[pos:])
    excess = len(pieces) - MAX_DATA_SEGMENTS
    if excess <= 0:
        return pieces
    gaps = sorted(
        range(1, len(pieces)), key=lambda k: pieces[k][0] - pieces[k - 1][0] - len(pieces[k - 1][1])
    )
    join = set(gaps[:excess])
    merged: list[tuple[int, bytes]] = []
    for k, (addr, blob) in enumerate(pieces):
        if k in join:
            prev_addr, prev = merged[-1]
            merged[-1] = (prev_addr, prev + bytes(addr - prev_addr - len(prev)) + blob)
        else:
            merged.append((addr, blob))
    return merged


def _ref_runs(elems: Sequence[Any]) -> list[tuple[int, int]]:
    """(start, end) of the runs of non-null elements, across gaps of at most ``MAX_NULL_GAP`` nulls."""
    runs: list[tuple[int, int]] = []
    for i, e in enumerate(elems):
        if e is None:
            continue
        if runs and i - runs[-1][1] <= MAX_NULL_GAP:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def _offset(address: str, n: int) -> bytes:
    """A segment's offset as a constant expression."""
    return (b"\x42" + sleb(signed64(n)) if address == I64 else b"\x41" + sleb(signed32(n))) + b"\x0b"


class _Writer:
    """Rewrites the sections of one module, one kind of state at a time."""

    def __init__(self, m: Module, sections: rewrite.Sections, features: Any) -> None:
        self.m = m
        self.sections = sections
        self.features = features
        imports = m.imports
        self.n_globals = sum(1 for i in imports if i.kind == "global")
        self.n_tables = sum(1 for i in imports if i.kind == "table")
        self.n_memories = sum(1 for i in imports if i.kind == "memory")
        self.exported: dict[tuple[str, int], str] = {(e.kind, e.index): e.name for e in m.exports}
        self.table_entries: list[rewrite.TableEntry] = []

    def payload(self, sid: int) -> bytes:
        return rewrite.find(self.sections, sid) or b"\x00"

    def check_same(self) -> None:
        m, f = self.m, self.features
        counts = (
            (len(rewrite.global_types(self.payload(rewrite.GLOBAL), f)), len(m.globals), "globals"),
            (len(rewrite.table_entries(self.payload(rewrite.TABLE), f)), len(m.tables), "tables"),
            (len(rewrite.elem_entries(self.payload(rewrite.ELEM), f)), len(m.elems), "element segments"),
            (len(rewrite.data_entries(self.payload(rewrite.DATA), f)), len(m.datas), "data segments"),
        )
        for have, want, what in counts:
            if have != want:
                raise ValueError(
                    f"these bytes are not the snapshot's module: they define {have} {what}, it has {want}"
                )

    def where(self, kind: str, index: int) -> str:
        exported = self.exported.get((kind, index))
        return f"{kind} {index}" + (f" (export {exported!r})" if exported else "")

    # -- values

    def const(self, valtype: str, type_bytes: bytes, value: Any, where: str) -> bytes:
        """The constant expression (without its ``end``) that gives ``value``."""
        if valtype == I32:
            return b"\x41" + sleb(signed32(value))
        if valtype == I64:
            return b"\x42" + sleb(signed64(value))
        if valtype == F32:
            return b"\x43" + struct.pack("<I", value if isinstance(value, int) else f32_to_bits(value))
        if valtype == F64:
            return b"\x44" + struct.pack("<Q", value if isinstance(value, int) else f64_to_bits(value))
        if valtype == V128:
            return b"\xfd" + uleb(12) + value.to_bytes(16, "little")
        return self.ref(type_bytes, value, where)

    def ref(self, reftype: bytes, value: Any, where: str) -> bytes:
        if value is None:
            return b"\xd0" + rewrite.heap_type(reftype)
        if isinstance(value, _OwnFunc):
            return b"\xd2" + uleb(value.index)
        what = (
            "a function that is not one of the module's own or imported functions (a host function "
            "given to it at run time)"
            if isinstance(value, Func)
            else f"a host reference ({type(value).__name__})"
        )
        raise PreinitError(
            f"cannot write the initialised state: {where} holds {what}, which a module cannot express"
        )

    # -- sections

    def globals(self, values: Sequence[Any]) -> None:
        if not self.m.globals:
            return
        types = rewrite.global_types(self.payload(rewrite.GLOBAL), self.features)
        entries = []
        for k, (gl, raw, value) in enumerate(zip(self.m.globals, types, values, strict=True)):
            where = self.where("global", self.n_globals + k)
            entries.append(raw + self.const(gl.type.valtype, raw[:-1], value, where) + b"\x0b")
        rewrite.put(self.sections, rewrite.GLOBAL, vec(entries))

    def tables(self, contents: Sequence[Sequence[Any]]) -> None:
        if not self.m.tables:
            return
        entries = rewrite.table_entries(self.payload(rewrite.TABLE), self.features)
        out = []
        for tt, entry, elems in zip(self.m.tables, entries, contents, strict=True):
            head = b"\x40\x00" if entry.init is not None else b""
            out.append(
                head + entry.reftype + limits(len(elems), tt.limits.max, tt.address) + (entry.init or b"")
            )
        rewrite.put(self.sections, rewrite.TABLE, vec(out))
        self.table_entries = entries

    def memories(self, contents: Sequence[tuple[int, Any]]) -> None:
        if not self.m.memories:
            return
        out = [
            limits(pages, mt.limits.max, mt.address)
            for mt, (pages, _runs) in zip(self.m.memories, contents, strict=True)
        ]
        rewrite.put(self.sections, rewrite.MEMORY, vec(out))

    def exports(self, gone: set[str]) -> None:
        if not gone:
            return
        out = [
            name(e.name) + bytes((_KIND[e.kind],)) + uleb(e.index)
            for e in self.m.exports
            if e.name not in gone
        ]
        rewrite.put(self.sections, rewrite.EXPORT, vec(out) if out else None)

    def elements(self, snapshot: Snapshot, declared: set[int]) -> None:
        m = self.m
        out = []
        entries = rewrite.elem_entries(self.payload(rewrite.ELEM), self.features)
        for seg, entry, now in zip(m.elems, entries, snapshot.elems, strict=True):
            if seg.mode == "declarative" or (seg.mode == "passive" and now):
                out.append(entry.raw)  # segments do not change: one still there is as it was written
                for expr in seg.init:
                    declared = declared - _funcs_named(expr)
            elif entry.reftype is not None:
                out.append(b"\x05" + entry.reftype + b"\x00")  # dropped: an empty passive segment
            else:
                out.append(b"\x01\x00\x00")
        for k, (tt, elems) in enumerate(zip(m.tables, snapshot.tables, strict=True)):
            table = self.table_entries[k]
            index = self.n_tables + k
            spans = [(0, len(elems))] if table.init is not None and elems else _ref_runs(elems)
            for start, end in spans:
                exprs = [
                    self.ref(table.reftype, elems[i], f"{self.where('table', index)} element {i}") + b"\x0b"
                    for i in range(start, end)
                ]
                out.append(b"\x06" + uleb(index) + _offset(tt.address, start) + table.reftype + vec(exprs))
        if declared:
            out.append(b"\x03\x00" + vec([uleb(i) for i in sorted(declared)]))
        rewrite.put(self.sections, rewrite.ELEM, vec(out) if out else None)

    def datas(self, snapshot: Snapshot) -> tuple[int, int]:
        """Write the data segments; (bytes of memory they hold, segments written for the memories)."""
        m = self.m
        out = []
        if m.data_count is not None:  # the code may name segments by index: keep every index
            entries = rewrite.data_entries(self.payload(rewrite.DATA), self.features)
            for seg, raw, now in zip(m.datas, entries, snapshot.datas, strict=True):
                out.append(raw if seg.mode == "passive" and now else b"\x01\x00")
        written = total = 0
        for k, (mt, (_pages, runs)) in enumerate(zip(m.memories, snapshot.memories, strict=True)):
            index = self.n_memories + k
            head = b"\x00" if index == 0 else b"\x02" + uleb(index)
            for addr, blob in data_pieces(runs):
                out.append(head + _offset(mt.address, addr) + uleb(len(blob)) + blob)
                written += 1
                total += len(blob)
        rewrite.put(self.sections, rewrite.DATA, vec(out) if out else None)
        if m.data_count is not None:
            rewrite.put(self.sections, rewrite.DATACOUNT, uleb(len(out)))
        return total, written


__all__ = [
    "DEFAULT_INIT",
    "MAX_DATA_SEGMENTS",
    "MIN_ZERO_GAP",
    "PreinitError",
    "Preinitialized",
    "data_pieces",
    "preinitialize",
    "write_preinitialized",
]
