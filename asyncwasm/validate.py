"""WebAssembly validation of a decoded ``Module``.

Reference types beyond funcref/externref, subtyping, typed function references and GC are checked
by ``validate_refs`` (hooked in here): a value that is not the expected type may still match it, and
only that case pays for the subtyping test.

Function bodies are checked with the operand/control stack algorithm of the spec's appendix
("Validation Algorithm"), where a value popped from the polymorphic stack of unreachable code has
the unknown type (``None`` here). The features covered are those of Wasm 2.0: MVP, sign extension,
non-trapping float-to-int, multi-value, bulk memory and reference types, and SIMD and relaxed SIMD
(their rules in ``validate_simd``); and of 3.0 memory64 and table64 (i64 addresses and indices),
multiple memories and extended constant expressions. Where 2.0 and 3.0 disagree the feature set
decides: several memories need ``multi_memory``, arithmetic in a constant expression
``extended_const``, and a constant expression reading a global the module defines ``gc`` (as
wasmtime gates it). Tail calls and exception handling (legacy included) are checked by
``validate_ext``, whose handlers plug into the body checker.

Validation runs on every module before instantiation, so the body checker is built for speed: the
common instructions (constants, ``local.get``, numeric operators) are typed inline from a table keyed
by opcode, and the rest go through a dict of handlers; nothing is allocated per plain instruction.
Errors are ``InvalidModule`` naming the function (index space) and the instruction's byte offset;
their messages contain the phrases the spec test suite expects ("type mismatch", "unknown local", ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from asyncwasm import validate_refs
from asyncwasm.binary.module import (
    EXTERNREF,
    F32,
    F64,
    FUNCREF,
    I32,
    I64,
    NUMTYPES,
    V128,
    FuncType,
    GlobalType,
    Instr,
    Limits,
    MemoryType,
    Module,
    TableType,
)
from asyncwasm.binary.opcodes import BLOCK, ELSE, END, IF, LOOP, NATURAL_ALIGN, OPCODES, name_of
from asyncwasm.binary.simd_opcodes import SIMD_NAMES
from asyncwasm.binary.types import Matcher, canonical_ids, defaultable, is_ref, parse_ref
from asyncwasm.errors import InvalidModule
from asyncwasm.features import WASM3, Features
from asyncwasm.validate_ext import check_tags
from asyncwasm.validate_ext import handlers as ext_handlers
from asyncwasm.validate_simd import SIMD_SIGNATURES, simd_handlers

__all__ = ["validate_module"]

MAX_MEMORY_PAGES = 65536
MAX_MEMORY64_PAGES = 2**48
MAX_TABLE_SIZE = 2**32 - 1
MAX_TABLE64_SIZE = 2**64 - 1

# Opcodes the checker needs by number.
_UNREACHABLE, _NOP, _BR, _BR_IF, _BR_TABLE, _RETURN, _CALL, _CALL_INDIRECT = (
    0x00,
    0x01,
    0x0C,
    0x0D,
    0x0E,
    0x0F,
    0x10,
    0x11,
)
_DROP, _SELECT, _SELECT_T = 0x1A, 0x1B, 0x1C
_LOCAL_GET, _LOCAL_SET, _LOCAL_TEE, _GLOBAL_GET, _GLOBAL_SET = 0x20, 0x21, 0x22, 0x23, 0x24
_TABLE_GET, _TABLE_SET, _MEMORY_SIZE, _MEMORY_GROW = 0x25, 0x26, 0x3F, 0x40
_I32_CONST, _I64_CONST, _F32_CONST, _F64_CONST = 0x41, 0x42, 0x43, 0x44
_REF_NULL, _REF_IS_NULL, _REF_FUNC = 0xD0, 0xD1, 0xD2
_MEMORY_INIT, _DATA_DROP, _MEMORY_COPY, _MEMORY_FILL = 0xFC08, 0xFC09, 0xFC0A, 0xFC0B
_TABLE_INIT, _ELEM_DROP, _TABLE_COPY, _TABLE_GROW, _TABLE_SIZE, _TABLE_FILL = (
    0xFC0C,
    0xFC0D,
    0xFC0E,
    0xFC0F,
    0xFC10,
    0xFC11,
)

_V128_CONST = SIMD_NAMES["v128.const"]
_CONST_TYPES = {_I32_CONST: I32, _I64_CONST: I64, _F32_CONST: F32, _F64_CONST: F64}
# the arithmetic extended-const admits in constant expressions: i32/i64 add, sub, mul
_EXTENDED_CONST = {0x6A: I32, 0x6B: I32, 0x6C: I32, 0x7C: I64, 0x7D: I64, 0x7E: I64}
_REFTYPES = frozenset((FUNCREF, EXTERNREF))
# ``select`` without a type accepts numeric (or vector) operands only; None is the unknown type.
_NUM_OR_UNKNOWN = frozenset((*NUMTYPES, None))
_VEC_OR_UNKNOWN = frozenset((V128, None))
_REF_OR_UNKNOWN = frozenset((FUNCREF, EXTERNREF, None))


def _simple_signatures() -> dict[int, tuple[int, str | None, str]]:
    """Type every numeric operator from its name: ``op -> (operand count, operand type, result type)``.

    Deriving the table from the opcode names keeps it in step with ``opcodes.OPCODES``: the name
    ``t2.cvt_t1[_sx]`` is a conversion from t1 to t2, ``eqz`` a test, the comparisons give i32, and
    the rest are unary or binary operators over their own type.
    """
    unary = {
        "clz",
        "ctz",
        "popcnt",
        "abs",
        "neg",
        "ceil",
        "floor",
        "trunc",
        "nearest",
        "sqrt",
        "extend8",
        "extend16",
        "extend32",
    }
    compare = {"eq", "ne", "lt", "gt", "le", "ge"}
    table: dict[int, tuple[int, str | None, str]] = {}
    for op, (name, kind) in OPCODES.items():
        if op in _CONST_TYPES:
            table[op] = (0, None, _CONST_TYPES[op])
            continue
        typ, _, rest = name.partition(".")
        if kind != "none" or typ not in NUMTYPES:
            continue
        parts = rest.split("_")
        source = [p for p in parts if p in NUMTYPES]
        if source:
            table[op] = (1, source[0], typ)
        elif rest == "eqz":
            table[op] = (1, typ, I32)
        elif parts[0] in compare:
            table[op] = (2, typ, I32)
        elif parts[0] in unary:
            table[op] = (1, typ, typ)
        else:
            table[op] = (2, typ, typ)
    return table


_SIMPLE = _simple_signatures()
_SIMPLE.update(SIMD_SIGNATURES)

_LOADS: dict[int, str] = {}
_STORES: dict[int, str] = {}
for _op in NATURAL_ALIGN:
    _name = OPCODES[_op][0]
    (_LOADS if ".load" in _name else _STORES)[_op] = _name.partition(".")[0]

_EMPTY: tuple[str, ...] = ()
_EMPTY_BLOCKTYPE: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
_SINGLE_BLOCKTYPE = {t: ((), (t,)) for t in (*NUMTYPES, V128, FUNCREF, EXTERNREF)}

# A control frame is a list, indexed by these constants: the types a branch to it takes, the types
# its end leaves, the operand-stack height at its start, whether the rest of it is unreachable, the
# opcode that opened it, and its parameter types.
_LABEL, _RESULTS, _HEIGHT, _DEAD, _OPCODE, _PARAMS, _INITS = range(7)


class _Invalid(Exception):
    """A rule broken inside a function body; the body loop adds the function and offset."""


def _show(types: Sequence[str | None]) -> str:
    return "[" + " ".join("unknown" if t is None else t for t in types) + "]"


class _BodyChecker:
    """Checks function bodies against one module's context (the spec's C).

    Per-function state (operand stack, control stack, results) lives on the instance so that handlers,
    bound once per module, can reach it without closures being rebuilt per function.
    """

    def __init__(
        self,
        module: Module,
        funcs: list[FuncType],
        tables: list[str],
        memories: int,
        globals_: list[GlobalType],
        refs: set[int],
        features: Features = WASM3,
        match: Matcher | None = None,
        func_tidx: list[int] | None = None,
        tags: list[FuncType] | None = None,
    ) -> None:
        self.types = module.types
        self.features = features
        self.match = match or Matcher(canonical_ids(module))
        self.sub = self.match.sub
        self.func_tidx = func_tidx or []
        self.inits = validate_refs.LocalInit(set())
        self.locs: tuple[str, ...] = ()
        self.funcs = funcs
        self.tables = tables
        self.memories = memories
        # address types (i32, or i64 under memory64/table64) of every memory and table
        self.memory_addrs = [m.address for m in module.memory_types()]
        self.table_addrs = [t.address for t in module.table_types()]
        self.mem0 = self.memory_addrs[0] if self.memory_addrs else None  # loads' and stores' common case
        self.globals = globals_
        self.elems = [e.type for e in module.elems]
        self.datas = len(module.datas)
        self.refs = refs
        self.vals: list[str | None] = []
        self.ctrls: list[list[Any]] = []
        self.results: tuple[str, ...] = ()
        handlers: dict[int, Callable[[int, Any], None]] = {
            _UNREACHABLE: self._unreachable,
            _NOP: self._nop,
            BLOCK: self._block,
            LOOP: self._block,
            IF: self._if,
            ELSE: self._else,
            END: self._end,
            _BR: self._br,
            _BR_IF: self._br_if,
            _BR_TABLE: self._br_table,
            _RETURN: self._return,
            _CALL: self._call,
            _CALL_INDIRECT: self._call_indirect,
            _DROP: self._drop,
            _SELECT: self._select,
            _SELECT_T: self._select_t,
            _GLOBAL_GET: self._global_get,
            _GLOBAL_SET: self._global_set,
            _TABLE_GET: self._table_get,
            _TABLE_SET: self._table_set,
            _TABLE_SIZE: self._table_size,
            _TABLE_GROW: self._table_grow,
            _TABLE_FILL: self._table_fill,
            _TABLE_COPY: self._table_copy,
            _TABLE_INIT: self._table_init,
            _ELEM_DROP: self._elem_drop,
            _MEMORY_SIZE: self._memory_size,
            _MEMORY_GROW: self._memory_grow,
            _MEMORY_FILL: self._memory_fill,
            _MEMORY_COPY: self._memory_copy,
            _MEMORY_INIT: self._memory_init,
            _DATA_DROP: self._data_drop,
            _REF_NULL: self._ref_null,
            _REF_IS_NULL: self._ref_is_null,
            _REF_FUNC: self._ref_func,
        }
        for op in _LOADS:
            handlers[op] = self._load
        for op in _STORES:
            handlers[op] = self._store
        handlers.update(simd_handlers(self, _Invalid))
        handlers.update(ext_handlers(self, tags or [], _Invalid))  # tail calls, exceptions
        self.handlers = handlers
        validate_refs.install(self)

    def invalid(self, message: str) -> Exception:
        return _Invalid(message)

    # -- the function body loop ------------------------------------------------------------------

    def check(
        self,
        index: int,
        ftype: FuncType,
        locals_: tuple[str, ...],
        body: list[Instr],
        body_offset: int,
        name: str | None,
    ) -> None:
        """Type one function body; raise InvalidModule naming ``index`` and the failing instruction."""
        vals: list[str | None] = []
        self.vals = vals
        results = ftype.results
        frame: list[Any] = [results, results, 0, False, BLOCK, _EMPTY, 0]
        ctrls = [frame]
        self.ctrls = ctrls
        locs = ftype.params + tuple(locals_)
        nlocs = len(locs)
        self.locs = locs
        sub = self.sub
        nondef = {len(ftype.params) + k for k, t in enumerate(locals_) if t[0] == "(" and not defaultable(t)}
        self.inits = validate_refs.LocalInit(nondef)
        if nondef:  # their local.get/set/tee go through the handlers that track initialisation
            body = validate_refs.rename_nondefaultable(body, nondef)
        self.results = results
        simple = _SIMPLE
        handlers = self.handlers  # everything but local.get/set/tee and numeric operators, typed inline
        op, off = END, body_offset
        try:
            for op, imm, off in body:  # noqa: B007 (off names the failing instruction)
                if op == _LOCAL_GET:
                    if imm >= nlocs:
                        raise _Invalid(f"unknown local {imm}")
                    vals.append(locs[imm])
                    continue
                if op == _LOCAL_SET or op == _LOCAL_TEE:
                    if imm >= nlocs:
                        raise _Invalid(f"unknown local {imm}")
                    expect = locs[imm]
                    if len(vals) > frame[_HEIGHT]:
                        t = vals[-1]
                        if t != expect and t is not None and not sub(t, expect):
                            raise _Invalid(f"type mismatch: expected [{expect}] but found [{t}]")
                        if op == _LOCAL_SET:
                            vals.pop()
                        else:
                            vals[-1] = expect
                    else:
                        self.pop(expect)
                        if op == _LOCAL_TEE:
                            vals.append(expect)
                    continue
                sig = simple.get(op)
                if sig is not None:
                    n, arg, res = sig
                    if n == 0:
                        vals.append(res)
                    elif n == 1:
                        if len(vals) > frame[_HEIGHT]:
                            t = vals[-1]
                            if t != arg and t is not None:
                                raise _Invalid(f"type mismatch: expected [{arg}] but found [{t}]")
                            vals[-1] = res
                        else:
                            self.pop(arg)
                            vals.append(res)
                    elif len(vals) > frame[_HEIGHT] + 1:
                        t2 = vals.pop()
                        t1 = vals[-1]
                        if (t1 != arg and t1 is not None) or (t2 != arg and t2 is not None):
                            raise _Invalid(
                                f"type mismatch: expected [{arg} {arg}] but found {_show((t1, t2))}"
                            )
                        vals[-1] = res
                    else:
                        self.pop(arg)
                        self.pop(arg)
                        vals.append(res)
                    continue
                handler = handlers.get(op)
                if handler is None:
                    raise _Invalid(f"unknown instruction {name_of(op)}")
                handler(op, imm)
                if not ctrls:
                    break
                frame = ctrls[-1]
            else:
                raise _Invalid("type mismatch: function body is not closed by end")
            if off != body[-1][2]:
                raise _Invalid("instructions after the function's final end")
        except _Invalid as e:
            raise InvalidModule(f"{e} (at {name_of(op)})", func=index, offset=off, func_name=name) from None

    # -- the operand and control stacks (the appendix's helpers) --------------------------------

    def pop(self, expect: str | None) -> str | None:
        """``pop_val(expect)``: an empty stack in unreachable code yields the unknown type (None)."""
        vals = self.vals
        frame = self.ctrls[-1]
        if len(vals) == frame[_HEIGHT]:
            if frame[_DEAD]:
                return None
            raise _Invalid(f"type mismatch: expected [{expect or 'a value'}] but the stack is empty")
        actual = vals.pop()
        if actual != expect and actual is not None and expect is not None and not self.sub(actual, expect):
            raise _Invalid(f"type mismatch: expected [{expect}] but found [{actual}]")
        return actual

    def pop_vals(self, types: tuple[str, ...]) -> list[str | None]:
        """``pop_vals``: returns what was popped (with unknowns) in stack order."""
        n = len(types)
        if not n:
            return []
        vals = self.vals
        if len(vals) - n >= self.ctrls[-1][_HEIGHT]:
            got = vals[-n:]
            for g, t in zip(got, types, strict=True):
                if g != t and g is not None and not self.sub(g, t):
                    raise _Invalid(f"type mismatch: expected {_show(types)} but found {_show(got)}")
            del vals[-n:]
            return got
        got = [self.pop(t) for t in reversed(types)]
        got.reverse()
        return got

    def push_ctrl(self, op: int, params: tuple[str, ...], results: tuple[str, ...]) -> None:
        label = params if op == LOOP else results
        self.ctrls.append([label, results, len(self.vals), False, op, params, len(self.inits.log)])
        self.vals.extend(params)

    def pop_ctrl(self) -> list[Any]:
        frame = self.ctrls[-1]
        self.pop_vals(frame[_RESULTS])
        if len(self.vals) != frame[_HEIGHT]:
            extra = self.vals[frame[_HEIGHT] :]
            raise _Invalid(
                f"type mismatch: block must end with {_show(frame[_RESULTS])} "
                f"but {_show(extra)} remain{'s' if len(extra) == 1 else ''} above them"
            )
        self.ctrls.pop()
        if self.inits.log:
            self.inits.reset(frame[_INITS])
        return frame

    def set_unreachable(self) -> None:
        frame = self.ctrls[-1]
        del self.vals[frame[_HEIGHT] :]
        frame[_DEAD] = True

    def label(self, depth: int) -> tuple[str, ...]:
        if depth >= len(self.ctrls):
            raise _Invalid(f"unknown label {depth}")
        return self.ctrls[-1 - depth][_LABEL]

    def blocktype(self, bt: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if bt is None:
            return _EMPTY_BLOCKTYPE
        if type(bt) is str:
            single = _SINGLE_BLOCKTYPE.get(bt)
            if single is None:
                self.check_valtype(bt)
                single = ((), (bt,))
            return single
        if 0 <= bt < len(self.types):
            ft = self.types[bt]
            if not isinstance(ft, FuncType):
                raise _Invalid(f"type mismatch: block type {bt} is not a function type")
            return ft.params, ft.results
        raise _Invalid(f"unknown type {bt}")

    # -- context look-ups ------------------------------------------------------------------------

    def check_valtype(self, t: str) -> None:
        r = parse_ref(t)
        if r is not None and isinstance(r[1], int) and r[1] >= len(self.types):
            raise _Invalid(f"unknown type {r[1]}")

    def table(self, x: int) -> str:
        if x >= len(self.tables):
            raise _Invalid(f"unknown table {x}")
        return self.tables[x]

    def memory(self, x: int = 0) -> str:
        """Memory ``x``'s address type."""
        if x >= len(self.memory_addrs):
            raise _Invalid(f"unknown memory {x}")
        return self.memory_addrs[x]

    def table_addr(self, x: int) -> str:
        """Table ``x``'s index type (after ``table(x)`` has checked that it exists)."""
        return self.table_addrs[x]

    def memarg(self, imm: tuple[int, ...], natural: int) -> str:
        """Check a load's or store's memory, alignment and offset; return the address type."""
        at = self.memory(imm[2] if len(imm) == 3 else 0)
        if imm[0] > natural:
            raise _Invalid(f"alignment must not be larger than natural ({1 << imm[0]} > {1 << natural})")
        if at == I32 and imm[1] > 0xFFFFFFFF:
            raise _Invalid(f"offset out of range: {imm[1]} does not fit a 32-bit memory")
        return at

    def data(self, x: int) -> None:
        if x >= self.datas:
            raise _Invalid(f"unknown data segment {x}")

    def elem(self, x: int) -> str:
        if x >= len(self.elems):
            raise _Invalid(f"unknown elem segment {x}")
        return self.elems[x]

    def global_(self, x: int) -> GlobalType:
        if x >= len(self.globals):
            raise _Invalid(f"unknown global {x}")
        return self.globals[x]

    # -- control instructions --------------------------------------------------------------------

    def _unreachable(self, op: int, imm: Any) -> None:
        self.set_unreachable()

    def _nop(self, op: int, imm: Any) -> None:
        pass

    def _block(self, op: int, imm: Any) -> None:
        params, results = self.blocktype(imm)
        if params:
            self.pop_vals(params)
        self.push_ctrl(op, params, results)

    def _if(self, op: int, imm: Any) -> None:
        params, results = self.blocktype(imm)
        self.pop(I32)
        if params:
            self.pop_vals(params)
        self.push_ctrl(op, params, results)

    def _else(self, op: int, imm: Any) -> None:
        if self.ctrls[-1][_OPCODE] != IF:
            raise _Invalid("else without a matching if")
        frame = self.pop_ctrl()
        self.push_ctrl(ELSE, frame[_PARAMS], frame[_RESULTS])

    def _end(self, op: int, imm: Any) -> None:
        frame = self.pop_ctrl()
        if (
            frame[_OPCODE] == IF
            and frame[_PARAMS] != frame[_RESULTS]
            and not self.match.subs(frame[_PARAMS], frame[_RESULTS])
        ):
            # An if without else has an implicit empty else, which must turn params into results.
            raise _Invalid(
                f"type mismatch: if without else must have matching parameters and results, "
                f"not {_show(frame[_PARAMS])} -> {_show(frame[_RESULTS])}"
            )
        self.vals.extend(frame[_RESULTS])

    def _br(self, op: int, depth: int) -> None:
        self.pop_vals(self.label(depth))
        self.set_unreachable()

    def _br_if(self, op: int, depth: int) -> None:
        self.pop(I32)
        types = self.label(depth)
        self.pop_vals(types)
        self.vals.extend(types)

    def _br_table(self, op: int, imm: tuple[tuple[int, ...], int]) -> None:
        labels, default = imm
        self.pop(I32)
        default_types = self.label(default)
        arity = len(default_types)
        for depth in labels:
            types = self.label(depth)
            if types == default_types:
                continue  # checked by the final pop_vals below
            if len(types) != arity:
                raise _Invalid(
                    f"type mismatch: br_table targets have different arities "
                    f"({_show(types)} and {_show(default_types)})"
                )
            self.vals.extend(self.pop_vals(types))
        self.pop_vals(default_types)
        self.set_unreachable()

    def _return(self, op: int, imm: Any) -> None:
        self.pop_vals(self.results)
        self.set_unreachable()

    def _call(self, op: int, x: int) -> None:
        if x >= len(self.funcs):
            raise _Invalid(f"unknown function {x}")
        ft = self.funcs[x]
        self.pop_vals(ft.params)
        self.vals.extend(ft.results)

    def _call_indirect(self, op: int, imm: tuple[int, int]) -> None:
        typeidx, tableidx = imm
        if self.table(tableidx) != FUNCREF and not self.sub(self.tables[tableidx], FUNCREF):
            raise _Invalid(
                f"type mismatch: call_indirect needs a funcref table, table {tableidx} "
                f"holds {self.tables[tableidx]}"
            )
        if typeidx >= len(self.types):
            raise _Invalid(f"unknown type {typeidx}")
        ft = self.types[typeidx]
        if not isinstance(ft, FuncType):
            raise _Invalid(f"type mismatch: type {typeidx} is not a function type")
        self.pop(self.table_addrs[tableidx])
        self.pop_vals(ft.params)
        self.vals.extend(ft.results)

    # -- parametric instructions -----------------------------------------------------------------

    def _drop(self, op: int, imm: Any) -> None:
        self.pop(None)

    def _select(self, op: int, imm: Any) -> None:
        self.pop(I32)
        t1 = self.pop(None)
        t2 = self.pop(None)
        if not (
            (t1 in _NUM_OR_UNKNOWN and t2 in _NUM_OR_UNKNOWN)
            or (t1 in _VEC_OR_UNKNOWN and t2 in _VEC_OR_UNKNOWN)
        ):
            raise _Invalid(
                f"type mismatch: select without a type needs numeric operands, found {_show((t2, t1))}"
            )
        if t1 != t2 and t1 is not None and t2 is not None:
            raise _Invalid(f"type mismatch: select operands differ: {_show((t2, t1))}")
        self.vals.append(t2 if t1 is None else t1)

    def _select_t(self, op: int, imm: tuple[str, ...]) -> None:
        if len(imm) != 1:
            raise _Invalid(f"invalid result arity {len(imm)} for select (must be 1)")
        t = imm[0]
        self.check_valtype(t)
        self.pop(I32)
        self.pop(t)
        self.pop(t)
        self.vals.append(t)

    # -- variable instructions -------------------------------------------------------------------

    def _global_get(self, op: int, x: int) -> None:
        self.vals.append(self.global_(x).valtype)

    def _global_set(self, op: int, x: int) -> None:
        gt = self.global_(x)
        if not gt.mutable:
            raise _Invalid(f"global is immutable: global.set of global {x}")
        self.pop(gt.valtype)

    # -- table instructions ----------------------------------------------------------------------

    def _table_get(self, op: int, x: int) -> None:
        t = self.table(x)
        self.pop(self.table_addrs[x])
        self.vals.append(t)

    def _table_set(self, op: int, x: int) -> None:
        t = self.table(x)
        self.pop(t)
        self.pop(self.table_addrs[x])

    def _table_size(self, op: int, x: int) -> None:
        self.table(x)
        self.vals.append(self.table_addrs[x])

    def _table_grow(self, op: int, x: int) -> None:
        t = self.table(x)
        at = self.table_addrs[x]
        self.pop(at)
        self.pop(t)
        self.vals.append(at)

    def _table_fill(self, op: int, x: int) -> None:
        t = self.table(x)
        at = self.table_addrs[x]
        self.pop(at)
        self.pop(t)
        self.pop(at)

    def _table_copy(self, op: int, imm: tuple[int, int]) -> None:
        dst, src = imm
        t1 = self.table(dst)
        t2 = self.table(src)
        if t1 != t2 and not self.sub(t2, t1):
            raise _Invalid(f"type mismatch: table.copy from a {t2} table into a {t1} table")
        self._pop_sizes(self.table_addrs[dst], self.table_addrs[src])

    def _table_init(self, op: int, imm: tuple[int, int]) -> None:
        elemidx, tableidx = imm
        t1 = self.table(tableidx)
        t2 = self.elem(elemidx)
        if t1 != t2 and not self.sub(t2, t1):
            raise _Invalid(f"type mismatch: table.init of a {t1} table from a {t2} segment")
        self.pop(I32)
        self.pop(I32)
        self.pop(self.table_addrs[tableidx])

    def _elem_drop(self, op: int, x: int) -> None:
        self.elem(x)

    # -- memory instructions ---------------------------------------------------------------------

    def _load(self, op: int, imm: tuple[int, ...]) -> None:
        at = self.mem0
        if at is None or len(imm) == 3 or imm[0] > NATURAL_ALIGN[op] or imm[1] > 0xFFFFFFFF:
            at = self.memarg(imm, NATURAL_ALIGN[op])
        vals = self.vals
        if len(vals) > self.ctrls[-1][_HEIGHT] and vals[-1] == at:
            vals[-1] = _LOADS[op]
        else:
            self.pop(at)
            vals.append(_LOADS[op])

    def _store(self, op: int, imm: tuple[int, ...]) -> None:
        at = self.mem0
        if at is None or len(imm) == 3 or imm[0] > NATURAL_ALIGN[op] or imm[1] > 0xFFFFFFFF:
            at = self.memarg(imm, NATURAL_ALIGN[op])
        self.pop(_STORES[op])
        self.pop(at)

    def _memory_size(self, op: int, x: int) -> None:
        self.vals.append(self.memory(x))

    def _memory_grow(self, op: int, x: int) -> None:
        at = self.memory(x)
        self.pop(at)
        self.vals.append(at)

    def _memory_fill(self, op: int, x: int) -> None:
        at = self.memory(x)
        self.pop(at)
        self.pop(I32)
        self.pop(at)

    def _memory_copy(self, op: int, imm: tuple[int, int]) -> None:
        self._pop_sizes(self.memory(imm[0]), self.memory(imm[1]))

    def _memory_init(self, op: int, imm: tuple[int, int]) -> None:
        at = self.memory(imm[1])
        self.data(imm[0])
        self.pop(I32)
        self.pop(I32)
        self.pop(at)

    def _pop_sizes(self, dst: str, src: str) -> None:
        """The operands of a copy between a ``dst`` and a ``src`` address space: the count has the
        narrower of the two types (i32 unless both are i64)."""
        self.pop(I64 if dst == I64 and src == I64 else I32)
        self.pop(src)
        self.pop(dst)

    def _data_drop(self, op: int, x: int) -> None:
        self.data(x)

    # -- reference instructions ------------------------------------------------------------------

    def _ref_null(self, op: int, t: str) -> None:
        if t not in _REFTYPES:
            self.check_valtype(t)
        self.vals.append(t)

    def _ref_is_null(self, op: int, imm: Any) -> None:
        t = self.pop(None)
        if t not in _REF_OR_UNKNOWN and not is_ref(t):
            raise _Invalid(f"type mismatch: ref.is_null needs a reference, found [{t}]")
        self.vals.append(I32)

    def _ref_func(self, op: int, x: int) -> None:
        if x >= len(self.funcs):
            raise _Invalid(f"unknown function {x}")
        if x not in self.refs:
            raise _Invalid(
                f"undeclared function reference {x}: it must appear in an element segment, "
                f"an export or a global initializer"
            )
        self.vals.append(f"(ref {self.func_tidx[x]})" if self.features.function_references else FUNCREF)


# -- module level ------------------------------------------------------------------------------


def _check_limits(limits: Limits, bound: int, too_big: str) -> None:
    """The spec's limits rule: both bounds within ``bound``, and min <= max."""
    if limits.min > bound or (limits.max is not None and limits.max > bound):
        raise InvalidModule(too_big)
    if limits.max is not None and limits.min > limits.max:
        raise InvalidModule("size minimum must not be greater than maximum")


def _check_memory_limits(mt: MemoryType) -> None:
    if mt.address == I64:
        _check_limits(
            mt.limits, MAX_MEMORY64_PAGES, "memory size must be at most 2^48 pages (256 TiB) for i64"
        )
    else:
        _check_limits(mt.limits, MAX_MEMORY_PAGES, "memory size must be at most 65536 pages (4GiB)")


def _check_table_limits(tt: TableType) -> None:
    if tt.address == I64:
        _check_limits(tt.limits, MAX_TABLE64_SIZE, "table size must be at most 2^64-1 for i64")
    else:
        _check_limits(tt.limits, MAX_TABLE_SIZE, "table size must be at most 2^32-1")


def _check_const(
    expr: list[Instr] | None,
    expect: str,
    funcs: int,
    globals_: list[GlobalType],
    what: str,
    refs: validate_refs.ConstRefs | None = None,
    n_imported: int | None = None,
    features: Features = WASM3,
) -> None:
    """A constant expression of type ``expect``.

    Wasm 2.0 allows only ``t.const``, ``ref.null``, ``ref.func`` and ``global.get`` of an immutable
    imported global. ``globals_`` holds the globals the expression can see (those before it: a
    global's initializer sees only the globals defined before it), of which the first ``n_imported``
    (default: all) are imported. Wasm 3.0 adds ``i32``/``i64`` ``add``, ``sub`` and ``mul``
    (extended-const) and reading an immutable global the module defines (gc, as wasmtime gates it).
    """
    if n_imported is None:
        n_imported = len(globals_)
    expr = expr or []
    if expr and expr[-1][0] == END:  # tolerate a decoder that keeps the closing end
        expr = expr[:-1]
    stack: list[str] = []
    for op, imm, off in expr:
        t = _CONST_TYPES.get(op)
        if t is not None:
            stack.append(t)
        elif op == _V128_CONST:
            stack.append(V128)
        elif op == _REF_NULL:
            stack.append(imm)
        elif op == _REF_FUNC:
            if imm >= funcs:
                raise InvalidModule(f"unknown function {imm} in {what}", offset=off)
            stack.append(FUNCREF if refs is None else refs.func_ref(imm))
        elif op == _GLOBAL_GET:
            if imm >= len(globals_) or (imm >= n_imported and not features.gc):
                why = "" if features.gc else " (only imported globals may be read without gc)"
                raise InvalidModule(f"unknown global {imm} in {what}{why}", offset=off)
            if globals_[imm].mutable:
                raise InvalidModule(
                    f"constant expression required in {what}: global {imm} is mutable", offset=off
                )
            stack.append(globals_[imm].valtype)
        elif op in _EXTENDED_CONST and features.extended_const:
            t = _EXTENDED_CONST[op]
            if stack[-2:] != [t, t]:
                raise InvalidModule(
                    f"type mismatch: {name_of(op)} in {what} needs [{t} {t}] but finds {_show(stack[-2:])}",
                    offset=off,
                )
            stack.pop()
        elif refs is not None and refs.step(op, imm, stack):
            pass
        else:
            why = " (needs extended-const)" if op in _EXTENDED_CONST else ""
            raise InvalidModule(
                f"constant expression required in {what}: {name_of(op)} is not constant{why}", offset=off
            )
    if stack != [expect] and not (refs is not None and refs.matches(stack, expect)):
        raise InvalidModule(
            f"type mismatch: {what} must produce [{expect}] but produces {_show(stack)}",
            offset=expr[0][2] if expr else None,
        )


def _collect_refs(module: Module) -> set[int]:
    """C.refs: the functions a body may name with ``ref.func`` (declared outside function bodies)."""
    refs = {e.index for e in module.exports if e.kind == "func"}
    exprs = [g.init for g in module.globals] + [e for e in module.table_inits if e]
    for elem in module.elems:
        exprs.extend(elem.init)
    for expr in exprs:
        for op, imm, _off in expr or ():
            if op == _REF_FUNC:
                refs.add(imm)
    return refs


def validate_module(module: Module, features: Features = WASM3) -> None:
    """Check ``module`` against the validation rules of ``features``; raise InvalidModule on the first break."""
    ntypes = len(module.types)
    match = validate_refs.check_types(module)
    func_tidx: list[int] = []

    def valtype(t: str, where: str) -> None:
        if t[0] == "(":
            validate_refs.valid_valtype(t, ntypes, where)

    funcs: list[FuncType] = []
    tables: list[str] = []
    memories = 0
    imported_globals: list[GlobalType] = []
    table_types = module.table_types()
    memory_types = module.memory_types()
    for imp in module.imports:
        if imp.kind == "func":
            if not 0 <= imp.desc < ntypes:
                raise InvalidModule(f"unknown type {imp.desc} for imported function {imp.module}.{imp.name}")
            if not isinstance(module.types[imp.desc], FuncType):
                raise InvalidModule(
                    f"type mismatch: imported function {imp.module}.{imp.name} "
                    f"has type {imp.desc}, not a function type"
                )
            funcs.append(module.types[imp.desc])
            func_tidx.append(imp.desc)
        elif imp.kind == "table":
            _check_table_limits(imp.desc)
            valtype(imp.desc.elem, " in an imported table")
            tables.append(imp.desc.elem)
        elif imp.kind == "memory":
            _check_memory_limits(imp.desc)
            memories += 1
        elif imp.kind == "global":
            valtype(imp.desc.valtype, " in an imported global")
            imported_globals.append(imp.desc)
    nimported_funcs = len(funcs)
    for i, typeidx in enumerate(module.funcs):
        if not 0 <= typeidx < ntypes:
            raise InvalidModule(
                f"unknown type {typeidx}",
                func=nimported_funcs + i,
                func_name=module.func_name(nimported_funcs + i),
            )
        if not isinstance(module.types[typeidx], FuncType):
            raise InvalidModule(
                f"type mismatch: function {nimported_funcs + i} has type {typeidx}, not a function type"
            )
        funcs.append(module.types[typeidx])
        func_tidx.append(typeidx)
    for table in module.tables:
        _check_table_limits(table)
        valtype(table.elem, " in a table")
        tables.append(table.elem)
    for memory in module.memories:
        _check_memory_limits(memory)
        memories += 1
    if memories > 1 and not features.multi_memory:
        raise InvalidModule(f"multiple memories need multi-memory, as Wasm 2.0 allows one (found {memories})")
    nfuncs = len(funcs)
    refs = (
        validate_refs.ConstRefs(module, match, func_tidx, features.function_references)
        if features.function_references or features.gc
        else None
    )

    nig = len(imported_globals)
    all_globals = imported_globals + [g.type for g in module.globals]
    nimported_tables = len(tables) - len(module.tables)
    for i, table in enumerate(module.tables):
        init = module.table_inits[i] if i < len(module.table_inits) else None
        if init is not None:
            _check_const(
                init,
                table.elem,
                nfuncs,
                imported_globals,
                f"the initializer of table {nimported_tables + i}",
                refs,
            )
        elif not defaultable(table.elem):
            raise InvalidModule(
                f"type mismatch: table {nimported_tables + i} of non-nullable "
                f"{table.elem} needs an initializer"
            )
    for i, glob in enumerate(module.globals):
        valtype(glob.type.valtype, f" in global {nig + i}")
        _check_const(
            glob.init,
            glob.type.valtype,
            nfuncs,
            all_globals[: nig + i],
            f"the initializer of global {nig + i}",
            refs,
            nig,
            features,
        )
    for i, elem in enumerate(module.elems):
        valtype(elem.type, f" in element segment {i}")
        for expr in elem.init:
            _check_const(expr, elem.type, nfuncs, all_globals, f"element segment {i}", refs, nig, features)
        if elem.mode == "active":
            if elem.table >= len(tables):
                raise InvalidModule(f"unknown table {elem.table} in element segment {i}")
            if tables[elem.table] != elem.type and not match.sub(elem.type, tables[elem.table]):
                raise InvalidModule(
                    f"type mismatch: element segment {i} of {elem.type} for a {tables[elem.table]} table"
                )
            _check_const(
                elem.offset,
                table_types[elem.table].address,
                nfuncs,
                all_globals,
                f"the offset of element segment {i}",
                refs,
                nig,
                features,
            )
    for i, data in enumerate(module.datas):
        if data.mode == "active":
            if data.memory >= memories:
                raise InvalidModule(f"unknown memory {data.memory} in data segment {i}")
            _check_const(
                data.offset,
                memory_types[data.memory].address,
                nfuncs,
                all_globals,
                f"the offset of data segment {i}",
                refs,
                nig,
                features,
            )

    if len(module.codes) != len(module.funcs):
        raise InvalidModule(f"{len(module.funcs)} functions declared but {len(module.codes)} bodies given")
    tags = check_tags(module)
    checker = _BodyChecker(
        module, funcs, tables, memories, all_globals, _collect_refs(module), features, match, func_tidx, tags
    )
    names = module.names.funcs
    for i, code in enumerate(module.codes):
        index = nimported_funcs + i
        for t in code.locals:
            if t[0] == "(":
                valtype(t, f" in the locals of function {index}")
        checker.check(index, funcs[index], code.locals, code.body, code.offset, names.get(index))

    if module.start is not None:
        if module.start >= nfuncs:
            raise InvalidModule(f"unknown function {module.start} named as the start function")
        ft = funcs[module.start]
        if ft.params or ft.results:
            raise InvalidModule(
                f"start function must have type [] -> [], function {module.start} has {ft}",
                func=module.start,
                func_name=module.func_name(module.start),
            )

    bounds = {
        "func": (nfuncs, "function"),
        "table": (len(tables), "table"),
        "memory": (memories, "memory"),
        "global": (len(all_globals), "global"),
        "tag": (len(tags), "tag"),
    }
    seen: set[str] = set()
    for export in module.exports:
        count, noun = bounds[export.kind]
        if export.index >= count:
            raise InvalidModule(f"unknown {noun} {export.index} in export {export.name!r}")
        if export.name in seen:
            raise InvalidModule(f"duplicate export name {export.name!r}")
        seen.add(export.name)
