"""The text-format module parser: tokens in, the binary module out.

One pass over the tokens encodes every function body and constant expression straight to bytes,
as soon as it is read. What cannot be known yet is left as a small closure in the byte stream and
filled in when the module is complete: a reference to a function, global, type... defined further
down (``call $later``), a type use with inline ``(param ...)``/``(result ...)`` (its index depends on
every explicit type of the module, and implicit types are appended after them), a struct field of a
type not defined yet. Labels and locals are always resolved on the spot.

The byte layout follows the choices wasm-tools makes wherever the binary format leaves a choice
(element segment flags, where implicit types go, when a data count section is present, shorthand
reference types, local-declaration runs), so that the differential test can compare bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from ..binary.encode import sleb, uleb
from .errors import TextError
from .lexer import EOF, ID, KEYWORD, KIND_NAMES, LPAR, NUM, RPAR, STRING, tokenize, utf8
from .literals import F32_FORMAT, F64_FORMAT, LiteralError, parse_float, parse_int, parse_sint, parse_uint
from .opcodes import INSTRUCTIONS, NEEDS_DATA_COUNT

NUMTYPES = {"i32": b"\x7f", "i64": b"\x7e", "f32": b"\x7d", "f64": b"\x7c", "v128": b"\x7b"}
ABSHEAP = {
    "func": 0x70,
    "extern": 0x6F,
    "any": 0x6E,
    "none": 0x71,
    "noextern": 0x72,
    "nofunc": 0x73,
    "eq": 0x6D,
    "struct": 0x6B,
    "array": 0x6A,
    "i31": 0x6C,
    "exn": 0x69,
    "noexn": 0x74,
}
REFABBREV = {
    "funcref": "func",
    "externref": "extern",
    "anyref": "any",
    "nullref": "none",
    "nullexternref": "noextern",
    "nullfuncref": "nofunc",
    "eqref": "eq",
    "structref": "struct",
    "arrayref": "array",
    "i31ref": "i31",
    "exnref": "exn",
    "nullexnref": "noexn",
}
SPACES = ("type", "func", "table", "memory", "global", "tag", "elem", "data")
EXTERN_KINDS = {"func": 0, "table": 1, "memory": 2, "global": 3, "tag": 4}
_BLOCK_END = frozenset({"end", "else", "catch", "catch_all", "delegate"})
_SHAPES = {
    "i8x16": (16, 8),
    "i16x8": (8, 16),
    "i32x4": (4, 32),
    "i64x2": (2, 64),
    "f32x4": (4, 32),
    "f64x2": (2, 64),
}
_LOG2 = {1: 0, 2: 1, 4: 2, 8: 3, 16: 4}
_IMPORT_AFTER = {"func": "function", "table": "table", "memory": "memory", "global": "global", "tag": "tag"}

Part = bytes | Callable[[], bytes]
ValType = Any  # "i32"/.../"v128", or (nullable, heap) with heap an abstract name, an int or a Ref


class Ref:
    """A symbolic index (``$name``) that names nothing yet where it is used."""

    __slots__ = ("name", "pos")

    def __init__(self, name: str, pos: int) -> None:
        self.name = name
        self.pos = pos


class TypeUse:
    """``(type x)? (param ...)* (result ...)*``: resolved to a type index once the module is complete."""

    __slots__ = ("ref", "params", "results", "inline", "pos", "index", "param_names")

    def __init__(
        self,
        ref: int | Ref | None,
        params: list[ValType],
        results: list[ValType],
        inline: bool,
        pos: int,
        param_names: list[str | None],
    ) -> None:
        self.ref = ref
        self.params = params
        self.results = results
        self.inline = inline
        self.pos = pos
        self.index: int | None = ref if isinstance(ref, int) and not inline else None
        self.param_names = param_names


class SubType:
    __slots__ = ("final", "supers", "kind", "body", "field_names")

    def __init__(
        self, final: bool, supers: list[int | Ref], kind: str, body: Any, field_names: dict[str, int]
    ) -> None:
        self.final = final
        self.supers = supers
        self.kind = kind  # "func" (params, results) | "struct" [fields] | "array" field
        self.body = body
        self.field_names = field_names


class Func:
    __slots__ = ("typeuse", "locals", "body", "name", "local_names")

    def __init__(self, typeuse: TypeUse, name: str | None) -> None:
        self.typeuse = typeuse
        self.locals: list[ValType] = []
        self.body: list[Part] = []
        self.name = name
        self.local_names: list[tuple[int, str]] = []


class ModuleState:
    """Everything a module's fields define, in the order the binary format wants it."""

    def __init__(self) -> None:
        self.names: dict[str, dict[str, int]] = {s: {} for s in SPACES}
        self.counts: dict[str, int] = dict.fromkeys(SPACES, 0)
        self.groups: list[tuple[bool, list[SubType]]] = []
        self.typedefs: list[SubType] = []
        self.single_types: list[int] = []  # indices of types outside rec groups (implicit-type matching)
        self.typeuses: list[TypeUse] = []
        self.imports: list[tuple[str, str, str, Any]] = []
        self.funcs: list[Func] = []
        self.func_names: dict[int, str] = {}
        self.tables: list[tuple[Any, list[Part] | None]] = []
        self.memories: list[Any] = []
        self.globals: list[tuple[Any, list[Part]]] = []
        self.tags: list[TypeUse] = []
        self.exports: list[tuple[str, str, int | Ref, int]] = []
        self.start: int | Ref | None = None
        self.elems: list[dict[str, Any]] = []
        self.datas: list[dict[str, Any]] = []
        self.needs_data_count = False
        self.defined: str | None = None  # first non-import definition seen (imports must precede it)
        self.name: str | None = None


def _join(parts: list[Part]) -> bytes:
    return b"".join(p if p.__class__ is bytes else p() for p in parts)  # type: ignore[operator,misc]


def _vec(items: list[bytes]) -> bytes:
    return uleb(len(items)) + b"".join(items)


def _name(s: str) -> bytes:
    b = s.encode("utf-8")
    return uleb(len(b)) + b


class Parser:
    """Parses modules from a token stream; one instance can read several modules (a script)."""

    def __init__(self, text: str, filename: str | None = None) -> None:
        self.text = text
        self.filename = filename
        self.kinds, self.vals, self.offs = tokenize(text)
        self.i = 0
        self.m = ModuleState()
        self.buf = bytearray()
        self.parts: list[Part] = []
        self.labels: list[str | None] = []
        self.locals: dict[str, Any] = {}
        self.in_func = False

    # --- tokens ----------------------------------------------------------------------------------

    def error(self, message: str, i: int | None = None) -> TextError:
        idx = self.i if i is None else i
        idx = min(idx, len(self.offs) - 1)
        return TextError(message, self.text, self.offs[idx], self.filename)

    def error_at(self, message: str, pos: int) -> TextError:
        return TextError(message, self.text, pos, self.filename)

    def unexpected(self, wanted: str = "") -> TextError:
        k = self.kinds[self.i]
        if k == EOF:  # point at the parenthesis that is never closed
            open_at: list[int] = []
            for j in range(self.i):
                if self.kinds[j] == LPAR:
                    open_at.append(j)
                elif self.kinds[j] == RPAR and open_at:
                    open_at.pop()
            if open_at:
                return self.error("unclosed '(': the text ends before its ')'", open_at[-1])
        got = KIND_NAMES[k]
        if k in (KEYWORD, NUM) or k == 6:
            got = f"{got} {self.vals[self.i]}"
        return self.error(f"unexpected token {got}" + (f", expected {wanted}" if wanted else ""))

    def lpar_kw(self) -> str | None:
        i = self.i
        if self.kinds[i] == LPAR and self.kinds[i + 1] == KEYWORD:
            return self.vals[i + 1]  # type: ignore[return-value]
        return None

    def expect_lpar_kw(self, kw: str) -> None:
        if self.lpar_kw() != kw:
            raise self.unexpected(f"'({kw}'")
        self.i += 2

    def expect_rpar(self) -> None:
        if self.kinds[self.i] != RPAR:
            raise self.unexpected("')'")
        self.i += 1

    def take_kw(self, kw: str) -> bool:
        if self.kinds[self.i] == KEYWORD and self.vals[self.i] == kw:
            self.i += 1
            return True
        return False

    def opt_id(self) -> str | None:
        if self.kinds[self.i] == ID:
            self.i += 1
            return self.vals[self.i - 1]  # type: ignore[return-value]
        return None

    def string(self) -> bytes:
        if self.kinds[self.i] != STRING:
            raise self.unexpected("a string")
        self.i += 1
        return self.vals[self.i - 1]  # type: ignore[return-value]

    def name(self) -> str:
        pos = self.offs[self.i]
        return utf8(self.string(), self.text, pos)

    def u32(self, bits: int = 32) -> int:
        if self.kinds[self.i] != NUM:
            raise self.unexpected("a number")
        n = parse_uint(self.vals[self.i])  # type: ignore[arg-type]
        if n is None:
            raise self.error(f"malformed unsigned integer {self.vals[self.i]}")
        if n >> bits:
            raise self.error("constant out of range")
        self.i += 1
        return n

    def at_index(self) -> bool:
        k = self.kinds[self.i]
        return k == ID or k == NUM

    def index(self, space: str) -> int | Ref:
        """An index into ``space``: a number, or a name resolved now when already defined."""
        k = self.kinds[self.i]
        if k == NUM:
            return self.u32()
        if k == ID:
            name = str(self.vals[self.i])
            pos = self.offs[self.i]
            self.i += 1
            idx = self.m.names[space].get(name)
            return idx if idx is not None else Ref(name, pos)
        raise self.unexpected(f"a {space} index")

    def raw_index(self) -> int | Ref:
        """An index whose space is not known yet: a number, or a name kept unresolved."""
        if self.kinds[self.i] == NUM:
            return self.u32()
        if self.kinds[self.i] != ID:
            raise self.unexpected("an index")
        self.i += 1
        return Ref(self.vals[self.i - 1], self.offs[self.i - 1])  # type: ignore[arg-type]

    def as_index(self, space: str, x: int | Ref) -> int | Ref:
        if isinstance(x, Ref):
            idx = self.m.names[space].get(x.name)
            return idx if idx is not None else x
        return x

    def resolve(self, space: str, x: int | Ref) -> int:
        if isinstance(x, int):
            return x
        idx = self.m.names[space].get(x.name)
        if idx is None:
            raise self.error_at(f"unknown {space} ${x.name}", x.pos)
        return idx

    def define(self, space: str, name: str | None, pos: int) -> int:
        """Give the next index of ``space`` to the field being read, under ``name`` when it has one."""
        idx = self.m.counts[space]
        self.m.counts[space] = idx + 1
        if name is not None:
            names = self.m.names[space]
            if name in names:
                raise self.error_at(f"duplicate {space} ${name}", pos)
            names[name] = idx
        return idx

    # --- emitting into the current code buffer ---------------------------------------------------

    def defer(self, fn: Callable[[], bytes]) -> None:
        if self.buf:
            self.parts.append(bytes(self.buf))
            self.buf.clear()
        self.parts.append(fn)

    def emit(self, piece: Part) -> None:
        if piece.__class__ is bytes:
            self.buf += piece  # type: ignore[operator]
        else:
            self.defer(piece)  # type: ignore[arg-type]

    def emit_index(self, space: str) -> None:
        x = self.index(space)
        if isinstance(x, int):
            self.buf += uleb(x)
        else:
            self.defer(lambda: uleb(self.resolve(space, x)))

    def start_code(self) -> tuple[bytearray, list[Part]]:
        saved = (self.buf, self.parts)
        self.buf = bytearray()
        self.parts = []
        return saved

    def end_code(self, saved: tuple[bytearray, list[Part]]) -> list[Part]:
        if self.buf:
            self.parts.append(bytes(self.buf))
        parts = self.parts
        self.buf, self.parts = saved
        return parts

    def mark(self) -> tuple[int, int]:
        return len(self.parts), len(self.buf)

    def cut(self, mark: tuple[int, int]) -> list[Part]:
        """Take back everything emitted since ``mark`` (to re-emit it after a folded instruction's operands)."""
        nparts, nbuf = mark
        parts, buf = self.parts, self.buf
        if len(parts) == nparts:
            piece: list[Part] = [bytes(buf[nbuf:])]
            del buf[nbuf:]
            return piece
        head = parts[nparts]
        assert isinstance(head, bytes)
        piece = [head[nbuf:], *parts[nparts + 1 :], bytes(buf)]
        parts[nparts] = head[:nbuf]
        del parts[nparts + 1 :]
        buf.clear()
        return piece

    def paste(self, piece: list[Part]) -> None:
        for p in piece:
            self.emit(p)

    # --- types -----------------------------------------------------------------------------------

    def heaptype(self) -> int | str | Ref:
        k = self.kinds[self.i]
        if k == KEYWORD and self.vals[self.i] in ABSHEAP:
            self.i += 1
            return self.vals[self.i - 1]  # type: ignore[return-value]
        if k == NUM or k == ID:
            return self.index("type")
        raise self.unexpected("a heap type")

    def reftype(self) -> tuple[bool, Any]:
        k = self.kinds[self.i]
        if k == KEYWORD and self.vals[self.i] in REFABBREV:
            self.i += 1
            return (True, REFABBREV[self.vals[self.i - 1]])  # type: ignore[index]
        if self.lpar_kw() == "ref":
            self.i += 2
            nullable = self.take_kw("null")
            ht = self.heaptype()
            self.expect_rpar()
            return (nullable, ht)
        raise self.unexpected("a reference type")

    def valtype(self) -> ValType:
        k = self.kinds[self.i]
        if k == KEYWORD:
            v = self.vals[self.i]
            if v in NUMTYPES:
                self.i += 1
                return v
            if v in REFABBREV:
                self.i += 1
                return (True, REFABBREV[v])  # type: ignore[index]
        elif k == LPAR and self.lpar_kw() == "ref":
            return self.reftype()
        raise self.unexpected("a value type")

    def is_valtype_start(self) -> bool:
        k = self.kinds[self.i]
        if k == KEYWORD:
            return self.vals[self.i] in NUMTYPES or self.vals[self.i] in REFABBREV
        return k == LPAR and self.lpar_kw() == "ref"

    def enc_heap(self, ht: Any) -> bytes:
        if ht.__class__ is str:
            return bytes((ABSHEAP[ht],))
        return sleb(self.resolve("type", ht))

    def enc_valtype(self, vt: ValType) -> bytes:
        if vt.__class__ is str:
            return NUMTYPES[vt]
        nullable, ht = vt
        if ht.__class__ is str:
            return bytes((ABSHEAP[ht],)) if nullable else b"\x64" + bytes((ABSHEAP[ht],))
        return (b"\x63" if nullable else b"\x64") + sleb(self.resolve("type", ht))

    def valtype_part(self, vt: ValType) -> Part:
        if vt.__class__ is str:
            return NUMTYPES[vt]
        if isinstance(vt[1], Ref):
            return lambda: self.enc_valtype(vt)
        return self.enc_valtype(vt)

    def canon(self, vt: ValType) -> ValType:
        """A value type with its type names resolved, for comparing types."""
        if vt.__class__ is str or not isinstance(vt[1], Ref):
            return vt
        return (vt[0], self.resolve("type", vt[1]))

    def typeuse(self, names: bool, register: bool = True) -> TypeUse:
        """``(type x)? (param ...)* (result ...)*``; ``names`` allows ``(param $x t)``."""
        pos = self.offs[self.i]
        ref: int | Ref | None = None
        if self.lpar_kw() == "type":
            self.i += 2
            ref = self.index("type")
            self.expect_rpar()
        params: list[ValType] = []
        pnames: list[str | None] = []
        results: list[ValType] = []
        inline = False
        while self.lpar_kw() == "param":
            inline = True
            self.i += 2
            if self.kinds[self.i] == ID:
                if not names:
                    raise self.unexpected("a value type")
                pnames.append(self.vals[self.i])  # type: ignore[arg-type]
                self.i += 1
                params.append(self.valtype())
            else:
                while self.kinds[self.i] != RPAR:
                    params.append(self.valtype())
                    pnames.append(None)
            self.expect_rpar()
        while self.lpar_kw() == "result":
            inline = True
            self.i += 2
            while self.kinds[self.i] != RPAR:
                results.append(self.valtype())
            self.expect_rpar()
        tu = TypeUse(ref, params, results, inline, pos, pnames)
        if register and tu.index is None:
            self.m.typeuses.append(tu)
        return tu

    def typeuse_part(self, tu: TypeUse, signed: bool = False) -> Part:
        enc = sleb if signed else uleb
        if tu.index is not None:
            return enc(tu.index)
        return lambda: enc(tu.index)  # type: ignore[arg-type]

    def storagetype(self) -> Any:
        if self.kinds[self.i] == KEYWORD and self.vals[self.i] in ("i8", "i16"):
            self.i += 1
            return self.vals[self.i - 1]
        return self.valtype()

    def fieldtype(self) -> tuple[Any, bool]:
        if self.lpar_kw() == "mut":
            self.i += 2
            st = self.storagetype()
            self.expect_rpar()
            return (st, True)
        return (self.storagetype(), False)

    def subtype(self) -> SubType:
        final = True
        supers: list[int | Ref] = []
        wrapped = self.lpar_kw() == "sub"
        if wrapped:
            self.i += 2
            final = self.take_kw("final")
            while self.at_index():
                supers.append(self.index("type"))
        kw = self.lpar_kw()
        field_names: dict[str, int] = {}
        if kw == "func":
            self.i += 2
            tu = self.typeuse(names=True, register=False)
            if tu.ref is not None:
                raise self.error("unexpected (type ...) in a function type")
            body: Any = (tu.params, tu.results)
        elif kw == "struct":
            self.i += 2
            fields: list[tuple[Any, bool]] = []
            while self.lpar_kw() == "field":
                self.i += 2
                if self.kinds[self.i] == ID:
                    fname = self.vals[self.i]
                    if fname in field_names:
                        raise self.error(f"duplicate field ${fname}")
                    self.i += 1
                    field_names[fname] = len(fields)  # type: ignore[index]
                    fields.append(self.fieldtype())
                else:
                    while self.kinds[self.i] != RPAR:
                        fields.append(self.fieldtype())
                self.expect_rpar()
            body = fields
        elif kw == "array":
            self.i += 2
            body = self.fieldtype()
        else:
            raise self.unexpected("'(func', '(struct' or '(array'")
        self.expect_rpar()
        if wrapped:
            self.expect_rpar()
        return SubType(final if wrapped else True, supers, kw, body, field_names)

    def type_field(self, in_rec: bool) -> SubType:
        pos = self.offs[self.i]
        name = self.opt_id()
        idx = self.define("type", name, pos)
        st = self.subtype()
        self.expect_rpar()
        self.m.typedefs.append(st)
        if not in_rec:
            self.m.single_types.append(idx)
        return st

    def limits(self, bits: int) -> tuple[int, int | None]:
        lo = self.u32(bits)
        hi = self.u32(bits) if self.kinds[self.i] == NUM else None
        return lo, hi

    def addrtype(self) -> bool:
        if self.kinds[self.i] == KEYWORD and self.vals[self.i] in ("i32", "i64"):
            self.i += 1
            return self.vals[self.i - 1] == "i64"
        return False

    def tabletype(self) -> tuple[bool, tuple[int, int | None], Any]:
        is64 = self.addrtype()
        lim = self.limits(64)
        return (is64, lim, self.reftype())

    def memtype(self) -> tuple[bool, tuple[int, int | None], bool]:
        is64 = self.addrtype()
        lim = self.limits(64)
        shared = self.take_kw("shared")
        return (is64, lim, shared)

    def globaltype(self) -> tuple[ValType, bool]:
        if self.lpar_kw() == "mut":
            self.i += 2
            vt = self.valtype()
            self.expect_rpar()
            return (vt, True)
        return (self.valtype(), False)

    # --- instructions ----------------------------------------------------------------------------

    def label(self) -> int:
        k = self.kinds[self.i]
        if k == NUM:
            return self.u32()
        if k == ID:
            name = self.vals[self.i]
            labels = self.labels
            for depth in range(len(labels) - 1, -1, -1):
                if labels[depth] == name:
                    self.i += 1
                    return len(labels) - 1 - depth
            raise self.error(f"unknown label ${name}")
        raise self.unexpected("a label")

    def local(self) -> None:
        k = self.kinds[self.i]
        if k == NUM:
            self.buf += uleb(self.u32())
            return
        if k == ID:
            x = self.locals.get(str(self.vals[self.i]))
            if x is None:
                raise self.error(f"unknown local ${self.vals[self.i]}")
            self.i += 1
            if x.__class__ is int:
                self.buf += uleb(x)
            else:
                self.defer(x)
            return
        raise self.unexpected("a local index")

    def blocktype(self) -> Part:
        tu = self.typeuse(names=False, register=False)
        if tu.ref is None and not tu.params and len(tu.results) <= 1:
            return self.valtype_part(tu.results[0]) if tu.results else b"\x40"
        if tu.index is None:
            self.m.typeuses.append(tu)
        return self.typeuse_part(tu, signed=True)

    def block_label(self) -> str | None:
        return self.opt_id()

    def end_label(self, label: str | None) -> None:
        if self.kinds[self.i] == ID:
            if self.vals[self.i] != label:
                raise self.error("mismatching label")
            self.i += 1

    def instrs(self) -> None:
        """Instructions, flat or folded, up to a ``)`` or a block-ending keyword not opened here.

        Flat blocks are tracked on a local stack rather than by recursion, so that the deep block
        nests compilers emit (a ``br_table`` dispatch over thousands of cases) do not hit Python's
        recursion limit.
        """
        kinds, vals = self.kinds, self.vals
        table = INSTRUCTIONS
        frames: list[list[Any]] = []  # flat blocks opened here: [name, label, phase]
        while True:
            k = kinds[self.i]
            if k == LPAR:
                self.folded()
                continue
            if k != KEYWORD:
                break
            name: str = vals[self.i]  # type: ignore[assignment]
            op = table.get(name)
            if op is None:
                raise self.error(f"unknown operator {name}")
            kind = op[1]
            if kind == "none":
                self.i += 1
                self.buf += op[0]
                continue
            if kind == "block" or kind == "try_table":
                self.i += 1
                frames.append([name, self.open_flat(name, op[0]), 0])
                continue
            if name in _BLOCK_END:
                if not frames:
                    return
                frame = frames[-1]
                bname, label, phase = frame
                if name == "end":
                    self.i += 1
                    self.end_label(label)
                    self.labels.pop()
                    self.buf += b"\x0b"
                    frames.pop()
                elif name == "else":
                    if bname != "if" or phase:
                        raise self.error("unexpected else")
                    self.i += 1
                    self.end_label(label)
                    self.buf += b"\x05"
                    frame[2] = 1
                elif name == "catch" or name == "catch_all":
                    if bname != "try" or phase == 2:
                        raise self.error(f"unexpected {name}")
                    self.i += 1
                    if name == "catch":
                        self.buf += b"\x07"
                        self.emit_index("tag")
                        frame[2] = 1
                    else:
                        self.buf += b"\x19"
                        frame[2] = 2
                else:  # delegate: ends the try; its label counts from outside it
                    if bname != "try" or phase:
                        raise self.error("unexpected delegate")
                    self.i += 1
                    self.labels.pop()
                    self.buf += b"\x18" + uleb(self.label())
                    frames.pop()
                continue
            self.i += 1
            self.plain(name, op)
        if frames:
            raise self.unexpected("'end'")

    def open_flat(self, name: str, opcode: bytes) -> str | None:
        """The header of a flat ``block``/``loop``/``if``/``try``/``try_table`` (keyword consumed)."""
        if name == "try_table":
            return self.try_table_head(opcode)
        label = self.block_label()
        self.buf += opcode
        self.emit(self.blocktype())
        self.labels.append(label)
        return label

    def folded_operands(self) -> None:
        while self.kinds[self.i] == LPAR:
            self.folded()
        self.expect_rpar()

    def folded(self) -> None:
        """``( instr ... )`` at ``self.i``."""
        start = self.i
        self.i += 1
        if self.kinds[self.i] != KEYWORD:
            raise self.unexpected("an instruction")
        name: str = self.vals[self.i]  # type: ignore[assignment]
        op = INSTRUCTIONS.get(name)
        if op is None:
            raise self.error(f"unknown operator {name}")
        kind = op[1]
        self.i += 1
        if kind == "block":
            if name == "if":
                self.folded_if()
                return
            if name == "try":
                self.folded_try()
                return
            label = self.block_label()
            self.buf += op[0]
            self.emit(self.blocktype())
            self.labels.append(label)
            self.instrs()
            self.expect_rpar()
            self.labels.pop()
            self.buf += b"\x0b"
            return
        if kind == "try_table":
            self.try_table_head(op[0])
            self.instrs()
            self.expect_rpar()
            self.labels.pop()
            self.buf += b"\x0b"
            return
        if kind in ("end", "else") or name in _BLOCK_END:
            raise self.error(f"unexpected {name}", start + 1)
        mark = self.mark()
        if kind == "none":
            self.buf += op[0]
        else:
            self.plain(name, op)
        if self.kinds[self.i] == RPAR:  # no operands: nothing to reorder
            self.i += 1
            return
        piece = self.cut(mark)
        self.folded_operands()
        self.paste(piece)

    def folded_if(self) -> None:
        label = self.block_label()
        bt = self.blocktype()
        while self.kinds[self.i] == LPAR and self.lpar_kw() != "then":
            self.folded()
        self.buf += b"\x04"
        self.emit(bt)
        self.labels.append(label)
        self.expect_lpar_kw("then")
        self.instrs()
        self.expect_rpar()
        if self.lpar_kw() == "else":
            self.i += 2
            self.buf += b"\x05"
            self.instrs()
            self.expect_rpar()
        self.expect_rpar()
        self.labels.pop()
        self.buf += b"\x0b"

    def folded_try(self) -> None:
        label = self.block_label()
        self.buf += b"\x06"
        self.emit(self.blocktype())
        self.labels.append(label)
        self.expect_lpar_kw("do")
        self.instrs()
        self.expect_rpar()
        if self.lpar_kw() == "delegate":
            self.i += 2
            self.labels.pop()
            self.buf += b"\x18" + uleb(self.label())
            self.expect_rpar()
            self.expect_rpar()
            return
        while self.lpar_kw() == "catch":
            self.i += 2
            self.buf += b"\x07"
            self.emit_index("tag")
            self.instrs()
            self.expect_rpar()
        if self.lpar_kw() == "catch_all":
            self.i += 2
            self.buf += b"\x19"
            self.instrs()
            self.expect_rpar()
        self.expect_rpar()
        self.labels.pop()
        self.buf += b"\x0b"

    def try_table_head(self, opcode: bytes) -> str | None:
        label = self.block_label()
        bt = self.blocktype()
        catches: list[Part] = []
        count = 0
        while True:
            kw = self.lpar_kw()
            if kw not in ("catch", "catch_ref", "catch_all", "catch_all_ref"):
                break
            self.i += 2
            count += 1
            flag = {"catch": 0, "catch_ref": 1, "catch_all": 2, "catch_all_ref": 3}[kw]
            catches.append(bytes((flag,)))
            if flag < 2:
                x = self.index("tag")
                catches.append(uleb(x) if isinstance(x, int) else self.later_index("tag", x))
            catches.append(uleb(self.label()))
            self.expect_rpar()
        self.buf += opcode
        self.emit(bt)
        self.buf += uleb(count)
        self.paste(catches)
        self.labels.append(label)
        return label

    def memarg(self, natural: int, lane: bool = False) -> None:
        """``memidx? offset=N? align=N?`` (and the lane of ``v128.loadN_lane``)."""
        mem: int | Ref = 0
        k = self.kinds[self.i]
        if k == ID:
            mem = self.index("memory")
        elif k == NUM and (
            not lane
            or self.kinds[self.i + 1] == NUM
            or (
                self.kinds[self.i + 1] == KEYWORD and self.vals[self.i + 1][:6] in ("offset", "align=")  # type: ignore[index]
            )
        ):
            mem = self.index("memory")
        offset = 0
        align = natural
        if self.kinds[self.i] == KEYWORD and str(self.vals[self.i]).startswith("offset="):
            n = parse_uint(str(self.vals[self.i])[7:])
            if n is None or n >> 64:
                raise self.error("malformed memory offset")
            offset = n
            self.i += 1
        if self.kinds[self.i] == KEYWORD and str(self.vals[self.i]).startswith("align="):
            n = parse_uint(str(self.vals[self.i])[6:])
            if n is None or n >> 64:
                raise self.error("malformed memory alignment")
            if n == 0 or n & (n - 1):
                raise self.error("alignment must be a power of two")
            align = n
            self.i += 1
        a = align.bit_length() - 1
        if isinstance(mem, int):
            self.buf += uleb(a) + uleb(offset) if mem == 0 else uleb(a | 0x40) + uleb(mem) + uleb(offset)
        else:

            def late(mem: Ref = mem) -> bytes:
                m = self.resolve("memory", mem)
                return uleb(a) + uleb(offset) if m == 0 else uleb(a | 0x40) + uleb(m) + uleb(offset)

            self.defer(late)
        if lane:
            self.buf.append(self.u32(8))

    def opt_index(self, space: str) -> None:
        if self.at_index():
            self.emit_index(space)
        else:
            self.buf += b"\x00"

    def v128_const(self) -> None:
        if self.kinds[self.i] != KEYWORD or self.vals[self.i] not in _SHAPES:
            raise self.unexpected("a vector shape (i8x16, i16x8, i32x4, i64x2, f32x4, f64x2)")
        shape: str = self.vals[self.i]  # type: ignore[assignment]
        self.i += 1
        n, bits = _SHAPES[shape]
        out = bytearray()
        for _ in range(n):
            if self.kinds[self.i] != NUM:
                raise self.unexpected(f"a {shape} lane")
            tok: str = self.vals[self.i]  # type: ignore[assignment]
            try:
                if shape[0] == "f":
                    v = parse_float(tok, F32_FORMAT if bits == 32 else F64_FORMAT)
                else:
                    v = parse_int(tok, bits)
            except LiteralError as exc:
                raise self.error(str(exc)) from None
            out += v.to_bytes(bits // 8, "little")
            self.i += 1
        self.buf += out

    def plain(self, name: str, op: tuple[bytes, str]) -> None:
        """One plain instruction with immediates (the name is consumed)."""
        code, kind = op
        buf = self.buf
        if kind == "local":
            buf += code
            self.local()
        elif kind == "i32" or kind == "i64":
            if self.kinds[self.i] != NUM:
                raise self.unexpected(f"an {kind} literal")
            try:
                v = parse_sint(self.vals[self.i], 32 if kind == "i32" else 64)  # type: ignore[arg-type]
            except LiteralError as exc:
                raise self.error(str(exc)) from None
            self.i += 1
            buf += code
            buf += sleb(v)
        elif kind == "f32" or kind == "f64":
            if self.kinds[self.i] != NUM:
                raise self.unexpected(f"an {kind} literal")
            try:
                bits = parse_float(self.vals[self.i], F32_FORMAT if kind == "f32" else F64_FORMAT)  # type: ignore[arg-type]
            except LiteralError as exc:
                raise self.error(str(exc)) from None
            self.i += 1
            buf += code
            buf += struct.pack("<I", bits) if kind == "f32" else struct.pack("<Q", bits)
        elif kind == "label":
            buf += code
            buf += uleb(self.label())
        elif kind.startswith("memarg"):
            buf += code
            self.memarg(int(kind[6:]))
        elif kind in ("func", "global", "type", "tag", "data", "elem"):
            buf += code
            self.emit_index(kind)
            if self.in_func and name in NEEDS_DATA_COUNT:
                self.m.needs_data_count = True
        elif kind == "br_table":
            buf += code
            labels = []
            while self.at_index():
                labels.append(self.label())
            if not labels:
                raise self.unexpected("a label")
            buf += uleb(len(labels) - 1)
            for lab in labels:
                buf += uleb(lab)
        elif kind == "call_indirect":
            buf += code
            table: int | Ref = 0
            if self.at_index():
                table = self.index("table")
            tu = self.typeuse(names=False)
            self.emit(self.typeuse_part(tu))
            if isinstance(table, int):
                self.buf += uleb(table)
            else:
                self.defer(lambda: uleb(self.resolve("table", table)))  # type: ignore[arg-type]
        elif kind == "table" or kind == "memory":
            buf += code
            self.opt_index(kind)
        elif kind == "memory_init" or kind == "table_init":
            buf += code
            first = self.raw_index()
            space, other = ("data", "memory") if kind == "memory_init" else ("elem", "table")
            if self.at_index():  # memory.init mem data / table.init table elem
                second = self.raw_index()
                self.emit_late_index(space, self.as_index(space, second))
                self.emit_late_index(other, self.as_index(other, first))
            else:
                self.emit_late_index(space, self.as_index(space, first))
                self.buf += b"\x00"
            if self.in_func and kind == "memory_init":
                self.m.needs_data_count = True
        elif kind == "memory_copy" or kind == "table_copy":
            buf += code
            space = "memory" if kind == "memory_copy" else "table"
            if self.at_index():
                self.emit_index(space)
                self.emit_index(space)
            else:
                self.buf += b"\x00\x00"
        elif kind == "select":
            if self.lpar_kw() == "result":
                types: list[ValType] = []
                while self.lpar_kw() == "result":
                    self.i += 2
                    while self.kinds[self.i] != RPAR:
                        types.append(self.valtype())
                    self.expect_rpar()
                buf += b"\x1c" + uleb(len(types))
                for t in types:
                    self.emit(self.valtype_part(t))
            else:
                buf += b"\x1b"
        elif kind == "heaptype":
            buf += code
            ht = self.heaptype()
            self.emit(self.enc_heap(ht) if not isinstance(ht, Ref) else (lambda: self.enc_heap(ht)))
        elif kind == "reftest":
            nullable, ht = self.reftype()
            buf += code[:-1] + bytes((code[-1] + (1 if nullable else 0),))
            self.emit(self.enc_heap(ht) if not isinstance(ht, Ref) else (lambda: self.enc_heap(ht)))
        elif kind == "br_on_cast":
            lab = self.label()
            n1, h1 = self.reftype()
            n2, h2 = self.reftype()
            buf += code + bytes((int(n1) | (int(n2) << 1),)) + uleb(lab)
            for h in (h1, h2):
                self.emit(self.enc_heap(h) if not isinstance(h, Ref) else self.later_heap(h))
        elif kind == "field":
            buf += code
            t = self.index("type")
            self.emit_late_index("type", t)
            self.field_index(t)
        elif kind == "array_fixed":
            buf += code
            self.emit_index("type")
            self.buf += uleb(self.u32())
        elif kind in ("type_data", "type_elem", "type_type"):
            buf += code
            self.emit_index("type")
            self.emit_index({"type_data": "data", "type_elem": "elem", "type_type": "type"}[kind])
            if self.in_func and name in NEEDS_DATA_COUNT:
                self.m.needs_data_count = True
        elif kind == "v128":
            buf += code
            self.v128_const()
        elif kind == "shuffle":
            buf += code
            for _ in range(16):
                self.buf.append(self.u32(8))
        elif kind == "lane":
            buf += code
            buf.append(self.u32(8))
        elif kind.startswith("lanemem"):
            buf += code
            self.memarg(int(kind[7:]), lane=True)
        else:  # block-structured instructions are handled by instrs() and folded()
            raise self.error(f"unsupported instruction {name}", self.i - 1)

    def later_index(self, space: str, x: Ref) -> Callable[[], bytes]:
        """The encoding of index ``x`` once every name is known (a forward reference)."""
        return lambda: uleb(self.resolve(space, x))

    def later_heap(self, h: Ref) -> Callable[[], bytes]:
        """The encoding of heap type ``h`` once every type name is known."""
        return lambda: self.enc_heap(h)

    def emit_late_index(self, space: str, x: int | Ref) -> None:
        if isinstance(x, int):
            self.buf += uleb(x)
        else:
            self.defer(lambda: uleb(self.resolve(space, x)))

    def field_index(self, t: int | Ref) -> None:
        k = self.kinds[self.i]
        if k == NUM:
            self.buf += uleb(self.u32())
            return
        if k != ID:
            raise self.unexpected("a field index")
        fname: str = self.vals[self.i]  # type: ignore[assignment]
        pos = self.offs[self.i]
        self.i += 1

        def late() -> bytes:
            ti = self.resolve("type", t)
            if ti >= len(self.m.typedefs) or fname not in self.m.typedefs[ti].field_names:
                raise self.error_at(f"unknown field ${fname}", pos)
            return uleb(self.m.typedefs[ti].field_names[fname])

        if isinstance(t, int) and t < len(self.m.typedefs):
            self.buf += late()
        else:
            self.defer(late)

    def const_expr(self) -> list[Part]:
        """Instructions up to ``)``, as a constant expression ending in ``end``."""
        saved = self.start_code()
        self.labels = []
        self.instrs()
        self.buf += b"\x0b"
        return self.end_code(saved)

    def folded_expr(self) -> list[Part]:
        """One folded instruction as a constant expression (the ``(offset ...)``/``(item ...)`` shorthands)."""
        saved = self.start_code()
        self.labels = []
        if self.kinds[self.i] != LPAR:
            raise self.unexpected("'('")
        self.folded()
        self.buf += b"\x0b"
        return self.end_code(saved)

    # --- module fields ---------------------------------------------------------------------------

    def module(self) -> bytes:
        """``(module $id? field*)`` at ``self.i``, or a bare list of fields up to the end."""
        self.m = ModuleState()
        if self.lpar_kw() == "module":
            self.i += 2
            self.m.name = self.opt_id()
            self.fields()
            self.expect_rpar()
        else:
            self.fields()
        return self.finish()

    def fields(self) -> None:
        while self.kinds[self.i] == LPAR:
            kw = self.lpar_kw()
            start = self.i
            handler = _FIELDS.get(kw)  # type: ignore[arg-type]
            if handler is None:
                raise self.error(f"unknown module field {kw}" if kw else "expected a module field", start + 1)
            self.i += 2
            handler(self, start)

    def note_definition(self, kind: str) -> None:
        if self.m.defined is None:
            self.m.defined = kind

    def inline_exports(self, kind: str, idx: int) -> None:
        while self.lpar_kw() == "export":
            pos = self.offs[self.i]
            self.i += 2
            self.add_export(self.name(), kind, idx, pos)
            self.expect_rpar()

    def add_export(self, name: str, kind: str, idx: int | Ref, pos: int) -> None:
        self.m.exports.append((name, kind, idx, pos))

    def inline_import(self, start: int) -> tuple[str, str] | None:
        if self.lpar_kw() != "import":
            return None
        self.i += 2
        module = self.name()
        field = self.name()
        self.expect_rpar()
        if self.m.defined is not None:
            raise self.error(f"import after {_IMPORT_AFTER[self.m.defined]}", start)
        return module, field

    def f_type(self, start: int) -> None:
        st = self.type_field(in_rec=False)
        self.m.groups.append((False, [st]))

    def f_rec(self, start: int) -> None:
        group: list[SubType] = []
        while self.lpar_kw() == "type":
            self.i += 2
            group.append(self.type_field(in_rec=True))
        self.expect_rpar()
        self.m.groups.append((True, group))

    def f_func(self, start: int) -> None:
        pos = self.offs[self.i]
        name = self.opt_id()
        idx = self.define("func", name, pos)
        if name is not None:
            self.m.func_names[idx] = name
        self.inline_exports("func", idx)
        imp = self.inline_import(start)
        if imp is not None:
            tu = self.typeuse(names=True)
            self.expect_rpar()
            self.m.imports.append((imp[0], imp[1], "func", tu))
            return
        self.note_definition("func")
        tu = self.typeuse(names=True)
        func = Func(tu, name)
        self.locals = {}
        nparams: Any = len(tu.params)
        if tu.ref is not None and not tu.inline:
            if isinstance(tu.ref, int) and tu.ref < len(self.m.typedefs):
                td = self.m.typedefs[tu.ref]
                nparams = len(td.body[0]) if td.kind == "func" else 0
            else:
                nparams = None  # the type is defined further down: number named locals late
        for k, pname in enumerate(tu.param_names):
            if pname is not None:
                if pname in self.locals:
                    raise self.error_at(f"duplicate local ${pname}", tu.pos)
                self.locals[pname] = k
                func.local_names.append((k, pname))
        while self.lpar_kw() == "local":
            self.i += 2
            if self.kinds[self.i] == ID:
                lname: str = self.vals[self.i]  # type: ignore[assignment]
                if lname in self.locals:
                    raise self.error(f"duplicate local ${lname}")
                self.i += 1
                n = len(func.locals)
                if nparams is None:
                    self.locals[lname] = lambda n=n, tu=tu: uleb(self.func_nparams(tu) + n)
                else:
                    self.locals[lname] = nparams + n
                    func.local_names.append((nparams + n, lname))
                func.locals.append(self.valtype())
            else:
                while self.kinds[self.i] != RPAR:
                    func.locals.append(self.valtype())
            self.expect_rpar()
        saved = self.start_code()
        self.labels = []
        self.in_func = True
        self.instrs()
        self.in_func = False
        self.buf += b"\x0b"
        func.body = self.end_code(saved)
        self.expect_rpar()
        self.m.funcs.append(func)

    def func_nparams(self, tu: TypeUse) -> int:
        ti = self.resolve("type", tu.ref)  # type: ignore[arg-type]
        if ti < len(self.m.typedefs) and self.m.typedefs[ti].kind == "func":
            return len(self.m.typedefs[ti].body[0])
        return 0

    def f_table(self, start: int) -> None:
        pos = self.offs[self.i]
        name = self.opt_id()
        idx = self.define("table", name, pos)
        self.inline_exports("table", idx)
        imp = self.inline_import(start)
        if imp is not None:
            tt = self.tabletype()
            self.expect_rpar()
            self.m.imports.append((imp[0], imp[1], "table", tt))
            return
        self.note_definition("table")
        save = self.i
        is64 = self.addrtype()
        if self.is_valtype_start():  # inline elements: reftype (elem ...)
            rt = self.reftype()
            self.expect_lpar_kw("elem")
            if self.kinds[self.i] == LPAR:
                items = []
                while self.kinds[self.i] != RPAR:
                    items.append(self.elem_item())
                payload: tuple[Any, ...] = ("exprs", rt, items)
            else:
                funcs = []
                while self.at_index():
                    funcs.append(self.index("func"))
                payload = (
                    ("funcs", funcs)
                    if rt == (True, "func")
                    else ("exprs", rt, [self.ref_func_expr(f) for f in funcs])
                )
            self.expect_rpar()
            self.expect_rpar()
            n = len(payload[-1])
            self.m.tables.append(((is64, (n, n), rt), None))
            offset = [b"\x42\x00\x0b" if is64 else b"\x41\x00\x0b"]
            self.m.elems.append({"mode": "active", "table": idx, "offset": offset, "payload": payload})
            return
        self.i = save
        tt = self.tabletype()
        init = self.const_expr() if self.kinds[self.i] != RPAR else None
        self.expect_rpar()
        self.m.tables.append((tt, init))

    def ref_func_expr(self, f: int | Ref) -> list[Part]:
        if isinstance(f, int):
            return [b"\xd2" + uleb(f) + b"\x0b"]
        return [lambda: b"\xd2" + uleb(self.resolve("func", f)) + b"\x0b"]

    def f_memory(self, start: int) -> None:
        pos = self.offs[self.i]
        name = self.opt_id()
        idx = self.define("memory", name, pos)
        self.inline_exports("memory", idx)
        imp = self.inline_import(start)
        if imp is not None:
            mt = self.memtype()
            self.expect_rpar()
            self.m.imports.append((imp[0], imp[1], "memory", mt))
            return
        self.note_definition("memory")
        save = self.i
        is64 = self.addrtype()
        if self.lpar_kw() == "data":
            self.i += 2
            data = bytearray()
            while self.kinds[self.i] == STRING:
                data += self.string()
            self.expect_rpar()
            self.expect_rpar()
            pages = (len(data) + 0xFFFF) // 0x10000
            self.m.memories.append((is64, (pages, pages), False))
            offset = [b"\x42\x00\x0b" if is64 else b"\x41\x00\x0b"]
            self.m.datas.append({"mode": "active", "memory": idx, "offset": offset, "init": bytes(data)})
            return
        self.i = save
        mt = self.memtype()
        self.expect_rpar()
        self.m.memories.append(mt)

    def f_global(self, start: int) -> None:
        pos = self.offs[self.i]
        name = self.opt_id()
        idx = self.define("global", name, pos)
        self.inline_exports("global", idx)
        imp = self.inline_import(start)
        if imp is not None:
            gt = self.globaltype()
            self.expect_rpar()
            self.m.imports.append((imp[0], imp[1], "global", gt))
            return
        self.note_definition("global")
        gt = self.globaltype()
        init = self.const_expr()
        self.expect_rpar()
        self.m.globals.append((gt, init))

    def f_tag(self, start: int) -> None:
        pos = self.offs[self.i]
        name = self.opt_id()
        idx = self.define("tag", name, pos)
        self.inline_exports("tag", idx)
        imp = self.inline_import(start)
        tu = self.typeuse(names=True)
        self.expect_rpar()
        if imp is not None:
            self.m.imports.append((imp[0], imp[1], "tag", tu))
            return
        self.note_definition("tag")
        self.m.tags.append(tu)

    def f_import(self, start: int) -> None:
        module = self.name()
        field = self.name()
        kw = self.lpar_kw()
        if kw not in EXTERN_KINDS:
            raise self.unexpected("an import description")
        if self.m.defined is not None:
            raise self.error(f"import after {_IMPORT_AFTER[self.m.defined]}", start)
        self.i += 2
        pos = self.offs[self.i]
        name = self.opt_id()
        idx = self.define(kw, name, pos)  # type: ignore[arg-type]
        desc: Any
        if kw == "func":
            if name is not None:
                self.m.func_names[idx] = name
            desc = self.typeuse(names=True)
        elif kw == "tag":
            desc = self.typeuse(names=True)
        elif kw == "table":
            desc = self.tabletype()
        elif kw == "memory":
            desc = self.memtype()
        else:
            desc = self.globaltype()
        self.expect_rpar()
        self.expect_rpar()
        self.m.imports.append((module, field, kw, desc))  # type: ignore[arg-type]

    def f_export(self, start: int) -> None:
        pos = self.offs[self.i]
        name = self.name()
        kw = self.lpar_kw()
        if kw not in EXTERN_KINDS:
            raise self.unexpected("an export description")
        self.i += 2
        idx = self.index(kw)  # type: ignore[arg-type]
        self.expect_rpar()
        self.expect_rpar()
        self.add_export(name, kw, idx, pos)  # type: ignore[arg-type]

    def f_start(self, start: int) -> None:
        if self.m.start is not None:
            raise self.error("multiple start sections", start)
        self.m.start = self.index("func")
        self.expect_rpar()

    def elem_item(self) -> list[Part]:
        if self.lpar_kw() == "item":
            self.i += 2
            e = self.const_expr()
            self.expect_rpar()
            return e
        return self.folded_expr()

    def offset_expr(self) -> list[Part]:
        if self.lpar_kw() == "offset":
            self.i += 2
            e = self.const_expr()
            self.expect_rpar()
            return e
        return self.folded_expr()

    def f_elem(self, start: int) -> None:
        pos = self.offs[self.i]
        name = self.opt_id()
        self.define("elem", name, pos)
        seg: dict[str, Any] = {"mode": "passive", "table": None, "offset": None}
        table_omitted = False
        if self.take_kw("declare"):
            seg["mode"] = "declarative"
        elif self.kinds[self.i] == NUM or (self.kinds[self.i] == LPAR and not self.is_valtype_start()):
            seg["mode"] = "active"
            if self.kinds[self.i] == NUM:
                seg["table"] = self.u32()
                table_omitted = True
            elif self.lpar_kw() == "table":
                self.i += 2
                seg["table"] = self.index("table")
                self.expect_rpar()
            else:
                table_omitted = True
            seg["offset"] = self.offset_expr()
        if self.take_kw("func"):
            indices = True
        elif self.is_valtype_start():
            indices = False
        else:
            indices = table_omitted
        if indices:
            funcs = []
            while self.at_index():
                funcs.append(self.index("func"))
            seg["payload"] = ("funcs", funcs)
        else:
            rt = self.reftype()
            items = []
            while self.kinds[self.i] == LPAR:
                items.append(self.elem_item())
            seg["payload"] = ("exprs", rt, items)
        self.expect_rpar()
        self.m.elems.append(seg)

    def f_data(self, start: int) -> None:
        pos = self.offs[self.i]
        name = self.opt_id()
        self.define("data", name, pos)
        seg: dict[str, Any] = {"mode": "passive", "memory": 0, "offset": None}
        if self.kinds[self.i] != STRING and self.kinds[self.i] != RPAR:
            seg["mode"] = "active"
            if self.at_index():
                seg["memory"] = self.index("memory")
            elif self.lpar_kw() == "memory":
                self.i += 2
                seg["memory"] = self.index("memory")
                self.expect_rpar()
            seg["offset"] = self.offset_expr()
        data = bytearray()
        while self.kinds[self.i] == STRING:
            data += self.string()
        self.expect_rpar()
        seg["init"] = bytes(data)
        self.m.datas.append(seg)

    # --- the binary ------------------------------------------------------------------------------

    def resolve_typeuses(self) -> list[tuple[tuple[Any, ...], tuple[Any, ...]]]:
        """Give every type use its index, appending implicit types after the explicit ones."""
        m = self.m
        index: dict[tuple[Any, Any], int] = {}
        for ti in m.single_types:
            td = m.typedefs[ti]
            if td.kind == "func":
                key = (tuple(self.canon(t) for t in td.body[0]), tuple(self.canon(t) for t in td.body[1]))
                index.setdefault(key, ti)
        implicit: list[tuple[tuple[Any, ...], tuple[Any, ...]]] = []
        for tu in m.typeuses:
            if tu.ref is not None:
                ti = self.resolve("type", tu.ref)
                if tu.inline:
                    if ti >= len(m.typedefs):
                        raise self.error_at(f"unknown type {ti}", tu.pos)
                    td = m.typedefs[ti]
                    if td is not None and td.kind == "func":
                        want = ([self.canon(t) for t in td.body[0]], [self.canon(t) for t in td.body[1]])
                        got = ([self.canon(t) for t in tu.params], [self.canon(t) for t in tu.results])
                        if want != got:
                            raise self.error_at("inline function type doesn't match type reference", tu.pos)
                tu.index = ti
                continue
            key = (tuple(self.canon(t) for t in tu.params), tuple(self.canon(t) for t in tu.results))
            ti = index.get(key)  # type: ignore[assignment]
            if ti is None:
                ti = len(m.typedefs) + len(implicit)
                implicit.append(key)
                index[key] = ti
            tu.index = ti
        return implicit

    def enc_subtype(self, st: SubType) -> bytes:
        out = bytearray()
        if st.supers or not st.final:
            out += b"\x4f" if st.final else b"\x50"
            out += _vec([uleb(self.resolve("type", s)) for s in st.supers])
        if st.kind == "func":
            params, results = st.body
            out += (
                b"\x60"
                + _vec([self.enc_valtype(t) for t in params])
                + _vec([self.enc_valtype(t) for t in results])
            )
        elif st.kind == "struct":
            out += b"\x5f" + _vec([self.enc_field(f) for f in st.body])
        else:
            out += b"\x5e" + self.enc_field(st.body)
        return bytes(out)

    def enc_field(self, f: tuple[Any, bool]) -> bytes:
        st, mut = f
        head = b"\x78" if st == "i8" else b"\x77" if st == "i16" else self.enc_valtype(st)
        return head + (b"\x01" if mut else b"\x00")

    @staticmethod
    def enc_limits(is64: bool, lim: tuple[int, int | None], shared: bool = False) -> bytes:
        lo, hi = lim
        flags = (1 if hi is not None else 0) | (2 if shared else 0) | (4 if is64 else 0)
        return bytes((flags,)) + uleb(lo) + (uleb(hi) if hi is not None else b"")

    def enc_tabletype(self, tt: Any) -> bytes:
        is64, lim, rt = tt
        return self.enc_valtype(rt) + self.enc_limits(is64, lim)

    def enc_globaltype(self, gt: Any) -> bytes:
        return self.enc_valtype(gt[0]) + (b"\x01" if gt[1] else b"\x00")

    def finish(self) -> bytes:
        m = self.m
        implicit = self.resolve_typeuses()
        out = bytearray(b"\x00asm\x01\x00\x00\x00")

        def section(sid: int, items: list[bytes]) -> None:
            if items:
                body = _vec(items)
                out.append(sid)
                out.extend(uleb(len(body)))
                out.extend(body)

        types: list[bytes] = []
        for is_rec, group in m.groups:
            if is_rec:
                types.append(b"\x4e" + _vec([self.enc_subtype(st) for st in group]))
            else:
                types.append(self.enc_subtype(group[0]))
        for params, results in implicit:
            types.append(
                b"\x60"
                + _vec([self.enc_valtype(t) for t in params])
                + _vec([self.enc_valtype(t) for t in results])
            )
        section(1, types)
        imports: list[bytes] = []
        for module, field, kind, desc in m.imports:
            head = _name(module) + _name(field) + bytes((EXTERN_KINDS[kind],))
            if kind == "func":
                imports.append(head + uleb(desc.index))
            elif kind == "tag":
                imports.append(head + b"\x00" + uleb(desc.index))
            elif kind == "table":
                imports.append(head + self.enc_tabletype(desc))
            elif kind == "memory":
                imports.append(head + self.enc_limits(*desc))
            else:
                imports.append(head + self.enc_globaltype(desc))
        section(2, imports)
        section(3, [uleb(f.typeuse.index) for f in m.funcs])  # type: ignore[arg-type]
        tables = []
        for tt, init in m.tables:
            if init is None:
                tables.append(self.enc_tabletype(tt))
            else:
                tables.append(b"\x40\x00" + self.enc_tabletype(tt) + _join(init))
        section(4, tables)
        section(5, [self.enc_limits(*mt) for mt in m.memories])
        section(13, [b"\x00" + uleb(tu.index) for tu in m.tags])  # type: ignore[arg-type]
        section(6, [self.enc_globaltype(gt) + _join(init) for gt, init in m.globals])
        section(
            7,
            [
                _name(name) + bytes((EXTERN_KINDS[kind],)) + uleb(self.resolve(kind, x))
                for name, kind, x, _pos in m.exports
            ],
        )
        if m.start is not None:
            body = uleb(self.resolve("func", m.start))
            out.append(8)
            out.extend(uleb(len(body)))
            out.extend(body)
        section(9, [self.enc_elem(seg) for seg in m.elems])
        if m.needs_data_count:
            body = uleb(len(m.datas))
            out.append(12)
            out.extend(uleb(len(body)))
            out.extend(body)
        codes = []
        for f in m.funcs:
            runs: list[bytes] = []
            prev = None
            count = 0
            for t in f.locals:
                enc = self.enc_valtype(t)
                if enc == prev:
                    count += 1
                else:
                    if prev is not None:
                        runs.append(uleb(count) + prev)
                    prev, count = enc, 1
            if prev is not None:
                runs.append(uleb(count) + prev)
            body = _vec(runs) + _join(f.body)
            codes.append(uleb(len(body)) + body)
        section(10, codes)
        datas = []
        for seg in m.datas:
            init = seg["init"]
            if seg["mode"] == "passive":
                datas.append(b"\x01" + uleb(len(init)) + init)
            else:
                mem = self.resolve("memory", seg["memory"])
                head = b"\x00" if mem == 0 else b"\x02" + uleb(mem)
                datas.append(head + _join(seg["offset"]) + uleb(len(init)) + init)
        section(11, datas)
        names = self.name_section()
        if names:
            out.append(0)
            out.extend(uleb(len(names)))
            out.extend(names)
        return bytes(out)

    def enc_elem(self, seg: dict[str, Any]) -> bytes:
        payload = seg["payload"]
        exprs = payload[0] == "exprs"
        expr_bit = 4 if exprs else 0
        out = bytearray()
        encode_type = False
        mode = seg["mode"]
        if mode == "passive":
            out += uleb(1 | expr_bit)
            encode_type = True
        elif mode == "declarative":
            out += uleb(3 | expr_bit)
            encode_type = True
        else:
            table = seg["table"]
            if table is None and (not exprs or payload[1] == (True, "func")):
                out += uleb(expr_bit)
            else:
                out += uleb(2 | expr_bit)
                out += uleb(self.resolve("table", table) if table is not None else 0)
                encode_type = True
            out += _join(seg["offset"])
        if exprs:
            if encode_type:
                out += self.enc_valtype(payload[1])
            out += uleb(len(payload[2]))
            for e in payload[2]:
                out += _join(e)
        else:
            if encode_type:
                out += b"\x00"
            out += _vec([uleb(self.resolve("func", f)) for f in payload[1]])
        return bytes(out)

    def name_section(self) -> bytes:
        """Module, function and local names (the subsections the decoder reads for backtraces)."""
        m = self.m
        out = bytearray()
        if m.name is not None:
            sub = _name(m.name)
            out += b"\x00" + uleb(len(sub)) + sub
        if m.func_names:
            sub = _vec([uleb(i) + _name(n) for i, n in sorted(m.func_names.items())])
            out += b"\x01" + uleb(len(sub)) + sub
        nimported = sum(1 for imp in m.imports if imp[2] == "func")
        local_maps = []
        for k, f in enumerate(m.funcs):
            if f.local_names:
                local_maps.append(
                    uleb(nimported + k) + _vec([uleb(i) + _name(n) for i, n in sorted(f.local_names)])
                )
        if local_maps:
            sub = _vec(local_maps)
            out += b"\x02" + uleb(len(sub)) + sub
        if not out:
            return b""
        return _name("name") + bytes(out)


_FIELDS: dict[str, Callable[[Parser, int], None]] = {
    "type": Parser.f_type,
    "rec": Parser.f_rec,
    "func": Parser.f_func,
    "table": Parser.f_table,
    "memory": Parser.f_memory,
    "global": Parser.f_global,
    "tag": Parser.f_tag,
    "import": Parser.f_import,
    "export": Parser.f_export,
    "start": Parser.f_start,
    "elem": Parser.f_elem,
    "data": Parser.f_data,
}


def parse_module(text: str, filename: str | None = None) -> bytes:
    """The binary encoding of the module written in ``text``.

    Besides ``(module ...)`` and a bare list of fields, the script forms ``(module binary "...")`` and
    ``(module quote "...")`` are accepted, as wasm-tools does.
    """
    p = Parser(text, filename)
    if p.lpar_kw() == "module":
        j = 2 + (p.kinds[2] == ID)
        form = p.vals[j] if p.kinds[j] == KEYWORD else None
        if form in ("binary", "quote"):
            p.i = j + 1
            data = bytearray()
            while p.kinds[p.i] == STRING:
                data += p.string()
            p.expect_rpar()
            if p.kinds[p.i] != EOF:
                raise p.unexpected("the end of the module")
            if form == "binary":
                return bytes(data)
            return parse_module(utf8(bytes(data), text, p.offs[j]), filename)
    try:
        wasm = p.module()
    except RecursionError:
        raise p.error("folded instructions nested too deeply for this reader") from None
    if p.kinds[p.i] != EOF:
        raise p.unexpected("the end of the module")
    return wasm
