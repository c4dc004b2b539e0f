"""Validation of typed function references and GC: the type section's rules, the instructions, and
the initialisation of non-defaultable locals.

``validate`` keeps the 2.0 body checker and calls in here: ``install`` adds the handlers of the
instructions below to a ``_BodyChecker``, ``check_types`` checks the type section (recursion groups,
declared supertypes), and ``LocalInit`` tracks which non-nullable locals are set (``local.set``
before ``local.get``, per block, as the spec's algorithm does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .binary.module import ArrayType, FuncType, Module, StructType
from .binary.types import (
    PACKED,
    REGISTRY,
    Matcher,
    canonical_ids,
    defaultable,
    parse_ref,
    rec_groups,
    ref_type,
    subtype_of,
    unpacked,
)
from .errors import InvalidModule

I32 = "i32"
# Implementation limits, as wasm-tools (and so wasmtime) sets them: they bound what validating a
# hostile module can cost (array.new_fixed pops its count of operands even in unreachable code).
MAX_NEW_FIXED = 10_000
MAX_SUBTYPE_DEPTH = 63
# local.get/set/tee of a non-defaultable local are renamed to these so the inline fast path of the
# body loop stays as it is; handlers here do the init tracking.
LOCAL_GET_NN, LOCAL_SET_NN, LOCAL_TEE_NN = 0x1_0020, 0x1_0021, 0x1_0022
_NUMERIC_OR_VEC = frozenset(("i32", "i64", "f32", "f64", "v128", "i8", "i16"))


class Invalid(Exception):
    """Raised by a type-section check; ``validate`` turns it into InvalidModule."""


def valid_valtype(t: str, ntypes: int, where: str = "") -> None:
    r = parse_ref(t)
    if r is not None and isinstance(r[1], int) and r[1] >= ntypes:
        raise InvalidModule(f"unknown type {r[1]}{where}")


def check_types(module: Module) -> Matcher:
    """The type section: references stay inside the module and the current group, each declared
    supertype is earlier, not final, and its composite type matches. Returns the module's matcher."""
    types = module.types
    for start, count in rec_groups(module):
        end = start + count
        for i in range(start, end):
            for t in _valtypes_of(types[i]):
                r = parse_ref(t)
                if r is not None and isinstance(r[1], int) and r[1] >= end:
                    raise InvalidModule(f"unknown type {r[1]} in type {i}")
            for s in subtype_of(module, i).supers:
                if s >= i:
                    raise InvalidModule(f"unknown type {s}: a supertype must be defined before type {i}")
    ids = canonical_ids(module)
    m = Matcher(ids)
    for i in range(len(types)):
        st = subtype_of(module, i)
        if len(st.supers) > 1:
            raise InvalidModule(f"type {i} declares more than one supertype")
        if REGISTRY.defs[ids[i]].depth > MAX_SUBTYPE_DEPTH:
            raise InvalidModule(f"sub type {i}: the hierarchy is deeper than {MAX_SUBTYPE_DEPTH}")
        for s in st.supers:
            if subtype_of(module, s).final:
                raise InvalidModule(f"sub type {i} of a final type {s}")
            if not m.comp_sub(types[i], types[s]):
                raise InvalidModule(f"sub type {i} does not match its supertype {s}")
    return m


def _valtypes_of(comp: Any) -> list[str]:
    if isinstance(comp, FuncType):
        return [*comp.params, *comp.results]
    if isinstance(comp, StructType):
        return [f.storage for f in comp.fields]
    return [comp.field.storage]


class LocalInit:
    """Which non-defaultable locals are set: a log of sets, cut back at each block's end."""

    __slots__ = ("unset", "log")

    def __init__(self, unset: set[int]) -> None:
        self.unset = unset
        self.log: list[int] = []

    def mark(self) -> int:
        return len(self.log)

    def reset(self, mark: int) -> None:
        log = self.log
        for x in log[mark:]:
            self.unset.add(x)
        del log[mark:]


def install(c: Any) -> None:
    """Add the handlers of reference and GC instructions to body checker ``c``."""
    h: dict[int, Callable[[int, Any], None]] = c.handlers
    feats = c.features
    types = c.types

    def invalid(msg: str) -> Exception:
        return c.invalid(msg)

    def need(name: str) -> None:
        if not getattr(feats, name):
            raise invalid(f"{name.replace('_', '-')} is not enabled in this feature set")

    def deftype(x: int, kind: type) -> Any:
        if x >= len(types):
            raise invalid(f"unknown type {x}")
        t = types[x]
        if not isinstance(t, kind):
            raise invalid(f"type mismatch: type {x} is not a {kind.__name__[:-4].lower()} type")
        return t

    def pop_ref() -> tuple[bool, Any] | None:
        t = c.pop(None)
        if t is None:
            return None
        r = parse_ref(t)
        if r is None:
            raise invalid(f"type mismatch: expected a reference but found [{t}]")
        return r

    def check_ref(rt: str) -> None:
        r = parse_ref(rt)
        if r is not None and isinstance(r[1], int) and r[1] >= len(types):
            raise invalid(f"unknown type {r[1]}")

    def call_ref(op: int, x: int) -> None:
        need("function_references")
        ft = deftype(x, FuncType)
        c.pop(ref_type(True, x))
        c.pop_vals(ft.params)
        c.vals.extend(ft.results)

    def ref_as_non_null(op: int, imm: Any) -> None:
        need("function_references")
        r = pop_ref()
        c.vals.append(None if r is None else ref_type(False, r[1]))

    def br_on_null(op: int, depth: int) -> None:
        need("function_references")
        labels = c.label(depth)
        r = pop_ref()
        c.pop_vals(labels)
        c.vals.extend(labels)
        c.vals.append(None if r is None else ref_type(False, r[1]))

    def br_on_non_null(op: int, depth: int) -> None:
        need("function_references")
        labels = c.label(depth)
        r = pop_ref()
        if not labels:
            raise invalid("type mismatch: br_on_non_null needs a label taking a reference")
        c.vals.append(None if r is None else ref_type(False, r[1]))
        c.pop_vals(labels)
        c.vals.extend(labels[:-1])

    def ref_eq(op: int, imm: Any) -> None:
        need("gc")
        c.pop("eqref")
        c.pop("eqref")
        c.vals.append(I32)

    def top_of(rt: str) -> str:
        r = parse_ref(rt)
        assert r is not None
        return ref_type(True, c.match.top(r[1]))

    def ref_test(op: int, rt: str) -> None:
        check_ref(rt)
        c.pop(top_of(rt))
        c.vals.append(I32)

    def ref_cast(op: int, rt: str) -> None:
        check_ref(rt)
        c.pop(top_of(rt))
        c.vals.append(rt)

    def diff(rt1: str, rt2: str) -> str:
        r1, r2 = parse_ref(rt1), parse_ref(rt2)
        assert r1 is not None and r2 is not None
        return ref_type(r1[0] and not r2[0], r1[1])

    def br_on_cast(op: int, imm: tuple[int, str, str]) -> None:
        depth, rt1, rt2 = imm
        check_ref(rt1)
        check_ref(rt2)
        if not c.match.sub(rt2, rt1):
            raise invalid(f"type mismatch: {rt2} does not match {rt1}")
        labels = c.label(depth)
        if not labels:
            raise invalid("type mismatch: the label of a cast branch must take a reference")
        c.pop(rt1)
        fail = op == 0xFB19
        c.vals.append(diff(rt1, rt2) if fail else rt2)
        c.pop_vals(labels)
        c.vals.extend(labels[:-1])
        c.vals.append(rt2 if fail else diff(rt1, rt2))

    def convert(op: int, imm: Any) -> None:
        to_any = op == 0xFB1A
        r = pop_ref_of("externref" if to_any else "anyref")
        c.vals.append(ref_type(True if r is None else r[0], "any" if to_any else "extern"))

    def pop_ref_of(t: str) -> tuple[bool, Any] | None:
        got = c.pop(t)
        return None if got is None else parse_ref(got)

    def ref_i31(op: int, imm: Any) -> None:
        c.pop(I32)
        c.vals.append("(ref i31)")

    def i31_get(op: int, imm: Any) -> None:
        c.pop("i31ref")
        c.vals.append(I32)

    # -- structs

    def field(x: int, i: int) -> Any:
        st = deftype(x, StructType)
        if i >= len(st.fields):
            raise invalid(f"unknown field {i} of type {x}")
        return st.fields[i]

    def struct_new(op: int, x: int) -> None:
        st = deftype(x, StructType)
        c.pop_vals(tuple(unpacked(f.storage) for f in st.fields))
        c.vals.append(ref_type(False, x))

    def struct_new_default(op: int, x: int) -> None:
        st = deftype(x, StructType)
        for f in st.fields:
            if not defaultable(f.storage):
                raise invalid(f"type mismatch: field of type {f.storage} is not defaultable")
        c.vals.append(ref_type(False, x))

    def getter(op: int, kind: str, storage: str) -> None:
        packed = storage in PACKED
        if (op in (0xFB02, 0xFB0B)) == packed:
            raise invalid(
                f"type mismatch: {kind}.get{'_s/_u' if not packed else ''} of a "
                f"{'packed' if packed else 'unpacked'} {storage} field"
            )

    def struct_get(op: int, imm: tuple[int, int]) -> None:
        x, i = imm
        f = field(x, i)
        getter(op, "struct", f.storage)
        c.pop(ref_type(True, x))
        c.vals.append(unpacked(f.storage))

    def struct_set(op: int, imm: tuple[int, int]) -> None:
        x, i = imm
        f = field(x, i)
        if not f.mutable:
            raise invalid(f"immutable field {i} of type {x}")
        c.pop(unpacked(f.storage))
        c.pop(ref_type(True, x))

    # -- arrays

    def array(x: int) -> Any:
        return deftype(x, ArrayType).field

    def mutable(x: int) -> Any:
        f = array(x)
        if not f.mutable:
            raise invalid(f"immutable array type {x}")
        return f

    def numeric(f: Any) -> None:
        if f.storage not in _NUMERIC_OR_VEC:
            raise invalid("array type is not numeric or vector")

    def elem_matches(e: int, f: Any) -> None:
        et = c.elem(e)
        if not c.match.sub(et, unpacked(f.storage)):
            raise invalid(f"type mismatch: element segment {e} of {et} for an array of {f.storage}")

    def array_new(op: int, x: int) -> None:
        f = array(x)
        c.pop(I32)
        c.pop(unpacked(f.storage))
        c.vals.append(ref_type(False, x))

    def array_new_default(op: int, x: int) -> None:
        f = array(x)
        if not defaultable(f.storage):
            raise invalid(f"type mismatch: array of {f.storage} is not defaultable")
        c.pop(I32)
        c.vals.append(ref_type(False, x))

    def array_new_fixed(op: int, imm: tuple[int, int]) -> None:
        x, n = imm
        f = array(x)
        if n > MAX_NEW_FIXED:
            raise invalid(f"array.new_fixed of {n} operands: at most {MAX_NEW_FIXED} are allowed")
        c.pop_vals((unpacked(f.storage),) * n)
        c.vals.append(ref_type(False, x))

    def array_new_data(op: int, imm: tuple[int, int]) -> None:
        x, d = imm
        numeric(array(x))
        c.data(d)
        c.pop(I32)
        c.pop(I32)
        c.vals.append(ref_type(False, x))

    def array_new_elem(op: int, imm: tuple[int, int]) -> None:
        x, e = imm
        elem_matches(e, array(x))
        c.pop(I32)
        c.pop(I32)
        c.vals.append(ref_type(False, x))

    def array_get(op: int, x: int) -> None:
        f = array(x)
        getter(op, "array", f.storage)
        c.pop(I32)
        c.pop(ref_type(True, x))
        c.vals.append(unpacked(f.storage))

    def array_set(op: int, x: int) -> None:
        f = mutable(x)
        c.pop(unpacked(f.storage))
        c.pop(I32)
        c.pop(ref_type(True, x))

    def array_len(op: int, imm: Any) -> None:
        c.pop("arrayref")
        c.vals.append(I32)

    def array_fill(op: int, x: int) -> None:
        f = mutable(x)
        c.pop(I32)
        c.pop(unpacked(f.storage))
        c.pop(I32)
        c.pop(ref_type(True, x))

    def array_copy(op: int, imm: tuple[int, int]) -> None:
        x, y = imm
        fd = mutable(x)
        fs = array(y)
        ok = (
            fs.storage == fd.storage
            if (fs.storage in PACKED or fd.storage in PACKED)
            else c.match.sub(fs.storage, fd.storage)
        )
        if not ok:
            raise invalid(f"array types do not match: copy from {fs.storage} into {fd.storage}")
        c.pop(I32)
        c.pop(I32)
        c.pop(ref_type(True, y))
        c.pop(I32)
        c.pop(ref_type(True, x))

    def array_init(op: int, imm: tuple[int, int]) -> None:
        x, seg = imm
        f = mutable(x)
        if op == 0xFB12:
            numeric(f)
            c.data(seg)
        else:
            elem_matches(seg, f)
        c.pop(I32)
        c.pop(I32)
        c.pop(I32)
        c.pop(ref_type(True, x))

    # -- non-defaultable locals

    def local_get_nn(op: int, x: int) -> None:
        if x in c.inits.unset:
            raise invalid(f"uninitialized local {x}")
        c.vals.append(c.locs[x])

    def local_set_nn(op: int, x: int) -> None:
        t = c.locs[x]
        c.pop(t)
        inits = c.inits
        if x in inits.unset:
            inits.unset.discard(x)
            inits.log.append(x)
        if op == LOCAL_TEE_NN:
            c.vals.append(t)

    h.update(
        {
            0x14: call_ref,
            0xD3: ref_eq,
            0xD4: ref_as_non_null,
            0xD5: br_on_null,
            0xD6: br_on_non_null,
            0xFB00: struct_new,
            0xFB01: struct_new_default,
            0xFB02: struct_get,
            0xFB03: struct_get,
            0xFB04: struct_get,
            0xFB05: struct_set,
            0xFB06: array_new,
            0xFB07: array_new_default,
            0xFB08: array_new_fixed,
            0xFB09: array_new_data,
            0xFB0A: array_new_elem,
            0xFB0B: array_get,
            0xFB0C: array_get,
            0xFB0D: array_get,
            0xFB0E: array_set,
            0xFB0F: array_len,
            0xFB10: array_fill,
            0xFB11: array_copy,
            0xFB12: array_init,
            0xFB13: array_init,
            0xFB14: ref_test,
            0xFB15: ref_test,
            0xFB16: ref_cast,
            0xFB17: ref_cast,
            0xFB18: br_on_cast,
            0xFB19: br_on_cast,
            0xFB1A: convert,
            0xFB1B: convert,
            0xFB1C: ref_i31,
            0xFB1D: i31_get,
            0xFB1E: i31_get,
            LOCAL_GET_NN: local_get_nn,
            LOCAL_SET_NN: local_set_nn,
            LOCAL_TEE_NN: local_set_nn,
        }
    )


def rename_nondefaultable(body: list[Any], nondef: set[int]) -> list[Any]:
    """``body`` with local.get/set/tee of the locals in ``nondef`` renamed for the init handlers."""
    out = []
    for ins in body:
        op = ins[0]
        if (op == 0x20 or op == 0x21 or op == 0x22) and ins[1] in nondef:
            out.append((op | 0x1_0000, ins[1], ins[2]))
        else:
            out.append(ins)
    return out


class ConstRefs:
    """What constant expressions need beyond 2.0: typed ``ref.func``, subtyping, the GC allocations."""

    def __init__(self, module: Module, m: Matcher, func_types: list[int], typed_funcs: bool) -> None:
        self.types = module.types
        self.match = m
        self.func_types = func_types
        self.typed_funcs = typed_funcs

    def func_ref(self, x: int) -> str:
        return ref_type(False, self.func_types[x]) if self.typed_funcs else "funcref"

    def matches(self, stack: list[str], expect: str) -> bool:
        return len(stack) == 1 and self.match.sub(stack[0], expect)

    def step(self, op: int, imm: Any, stack: list[str]) -> bool:
        """Type one GC constant instruction on ``stack``; False when ``op`` is not one."""
        types = self.types

        def pop(t: str) -> None:
            if not stack or not self.match.sub(stack[-1], t):
                raise InvalidModule(f"type mismatch: constant expression expected [{t}]")
            stack.pop()

        def deftype(x: int, kind: type) -> Any:
            if x >= len(types) or not isinstance(types[x], kind):
                raise InvalidModule(f"unknown type {x}" if x >= len(types) else f"type mismatch: type {x}")
            return types[x]

        if op == 0xFB00:
            for f in reversed(deftype(imm, StructType).fields):
                pop(unpacked(f.storage))
            stack.append(ref_type(False, imm))
        elif op == 0xFB01:
            for f in deftype(imm, StructType).fields:
                if not defaultable(f.storage):
                    raise InvalidModule("type mismatch: field is not defaultable")
            stack.append(ref_type(False, imm))
        elif op == 0xFB06 or op == 0xFB07:
            f = deftype(imm, ArrayType).field
            pop(I32)
            if op == 0xFB06:
                pop(unpacked(f.storage))
            elif not defaultable(f.storage):
                raise InvalidModule("type mismatch: array element is not defaultable")
            stack.append(ref_type(False, imm))
        elif op == 0xFB08:
            x, n = imm
            f = deftype(x, ArrayType).field
            for _ in range(n):
                pop(unpacked(f.storage))
            stack.append(ref_type(False, x))
        elif op == 0xFB1C:
            pop(I32)
            stack.append("(ref i31)")
        elif op == 0xFB1A or op == 0xFB1B:
            to_any = op == 0xFB1A
            src = stack[-1] if stack else None
            pop("externref" if to_any else "anyref")
            r = parse_ref(src) if src else None
            stack.append(ref_type(True if r is None else r[0], "any" if to_any else "extern"))
        else:
            return False
        return True
