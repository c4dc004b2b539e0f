"""Tail calls (``return_call``, ``return_call_indirect``, ``return_call_ref``) in constant stack.

Python has no tail calls, so they go through a trampoline. A function whose body has a tail call is
translated into two Python functions:

* ``t{i}``, the body, where ``return_call g(args)`` becomes ``return _Tail(f{g}, (args,))``: it ends
  the frame (its ``try`` blocks, hence its exception handlers, are left as the spec wants) and
  hands the callee and its arguments back instead of calling it;
* ``f{i}``, the trampoline (code name ``w{i}``) that ordinary callers call as before::

      def w5(l0, l1):
          r = t5(l0, l1)
          while type(r) is _Tail:
              r = getattr(r.fn, "_t", r.fn)(*r.args)
          return r

  A callee that has tail calls itself carries its body as the attribute ``_t`` of its trampoline
  (``CompiledCode.make_function``), so the trampoline runs that body directly and keeps looping on
  the markers it returns: a chain of a million tail calls, mutually recursive or through tables,
  runs in one trampoline frame plus one body frame, in constant Python and native stack. A callee
  without tail calls (or a host function, or a lazy stub) returns its results, which end the loop.

Functions without tail calls are translated exactly as before (no check on any ordinary call's
result, no wrapper): the cost is paid only by functions that contain a tail call, one extra Python
call per ordinary call of them, and about half a microsecond per tail call.

The alternative, a marker check after every call in every function, would slow ordinary calls
everywhere; generating a second copy of each body for tail position doubles compile time.

Fuel is wasmtime's: a tail call costs one unit like a call and saves the frame's count first; the
callee's entry charges and checks as for any call. Backtraces: the trampoline frame (``w``) is left
out, so a trap after tail calls shows the running body and the ordinary callers, as in wasmtime
(whose tail calls also replace the caller's frame).
"""

from __future__ import annotations

from typing import Any

from ..binary.module import FuncType
from ..binary.opcodes import RETURN_CALL, RETURN_CALL_INDIRECT, RETURN_CALL_REF
from .translate import _HANDLERS, SAVE, FunctionTranslator

__all__ = ["finish"]


def _emit_tail(t: FunctionTranslator, callee: str, ft: FuncType) -> None:
    args = t.call_args(len(ft.params))
    pack = f"({args},)" if len(ft.params) == 1 else f"({args})"
    t.emit(f"{SAVE}; return _Tail({callee}, {pack})")
    t.tail_calls = True  # type: ignore[attr-defined]
    t.close_segment_dead()


def _return_call(t: FunctionTranslator, imm: Any, i: int) -> None:
    _emit_tail(t, f"f{imm}", t.info.func_types[imm])


def _return_call_indirect(t: FunctionTranslator, imm: Any, i: int) -> None:
    typeidx, table = imm
    idx = t.pop()
    t.push_slot_value(idx.code)  # the index is evaluated before the arguments are packed
    slot = t.pop()
    _emit_tail(t, f"_callee(T{table}, {slot.code}, {t.info.type_ids[typeidx]})", t.info.types[typeidx])


def _return_call_ref(t: FunctionTranslator, imm: Any, i: int) -> None:
    ref = t.pop()
    t.push_slot_value(ref.code)
    slot = t.pop()
    _emit_tail(t, f"_cref({slot.code})", t.info.types[imm])  # call_ref's target (compiler/gc.py)


_HANDLERS[RETURN_CALL] = _return_call
_HANDLERS[RETURN_CALL_INDIRECT] = _return_call_indirect
_HANDLERS[RETURN_CALL_REF] = _return_call_ref


def finish(t: FunctionTranslator, lines: list[str], offs: list[int]) -> tuple[list[str], list[int]]:
    """Rename the body of a function with tail calls to ``t{i}`` and add its trampoline ``w{i}``."""
    if not getattr(t, "tail_calls", False):
        return lines, offs
    i = t.index
    head = f"def f{i}("
    assert lines[0].startswith(head)
    lines = [f"def t{i}(" + lines[0][len(head) :], *lines[1:]]
    params = ", ".join(f"l{k}" for k in range(len(t.ftype.params)))
    lines += [
        f"def w{i}({params}):",
        f"    r = t{i}({params})",
        "    while type(r) is _Tail:",
        "        r = getattr(r.fn, '_t', r.fn)(*r.args)",
        "    return r",
    ]
    return lines, offs + [t.code.offset] * 5
