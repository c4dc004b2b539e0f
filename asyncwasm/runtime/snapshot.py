"""Snapshots of initialised instances: capture an instance's state between calls, start new, independent
instances from it.

An interpreter compiled to Wasm spends most of its start-up initialising itself (MicroPython builds its
heap and its modules, QuickJS its runtime and context); a server that runs one per request wants that
done once. ``instance.snapshot()`` captures what the guest can change: its own memories (only the
64 KiB pages that are not all zeros), its own globals, its own tables, and which data and element
segments it has dropped. ``Linker.instantiate(module, store, snapshot=snap)`` builds a fresh instance
of the same module, links it to fresh imports (a new WASI context, say), skips the segments and the
start function, and puts the captured state in place: its cost is the pages the snapshot holds, not
the memory's declared size, and a page that was all zeros costs nothing (a fresh memory map is zero
until written, so the new instance's resident memory grows only with those pages and what it writes).

References are captured by what they mean: a function of the instance (its own or an import) becomes
that function of the new instance; an ``externref`` host object is shared as it is. What cannot be
shared between independent instances (GC structs and arrays, caught exceptions) makes ``snapshot()``
fail with ``SnapshotError``, as does state the instance does not own (an imported memory or table:
its owner may snapshot it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import WasmError
from .memory import PAGE_SIZE
from .objects import Func, Global

if TYPE_CHECKING:
    from .instance import CompiledModule, Instance

_ZERO_PAGE = bytes(PAGE_SIZE)


class SnapshotError(WasmError):
    """An instance's state cannot be captured, or a snapshot does not fit the instance made from it."""


@dataclass(frozen=True)
class _OwnFunc:
    """A function of the captured instance, by its index in the instance's function space."""

    index: int


@dataclass(frozen=True)
class Snapshot:
    """The captured state of one instance of ``module`` (see the module's docstring)."""

    module: CompiledModule
    memories: tuple[tuple[int, tuple[tuple[int, bytes], ...]], ...]  # per own memory: pages, non-zero runs
    globals: tuple[Any, ...]  # per own global: its value (references encoded)
    tables: tuple[tuple[Any, ...], ...]  # per own table: its elements (encoded)
    datas: tuple[bytes, ...]  # each data segment, b"" once dropped
    elems: tuple[tuple[Any, ...], ...]  # each element segment's elements, () once dropped

    @property
    def memory_bytes(self) -> int:
        """The bytes of memory the snapshot holds (the non-zero pages)."""
        return sum(len(blob) for _pages, runs in self.memories for _off, blob in runs)


def _counts(inst: Instance) -> tuple[int, int, int]:
    imports = inst.module.module.imports
    return (
        sum(1 for i in imports if i.kind == "memory"),
        sum(1 for i in imports if i.kind == "table"),
        sum(1 for i in imports if i.kind == "global"),
    )


def _encoder(inst: Instance) -> Any:
    own = {id(f): k for k, f in inst._refs.items()}  # noqa: SLF001 - the instance's function objects

    def encode(value: Any, where: str) -> Any:
        if value is None or isinstance(value, (int, float)):
            return value
        if isinstance(value, Func):
            k = own.get(id(value))
            return _OwnFunc(k) if k is not None else value
        module = type(value).__module__
        if module.startswith("asyncwasm."):  # GC objects, exception references: they belong to this instance
            raise SnapshotError(
                f"cannot snapshot {where}: it holds a {type(value).__name__}, which an "
                "independent instance cannot share"
            )
        return value  # an externref: a host object, shared as the host gave it

    return encode


def _runs(data: Any) -> tuple[tuple[int, bytes], ...]:
    """The memory's non-zero pages, adjacent ones joined."""
    runs: list[tuple[int, bytes]] = []
    start = None
    size = len(data)
    for off in range(0, size, PAGE_SIZE):
        if data[off : off + PAGE_SIZE] != _ZERO_PAGE:
            if start is None:
                start = off
        elif start is not None:
            runs.append((start, bytes(data[start:off])))
            start = None
    if start is not None:
        runs.append((start, bytes(data[start:size])))
    return tuple(runs)


def capture(inst: Instance) -> Snapshot:
    """The state of ``inst`` now (between calls)."""
    if inst.dead:
        raise SnapshotError(f"cannot snapshot a dead instance: {inst.dead}")
    n_mem, n_tab, n_glob = _counts(inst)
    m = inst.module.module
    if n_mem or n_tab:
        raise SnapshotError(
            "cannot snapshot an instance that imports a memory or a table: its owner holds that state"
        )
    encode = _encoder(inst)
    g = inst.g
    memories = tuple((mem.pages, _runs(mem.data)) for mem in inst.memories[n_mem:])
    values = []
    for k in range(n_glob, n_glob + len(m.globals)):
        v = inst.state.get(f"g{k}")
        values.append(encode(v.value if isinstance(v, Global) else v, f"global {k}"))
    tables = tuple(tuple(encode(e, f"table {k}") for e in t.elems) for k, t in enumerate(inst.tables[n_tab:]))
    elems = tuple(tuple(encode(e, f"element segment {k}") for e in seg) for k, seg in enumerate(g["_E"]))
    return Snapshot(inst.module, memories, tuple(values), tables, tuple(g["_D"]), elems)


def restore(inst: Instance, snap: Snapshot) -> None:
    """Put ``snap``'s state into ``inst``, a fresh instance of the same module built without segments."""
    if snap.module is not inst.module:
        raise SnapshotError("a snapshot starts instances of the module it was taken from, not another one")
    n_mem, n_tab, n_glob = _counts(inst)

    def decode(value: Any) -> Any:
        return inst.func_ref(value.index) if isinstance(value, _OwnFunc) else value

    for mem, (pages, runs) in zip(inst.memories[n_mem:], snap.memories, strict=True):
        if pages > mem.pages and mem.grow(pages - mem.pages) < 0:
            raise SnapshotError(f"the snapshot's memory of {pages} pages exceeds this store's limit")
        data = mem.data
        for off, blob in runs:
            data[off : off + len(blob)] = blob
    g = inst.g
    for k, value in enumerate(snap.globals, start=n_glob):
        cell = inst.state.get(f"g{k}")
        if isinstance(cell, Global):
            cell.value = decode(value)
        else:
            inst.state.set(f"g{k}", decode(value))
    for table, elems in zip(inst.tables[n_tab:], snap.tables, strict=True):
        if len(elems) > len(table.elems) and table.grow(len(elems) - len(table.elems), None) < 0:
            raise SnapshotError(f"the snapshot's table of {len(elems)} elements exceeds this store's limit")
        table.elems[:] = [decode(e) for e in elems]
    g["_D"][:] = list(snap.datas)
    g["_E"][:] = [[decode(e) for e in seg] for seg in snap.elems]
