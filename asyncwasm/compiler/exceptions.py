"""Exception handling in generated code: ``throw``, ``throw_ref``, ``try_table`` and the legacy
``try``/``catch``/``catch_all``/``delegate``/``rethrow``.

A Wasm exception is a Python exception, ``runtime.objects.WasmException`` (``_WExc``), holding its
tag and raw values; it is also the ``exnref`` value. ``throw x`` is ``raise _throw(X{x}, (args))``
(tags are the instance globals ``X0, X1, ...``, compared by identity, so an imported tag matches its
exporter's); ``throw_ref`` and ``rethrow`` raise the same object again. Traps are other exception
classes, so no handler ever catches one.

In the structured shape, Wasm's handlers map onto Python's ``try``/``except``::

    try_table (result i32) (catch $t $l) (catch_all $m) ... end

    try:
        ...                                   # the body; its results go to their slots
    except _WExc as _e7:
        fu = _fuel                            # the frame's fuel, as the thrower saved it
        if _e7.tag is X0: s3, = _e7.values; <branch to $l>
        else: <branch to $m>

and a legacy ``try`` the same way, its ``catch`` clauses being the ``if``/``elif`` arms (whose code
runs inside the ``except``, so ``rethrow`` is ``raise _rethrow(_e7)``). ``delegate l`` re-raises with
the local ``_dg`` set to the target construct's number: every handler between the ``try`` and that
target starts with ``if _dg in (...): raise``, and a handler that does handle clears ``_dg``. A
branch out of a handler is an ordinary ``break``/``continue`` (Python leaves the ``except`` cleanly).
A tail call inside a ``try_table`` returns from the body before the callee runs, so the callee's
exceptions are not caught there, as the spec wants.

In the flat shape (functions too deep for the structured one: a loop over segments), every
segment lies in a handler region, the innermost ``try`` whose body holds it, and the dispatch loop
runs inside one ``try``::

    while True:
        try:
            while True: ...the segments (L is the running one)...
        except _WExc as _e:
            fu = _fuel
            _r = (0, 1, 1, 2, 0, ...)[L]      # the region of the segment that raised
            while True:
                if _r == 0: raise              # no handler left: on to the caller
                if _r == 1:                    # a try_table: its clauses, else its parent region
                    if _e.tag is X0: s3, = _e.values; L = 7; break
                    _r = 0; continue
                ...

A legacy ``catch`` clause is a segment of the parent region, entered with the exception in its
variable ``_eN`` (for ``rethrow``); a ``delegate`` region goes on at the region of its target.

Fuel is wasmtime's: ``throw``/``throw_ref``/``rethrow`` cost one unit and save the frame's count
first (as a call does); ``try_table`` costs one (wasmtime's default table charges every operator
one unit but nop, drop, block, loop, unreachable, return, else and end); a handler reloads the
count the thrower saved (an exception from a callee comes back with that callee's use counted).
wasmtime does not run the legacy instructions; they follow the same table: ``try``, ``delegate``
one unit where they stand, a ``catch``/``catch_all`` one unit charged when its clause runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..binary.opcodes import CATCH, CATCH_ALL, DELEGATE, RETHROW, THROW, THROW_REF, TRY, TRY_TABLE
from .translate import _DEAD_STRUCTURE, _END_HOOKS, _HANDLERS, FLAT_HANDLERS, SAVE, Ctrl, FunctionTranslator

__all__ = ["TRY_KINDS", "end", "skip_dead"]

TRY_KINDS = (TRY, TRY_TABLE)


@dataclass
class _Try:
    """What a ``try``/``try_table`` needs until its end."""

    var: str  # the name its handler binds the exception to
    catches: tuple[tuple[int, int | None, Ctrl], ...] = ()  # try_table: (kind, tag, target)
    skip: set[int] = field(default_factory=set)  # delegate targets whose exceptions pass this handler by
    phase: int = 0  # legacy try: 0 in the body, 1 in a catch clause, 2 in catch_all
    arms: int = 0  # legacy try: catch clauses emitted as if/elif arms
    blocks: int = 0  # Python blocks it holds open (try, except)
    region: int = 0  # flat shape: the handler region of its body, and the one around it
    parent: int = 0
    clauses: list[tuple[int | None, int, int]] = field(default_factory=list)  # flat legacy: (tag, label, n)
    delegate: int = -1  # flat: the region a delegate hands its exceptions to
    height: int = 0  # flat: the stack height below its parameters (where a clause's values go)


def _state(t: FunctionTranslator) -> dict[int, _Try]:
    st = getattr(t, "exc_tries", None)
    if st is None:
        st = t.exc_tries = {}  # type: ignore[attr-defined]
        t.exc_ids = {}  # type: ignore[attr-defined]
    return st


def _number(t: FunctionTranslator, c: Ctrl) -> int:
    """A number for construct ``c``, unique in the function (for ``_dg``)."""
    ids: dict[int, int] = t.exc_ids  # type: ignore[attr-defined]
    return ids.setdefault(id(c), len(ids) + 1)


def _structured(t: FunctionTranslator) -> bool:
    return hasattr(t, "pyloops")


def _add_blocks(t: Any, n: int) -> None:
    t.count_blocks(n)  # the structured shape's nesting limit (TooDeep past it: the flat shape)


# ---- throwing ------------------------------------------------------------------------------------


def _throw(t: FunctionTranslator, x: Any, i: int) -> None:
    n = len(t.info.tag_types[x])  # type: ignore[attr-defined]
    args = t.call_args(n)
    pack = f"({args},)" if n == 1 else f"({args})"
    t.emit(f"{SAVE}; raise _throw(X{x}, {pack})")
    t.close_segment_dead()


def _throw_ref(t: FunctionTranslator, imm: Any, i: int) -> None:
    a = t.pop()
    t.emit(f"{SAVE}; raise _rethrow({a.code})")
    t.close_segment_dead()


def _rethrow(t: FunctionTranslator, depth: Any, i: int) -> None:
    target = t.ctrls[-1 - depth]
    t.emit(f"{SAVE}; raise _rethrow({_state(t)[id(target)].var})")
    t.close_segment_dead()


# ---- handlers ------------------------------------------------------------------------------------


def _open_try(t: Any, kind: int, bt: Any, i: int) -> tuple[Ctrl, _Try]:
    if not _structured(t):
        return _flat_open(t, kind, bt)
    p, r = t.block_sig(bt)
    t.materialize_all()
    c = Ctrl(kind, len(t.stack) - p, p, r, t.new_label())
    st = _Try(var=f"_e{c.label}")
    _state(t)[id(c)] = st
    t.ctrls.append(c)
    if i in t.loop_used:
        t.open_pyloop(c)
        c.used = True
    t.close_chunk()
    t.open_block("try:")
    st.blocks = 1
    _add_blocks(t, 1)
    t.open_chunk()
    return c, st


def _try_table(t: FunctionTranslator, imm: Any, i: int) -> None:
    bt, catches = imm
    targets = [(kind, x, t.ctrls[-1 - label]) for kind, x, label in catches]  # counted from outside
    _c, st = _open_try(t, TRY_TABLE, bt, i)
    st.catches = tuple(targets)
    for _k, _x, target in targets:
        target.used = True  # the flat shape gives it a segment


def _try(t: FunctionTranslator, bt: Any, i: int) -> None:
    _open_try(t, TRY, bt, i)


def _end_body(t: Any, c: Ctrl) -> None:
    """Close the ``try:`` block of ``c``'s body."""
    if not t.dead:
        t.materialize_all()
        c.end_reachable = True
    t.close_chunk()
    t.close_block()


def _handler_head(t: Any, c: Ctrl, st: _Try, bind: bool = True) -> None:
    """``except _WExc as _eN:``, the delegate check, and the fuel reload."""
    t.open_block(f"except _WExc as {st.var}:" if bind else "except _WExc:")
    _add_blocks(t, 1)
    st.blocks += 1
    if st.skip:
        t.emit(f"if _dg in {tuple(sorted(st.skip))!r}: raise")
    if getattr(t, "uses_dg", False):
        t.emit("_dg = 0")
    t.emit("fu = _fuel")


def _branch_with(t: Any, target: Ctrl, values: str, n: int) -> list[str]:
    """Statements that branch to ``target`` carrying the ``n`` values of tuple expression ``values``."""
    if target.kind == -1:
        if n == 0:
            return [f"{SAVE}; return"]
        return [f"{SAVE}; return {values}" + ("[0]" if n == 1 else "")]
    target.used = target.branched = True
    lines = []
    if n:
        dst = ", ".join(f"s{target.height + k}" for k in range(n))
        lines.append(f"{dst}, = {values}")
    return lines + t.transfer(target)


def _clause_values(kind: int, ev: str) -> str:
    """The tuple a catch clause of ``kind`` passes its label, from the caught exception ``ev``. An
    exnref kept as a value drops its Python traceback: it would tie the catching frame to itself."""
    exn = f"{ev}.with_traceback(None)"
    return (f"{ev}.values", f"(*{ev}.values, {exn})", "()", f"({exn},)")[kind]


def _end_try_table(t: Any, c: Ctrl, st: _Try) -> None:
    _end_body(t, c)
    _handler_head(t, c, st)
    ev = st.var
    first = True
    for kind, x, target in st.catches:
        values = _clause_values(kind, ev)
        n = target.branch_arity
        if kind < 2:
            t.emit(f"{'if' if first else 'elif'} {ev}.tag is X{x}:")
            for line in _branch_with(t, target, values, n):
                t.emit(line, 1)
            first = False
        else:
            if not first:
                t.emit("else:")
            for line in _branch_with(t, target, values, n):
                t.emit(line, 1 if not first else 0)
            break
    else:
        if first:
            t.emit("raise")
        else:
            t.emit("else:")
            t.emit("raise", 1)
    t.close_block()


def _catch(t: Any, op: int, x: Any, c: Ctrl) -> None:
    """The start of a legacy ``catch x`` or ``catch_all`` clause of try ``c``."""
    st = _state(t)[id(c)]
    if not t.dead:
        t.chunk_cost -= 1  # the catch's unit is charged in the clause it begins, not on the way past it
    if not _structured(t):
        _flat_catch(t, op, x, c, st)
        return
    if st.phase == 0:
        _end_body(t, c)
        _handler_head(t, c, st)
    else:
        if not t.dead:
            t.materialize_all()
            c.end_reachable = True
        t.close_chunk()
        if st.arms:
            t.close_block()
    ev = st.var
    if op == CATCH:
        t.open_block(f"{'if' if st.arms == 0 else 'elif'} {ev}.tag is X{x}:")
        st.arms += 1
        st.phase = 1
        n = len(t.info.tag_types[x])
    else:
        if st.arms:
            t.open_block("else:")
        st.phase = 2
        n = 0
    t.open_chunk()
    t.chunk_cost += 1
    t.dead = False
    t.reset_stack(c.height)
    if n:
        t.emit(f"{', '.join(f's{c.height + k}' for k in range(n))}, = {ev}.values")
        t.reset_stack(c.height + n)


def _end_legacy(t: Any, c: Ctrl, st: _Try) -> None:
    if st.phase == 0:  # no catch clause: exceptions pass through
        _end_body(t, c)
        _handler_head(t, c, st, bind=False)
        t.emit("raise")
        t.close_block()
        return
    if not t.dead:
        t.materialize_all()
        c.end_reachable = True
    t.close_chunk()
    if st.arms:
        t.close_block()
        if st.phase != 2:
            t.emit("else:")
            t.emit("raise", 1)
    t.close_block()


def _delegate(t: Any, depth: Any, i: int) -> None:
    c = t.ctrls[-1]
    target = t.ctrls[-2 - depth]  # counted from outside the try
    num = _number(t, target)
    t.uses_dg = True
    for between in t.ctrls[-1 - depth : -1]:  # the handlers the exception passes by
        st_b = _state(t).get(id(between))
        if st_b is not None:
            st_b.skip.add(num)
    st = _state(t)[id(c)]
    if not _structured(t):
        _flat_delegate(t, c, st, depth)
        return
    _end_body(t, c)
    t.open_block("except _WExc:")
    _add_blocks(t, 1)
    st.blocks += 1
    if st.skip:
        t.emit(f"if _dg in {tuple(sorted(st.skip))!r}: raise")
    t.emit(f"_dg = {num}")
    t.emit("raise")
    t.close_block()
    t.ctrls.pop()
    _finish(t, c, st)


def end(t: Any, c: Ctrl) -> None:
    """The ``end`` of a ``try`` or ``try_table`` (already popped from the control stack)."""
    st = _state(t)[id(c)]
    if not _structured(t):
        _flat_end(t, c, st)
        return
    if c.kind == TRY_TABLE:
        _end_try_table(t, c, st)
    else:
        _end_legacy(t, c, st)
    _finish(t, c, st)


def _finish(t: Any, c: Ctrl, st: _Try) -> None:
    t.count_blocks(-st.blocks)
    reach = c.end_reachable or c.branched
    if c in t.pyloops:
        t.close_pyloop(c)
    t.open_chunk()
    t.dead = not reach
    t.reset_stack(c.height + c.nresults)


# ---- the flat shape ------------------------------------------------------------------------------


def _flat_open(t: Any, kind: int, bt: Any) -> tuple[Ctrl, _Try]:
    p, r = t.block_sig(bt)
    t.materialize_all()
    c = Ctrl(kind, len(t.stack) - p, p, r, t.new_label())
    st = _Try(var=f"_e{c.label}")
    regions = _regions(t)
    regions.append(st)
    st.region, st.parent, st.height = len(regions), t.region, c.height
    _state(t)[id(c)] = st
    t.ctrls.append(c)
    t.region = st.region
    t.fallthrough_to(t.new_label())
    t.reset_stack(c.height + p)
    return c, st


def _regions(t: Any) -> list[_Try]:
    regions = getattr(t, "exc_regions", None)
    if regions is None:
        regions = t.exc_regions = []
    return regions


def _flat_catch(t: Any, op: int, x: Any, c: Ctrl, st: _Try) -> None:
    if not t.dead:  # the body or the clause before ends: on to the end of the try
        t.materialize_all()
        t.emit(f"L = @{c.label}@")
    c.used = True
    t.region = st.parent
    label = t.new_label()
    t.start_segment(label)
    t.chunk_cost += 1
    t.dead = False
    n = len(t.info.tag_types[x]) if op == CATCH else 0
    st.clauses.append((x if op == CATCH else None, label, n))
    st.phase = 1 if op == CATCH else 2
    t.reset_stack(c.height + n)


def _flat_region_of(t: Any, pos: int) -> int:
    """The region exceptions raised at control frame ``pos`` (and outside any try inside it) go to."""
    states = _state(t)
    for c in reversed(t.ctrls[: pos + 1]):
        st = states.get(id(c))
        if st is not None:
            return st.region if st.phase == 0 else st.parent
    return 0


def _flat_delegate(t: Any, c: Ctrl, st: _Try, depth: int) -> None:
    st.delegate = _flat_region_of(t, len(t.ctrls) - 2 - depth)
    t.ctrls.pop()
    _flat_end(t, c, st)


def _flat_end(t: Any, c: Ctrl, st: _Try) -> None:
    t.region = st.parent
    c.used = True
    t.fallthrough_to(c.label)
    t.reset_stack(c.height + c.nresults)


def _flat_jump(target: Ctrl, values: str, n: int) -> list[str]:
    if target.kind == -1:
        return [f"{SAVE}; return" + (f" {values}" + ("[0]" if n == 1 else "") if n else "")]
    lines = [f"{', '.join(f's{target.height + k}' for k in range(n))}, = {values}"] if n else []
    return [*lines, f"L = @{target.label}@", "break"]


def flat_handlers(t: Any, index: Any) -> list[str] | None:
    """The ``except`` clause of the flat shape's dispatch loop (``render_function``'s hook), or
    None when the function has no handler."""
    regions = getattr(t, "exc_regions", None)
    if not regions:
        return None
    table = tuple(seg.region for seg in t.segments)
    out = [
        "except _WExc as _e:",
        "    fu = _fuel",
        f"    _r = {table!r}[L]",
        "    while True:",
        "        if _r == 0: raise",
    ]
    for st in regions:
        out.append(f"        if _r == {st.region}:")
        body: list[str] = []
        if st.delegate >= 0:
            body += [f"_r = {st.delegate}", "continue"]
        else:
            done = False
            for kind, x, target in st.catches:
                values = _clause_values(kind, "_e")
                jump = _flat_jump(target, values, target.branch_arity)
                if kind < 2:
                    body.append(f"if _e.tag is X{x}:")
                    body += ["    " + line for line in jump]
                else:
                    body += jump
                    done = True
                    break
            for tag, label, n in st.clauses:
                slots = ", ".join(f"s{st.height + k}" for k in range(n))
                enter = [
                    f"{st.var} = _e.with_traceback(None)",
                    *([f"{slots}, = _e.values"] if n else []),
                    f"L = @{label}@",
                    "break",
                ]
                if tag is not None:
                    body.append(f"if _e.tag is X{tag}:")
                    body += ["    " + line for line in enter]
                else:
                    body += enter
                    done = True
                    break
            if not done:
                body += [f"_r = {st.parent}", "continue"]
        out += ["            " + line for line in body]
    return out


def skip_dead(t: Any, op: int, imm: Any, i: int) -> None:
    """This proposal's structure in unreachable code (``FunctionTranslator.skip_dead``)."""
    if op in TRY_KINDS:
        t.ctrls.append(Ctrl(op, len(t.stack), 0, 0, -1, ghost=True))
    elif op in (CATCH, CATCH_ALL):
        c = t.ctrls[-1]
        if not c.ghost:
            _catch(t, op, imm, c)
    elif op == DELEGATE:
        if t.ctrls[-1].ghost:
            t.ctrls.pop()
        else:
            _delegate(t, imm, i)


FLAT_HANDLERS.append(flat_handlers)
for _op in TRY_KINDS:
    _END_HOOKS[_op] = end
for _op in (*TRY_KINDS, CATCH, CATCH_ALL, DELEGATE):
    _DEAD_STRUCTURE[_op] = skip_dead
_HANDLERS[THROW] = _throw
_HANDLERS[THROW_REF] = _throw_ref
_HANDLERS[RETHROW] = _rethrow
_HANDLERS[TRY_TABLE] = _try_table
_HANDLERS[TRY] = _try
_HANDLERS[CATCH] = lambda t, imm, i: _catch(t, CATCH, imm, t.ctrls[-1])
_HANDLERS[CATCH_ALL] = lambda t, imm, i: _catch(t, CATCH_ALL, imm, t.ctrls[-1])
_HANDLERS[DELEGATE] = _delegate
