"""The contract between generated code and the runtime: what a translated function may name, and
how the runtime gives it those names.

Generated code is ordinary Python functions, and a name in it is found in one of three places:

- **State cells** (``STATE_CELLS``): per-instance state that generated code writes on its hot
  path, kept in closure cells: the fuel count, and every mutable global of the module's own that
  no other instance or host shares (a C program's stack pointer is set at every call). The translator's source is compiled inside an enclosing scope
  (``enclose``) so these names are free variables, and ``bind`` gives each function the instance's
  cells. A cell store (``STORE_DEREF``) costs a fraction of a module-global store (``STORE_GLOBAL``
  is a dict assignment): with fuel counted exactly as wasmtime counts it, a call saves and reloads
  the count, and in call-heavy code that store was a sixth of the run time. Which globals are cells
  is the module's (``state_cells``), the same for all its code.
- **Instance globals** (``INSTANCE_GLOBALS``): the instance's own functions, tables, memories,
  globals and tags, and the hooks that close over the instance, in the globals dict the runtime
  builds per instance.
- **Helpers** (``HELPERS``): functions every instance shares (loads and stores, numeric operators,
  table and bulk-memory operations...), found through the ``__builtins__`` of that dict, built once
  by the runtime (``runtime/instance.py``), which checks at import that it provides exactly these.

The store reaches an instance's generated state only through its ``InstanceState``.
"""

from __future__ import annotations

from types import CellType, CodeType, FunctionType
from typing import Any

FUEL = "_fuel"
STATE_CELLS: dict[str, str] = {
    FUEL: "the instance's fuel count as last saved by a frame (calls, returns, ``unreachable``); "
    "frames keep their live count in the local ``fu``",
    "g{k}": "global k, when it is mutable, the module's own, neither imported nor exported",
}

# name patterns (``{k}`` an index) and names in each instance's globals dict
INSTANCE_GLOBALS: dict[str, str] = {
    "f{k}": "function k: the translated function, its lazy stub, or an import's callable",
    "t{k}": "the body of function k when it makes tail calls (``f{k}`` is then its trampoline)",
    "g{k}": "global k when not a state cell: its value, or a ``Global`` when imported or exported",
    "T{k}": "table k (``runtime.objects.Table``)",
    "M": "memory 0's bytearray (``M{k}`` memory k's, ``compiler/memories.py``)",
    "X{k}": "tag k (``runtime.objects.Tag``)",
    "_grow": "memory 0's ``memory.grow`` (``_grow{k}`` memory k's)",
    "_refuel": "called by a frame whose count ran out at a check: accounts, yields, gives a new grant",
    "_ref": "the instance's function reference of index k (``ref.func``)",
    "_stk": "the stack budget big frames charge their size against",
    "_resolve": "a lazy stub's way to its real function (translating it on first call)",
}

# the helpers every instance shares, found as builtins (``runtime/helpers.py`` provides them)
HELPERS: dict[str, str] = {
    "copysign": "f32/f64.copysign (``math.copysign``)",
    "_lu32": "load a little-endian u32 (``struct.unpack_from``; ``_lu64``, ``_lu16`` likewise)",
    "_lu64": "load a u64",
    "_lu16": "load a u16",
    "_ls16": "load an s16 (``_ls32`` likewise)",
    "_ls32": "load an s32",
    "_lf64": "load an f64",
    "_S8": "a byte's i32 sign extension, by the byte (``_S8[M[a]]``: 4x faster than unpacking an s8)",
    "_S8_64": "a byte's i64 sign extension, by the byte",
    "_su32": "store a u32 (``struct.pack_into``; ``_su64``, ``_su16``, ``_sf64`` likewise)",
    "_su64": "store a u64",
    "_su16": "store a u16",
    "_sf64": "store an f64",
    "_trap": "the ``Trap`` class: ``raise _trap(message)``",
    "_callee": "call_indirect's target: table, index, expected type id -> the function",
    "_tget": "table.get",
    "_tset": "table.set",
    "_tsize": "table.size",
    "_tgrow": "table.grow",
    "_tgrow64": "table.grow of a 64-bit table",
    "_tfill": "table.fill",
    "_tcopy": "table.copy",
    "_tinit": "table.init",
    "_edrop": "elem.drop",
    "_minit": "memory.init",
    "_ddrop": "data.drop",
    "_mcopy": "memory.copy within one memory",
    "_mcopy2": "memory.copy between two memories",
    "_mfill": "memory.fill",
    "_WExc": "the ``WasmException`` class (compiler/exceptions.py)",
    "_throw": "throw: tag and values -> raises",
    "_rethrow": "the legacy rethrow",
    "_Tail": "a pending tail call (compiler/tailcall.py)",
}
# numeric operators, by their names in ``compiler/numeric.py``
NUMERIC: tuple[str, ...] = (
    "f32_convert_s32",
    "f32_convert_s64",
    "f32_convert_u",
    "f32_demote",
    "f32_div",
    "f32_from_bits",
    "f32_to_bits",
    "f64_convert_s64",
    "f64_convert_u",
    "f64_from_bits",
    "f64_promote",
    "f64_to_bits",
    "fceil",
    "fdiv",
    "ffloor",
    "fmax",
    "fmin",
    "fnearest",
    "fround",
    "fsqrt",
    "ftrunc",
    "i32_ctz",
    "i32_div_s",
    "i32_rem_s",
    "i32_rotl",
    "i32_rotr",
    "i32_trunc_s",
    "i32_trunc_sat_s",
    "i32_trunc_sat_u",
    "i32_trunc_u",
    "i64_ctz",
    "i64_div_s",
    "i64_rem_s",
    "i64_rotl",
    "i64_rotr",
    "i64_trunc_s",
    "i64_trunc_sat_s",
    "i64_trunc_sat_u",
    "i64_trunc_u",
)
# tables of helpers declared beside the code that emits them, merged into the builtins too
HELPER_TABLES: dict[str, str] = {
    "compiler/simd_ops.HELPERS": "SIMD lane operations (``_v_...``)",
    "runtime/gc.HELPERS": "GC type checks and struct, array, i31 and extern operations",
}


def state_cells(n_imported_globals: int, mutable: list[bool], shared: set[int]) -> tuple[str, ...]:
    """The state cells of a module's code: the fuel count, and its own mutable globals (``mutable``
    for each defined one) that are not ``shared`` (the indices imported or exported)."""
    own = [f"g{n_imported_globals + k}" for k, m in enumerate(mutable) if m]
    return (FUEL, *(name for name in own if int(name[1:]) not in shared))


def enclose(source: str, cells: tuple[str, ...]) -> str:
    """``source`` (the translator's functions, at top level) inside the scope that makes ``cells``
    free variables of every function in it."""
    lines = source.split("\n")
    # the functions themselves are the instance's globals, not the scope's locals (else every call
    # of one by another would be a closure cell too)
    defined = [line[4 : line.index("(")] for line in lines if line.startswith("def ")]
    inner = "\n".join("    " + line if line else line for line in lines)
    head = f"    global {', '.join(defined)}\n" if defined else ""
    return f"def _scope():\n{head}    {' = '.join(cells)} = None\n{inner}\n"


def functions_in(module_code: CodeType) -> list[CodeType]:
    """The code objects of the functions an ``enclose``-d source defines, compiled as a module."""
    scope = next(c for c in module_code.co_consts if isinstance(c, CodeType) and c.co_name == "_scope")
    return [c for c in scope.co_consts if isinstance(c, CodeType)]


class InstanceState:
    """An instance's generated state: its globals dict and its state cells, with the fuel grant the
    store last gave it (``Store.account`` adds ``granted - fuel`` to what the store has used)."""

    __slots__ = ("g", "cells", "fuel_cell", "granted")

    def __init__(self, g: dict[str, Any], cells: tuple[str, ...] = (FUEL,)) -> None:
        self.g = g
        self.cells: dict[str, CellType] = {name: CellType(None) for name in cells}
        self.fuel_cell = self.cells[FUEL]
        self.granted = 0

    @property
    def fuel(self) -> int:
        """The count as the frames last saved it."""
        value: int = self.fuel_cell.cell_contents
        return value

    @fuel.setter
    def fuel(self, value: int) -> None:
        self.fuel_cell.cell_contents = value

    def grant(self, amount: int) -> None:
        """Start a new grant of ``amount`` units (the count and the grant both)."""
        self.fuel_cell.cell_contents = self.granted = amount

    def get(self, name: str) -> Any:
        """The value of an instance global or state cell named ``name`` (a Wasm global ``g{k}``...)."""
        cell = self.cells.get(name)
        return self.g[name] if cell is None else cell.cell_contents

    def set(self, name: str, value: Any) -> None:
        """Give the instance global or state cell ``name`` a new value."""
        cell = self.cells.get(name)
        if cell is None:
            self.g[name] = value
        else:
            cell.cell_contents = value

    def bind(self, code: CodeType, name: str | None = None) -> FunctionType:
        """``code`` as a function of this instance: its globals and its state cells."""
        cells = self.cells
        closure = tuple(cells[n] for n in code.co_freevars) if code.co_freevars else None
        return FunctionType(code, self.g, name, None, closure)
