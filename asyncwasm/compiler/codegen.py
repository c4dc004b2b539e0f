"""Compile a module's functions into Python code objects, eagerly for small modules and lazily (on
first call) for big ones, with the tables that map generated lines back to Wasm byte offsets.

Instances never exec source: each binds the shared code objects to its own globals with
``FunctionType``, so instantiating costs a function object per function actually used.
"""

from __future__ import annotations

import itertools
import marshal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType, FunctionType
from typing import Protocol

from ..binary.module import I64, Code, FuncType, MemoryType, Module
from ..binary.types import REGISTRY, canonical_ids
from .contract import InstanceState, enclose, functions_in, state_cells
from .info import ModuleInfo

LAZY_THRESHOLD = 4_000  # instructions: above this, functions are translated when first called
# A function this big takes 40 ms or more to translate and compile (about 9 us an instruction, most
# of it in CPython's compile(), which never lets the event loop run): a guest's first call to one is
# translated in a worker process instead, so the loop keeps running and a timeout can stop it.
OFFLOAD_THRESHOLD = 5_000


class _TranslationClock:
    """Seconds this process has spent translating and compiling functions: the scheduler does not bill
    them to the guest whose turn they happened in (any instance of the module needs the code)."""

    seconds = 0.0


TRANSLATION = _TranslationClock()
_counter = itertools.count()


def canonical_type_id(ft: FuncType) -> int:
    """The canonical id of a function type on its own (final, no supertype): what a host function
    has, and what any 2.0 module's types get (``binary.types.canonical_ids`` for the general case)."""
    return REGISTRY.func_id(ft)


def memory_bytes_max(mt: MemoryType) -> int:
    """The most bytes a memory of type ``mt`` can ever have (its maximum, else the spec's limit:
    4 GiB for a 32-bit memory, 2^48 pages for a 64-bit one)."""
    pages = mt.limits.max if mt.limits.max is not None else (1 << 48 if mt.address == I64 else 1 << 16)
    return pages * 65536


def global_cells(module: Module) -> set[int]:
    """Globals that must be shared with other instances or the host through a cell."""
    n_imported = sum(1 for i in module.imports if i.kind == "global")
    cells = set(range(n_imported))
    for e in module.exports:
        if e.kind == "global":
            cells.add(e.index)
    return cells


@dataclass
class Translated:
    """One function translated and compiled away from its module: what ``install`` takes back."""

    index: int
    code: bytes  # the marshalled code object of ``f{index}`` (``w{index}`` for one with tail calls)
    line_table: list[int]
    consts: dict[str, float]
    tail: bytes | None = None  # the marshalled ``t{index}``: the body of a function with tail calls


def translate_alone(info: ModuleInfo, index: int, body: Code, ftype: FuncType, filename: str) -> Translated:
    """Translate and compile one function with nothing but its inputs (in a worker process)."""
    from .structured import translate_function  # the translator loads only when something is translated

    src, offs, consts = translate_function(info, index, body, ftype)
    module_code = compile(enclose("\n".join(src), info.state_cells), filename, "exec")
    found = {c.co_name: c for c in functions_in(module_code)}
    if f"w{index}" in found:
        return Translated(
            index, marshal.dumps(found[f"w{index}"]), offs, consts, marshal.dumps(found[f"t{index}"])
        )
    if f"f{index}" in found:
        return Translated(index, marshal.dumps(found[f"f{index}"]), offs, consts)
    raise AssertionError(f"no code object for f{index}")


class FunctionStore(Protocol):
    """Where translated functions are kept between processes (``runtime.code_cache.CacheEntry``)."""

    def load_function(self, index: int) -> Translated | None: ...

    def store_function(self, done: Translated) -> None: ...


def _refile(code: CodeType, filename: str) -> CodeType:
    """``code`` (and the code objects inside it) as if compiled from ``filename``: a cached function
    was compiled under another process's file name, and backtraces find their module by it."""
    consts = tuple(_refile(c, filename) if isinstance(c, CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


class CompiledCode:
    """The code objects of one module's functions, made once and shared by all its instances."""

    def __init__(
        self, module: Module, name: str, lazy: bool | None = None, store: FunctionStore | None = None
    ) -> None:
        self.module = module
        self.store = store
        self.n_imported = sum(1 for i in module.imports if i.kind == "func")
        self.func_types = module.func_types()
        memories = [(mt.address, memory_bytes_max(mt)) for mt in module.memory_types()]
        memory_max = memories[0][1] if memories else 1 << 32
        tables = module.table_types()
        fixed = {k: t.limits.min for k, t in enumerate(tables) if t.limits.max == t.limits.min}
        self.info = ModuleInfo(
            module.types,
            self.func_types,
            global_cells(module),
            canonical_ids(module),
            memory_max,
            fixed,
            memories or None,
            [t.address for t in tables],
        )
        n_imported_globals = sum(1 for i in module.imports if i.kind == "global")
        self.info.state_cells = state_cells(
            n_imported_globals, [g.type.mutable for g in module.globals], self.info.global_cells
        )
        self.info.tag_types = [module.types[x].params for x in module.tag_types()]  # compiler/exceptions.py
        self.filename = f"<wasm {name} #{next(_counter)}>"
        self.codes: dict[int, CodeType] = {}
        self.tails: dict[int, CodeType] = {}  # bodies of functions with tail calls (compiler/tailcall.py)
        self.line_tables: dict[int, list[int]] = {}  # per function: Wasm offset of each line
        self.consts: dict[int, dict[str, float]] = {}  # per function: its NaN and infinity constants
        self._lock = threading.Lock()
        size = sum(c.instruction_count() for c in module.codes)
        self.lazy = size > LAZY_THRESHOLD if lazy is None else lazy
        if not self.lazy:
            self._compile(range(self.n_imported, self.n_imported + len(module.codes)))

    def _compile(self, indices: range | list[int]) -> None:
        t0 = time.perf_counter()
        try:
            self._compile_now(indices)
        finally:
            TRANSLATION.seconds += time.perf_counter() - t0

    def _compile_now(self, indices: range | list[int]) -> None:
        from .structured import translate_function  # the translator loads only when something is translated

        lines: list[str] = []
        tables: dict[int, list[int]] = {}
        consts: dict[int, dict[str, float]] = {}
        for idx in indices:
            src, offs, fconsts = translate_function(
                self.info, idx, self.module.codes[idx - self.n_imported], self.func_types[idx]
            )
            consts[idx] = fconsts
            tables[idx] = offs
            lines.extend(src)
        code = compile(enclose("\n".join(lines), self.info.state_cells), self.filename, "exec")
        self.consts.update(consts)
        for const in functions_in(code):
            if const.co_name[:1] in ("f", "w", "t"):
                idx = int(const.co_name[1:])
                (self.tails if const.co_name[0] == "t" else self.codes)[idx] = const
                self.line_tables[idx] = tables[idx]
        if self.store is not None:
            for idx in indices:
                tail = self.tails.get(idx)
                self.store.store_function(
                    Translated(
                        idx,
                        marshal.dumps(self.codes[idx]),
                        tables[idx],
                        consts[idx],
                        None if tail is None else marshal.dumps(tail),
                    )
                )

    def cached(self, idx: int) -> CodeType | None:
        """Function ``idx`` from the persistent store, if it is there (then it is kept as translated)."""
        if self.store is None:
            return None
        done = self.store.load_function(idx)
        return None if done is None else self.install(done)

    def code_for(self, idx: int) -> CodeType:
        """The code object of function ``idx``, translating it now if it was not yet."""
        code = self.codes.get(idx)
        if code is None:
            code = self.cached(idx)
        if code is None:
            with self._lock:
                if idx not in self.codes:
                    self._compile([idx])
            code = self.codes[idx]
        return code

    def translate_all(self, progress: Callable[[int, int], None] | None = None, batch: int = 32) -> int:
        """Translate every function not translated yet (found in the store counts as translated), in
        batches, calling ``progress(done, total)`` after each; returns how many were translated here."""
        todo = [i for i in range(self.n_imported, len(self.func_types)) if i not in self.codes]
        total, done, made = len(todo), 0, 0
        for start in range(0, total, batch):
            chunk = [i for i in todo[start : start + batch] if i not in self.codes and self.cached(i) is None]
            if chunk:
                with self._lock:
                    chunk = [i for i in chunk if i not in self.codes]
                    self._compile(chunk)
                made += len(chunk)
            done = min(total, start + batch)
            if progress is not None:
                progress(done, total)
        return made

    def wants_worker(self, idx: int) -> bool:
        """Whether function ``idx`` is big enough to be translated in a worker process."""
        if (
            idx in self.codes
            or self.module.codes[idx - self.n_imported].instruction_count() <= OFFLOAD_THRESHOLD
        ):
            return False
        return self.cached(idx) is None

    def job(self, idx: int) -> tuple[ModuleInfo, int, Code, FuncType, str]:
        """The arguments of ``translate_alone`` for function ``idx``."""
        return self.info, idx, self.module.codes[idx - self.n_imported], self.func_types[idx], self.filename

    def install(self, done: Translated) -> CodeType:
        """Keep a function translated elsewhere (the first translation of a function wins)."""
        with self._lock:
            if done.index not in self.codes:
                code = marshal.loads(done.code)
                if code.co_filename != self.filename:
                    code = _refile(code, self.filename)
                self.consts[done.index] = done.consts
                self.line_tables[done.index] = done.line_table
                if done.tail is not None:
                    tail = marshal.loads(done.tail)
                    self.tails[done.index] = (
                        tail if tail.co_filename == self.filename else _refile(tail, self.filename)
                    )
                self.codes[done.index] = code
                if self.store is not None:
                    self.store.store_function(done)
            return self.codes[done.index]

    def make_function(self, idx: int, state: InstanceState) -> FunctionType:
        """Bind function ``idx`` (translated already) to an instance's state as ``f{idx}``.

        A function with tail calls is two: its body ``t{idx}`` and the trampoline ``f{idx}`` that
        ordinary callers call; the trampoline's ``_t`` names the body, so that a tail call to it
        from another trampoline runs the body directly instead of nesting a trampoline."""
        g = state.g
        fn = state.bind(self.codes[idx])
        tail = self.tails.get(idx)
        if tail is not None:
            body = g[f"t{idx}"] = state.bind(tail)
            fn._t = body  # type: ignore[attr-defined]
        g.update(self.consts[idx])
        g[f"f{idx}"] = fn
        return fn

    def offset_of(self, code: CodeType, lineno: int) -> int | None:
        idx = int(code.co_name[1:])
        table = self.line_tables.get(idx)
        k = lineno - code.co_firstlineno
        if table is None or not 0 <= k < len(table):
            return None
        return table[k]

    def source_of(self, idx: int) -> str:
        """The Python source of one function (for debugging and curiosity)."""
        from .structured import translate_function

        src, _offs, _c = translate_function(
            self.info, idx, self.module.codes[idx - self.n_imported], self.func_types[idx]
        )
        return "\n".join(src)

    @property
    def source(self) -> str:
        return "\n".join(self.source_of(i) for i in range(self.n_imported, len(self.func_types)))


def compile_module(
    module: Module, name: str = "module", lazy: bool | None = None, store: FunctionStore | None = None
) -> CompiledCode:
    return CompiledCode(module, name, lazy, store)
