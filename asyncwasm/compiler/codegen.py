"""Compile a whole module's functions into one Python code object, plus the tables that map the
generated lines back to Wasm functions and byte offsets (for trap backtraces)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from types import CodeType

from ..binary.module import FuncType, Module
from .structured import translate_function
from .translate import ModuleInfo

_type_ids: dict[FuncType, int] = {}
_counter = itertools.count()


def canonical_type_id(ft: FuncType) -> int:
    """Structurally equal function types share one id across all modules (call_indirect checks)."""
    tid = _type_ids.get(ft)
    if tid is None:
        tid = _type_ids[ft] = len(_type_ids)
    return tid


def global_cells(module: Module) -> set[int]:
    """Globals that must be shared with other instances or the host through a cell."""
    n_imported = sum(1 for i in module.imports if i.kind == "global")
    cells = set(range(n_imported))
    for e in module.exports:
        if e.kind == "global":
            cells.add(e.index)
    return cells


@dataclass
class CompiledCode:
    code: CodeType
    filename: str
    line_offsets: list[int]  # Wasm byte offset for each source line (1-based: index 0 unused)
    line_funcs: list[int]
    consts: dict[str, float] = field(default_factory=dict)
    source: str = ""


def compile_module(module: Module, name: str = "module") -> CompiledCode:
    n_imported = sum(1 for i in module.imports if i.kind == "func")
    func_types = module.func_types()
    type_ids = [canonical_type_id(t) for t in module.types]
    info = ModuleInfo(module.types, func_types, global_cells(module), type_ids)
    lines: list[str] = []
    offsets: list[int] = [0]
    funcs: list[int] = [-1]
    consts: dict[str, float] = {}
    for k, code in enumerate(module.codes):
        idx = n_imported + k
        src, offs, fconsts = translate_function(info, idx, code, func_types[idx])
        consts.update(fconsts)
        lines.extend(src)
        offsets.extend(offs)
        funcs.extend([idx] * len(src))
    source = "\n".join(lines) + "\n"
    filename = f"<wasm {name} #{next(_counter)}>"
    code_obj = compile(source, filename, "exec")
    return CompiledCode(code_obj, filename, offsets, funcs, consts, source)
