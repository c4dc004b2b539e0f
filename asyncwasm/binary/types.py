"""Reference types and subtyping (typed function references and GC): one place for every rule.

Value types are strings (see ``module``): the abstract nullable reference types by their short
names (``"funcref"``, ``"anyref"``, ...), every other reference type as ``"(ref HEAP)"`` or
``"(ref null HEAP)"``, HEAP an abstract heap type name or a decimal type index. ``parse_ref`` reads
such a string into ``(nullable, heap)`` (heap: a name, or an ``int``) and ``ref_type`` writes it back
in normal form, so the same type is always the same string and ``==`` stays the fast first test.

Defined types are compared by their canonical id: every recursion group of every module is
canonicalised by structure (iso-recursively, as the spec does: references inside the group are
relative, references to earlier types are their canonical ids) in one process-wide ``REGISTRY``, so
structurally equal groups of two modules get the same ids and an import, ``call_indirect`` or a
cast compares integers. ``Matcher`` answers the subtyping questions of one module (its type indices
mapped to canonical ids); ``GLOBAL`` answers them for canonical types, where the ``int`` heap types
are canonical ids already (``canon_valtype`` turns a module's value type into that form).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .module import ArrayType, FieldType, FuncType, Module, StructType, SubType

# Abstract heap types: each one's hierarchy (its top) and the binary code of its short form.
ABSTRACT_TOP = {
    "any": "any",
    "eq": "any",
    "i31": "any",
    "struct": "any",
    "array": "any",
    "none": "any",
    "func": "func",
    "nofunc": "func",
    "extern": "extern",
    "noextern": "extern",
    "exn": "exn",
    "noexn": "exn",
}
HEAP_CODES = {
    0x70: "func",
    0x6F: "extern",
    0x6E: "any",
    0x6D: "eq",
    0x6C: "i31",
    0x6B: "struct",
    0x6A: "array",
    0x71: "none",
    0x72: "noextern",
    0x73: "nofunc",
    0x69: "exn",
    0x74: "noexn",
}
BOTTOMS = {"any": "none", "func": "nofunc", "extern": "noextern", "exn": "noexn"}
SHORT_NAMES = {
    "func": "funcref",
    "extern": "externref",
    "exn": "exnref",
    "any": "anyref",
    "eq": "eqref",
    "i31": "i31ref",
    "struct": "structref",
    "array": "arrayref",
    "none": "nullref",
    "nofunc": "nullfuncref",
    "noextern": "nullexternref",
    "noexn": "nullexnref",
}
_FROM_SHORT = {v: (True, k) for k, v in SHORT_NAMES.items()}
# What sits below each abstract heap type, besides the defined types of a kind (see ``_abstract_sub``).
_ABSTRACT_BELOW = {
    "any": {"any", "eq", "i31", "struct", "array", "none"},
    "eq": {"eq", "i31", "struct", "array", "none"},
    "i31": {"i31", "none"},
    "struct": {"struct", "none"},
    "array": {"array", "none"},
    "none": {"none"},
    "func": {"func", "nofunc"},
    "nofunc": {"nofunc"},
    "extern": {"extern", "noextern"},
    "noextern": {"noextern"},
    "exn": {"exn", "noexn"},
    "noexn": {"noexn"},
}
_KIND_UNDER = {
    "any": ("struct", "array"),
    "eq": ("struct", "array"),
    "struct": ("struct",),
    "array": ("array",),
    "func": ("func",),
}
PACKED = ("i8", "i16")
NUMERIC_DEFAULTS: dict[str, Any] = {"i32": 0, "i64": 0, "f32": 0.0, "f64": 0.0, "v128": 0, "i8": 0, "i16": 0}

Heap = str | int

_PARSED: dict[str, tuple[bool, Heap] | None] = {}


def parse_ref(t: str) -> tuple[bool, Heap] | None:
    """``(nullable, heap)`` of a reference type string; None for a numeric or vector type."""
    r = _PARSED.get(t, False)
    if r is not False:
        return r  # type: ignore[return-value]
    if t in _FROM_SHORT:
        r = _FROM_SHORT[t]
    elif t.startswith("(ref "):
        body = t[5:-1].split()
        nullable = body[0] == "null"
        h = body[-1]
        r = (nullable, int(h) if h.isdigit() else h)
    else:
        r = None
    _PARSED[t] = r
    return r


def ref_type(nullable: bool, heap: Heap) -> str:
    """The normal string of a reference type."""
    if nullable and isinstance(heap, str):
        return SHORT_NAMES[heap]
    return f"(ref null {heap})" if nullable else f"(ref {heap})"


def is_ref(t: str | None) -> bool:
    return t is not None and parse_ref(t) is not None


def defaultable(t: str) -> bool:
    """Whether a local or field of type ``t`` has a default value (numbers, vectors, nullable refs)."""
    r = parse_ref(t)
    return r is None or r[0]


def default_value(t: str) -> Any:
    return NUMERIC_DEFAULTS.get(t)  # a nullable reference: null (None)


def unpacked(storage: str) -> str:
    """The value type a field's storage type reads as (packed i8/i16 read as i32)."""
    return "i32" if storage in PACKED else storage


# ---- the process-wide registry of canonical types ---------------------------------------------------


@dataclass(frozen=True)
class CanonType:
    """A defined type in canonical form: references hold canonical ids."""

    kind: str  # "func" | "struct" | "array"
    comp: FuncType | StructType | ArrayType
    super: int | None
    final: bool
    depth: int  # length of the supertype chain, for the constant-time cast check


GROUP_SPAN = 1 << 20  # ids a recursion group may use (a module has at most 1,000,000 types)


class TypeRegistry:
    """Canonical ids of defined types: one per structurally distinct type of a recursion group.

    An id does not depend on the order groups were seen: a group's first id is a digest of its
    structure (times ``GROUP_SPAN``), so code translated in one process (kept in the code cache,
    with ids as constants in ``call_indirect`` and casts) means the same types in another.
    """

    def __init__(self) -> None:
        self.groups: dict[tuple[Any, ...], int] = {}  # group key -> canonical id of its first type
        self.defs: dict[int, CanonType] = {}
        self.chains: dict[int, tuple[int, ...]] = {}  # per id: its supertype chain, root first, itself last

    def kind(self, cid: int) -> str:
        return self.defs[cid].kind

    def is_sub(self, a: int, b: int) -> bool:
        """Whether canonical type ``a`` is ``b`` or declares it (transitively) as a supertype."""
        if a == b:
            return True
        chain = self.chains[a]
        d = self.defs[b].depth
        return d < len(chain) and chain[d] == b

    def add_group(self, key: tuple[Any, ...], build: Any) -> int:
        """The first canonical id of the group with ``key``; ``build(base)`` makes its CanonTypes."""
        base = self.groups.get(key)
        if base is not None:
            return base
        digest = hashlib.sha256(repr(key).encode()).digest()
        base = int.from_bytes(digest[:5], "little") * GROUP_SPAN
        while base in self.defs:  # a digest collision: practically never
            base += GROUP_SPAN
        self.groups[key] = base
        for k, ct in enumerate(build(base)):
            cid = base + k
            chain = (*self.chains[ct.super], cid) if ct.super is not None else (cid,)
            self.defs[cid] = CanonType(ct.kind, ct.comp, ct.super, ct.final, len(chain) - 1)
            self.chains[cid] = chain
        return base

    def func_id(self, ft: FuncType) -> int:
        """The id of a lone final function type (a host function's, or any 2.0 module's)."""
        key = (("func", ft, True, ()),)
        return self.add_group(key, lambda base: [CanonType("func", ft, None, True, 0)])


REGISTRY = TypeRegistry()
_PROCESS = (os.getpid(), id(REGISTRY))  # whose registry holds the ids cached on a module


def _kind(comp: Any) -> str:
    return "func" if isinstance(comp, FuncType) else "struct" if isinstance(comp, StructType) else "array"


def _map_comp(comp: Any, f: Any) -> Any:
    """``comp`` with every value type passed through ``f``."""
    if isinstance(comp, FuncType):
        return FuncType(tuple(f(t) for t in comp.params), tuple(f(t) for t in comp.results))
    if isinstance(comp, StructType):
        return StructType(tuple(FieldType(f(x.storage), x.mutable) for x in comp.fields))
    return ArrayType(FieldType(f(comp.field.storage), comp.field.mutable))


def rec_groups(module: Module) -> list[tuple[int, int]]:
    """(first index, count) of each recursion group; a module without the list has singletons."""
    return module.rec_groups or [(i, 1) for i in range(len(module.types))]


def subtype_of(module: Module, i: int) -> SubType:
    return module.subtypes[i] if module.subtypes else _FINAL


_FINAL = SubType(True, ())


def canonical_ids(module: Module) -> list[int]:
    """The canonical id of each of the module's type indices (cached on the module).

    Raises ``IndexError`` naming nothing when a type refers past its group; the validator checks
    those references first, so only an unvalidated module can get there.
    """
    cached = getattr(module, "_canonical_ids", None)  # (process, ids): a module may be unpickled
    if cached is not None and cached[0] == _PROCESS and len(cached[1]) == len(module.types):
        return cached[1]  # type: ignore[no-any-return]
    ids: list[int] = []
    for start, count in rec_groups(module):
        end = start + count

        def rel(t: str, start: int = start, end: int = end) -> str:
            r = parse_ref(t)
            if r is None or isinstance(r[1], str):
                return t
            h = r[1]
            if start <= h < end:
                return f"(ref {'null ' if r[0] else ''}~{h - start})"
            return ref_type(r[0], ids[h])

        members = []
        for i in range(start, end):
            st = subtype_of(module, i)
            sup = tuple(("~", s - start) if start <= s < end else ("#", ids[s]) for s in st.supers)
            comp = _map_comp(module.types[i], rel)
            members.append((_kind(comp), comp, st.final, sup))
        key = tuple(members)

        def build(base: int, members: list[Any] = members) -> list[CanonType]:
            def resolve(t: str) -> str:
                if "~" not in t:
                    return t
                null, _, k = t[5:-1].rpartition("~")
                return f"(ref {null}{base + int(k)})"

            out = []
            for kind, comp, final, sup in members:
                s = None
                if sup:
                    s = base + sup[0][1] if sup[0][0] == "~" else sup[0][1]
                out.append(CanonType(kind, _map_comp(comp, resolve), s, final, 0))
            return out

        base = REGISTRY.add_group(key, build)
        ids.extend(range(base, base + count))
    module._canonical_ids = (_PROCESS, ids)  # type: ignore[attr-defined]
    return ids


def canon_valtype(t: str, ids: Sequence[int]) -> str:
    """A module's value type with its type indices replaced by canonical ids (for ``GLOBAL``)."""
    r = parse_ref(t)
    if r is None or isinstance(r[1], str):
        return t
    return ref_type(r[0], ids[r[1]])


# ---- matching ---------------------------------------------------------------------------------------


class Matcher:
    """Subtyping of value and heap types, with ``int`` heap types mapped to canonical ids by ``ids``
    (a module's list; ``None`` when they are canonical ids already)."""

    def __init__(self, ids: Sequence[int] | None = None) -> None:
        self.ids = ids
        self._cache: dict[tuple[str, str], bool] = {}

    def cid(self, h: int) -> int:
        if self.ids is None:
            return h
        if h >= len(self.ids):
            from ..errors import InvalidModule

            raise InvalidModule(f"unknown type {h}")
        return self.ids[h]

    def kind(self, h: Heap) -> str:
        """func/struct/array for a defined type; the top of its hierarchy's name for an abstract one."""
        if isinstance(h, int):
            return REGISTRY.kind(self.cid(h))
        return h

    def top(self, h: Heap) -> str:
        if isinstance(h, int):
            k = REGISTRY.kind(self.cid(h))
            return "func" if k == "func" else "any"
        return ABSTRACT_TOP[h]

    def heap_sub(self, a: Heap, b: Heap) -> bool:
        if a == b:
            return True
        if isinstance(b, str):
            if isinstance(a, str):
                return a in _ABSTRACT_BELOW[b]
            return REGISTRY.kind(self.cid(a)) in _KIND_UNDER.get(b, ())
        if isinstance(a, str):
            k = REGISTRY.kind(self.cid(b))
            return a == ("nofunc" if k == "func" else "none")
        return REGISTRY.is_sub(self.cid(a), self.cid(b))

    def sub(self, a: str, b: str) -> bool:
        """Whether value type ``a`` matches ``b``."""
        if a == b:
            return True
        key = (a, b)
        r = self._cache.get(key)
        if r is None:
            ra, rb = parse_ref(a), parse_ref(b)
            if ra is None or rb is None:  # numeric and vector types match only themselves
                r = False
            else:
                r = (rb[0] or not ra[0]) and self.heap_sub(ra[1], rb[1])
            self._cache[key] = r
        return r

    def subs(self, a: Sequence[str | None], b: Sequence[str]) -> bool:
        return len(a) == len(b) and all(x is None or self.sub(x, y) for x, y in zip(a, b, strict=True))

    def field_sub(self, a: FieldType, b: FieldType) -> bool:
        if a.mutable != b.mutable:
            return False
        if a.storage in PACKED or b.storage in PACKED:
            return a.storage == b.storage
        if a.mutable:
            return self.sub(a.storage, b.storage) and self.sub(b.storage, a.storage)
        return self.sub(a.storage, b.storage)

    def comp_sub(self, a: Any, b: Any) -> bool:
        """Whether composite type ``a`` may declare ``b`` as its supertype (the same kind, and
        parameters contravariant, results and immutable fields covariant, mutable fields equal)."""
        if type(a) is not type(b):
            return False
        if isinstance(a, FuncType):
            return self.subs(b.params, a.params) and self.subs(a.results, b.results)
        if isinstance(a, StructType):
            return len(a.fields) >= len(b.fields) and all(
                self.field_sub(x, y) for x, y in zip(a.fields, b.fields, strict=False)
            )
        return self.field_sub(a.field, b.field)


GLOBAL = Matcher()
