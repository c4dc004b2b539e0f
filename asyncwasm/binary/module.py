"""The plain description of a decoded module, shared by the validator and the compiler.

Value types are strings: the numeric and vector ones (``VALTYPES``, ``"v128"``), the abstract nullable
reference types by their short names (``"funcref"``, ``"externref"``, ``"anyref"``, ``"eqref"``,
``"i31ref"``, ``"structref"``, ``"arrayref"``, ``"exnref"``, ``"nullref"``, ``"nullfuncref"``,
``"nullexternref"``, ``"nullexnref"``) and every other reference type as ``"(ref HEAP)"`` or
``"(ref null HEAP)"``, HEAP an abstract heap type name (func, extern, exn, any, eq, i31, struct, array,
none, nofunc, noextern, noexn) or a decimal index into ``Module.types``. ``types`` reads and compares
them (subtyping, canonical type identity). An instruction is a tuple ``(op, imm, offset)``:

* ``op``: the opcode byte, or ``0xFC00 | sub`` for the 0xFC-prefixed ones (see ``opcodes``);
* ``imm``: the decoded immediate (``None`` when there is none), shaped by the opcode's kind:
  block types are ``None`` (empty), a value-type string (one result) or an ``int`` type index;
  ``br_table`` is ``(labels_tuple, default)``; ``call_indirect`` is ``(typeidx, tableidx)``;
  loads and stores are ``(align_log2, offset)`` for memory 0 and ``(align_log2, offset, memidx)``
  for another memory (so code that knows one memory reads the common case unchanged; the offset
  is up to 2^64-1 under memory64); ``i32.const``/``i64.const`` hold the value as an unsigned
  canonical int (``v & mask``); ``f32.const``/``f64.const`` hold the raw IEEE bit pattern;
  typed ``select`` holds a tuple of value types; ``ref.null`` a reftype string (``ref null HEAP``);
  ``ref.test``/``ref.cast`` their target reftype string; ``br_on_cast``/``br_on_cast_fail``
  ``(label, reftype1, reftype2)``; ``call_ref`` a type index; GC instructions (``0xFB00 | sub``) their
  type index, or a tuple ``(typeidx, fieldidx | count | dataidx | elemidx | typeidx2)``;
  ``table.init`` is ``(elemidx, tableidx)``; ``table.copy`` ``(dst, src)``; ``memory.size``,
  ``memory.grow`` and ``memory.fill`` hold their memory index, ``memory.copy`` ``(dst, src)``
  memory indices and ``memory.init`` ``(dataidx, memidx)``; SIMD opcodes are
  ``simd_opcodes.SIMD_BASE + sub``, their immediates as ``simd_opcodes`` describes;
* ``offset``: the instruction's byte offset in the whole module, for errors and backtraces.

A function body's list ends with its final ``end`` (op 0x0B). Constant expressions omit the final ``end``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

I32, I64, F32, F64, V128 = "i32", "i64", "f32", "f64", "v128"
FUNCREF, EXTERNREF = "funcref", "externref"
EXNREF, NULLEXNREF, REF_EXN = "exnref", "nullexnref", "(ref exn)"  # exception references
VALTYPES = (I32, I64, F32, F64, FUNCREF, EXTERNREF)
NUMTYPES = (I32, I64, F32, F64)
REFTYPES = (FUNCREF, EXTERNREF)

Instr = tuple[int, Any, int]
ExternKind = Literal["func", "table", "memory", "global", "tag"]


@dataclass(frozen=True)
class FuncType:
    params: tuple[str, ...]
    results: tuple[str, ...]

    def __str__(self) -> str:
        return f"[{' '.join(self.params)}] -> [{' '.join(self.results)}]"


@dataclass(frozen=True)
class FieldType:
    """A struct field or array element: a value type or a packed ``"i8"``/``"i16"``, and mutability."""

    storage: str
    mutable: bool


@dataclass(frozen=True)
class StructType:
    fields: tuple[FieldType, ...]

    def __str__(self) -> str:
        return f"(struct {' '.join(('(mut ' + f.storage + ')') if f.mutable else f.storage for f in self.fields)})"


@dataclass(frozen=True)
class ArrayType:
    field: FieldType

    def __str__(self) -> str:
        f = self.field
        return f"(array {('(mut ' + f.storage + ')') if f.mutable else f.storage})"


CompType = FuncType | StructType | ArrayType


@dataclass(frozen=True)
class SubType:
    """A defined type's place in the subtype hierarchy: final or not, and its declared supertypes."""

    final: bool
    supers: tuple[int, ...]


@dataclass(frozen=True)
class Limits:
    min: int
    max: int | None = None


@dataclass(frozen=True)
class TableType:
    elem: str  # a reftype
    limits: Limits
    address: str = I32  # the index type: "i64" for a 64-bit table (table64)


@dataclass(frozen=True)
class MemoryType:
    limits: Limits  # in 64 KiB pages
    address: str = I32  # the address type: "i64" for a 64-bit memory (memory64)


@dataclass(frozen=True)
class GlobalType:
    valtype: str
    mutable: bool


@dataclass
class Import:
    module: str
    name: str
    kind: ExternKind
    desc: Any  # int type index for "func" and "tag", else TableType / MemoryType / GlobalType


@dataclass
class Export:
    name: str
    kind: ExternKind
    index: int


@dataclass
class Global:
    type: GlobalType
    init: list[Instr]


@dataclass
class Elem:
    mode: Literal["active", "passive", "declarative"]
    type: str  # reftype
    init: list[list[Instr]]  # one constant expression per element
    table: int = 0
    offset: list[Instr] | None = None
    exprs: bool = True  # written as expressions, not as function indices (fuel counts them)


@dataclass
class Data:
    mode: Literal["active", "passive"]
    init: bytes
    memory: int = 0
    offset: list[Instr] | None = None


@dataclass
class Code:
    locals: tuple[str, ...]  # declared locals, expanded (params not included)
    body: list[Instr]
    offset: int  # byte offset of the function body's size field

    def instruction_count(self) -> int:
        """The number of instructions (without reading a body that is kept aside, see code_cache)."""
        return len(self.body)


@dataclass
class Names:
    module: str | None = None
    funcs: dict[int, str] = field(default_factory=dict)
    locals: dict[int, dict[int, str]] = field(default_factory=dict)


@dataclass
class Module:
    """A decoded module.

    ``types`` holds each defined type's composite type: a ``FuncType`` (all of them in a 2.0 module),
    ``StructType`` or ``ArrayType``. ``subtypes`` is parallel to it (finality and declared supertypes)
    and ``rec_groups`` lists each recursion group as (first type index, count); both may be empty, which
    means every type is a final singleton group (the 2.0 case). ``table_inits`` is parallel to
    ``tables``: a table's initializer expression (table type prefix 0x40 0x00), or None for null.
    """

    types: list[Any] = field(default_factory=list)  # CompType per type index
    subtypes: list[SubType] = field(default_factory=list)
    rec_groups: list[tuple[int, int]] = field(default_factory=list)
    imports: list[Import] = field(default_factory=list)
    funcs: list[int] = field(default_factory=list)  # type index of each defined function
    tables: list[TableType] = field(default_factory=list)
    table_inits: list[list[Instr] | None] = field(default_factory=list)
    memories: list[MemoryType] = field(default_factory=list)
    tags: list[int] = field(default_factory=list)  # type index of each defined tag (exceptions)
    globals: list[Global] = field(default_factory=list)
    exports: list[Export] = field(default_factory=list)
    start: int | None = None
    elems: list[Elem] = field(default_factory=list)
    datas: list[Data] = field(default_factory=list)
    data_count: int | None = None
    codes: list[Code] = field(default_factory=list)
    names: Names = field(default_factory=Names)
    customs: list[tuple[str, bytes]] = field(default_factory=list)

    def imported(self, kind: ExternKind) -> list[Import]:
        return [i for i in self.imports if i.kind == kind]

    def func_types(self) -> list[FuncType]:
        """The type of every function in the index space: imports first, then defined ones."""
        return [self.types[i.desc] for i in self.imports if i.kind == "func"] + [
            self.types[t] for t in self.funcs
        ]

    def table_types(self) -> list[TableType]:
        return [i.desc for i in self.imports if i.kind == "table"] + list(self.tables)

    def memory_types(self) -> list[MemoryType]:
        return [i.desc for i in self.imports if i.kind == "memory"] + list(self.memories)

    def tag_types(self) -> list[int]:
        """The type index of every tag in the index space: imports first, then defined ones."""
        return [i.desc for i in self.imports if i.kind == "tag"] + list(self.tags)

    def global_types(self) -> list[GlobalType]:
        return [i.desc for i in self.imports if i.kind == "global"] + [g.type for g in self.globals]

    def func_name(self, index: int) -> str | None:
        return self.names.funcs.get(index)
