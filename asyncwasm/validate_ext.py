"""Validation of tail calls and exception handling (Wasm 3.0), legacy exceptions included.

These rules plug into ``validate._BodyChecker`` as extra instruction handlers (``handlers``) and two
module-level checks (``check_tags``, ``tag_count``), so the main validator changes in a few lines.
The rules are the spec's:

* ``return_call*``: the callee's results must match the caller's; the rest of the block is
  unreachable. ``return_call_ref`` takes a reference to the function type it names.
* ``throw x`` pops the tag's parameters; ``throw_ref`` pops an ``exnref``; both end the block.
* ``try_table bt catch*``: every catch clause's label (counted from outside the ``try_table``)
  must accept what the clause passes: the tag's parameters (``catch``), plus a ``(ref exn)``
  (``catch_ref``), nothing (``catch_all``) or a ``(ref exn)`` alone (``catch_all_ref``).
* legacy ``try``/``catch``/``catch_all``/``delegate``/``rethrow``: a ``catch`` opens a frame whose
  operands are the tag's parameters; ``delegate l`` ends the ``try`` and names a label outside it;
  ``rethrow l`` must name a ``catch`` or ``catch_all`` frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .binary.module import EXNREF, FUNCREF, I32, REF_EXN, FuncType, Module
from .binary.opcodes import (
    CATCH,
    CATCH_ALL,
    DELEGATE,
    RETHROW,
    RETURN_CALL,
    RETURN_CALL_INDIRECT,
    RETURN_CALL_REF,
    THROW,
    THROW_REF,
    TRY,
    TRY_TABLE,
)
from .errors import InvalidModule

__all__ = ["handlers", "check_tags"]

_LABEL, _RESULTS, _HEIGHT, _DEAD, _OPCODE, _PARAMS = range(6)  # validate's control frame fields


def _show(types: Any) -> str:
    return "[" + " ".join("unknown" if t is None else t for t in types) + "]"


def handlers(
    c: Any, tags: list[FuncType], _Invalid: type[Exception]
) -> dict[int, Callable[[int, Any], None]]:
    """The instruction handlers of these proposals for body checker ``c`` (``_Invalid``: its error;
    ``c.sub``: the module's subtyping of value types)."""

    def matches(actual: str | None, expected: str | None) -> bool:
        return actual == expected or actual is None or expected is None or c.sub(actual, expected)

    def _match_all(actual: tuple[str, ...], expected: tuple[str, ...]) -> bool:
        return len(actual) == len(expected) and all(
            matches(a, e) for a, e in zip(actual, expected, strict=True)
        )

    def tag(x: int) -> FuncType:
        if x >= len(tags):
            raise _Invalid(f"unknown tag {x}")
        return tags[x]

    def pop_matching(types: tuple[str, ...]) -> None:
        for t in reversed(types):
            got = c.pop(None)
            if not matches(got, t):
                raise _Invalid(f"type mismatch: expected [{t}] but found [{got}]")

    def tail_results(ft: FuncType) -> None:
        if not _match_all(ft.results, c.results):
            raise _Invalid(
                f"type mismatch: tail call returns {_show(ft.results)} "
                f"where the function returns {_show(c.results)}"
            )

    def return_call(op: int, x: int) -> None:
        if x >= len(c.funcs):
            raise _Invalid(f"unknown function {x}")
        ft = c.funcs[x]
        tail_results(ft)
        pop_matching(ft.params)
        c.set_unreachable()

    def return_call_indirect(op: int, imm: tuple[int, int]) -> None:
        typeidx, tableidx = imm
        if not matches(c.table(tableidx), FUNCREF):
            raise _Invalid(
                f"type mismatch: return_call_indirect needs a funcref table, table {tableidx} "
                f"holds {c.tables[tableidx]}"
            )
        if typeidx >= len(c.types):
            raise _Invalid(f"unknown type {typeidx}")
        ft = c.types[typeidx]
        tail_results(ft)
        c.pop(I32)
        pop_matching(ft.params)
        c.set_unreachable()

    def return_call_ref(op: int, typeidx: int) -> None:
        if typeidx >= len(c.types):
            raise _Invalid(f"unknown type {typeidx}")
        ft = c.types[typeidx]
        if not isinstance(ft, FuncType):
            raise _Invalid(f"type mismatch: return_call_ref names type {typeidx}, not a function type")
        c.pop(f"(ref null {typeidx})")
        tail_results(ft)
        pop_matching(ft.params)
        c.set_unreachable()

    def throw(op: int, x: int) -> None:
        pop_matching(tag(x).params)
        c.set_unreachable()

    def throw_ref(op: int, imm: Any) -> None:
        c.pop(EXNREF)
        c.set_unreachable()

    def try_table(op: int, imm: tuple[Any, tuple[tuple[int, int | None, int], ...]]) -> None:
        bt, catches = imm
        params, results = c.blocktype(bt)
        for kind, x, label in catches:
            passed: tuple[str, ...] = tag(x).params if kind < 2 else ()  # type: ignore[arg-type]
            if kind & 1:
                passed = (*passed, REF_EXN)
            want = c.label(label)
            if not _match_all(passed, want):
                raise _Invalid(
                    f"type mismatch: catch clause passes {_show(passed)} to a label of {_show(want)}"
                )
        if params:
            pop_matching(params)
        c.push_ctrl(TRY_TABLE, params, results)

    def try_(op: int, bt: Any) -> None:
        params, results = c.blocktype(bt)
        if params:
            pop_matching(params)
        c.push_ctrl(TRY, params, results)

    def catch(op: int, x: Any) -> None:
        if c.ctrls[-1][_OPCODE] not in (TRY, CATCH):
            raise _Invalid("catch without a matching try")
        frame = c.pop_ctrl()
        params = tag(x).params if op == CATCH else ()
        c.push_ctrl(op, params, frame[_RESULTS])
        c.ctrls[-1][_LABEL] = frame[_RESULTS]

    def delegate(op: int, label: int) -> None:
        if c.ctrls[-1][_OPCODE] != TRY:
            raise _Invalid("delegate without a matching try")
        frame = c.pop_ctrl()
        c.label(label)
        c.vals.extend(frame[_RESULTS])

    def rethrow(op: int, label: int) -> None:
        c.label(label)
        if c.ctrls[-1 - label][_OPCODE] not in (CATCH, CATCH_ALL):
            raise _Invalid(f"invalid rethrow label {label}: not a catch block")
        c.set_unreachable()

    return {
        RETURN_CALL: return_call,
        RETURN_CALL_INDIRECT: return_call_indirect,
        RETURN_CALL_REF: return_call_ref,
        THROW: throw,
        THROW_REF: throw_ref,
        TRY_TABLE: try_table,
        TRY: try_,
        CATCH: catch,
        CATCH_ALL: catch,
        DELEGATE: delegate,
        RETHROW: rethrow,
    }


def check_tags(module: Module) -> list[FuncType]:
    """The type of every tag (imports first); each must name a function type with no results."""
    out = []
    for x in module.tag_types():
        if not 0 <= x < len(module.types):
            raise InvalidModule(f"unknown type {x} for a tag")
        ft = module.types[x]
        if not isinstance(ft, FuncType):
            raise InvalidModule(f"type mismatch: a tag's type {x} is not a function type")
        if ft.results:
            raise InvalidModule(f"non-empty tag result type: a tag's type must return nothing, not {ft}")
        out.append(ft)
    return out
