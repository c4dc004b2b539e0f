"""Typed descriptions of what a module imports and exports, and an instance's exports as objects.

This is the embedding API a wasmtime-py user expects, made for an async world:

* ``CompiledModule.imports`` lists ``ImportType`` (``.module``, ``.name``, ``.kind``, ``.type``) and
  ``CompiledModule.exports`` lists ``ExportType`` (``.name``, ``.kind``, ``.type``), ``.type`` being the
  ``FuncType``, ``TableType``, ``MemoryType`` or ``GlobalType`` (a tag's type is its ``FuncType``, with no
  results; ``.kind`` tells a tag from a function).
* ``Instance.exports`` is an ``InstanceExports``, a read-only mapping from export name to an
  ``ExportedFunc`` (``await f(1, 2)``, ``.type``, ``.name``) or to the instance's ``Memory``,
  ``Table``, ``Global`` or ``Tag`` itself, as wasmtime-py's ``instance.exports(store)`` is. No store
  argument: an instance knows its store, and the call is awaited.

The raw ``Func`` stays what compiled code, tables and ``ref.func`` use (its ``fn`` is called with the
raw convention); an ``ExportedFunc`` is a small separate object holding the instance and that
``Func``, made the first time the export is looked up, so instantiating costs nothing more and no
path through tables gets slower.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..binary.module import ExternKind, FuncType, GlobalType, MemoryType, Module, TableType
from . import gc
from .memory import Memory
from .objects import Func, Global, Table, Tag
from .values import arg_converter, expected, public_results

if TYPE_CHECKING:
    from .instance import Instance

ExternType = FuncType | TableType | MemoryType | GlobalType


@dataclass(frozen=True, slots=True)
class ImportType:
    """One import of a module: ``module`` and ``name`` (where the linker looks it up), ``kind``
    (``"func"``, ``"table"``, ``"memory"``, ``"global"`` or ``"tag"``) and ``type``, what it must be
    (``FuncType`` for a function or a tag, ``TableType``, ``MemoryType``, ``GlobalType``).

    An object with named fields, not a tuple: a host iterating imports to define stubs reads
    ``imp.type.params`` rather than unpacking positions, and a field added later breaks no caller.
    Reference types inside ``type`` are spelled as the module spells them (a ``"(ref 3)"`` names
    the module's type 3)."""

    module: str
    name: str
    kind: ExternKind
    type: ExternType


@dataclass(frozen=True, slots=True)
class ExportType:
    """One export of a module: its ``name``, ``kind`` (as in ``ImportType``) and ``type``."""

    name: str
    kind: ExternKind
    type: ExternType


def import_types(module: Module) -> list[ImportType]:
    """Every import of ``module``, in order, with its type."""
    out = []
    for imp in module.imports:
        t = module.types[imp.desc] if imp.kind in ("func", "tag") else imp.desc
        out.append(ImportType(imp.module, imp.name, imp.kind, t))
    return out


def export_types(module: Module) -> list[ExportType]:
    """Every export of ``module``, in order, with the type of what it exports."""
    spaces: dict[str, Callable[[], list[Any]]] = {
        "func": module.func_types,
        "table": module.table_types,
        "memory": module.memory_types,
        "global": module.global_types,
        "tag": lambda: [module.types[t] for t in module.tag_types()],
    }
    types = {kind: spaces[kind]() for kind in {e.kind for e in module.exports}}
    return [ExportType(e.name, e.kind, types[e.kind][e.index]) for e in module.exports]


class ExportedFunc:
    """An exported function of one instance, called with Python values: ``await f(1, 2)``.

    ``type`` is its ``FuncType``, ``name`` the export's name, ``func`` the raw ``Func`` (for
    ``Instance.call_raw``, or to put in a table or offer to a ``Linker``, which also takes this object
    itself). A call converts the arguments (``TypeError`` naming the function and the parameter for
    one that is not of its type, or for the wrong number of them), runs within the store's timeout as
    ``Instance.call`` does, and returns None, a value, or a tuple of values."""

    __slots__ = ("instance", "func", "name", "_convert")

    def __init__(self, instance: Instance, func: Func, name: str) -> None:
        self.instance = instance
        self.func = func
        self.name = name
        self._convert = _converters(func)

    @property
    def type(self) -> FuncType:
        """The function's type."""
        return self.func.type

    async def __call__(self, *args: Any) -> Any:
        """Call the function with Python values (i32/i64 as ints, f32/f64 as floats, v128 as one int,
        references as ``Func``, this class, GC objects, any object for externref, or None)."""
        raw = self.convert_args(args)
        return public_results(self.func.type, await self.instance.call_raw(self.func, raw))

    def convert_args(self, args: tuple[Any, ...] | list[Any]) -> list[Any]:
        """``args`` in the raw convention, each checked against its parameter's type.

        Ints out of range are refused, not wrapped: i32 takes [-2**31, 2**32) (the signed and the
        unsigned reading of its bits), i64 [-2**63, 2**64), v128 [-2**127, 2**128). (wasmtime-py
        truncates such an int silently, and refuses an int for a float parameter; an int is a fine
        float here.)"""
        convert = self._convert
        if len(args) != len(convert):
            n = len(convert)
            raise TypeError(
                f"{self.name}() takes {n} argument{'s' * (n != 1)} ({self.func.type}), got {len(args)}"
            )
        try:
            return [c(a) for c, a in zip(convert, args, strict=True)]
        except (TypeError, ValueError, OverflowError):
            raise self._argument_error(args) from None

    def _argument_error(self, args: tuple[Any, ...] | list[Any]) -> TypeError:
        """The TypeError for the first argument its converter refuses."""
        for k, (c, a) in enumerate(zip(self._convert, args, strict=True)):
            try:
                c(a)
            except (TypeError, ValueError, OverflowError):
                want = expected(self.func.type.params[k])
                return TypeError(
                    f"{self.name}() argument {k + 1} must be {want}, got {type(a).__name__} {reprlib.repr(a)}"
                )
        return TypeError(
            f"{self.name}() arguments do not fit {self.func.type}"
        )  # a converter changed its mind

    def __repr__(self) -> str:
        return f"<ExportedFunc {self.name} {self.func.type}>"


_CONVERTERS: dict[int, tuple[Callable[[Any], Any], ...]] = {}  # by canonical type id, process-wide


def _converters(func: Func) -> tuple[Callable[[Any], Any], ...]:
    """One argument converter per parameter of ``func``: the strict numeric ones, and for references
    the check of the canonical type (``gc.host_check``) after unwrapping an ``ExportedFunc``. Made
    once per function type: every instance's first call of an export asks for them."""
    found = _CONVERTERS.get(func.tid)
    if found is None:
        found = _CONVERTERS[func.tid] = _make_converters(func)
    return found


def _make_converters(func: Func) -> tuple[Callable[[Any], Any], ...]:
    checks = gc.arg_checks(func.tid)
    out = []
    for k, t in enumerate(func.type.params):
        convert = arg_converter(t)
        if convert is None:
            convert = _ref_converter(checks[k] if checks is not None else None)
        out.append(convert)
    return tuple(out)


def _same(v: Any) -> Any:
    return v


def _ref_converter(check: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    if check is None:  # externref, anyref: any Python value is one, kept as it is
        return _same

    def convert(v: Any) -> Any:
        if type(v) is ExportedFunc:
            v = v.func
        return check(v)

    return convert


Export = ExportedFunc | Table | Memory | Global | Tag


class InstanceExports(Mapping[str, Export]):
    """An instance's exports by name, in the module's order (``instance.exports``): functions as
    ``ExportedFunc``, memories, tables, globals and tags as the instance's own objects. A read-only
    ``Mapping``: ``exports["add"]``, ``exports.get("memory")``, ``"f" in exports``, ``.items()``."""

    __slots__ = ("_instance", "_externs", "_funcs")

    def __init__(self, instance: Instance, externs: Mapping[str, Any]) -> None:
        self._instance = instance
        self._externs = externs
        self._funcs: dict[str, ExportedFunc] = {}

    def __getitem__(self, name: str) -> Export:
        item = self._externs[name]
        if type(item) is Func:
            f = self._funcs.get(name)
            if f is None:
                f = self._funcs[name] = ExportedFunc(self._instance, item, name)
            return f
        return item

    def __iter__(self) -> Iterator[str]:
        return iter(self._externs)

    def __len__(self) -> int:
        return len(self._externs)

    def __contains__(self, name: object) -> bool:
        return name in self._externs

    def __repr__(self) -> str:
        return f"<InstanceExports {list(self._externs)}>"


__all__ = [
    "Export",
    "ExportType",
    "ExportedFunc",
    "ImportType",
    "InstanceExports",
    "export_types",
    "import_types",
]
