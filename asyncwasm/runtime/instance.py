"""Compiled modules, instances and the linker that joins them to their imports.

A module is decoded, validated and compiled to one Python code object once; each instance executes
that code object in a fresh globals dict holding its own memory, tables, globals and imports, so
instantiating is cheap and instances share no state they were not given.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import replace
from os import PathLike
from pathlib import Path
from types import CodeType, FunctionType
from typing import Any

import anyio

from ..binary.module import (
    FUNCREF,
    I64,
    ExternKind,
    FuncType,
    GlobalType,
    Instr,
    Limits,
    MemoryType,
    Module,
    TableType,
)
from ..binary.simd_opcodes import SIMD_NAMES
from ..binary.types import GLOBAL, REGISTRY, canon_valtype, canonical_ids
from ..compiler import numeric
from ..compiler.codegen import LAZY_THRESHOLD, CompiledCode, canonical_type_id, compile_module, global_cells
from ..compiler.contract import InstanceState
from ..compiler.memories import grow_name, memory_name
from ..cpu import Price, RunStats
from ..errors import InstanceDead, Interrupted, LinkError, Trap
from ..features import WASM3, Features
from ..scheduler import await_in_guest, in_guest, run_guest, run_guest_sync, run_setup
from ..store import Store
from ..text import is_text
from ..traps import as_trap, register_code
from . import code_cache, gc, objects, startup_fuel
from . import snapshot as snapshots
from .code_cache import CacheEntry, CodeCache
from .exports import Export, ExportedFunc, ExportType, ImportType, InstanceExports, export_types, import_types
from .helpers import BUILTINS
from .host_call import host_wrapper
from .memory import Memory
from .objects import Func, Global, Table, Tag
from .offload import translate_in_worker
from .snapshot import Snapshot
from .values import to_raw

Extern = Func | Table | Memory | Global | Tag

V128_CONST = SIMD_NAMES["v128.const"]


class CompiledModule:
    """A validated, compiled module: instantiate it as often as you like."""

    def __init__(
        self,
        wasm: bytes | str,
        name: str | None = None,
        *,
        features: Features | None = None,
        cache: CodeCache | str | PathLike[str] | bool | None = True,
    ) -> None:
        """Decode, validate and compile ``wasm`` (binary, or text as ``.wat``).

        ``features`` chooses the proposals the module may use (default: all of Wasm 3.0; see
        ``asyncwasm.Features``). ``cache`` is the persistent code cache a big module is kept in
        (``asyncwasm.CodeCache``): ``True`` (the default) the user cache directory or
        ``$ASYNCWASM_CACHE_DIR`` (off when ``$ASYNCWASM_NO_CACHE`` is set), a path or a ``CodeCache`` that
        cache, ``False`` none. Raises ``MalformedModule``, ``UnsupportedFeature`` or ``InvalidModule``.
        """
        if isinstance(wasm, str) or is_text(wasm):  # the text format (.wat): encode it first
            from ..text import wat_to_wasm

            wasm = wat_to_wasm(wasm)
        wasm = bytes(wasm)
        self.features: Features = features if features is not None else WASM3
        self.cache_entry: CacheEntry | None = None
        self.price = Price()  # what a fuel unit of its code costs: its instances' turns are billed at it
        module = None
        store = code_cache.resolve(cache) if len(wasm) >= code_cache.MIN_MODULE_BYTES else None
        if store is not None:
            self.cache_entry = store.entry(store.key(wasm, self.features))
            if self.cache_entry is not None:
                module = self.cache_entry.load_module()
        if module is None:
            # the decoder and validator load only on a cache miss: a warm start needs neither
            from ..binary.reader import decode_module
            from ..validate import validate_module

            module = decode_module(wasm, self.features)
            validate_module(module, self.features)
            if self.cache_entry is not None:
                if sum(c.instruction_count() for c in module.codes) > LAZY_THRESHOLD:
                    self.cache_entry.store_module(module)
                else:  # small enough to compile faster than it reads back
                    self.cache_entry = None
        self.module: Module = module
        self.name = name or self.module.names.module or "module"
        self.compiled: CompiledCode = compile_module(self.module, self.name, store=self.cache_entry)
        self._func_types = self.module.func_types()
        self._stub_codes: list[CodeType] | None = None  # made on the first instance (_stub_codes)
        cids = canonical_ids(self.module)
        self._cids = cids
        self._func_tids = [cids[i.desc] for i in self.module.imports if i.kind == "func"] + [
            cids[t] for t in self.module.funcs
        ]
        self._cells = global_cells(self.module)
        register_code(self.compiled.filename, self)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        features: Features | None = None,
        cache: CodeCache | str | PathLike[str] | bool | None = True,
    ) -> CompiledModule:
        """Compile the module in file ``path`` (``.wasm`` or ``.wat``), named after the file."""
        p = Path(path)
        return cls(p.read_bytes(), name=p.stem, features=features, cache=cache)

    def precompile(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Translate every function now rather than on its first call, as ``wasmtime compile`` does;
        with a code cache, the next process finds them all there. ``progress(done, total)`` is called
        as it goes. Returns the number of functions translated (not found in the cache)."""
        return self.compiled.translate_all(progress)

    def func_name(self, index: int) -> str | None:
        """The name section's name of function ``index``, if it has one."""
        return self.module.names.funcs.get(index)

    @property
    def imports(self) -> list[ImportType]:
        """Every import, in order, as an ``ImportType``: ``.module``, ``.name``, ``.kind`` (func, table,
        memory, global, tag) and ``.type`` (the ``FuncType``, ``TableType``, ``MemoryType`` or
        ``GlobalType`` it must have), as wasmtime-py's ``Module.imports``.

        Named fields rather than the ``(module, name, kind)`` tuples of before: a tuple that gained
        the type would have broken every caller that unpacked it anyway, and a host defining stubs by
        type reads ``imp.type.params``, not a position."""
        return import_types(self.module)

    @property
    def exports(self) -> list[ExportType]:
        """Every export, in order, as an ``ExportType``: ``.name``, ``.kind`` and ``.type``."""
        return export_types(self.module)


class Caller:
    """What a host function defined with ``access_caller=True`` receives first: the calling instance
    (``instance``), its store (``store``), its exported memory (``memory``) and other exports."""

    __slots__ = ("instance",)

    def __init__(self, instance: Instance) -> None:
        self.instance = instance

    @property
    def store(self) -> Store:
        """The store of the calling instance (its limits and fuel)."""
        return self.instance.store

    @property
    def memory(self) -> Memory | None:
        """The calling instance's memory exported as ``memory`` (what WASI reads), or None."""
        m = self.instance._externs.get("memory")
        return m if isinstance(m, Memory) else None

    def get_export(self, name: str) -> Export | None:
        """The calling instance's export ``name`` as ``instance.exports`` has it, or None."""
        return self.instance.exports.get(name)


def _is_coroutine_function(fn: Any) -> bool:
    """``inspect.iscoroutinefunction``, with a fast path for plain functions (hosts define many)."""
    if type(fn) is FunctionType:
        return bool(fn.__code__.co_flags & inspect.CO_COROUTINE)
    return inspect.iscoroutinefunction(fn)


class HostFunc:
    """A Python callable offered as a Wasm import; bound to each importing instance on link."""

    def __init__(
        self, type: FuncType, fn: Callable[..., Any], access_caller: bool = False, name: str | None = None
    ) -> None:
        self.type = type
        self.fn = fn
        self.access_caller = access_caller
        self.is_async = _is_coroutine_function(fn)
        self.name = name or getattr(fn, "__name__", None)

    def bind(self, caller: Caller | None, store: Store | None = None) -> Func:
        """The raw-convention function the compiled code of one instance calls.

        Each call counts itself in the guest's native nesting (see ``scheduler.NativeNesting``):
        a host function that calls back into Wasm which calls it again must end in a trap, not in
        a C stack overflow.
        """
        limit = (store or Store()).max_host_nesting
        host = host_wrapper(
            self.fn,
            self.type.params,
            self.type.results,
            is_async=self.is_async,
            caller=caller,
            with_caller=self.access_caller,
            limit=limit,
        )
        host.__name__ = self.name or "host"
        return Func(host, self.type, self.name)


class Instance:
    """One instance: its exports, and ``await instance.call(name, *args)``.

    ``exports`` maps each export's name to what it is (an ``InstanceExports``): an ``ExportedFunc`` to
    ``await f(*args)``, or the instance's ``Memory``, ``Table``, ``Global`` or ``Tag``.
    ``call(name, *args)`` is the same call as ``await exports[name](*args)``.

    A call cancelled from outside (a cancel scope, a timeout) leaves the instance dead: its state
    may be half-updated, so later calls raise ``InstanceDead`` instead of running on it.
    """

    def __init__(self, module: CompiledModule, store: Store, stats: RunStats | None = None) -> None:
        self.module = module
        self.store = store
        self._externs: dict[str, Extern] = {}  # the raw objects: what the linker links importers to
        self.exports = InstanceExports(self, self._externs)
        self.g: dict[str, Any] = {}
        self.state = InstanceState(self.g)  # replaced when the instance is built (``_initialize``)
        self._refs: dict[int, Func] = {}
        self.stats = stats if stats is not None else RunStats(weight=store.weight)
        self.stats.price = module.price  # its turns are billed at its module's price
        self.memories: list[Memory] = []  # its memory index space (imports first), set as it is built
        self.tables: list[Table] = []  # its table index space
        self.dead: str | None = None  # why it may not run any more
        self._stopped_at: tuple[list[Any], int] = ([], 0)

    @property
    def weight(self) -> float:
        """Its share of the CPU when many guests are runnable (2.0: twice the share of 1.0)."""
        return self.stats.weight

    @weight.setter
    def weight(self, value: float) -> None:
        if value <= 0:
            raise ValueError("weight must be positive")
        self.stats.weight = value

    def snapshot(self) -> Snapshot:
        """Capture this instance's state (between calls) to start new instances from:
        ``await linker.instantiate(module, store, snapshot=snap)``. ``SnapshotError`` if some of it
        cannot be shared (see ``asyncwasm.runtime.snapshot``)."""
        return snapshots.capture(self)

    def func_ref(self, index: int) -> Func:
        """Function ``index`` of the instance's function space (imports first) as a ``Func``."""
        f = self._refs.get(index)
        if f is None:
            fn = self.g[f"f{index}"]
            f = self._refs[index] = Func(
                fn,
                self.module._func_types[index],
                self.module.func_name(index),
                self.module._func_tids[index],
            )
        return f

    def get_func(self, name: str) -> Func:
        """The raw ``Func`` of exported function ``name`` (for ``call_raw``, or its ``fn`` called
        with the raw convention); ``KeyError`` if there is none. ``exports[name]`` is the callable one."""
        f = self._externs.get(name)
        if not isinstance(f, Func):
            raise KeyError(f"no exported function named {name!r}")
        return f

    async def call(self, name: str, *args: Any) -> Any:
        """Call an exported function with Python values; returns None, a value, or a tuple.

        ``await instance.exports[name](*args)``, with ``KeyError`` when ``name`` is not an exported
        function; an argument not of its parameter's type (or the wrong number of them) is a
        ``TypeError`` naming the function and the parameter (see ``ExportedFunc.convert_args``)."""
        f = self.exports.get(name)
        if type(f) is not ExportedFunc:
            raise KeyError(f"no exported function named {name!r}")
        return await f(*args)

    async def call_raw(self, f: Func, args: list[Any]) -> Any:
        """Call ``f`` with raw values (unsigned ints for i32/i64, no conversion): the fast path for hosts
        that already hold raw values. Runs within the store's timeout; returns the raw result(s)."""
        if self.dead:
            raise InstanceDead(self.dead)
        timeout = self.store.timeout
        if timeout is None:
            return await run_guest(f.fn, tuple(args), self.store, self.stats, self._aborted)
        with anyio.move_on_after(timeout) as scope:
            return await run_guest(f.fn, tuple(args), self.store, self.stats, self._aborted)
        assert scope.cancelled_caught
        self.dead = f"the instance ran past its {timeout:g}s time limit"
        trap = Interrupted(f"interrupt: the call ran longer than the {timeout:g}s time limit")
        trap.frames, trap.omitted = self._stopped_at
        raise trap

    def _aborted(self, where: tuple[list[Any], int] = ([], 0)) -> None:
        self.dead = "the instance was cancelled in the middle of a call"
        self._stopped_at = where  # the frames it was stopped in: a timeout's backtrace

    def call_raw_sync(self, f: Func, args: list[Any]) -> Any:
        """``call_raw`` without an event loop: the guest may not call async host functions."""
        if self.dead:
            raise InstanceDead(self.dead)
        return run_guest_sync(f.fn, tuple(args), self.store)


# ---- linking ------------------------------------------------------------------------------------


def _limits_match(have_min: int, have_max: int | None, want_min: int, want_max: int | None) -> bool:
    if have_min < want_min:
        return False
    if want_max is None:
        return True
    return have_max is not None and have_max <= want_max


def _check_import(kind: ExternKind, desc: Any, item: Any, cids: list[int], where: str) -> None:
    """An import's type check: functions and immutable globals by subtyping, tables and mutable
    globals by equality, on canonical types (so types of different modules compare)."""
    bad = LinkError(f"incompatible import type for {where}")
    if kind == "func":
        if not isinstance(item, (Func, HostFunc)):
            raise bad
        have = item.tid if isinstance(item, Func) else canonical_type_id(item.type)
        want = cids[desc]
        if have != want and not REGISTRY.is_sub(have, want):
            raise bad
    elif kind == "table":
        if (
            not isinstance(item, Table)
            or item.type.elem != canon_valtype(desc.elem, cids)
            or item.type.address != desc.address
        ):
            raise bad
        if not _limits_match(len(item.elems), item.type.limits.max, desc.limits.min, desc.limits.max):
            raise bad
    elif kind == "memory":
        if not isinstance(item, Memory) or item.type.address != desc.address:
            raise bad
        if not _limits_match(item.pages, item.type.limits.max, desc.limits.min, desc.limits.max):
            raise bad
    elif kind == "global":
        if not isinstance(item, Global) or item.type.mutable != desc.mutable:
            raise bad
        want = canon_valtype(desc.valtype, cids)
        if item.type.valtype != want and (desc.mutable or not GLOBAL.sub(item.type.valtype, want)):
            raise bad
    elif kind == "tag":  # tags match by type equivalence
        if not isinstance(item, Tag) or item.tid != cids[desc]:
            raise bad


class Linker:
    """Names the things modules import: host functions, memories, tables, globals, instances."""

    def __init__(self) -> None:
        self._defs: dict[tuple[str, str], Any] = {}
        self._instances: dict[str, Instance] = {}

    def define(self, module: str, name: str, item: Extern | Export | HostFunc) -> None:
        """Offer ``item`` (a ``Func``, an ``ExportedFunc`` of another instance, ``Memory``, ``Table``,
        ``Global``, ``Tag`` or ``HostFunc``) as the import ``module.name``. A function is called with the
        raw convention, no conversion."""
        self._defs[(module, name)] = item.func if isinstance(item, ExportedFunc) else item

    def define_func(
        self, module: str, name: str, type: FuncType, fn: Callable[..., Any], *, access_caller: bool = False
    ) -> None:
        """Offer ``fn`` (plain or ``async def``) as the import ``module.name`` of type ``type``."""
        self._defs[(module, name)] = HostFunc(type, fn, access_caller, name)

    def define_instance(self, name: str, instance: Instance) -> None:
        """Offer every export of ``instance`` as the imports of module ``name``."""
        self._instances[name] = instance

    def get(self, module: str, name: str) -> Any:
        """What import ``module.name`` resolves to, or None."""
        item = self._defs.get((module, name))
        if item is None and module in self._instances:
            item = self._instances[module]._externs.get(name)
        return item

    def items(self) -> Iterator[tuple[tuple[str, str], Any]]:
        """Every ``((module, name), item)`` defined one by one (not those of ``define_instance``)."""
        return iter(self._defs.items())

    def resolve(self, module: CompiledModule) -> list[Any]:
        """The item for each import of ``module``, in order; ``LinkError`` naming one that is missing or
        of the wrong type."""
        out = []
        for imp in module.module.imports:
            item = self.get(imp.module, imp.name)
            where = f"{imp.module}::{imp.name}"
            if item is None:
                raise LinkError(f"unknown import: {where} has not been defined")
            _check_import(imp.kind, imp.desc, item, module._cids, where)
            out.append(item)
        return out

    async def instantiate(
        self, module: CompiledModule, store: Store | None = None, *, snapshot: Snapshot | None = None
    ) -> Instance:
        """Make an instance of ``module`` in ``store`` (a fresh one if None), linked to this linker's
        definitions, and run its start function. The set-up takes a turn of the CPU token, as guest code
        does, so thousands of instantiations at once share the loop with everyone else.

        With ``snapshot`` (from ``instance.snapshot()`` of an instance of the same module), the new
        instance starts in the captured state instead: no segments, no start function."""
        store = store or Store()
        stats = RunStats(weight=store.weight)
        inst, start = await run_setup(lambda: self._build(module, store, stats, snapshot), stats)
        if start is not None:
            await inst.call_raw(start, [])
        return inst

    def instantiate_sync(self, module: CompiledModule, store: Store | None = None) -> Instance:
        """Instantiate without an event loop (the start function may not call async imports)."""
        inst, start = self._build(module, store)
        if start is not None:
            inst.call_raw_sync(start, [])
        return inst

    def _build(
        self,
        module: CompiledModule,
        store: Store | None,
        stats: RunStats | None = None,
        snapshot: Snapshot | None = None,
    ) -> tuple[Instance, Func | None]:
        store = store or Store()
        resolved = self.resolve(module)
        inst = Instance(module, store, stats)
        try:
            start = _initialize(inst, resolved, segments=snapshot is None)
            if snapshot is not None:
                snapshots.restore(inst, snapshot)
        except BaseException as exc:
            mapped = as_trap(exc)
            if mapped is exc:
                raise
            raise mapped from None
        return inst, start


_M32, _M64 = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
# extended-const: i32/i64 add, sub and mul, on unsigned canonical ints
_EXTENDED_CONST: dict[int, Callable[[int, int], int]] = {
    0x6A: lambda a, b: (a + b) & _M32,
    0x6B: lambda a, b: (a - b) & _M32,
    0x6C: lambda a, b: (a * b) & _M32,
    0x7C: lambda a, b: (a + b) & _M64,
    0x7D: lambda a, b: (a - b) & _M64,
    0x7E: lambda a, b: (a * b) & _M64,
}


def _eval_const(expr: list[Instr], g: dict[str, Any], inst: Instance) -> Any:
    stack: list[Any] = []
    for op, imm, _off in expr:
        if op in (0x41, 0x42):
            stack.append(imm)
        elif op == 0x43:
            stack.append(numeric.f32_from_bits(imm))
        elif op == 0x44:
            stack.append(numeric.f64_from_bits(imm))
        elif op == 0x23:
            v = inst.state.get(f"g{imm}")
            stack.append(v.value if isinstance(v, Global) else v)
        elif op == 0xD0:
            stack.append(None)
        elif op == V128_CONST:
            stack.append(imm)
        elif op == 0xD2:
            stack.append(inst.func_ref(imm))
        elif op in _EXTENDED_CONST:
            b = stack.pop()
            stack.append(_EXTENDED_CONST[op](stack.pop(), b))
        elif gc.eval_const(op, imm, stack, inst.module.module.types, inst.module._cids):
            pass
        else:  # validation admits nothing else
            raise Trap(f"unsupported constant instruction {op:#x}")
    return stack[-1]


def _bind_functions(inst: Instance, g: dict[str, Any]) -> None:
    """Give the instance its functions: the shared code objects bound to its globals, or, for
    functions not translated yet, a stub that translates on first call and replaces itself.

    Stubs are code objects too, made once per module (``_stub_codes``) and bound like the real
    functions: an instance of a big guest (thousands of functions, most never called) costs one
    function object per function, not a closure and a factory call each."""
    cc = inst.module.compiled
    stubs = _stub_codes(inst.module)
    state = inst.state
    g["_resolve"] = lambda idx: _resolve_stub(inst, state, idx)
    for idx in range(cc.n_imported, len(cc.func_types)):
        if idx in cc.codes:
            cc.make_function(idx, state)
        else:
            g[f"f{idx}"] = FunctionType(stubs[idx - cc.n_imported], g)


def _stub_codes(module: CompiledModule) -> list[CodeType]:
    """One stub code object per defined function of ``module``: ``f{idx}(args)`` resolves function
    ``idx`` (translating it) and calls it.

    The stub passes its arguments on with a plain positional call, which CPython runs in the same
    native frame (a ``*args`` call would nest one C frame per first call, and a chain of 20,000
    first calls would overflow the C stack). Translation itself happens in ``_resolve`` and returns
    before the real function is entered, so it never stays on the stack below the guest.
    """
    stubs = module._stub_codes  # noqa: SLF001
    if stubs is None:
        cc = module.compiled
        stubs = module._stub_codes = [
            _stub_code(idx, len(cc.func_types[idx].params))
            for idx in range(cc.n_imported, len(cc.func_types))
        ]
    return stubs


_STUB_INDEX = -0x57AB  # the function index in a stub template, replaced per function
_STUB_TEMPLATES: dict[int, CodeType] = {}


def _stub_code(idx: int, nparams: int) -> CodeType:
    """Function ``idx``'s stub: the template of its arity with its index put in."""
    template = _stub_template(nparams)
    consts = tuple(idx if type(c) is int and c == _STUB_INDEX else c for c in template.co_consts)
    return template.replace(co_consts=consts, co_name=f"f{idx}", co_qualname=f"f{idx}")


def _stub_template(nparams: int) -> CodeType:
    """The stub of a function of ``nparams`` parameters, compiled once per arity: each function's stub
    is this code object with its index put in (``CodeType.replace``), so a module of a million
    functions costs no compiling."""
    code = _STUB_TEMPLATES.get(nparams)
    if code is None:
        params = ", ".join(f"a{k}" for k in range(nparams))
        top = compile(
            f"def stub({params}):\n    return _resolve({_STUB_INDEX})({params})\n",
            "<asyncwasm lazy stub>",
            "exec",
        )
        code = _STUB_TEMPLATES[nparams] = next(c for c in top.co_consts if isinstance(c, CodeType))
    return code


def _resolve_stub(inst: Instance, state: InstanceState, idx: int) -> Callable[..., Any]:
    """The real function ``idx`` of the instance, translated and bound now if its stub is still there."""
    fn = state.g[f"f{idx}"]
    cc = inst.module.compiled
    if fn.__code__ is not _stub_codes(inst.module)[idx - cc.n_imported]:
        return fn  # translated already (by another instance's call, or re-entry)
    if cc.wants_worker(idx) and in_guest():
        await_in_guest(translate_in_worker(cc, idx))
    else:
        cc.code_for(idx)
    fn = cc.make_function(idx, state)  # with a trampoline, for a function with tail calls
    ref = inst._refs.get(idx)
    if ref is not None:
        ref.fn = fn
    return fn


def _initialize(inst: Instance, resolved: list[Any], segments: bool = True) -> Func | None:
    """Build the instance's globals dict, run its element and data segments (unless ``segments`` is
    False: its state comes from a snapshot); return its start."""
    cm = inst.module
    m = cm.module
    store = inst.store
    g: dict[str, Any] = {"__builtins__": BUILTINS}
    inst.g = g
    inst.state = state = InstanceState(g, cm.compiled.info.state_cells)
    caller = Caller(inst)
    nf = nt = nm = ng = 0
    memories: list[Memory] = []
    tables: list[Table] = []
    tags: list[Tag] = []
    table_inits: list[tuple[Table, list[Instr]]] = []
    for imp, item in zip(m.imports, resolved, strict=True):
        if imp.kind == "func":
            f = (
                item.bind(caller if item.access_caller else None, store)
                if isinstance(item, HostFunc)
                else item
            )
            g[f"f{nf}"] = f.fn
            inst._refs[nf] = f
            nf += 1
        elif imp.kind == "table":
            g[f"T{nt}"] = item
            tables.append(item)
            nt += 1
        elif imp.kind == "memory":
            memories.append(item)
            nm += 1
        elif imp.kind == "tag":
            tags.append(item)
        else:
            g[f"g{ng}"] = item
            ng += 1
    for k, tt in enumerate(m.tables):
        init = m.table_inits[k] if k < len(m.table_inits) else None
        ctt = replace(tt, elem=canon_valtype(tt.elem, cm._cids)) if tt.elem[0] == "(" else tt
        t = Table(ctt, None, store.max_table_elements, store.table_budget)
        if init is not None:  # after the globals: the initializer may read them
            table_inits.append((t, init))
        g[f"T{nt}"] = t
        tables.append(t)
        nt += 1
    for mt in m.memories:
        memories.append(Memory(mt, store.max_memory_pages, store.memory_budget))
    tag_names = {e.index: e.name for e in m.exports if e.kind == "tag"}
    for k, x in enumerate(m.tags, start=len(tags)):
        tags.append(Tag(m.types[x], tag_names.get(k), cm._cids[x]))
    for k, tag in enumerate(tags):
        g[f"X{k}"] = tag
    inst.memories, inst.tables = memories, tables
    for k, mem in enumerate(memories):
        g[memory_name(k)] = mem.data
        mask = 0xFFFFFFFFFFFFFFFF if mem.type.address == I64 else 0xFFFFFFFF
        g[grow_name(k)] = lambda n, _mem=mem, _mask=mask: _mem.grow(n) & _mask
    g["_ref"] = inst.func_ref
    g["_stk"] = 0
    state.grant(store.next_grant())
    g["_refuel"] = store.make_refuel(state)
    store.attach(state)
    _bind_functions(inst, g)
    plan = startup_fuel.Plan(m, n_imported_tables=nt - len(m.tables), n_imported_memories=nm)
    fuel = startup_fuel.StartupFuel(store, needed=plan.needed, free=plan.free)
    for gl in m.globals:
        value = _eval_const(gl.init, g, inst)
        if ng in cm._cells and gl.type.valtype[0] == "(":
            g[f"g{ng}"] = Global(replace(gl.type, valtype=canon_valtype(gl.type.valtype, cm._cids)), value)
        else:
            state.set(f"g{ng}", Global(gl.type, value) if ng in cm._cells else value)
        if not startup_fuel.simple_global(gl.init):
            fuel.charge(len(gl.init))
        ng += 1
    for t, init in table_inits:
        value = _eval_const(init, g, inst)
        t.elems[:] = [value] * len(t.elems)
    g["_D"] = [d.init for d in m.datas]
    elems: list[list[Any]] = []
    for seg in m.elems:  # from a snapshot, what the segments hold is restored instead
        elems.append([_eval_const(e, g, inst) for e in seg.init] if segments else [])
    g["_E"] = elems
    for e in m.exports:
        if e.kind == "func":
            inst._externs[e.name] = inst.func_ref(e.index)
        elif e.kind == "table":
            inst._externs[e.name] = tables[e.index]
        elif e.kind == "memory":
            inst._externs[e.name] = memories[e.index]
        elif e.kind == "tag":
            inst._externs[e.name] = tags[e.index]
        else:
            inst._externs[e.name] = g[f"g{e.index}"]
    if not segments:
        fuel.save(calls_start=False)
        return None
    for k, seg in enumerate(m.elems):
        if seg.mode == "active":
            off = _eval_const(seg.offset or [], g, inst)
            n = len(elems[k])
            if not plan.elem_static[k]:
                fuel.charge(len(seg.offset or ()) + (sum(map(len, seg.init)) if seg.exprs else 0))
                objects.check_table_range(tables[seg.table], off, n)
                fuel.copy(n)
            objects.table_init(tables[seg.table], elems, k, off, 0, n)
        elif seg.mode == "passive" and seg.exprs:
            fuel.charge(sum(map(len, seg.init)))
        if seg.mode != "passive":
            elems[k] = []
    for k, d in enumerate(m.datas):
        if d.mode == "active":
            off = _eval_const(d.offset or [], g, inst)
            if not plan.data_static:
                fuel.charge(len(d.offset or ()))
                objects.check_memory_range(memories[d.memory].data, off, len(d.init))
                fuel.copy(len(d.init))
            objects.memory_init(memories[d.memory].data, g["_D"], k, off, 0, len(d.init))
            g["_D"][k] = b""
    for size in plan.image_copies:
        fuel.copy(size)
    fuel.save(calls_start=m.start is not None)
    return inst.func_ref(m.start) if m.start is not None else None


def host_memory(min_pages: int, max_pages: int | None = None, address: str = "i32") -> Memory:
    """A memory made by the host, to offer as an import (``address="i64"``: a 64-bit memory)."""
    return Memory(MemoryType(Limits(min_pages, max_pages), address))


def host_table(
    elem: str = FUNCREF, min_size: int = 0, max_size: int | None = None, address: str = "i32"
) -> Table:
    """A table made by the host, to offer as an import (``address="i64"``: a 64-bit table)."""
    return Table(TableType(elem, Limits(min_size, max_size), address))


def host_global(valtype: str, value: Any, mutable: bool = False) -> Global:
    """A global made by the host, to offer as an import."""
    return Global(GlobalType(valtype, mutable), to_raw(valtype, value))


__all__ = [
    "CompiledModule",
    "Instance",
    "Linker",
    "Caller",
    "HostFunc",
    "host_memory",
    "host_table",
    "host_global",
]
