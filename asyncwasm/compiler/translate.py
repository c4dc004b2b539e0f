"""Translate one Wasm function body into the source of one Python function.

The shape is flat, so that any nesting depth compiles (CPython refuses more than 20 nested loops or
100 indentation levels): the body is cut into segments at branch targets, and the function is

    while True:
        if L == 0: ...segment 0...; L = 1          (falls through to the next check)
        if L == 1: ...; L = 0; continue             (a backward branch goes round again)

Forward branches just set ``L``, so the checks that follow skip to the target. Operand-stack slots are
Python locals ``s0, s1, ...``; pure operators fold into expressions until something forces them into
their slot.

Fuel is counted as wasmtime counts it (``Store.make_refuel`` is the runtime's side): a frame keeps
its count in the local ``fu``, charged once per straight-line chunk, checked (``fu <= 0``) at entry,
at every loop head and at big bulk operations, and saved to the instance's ``_fuel`` only where
wasmtime saves it: before a call, at a return, at ``unreachable``. A trap anywhere else loses what
the frame used since its last save, exactly as in wasmtime. ``_fuel`` is a closure cell, not a
module global (``compiler/contract.py``): a call saves and reloads it, and a cell costs a fraction
of a dict store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, cast

from ..binary.module import F32, F64, I32, I64, V128, Code, FuncType
from ..binary.opcodes import BLOCK, ELSE, END, IF, LOOP, NAMES
from ..errors import MEMORY_OOB, TABLE_OOB
from .contract import FUEL
from .fastops import FAST_BINARY
from .gc import HANDLERS as GC_HANDLERS
from .info import ModuleInfo
from .memories import copy_call, grow_fail, grow_name, load_template, memarg, memory_name, store_template
from .numeric import f32_from_bits, f64_from_bits
from .ops import FREE_OPS, LOADS, OPERATORS, STORES
from .simd import SIMD_HANDLERS

_MAX_FOLD_DEPTH = 24
# bytes each load and store opcode touches
ACCESS_SIZE = {
    0x28: 4,
    0x29: 8,
    0x2A: 4,
    0x2B: 8,
    0x2C: 1,
    0x2D: 1,
    0x2E: 2,
    0x2F: 2,
    0x30: 1,
    0x31: 1,
    0x32: 2,
    0x33: 2,
    0x34: 4,
    0x35: 4,
    0x36: 4,
    0x37: 8,
    0x38: 4,
    0x39: 8,
    0x3A: 1,
    0x3B: 2,
    0x3C: 1,
    0x3D: 2,
    0x3E: 4,
}
CHECK = "if fu <= 0: fu = _refuel(fu)"  # out of fuel when used >= limit (wasmtime's check)
ENTRY = "if (fu := _fuel - 1) <= 0: fu = _refuel(fu)"  # a call costs one unit, checked at entry
SAVE = "_fuel = fu"
SMALL_BULK = 128  # a bulk operation of constant size costing at most this is not checked (wasmtime)
U32_FAIL = 0xFFFFFFFF  # memory.grow and table.grow's -1
# Python frames hold every local: a deep recursion of functions with many locals would take gigabytes
# before the recursion limit. Big frames therefore charge their size against a shared stack budget.
BIG_FRAME = 64
GROUP = 8  # flat segments tested one after another at a leaf of the dispatch tree
STACK_BUDGET = 4_000_000
_SLOT = re.compile(r"\bs(\d+)\b")
_ZERO = {I32: "0", I64: "0", F32: "0.0", F64: "0.0", V128: "0"}


@dataclass
class Entry:
    """One operand-stack value: Python source, the variables it reads, and its fold depth."""

    code: str
    deps: frozenset[str]
    depth: int = 0


@dataclass
class Ctrl:
    kind: int  # BLOCK, LOOP, IF, or -1 for the function body
    height: int  # stack height below the block's params
    nparams: int
    nresults: int
    label: int  # loop: its head; block/if: its end
    else_label: int = -1
    has_else: bool = False
    used: bool = False  # some branch targets the label
    branched: bool = False  # a branch to the label was emitted (in live code)
    ghost: bool = False  # the whole construct is unreachable
    end_reachable: bool = False  # some path reaches the end by falling through
    fuel_mark: tuple[int, int] = (-1, 0)  # (chunk line, its cost) where an if with an else began
    chain: object = None  # the structured shape's BlockChain this block belongs to, if any
    stage: int = 0  # in a chain: the stage that runs when this block ends

    @property
    def branch_arity(self) -> int:
        return self.nparams if self.kind == LOOP else self.nresults


@dataclass
class Segment:
    label: int
    lines: list[tuple[int, str, int]] = field(default_factory=list)  # (indent, text, wasm offset)
    loop_head: bool = False
    region: int = 0  # the exception handler region it lies in (compiler/exceptions.py; 0: none)


class FunctionTranslator:
    def __init__(self, info: ModuleInfo, index: int, code: Code, ftype: FuncType) -> None:
        self.info = info
        self.index = index
        self.code = code
        self.ftype = ftype
        self.segments: list[Segment] = []
        self.nlabels = 0
        self.stack: list[Entry] = []
        self.clean = 0  # every entry below this height is in its own slot
        self.readers: dict[str, list[int]] = {}  # variable -> positions of folded entries reading it
        self.ctrls: list[Ctrl] = []
        self.dead = False
        self.consts: dict[str, float] = {}
        self.cells_set: set[str] = set()  # the state cells the function assigns
        self.offset = code.offset
        self.chunk_line = -1
        self.chunk_cost = 0
        self.chunk_reload = False  # the open chunk follows a call: it loads ``fu`` first
        self.loop_used: set[int] = set()  # constructs some branch targets
        self.aliases: dict[int, int] = {}  # label -> the label whose segment it shares
        self.ifs_with_else: set[int] = set()  # ifs (by instruction index) that have an else
        self.closed_costs: dict[int, int] = {}  # chunk line -> the cost it was closed with
        self.region = 0  # the exception handler region new segments lie in (compiler/exceptions.py)

    # ---- emission ------------------------------------------------------------------------------
    def new_label(self) -> int:
        self.nlabels += 1
        return self.nlabels - 1

    def emit(self, text: str, indent: int = 0) -> None:
        self.segments[-1].lines.append((indent, text, self.offset))

    def start_segment(self, label: int, loop_head: bool = False) -> None:
        self.close_chunk()
        self.segments.append(Segment(label, loop_head=loop_head, region=self.region))
        if loop_head:
            self.emit(CHECK)
        self.open_chunk()

    def open_chunk(self, reload: bool = False) -> None:
        self.emit("")
        self.chunk_line = len(self.segments[-1].lines) - 1
        self.chunk_cost = 0
        self.chunk_reload = reload

    def close_chunk(self) -> None:
        if self.chunk_line < 0:
            return
        seg = self.segments[-1]
        ind, _t, off = seg.lines[self.chunk_line]
        cost = self.chunk_cost
        if self.chunk_reload:
            text = f"fu = _fuel - {cost}" if cost > 0 else f"fu = _fuel + {-cost}" if cost else "fu = _fuel"
        else:
            text = f"fu -= {cost}" if cost > 0 else f"fu += {-cost}" if cost else ""
        seg.lines[self.chunk_line] = (ind, text, off)
        self.closed_costs[self.chunk_line] = cost
        self.chunk_line = -1
        self.chunk_reload = False

    def check_here(self) -> None:
        """End the chunk and check the fuel, as wasmtime does at a loop head (a loop no branch
        targets included) and before a big bulk operation."""
        self.close_chunk()
        self.emit(CHECK)
        self.open_chunk()

    # ---- the symbolic operand stack ------------------------------------------------------------
    # Two indexes keep every operation proportional to what it changes, not to the stack's height
    # (a function may push 100,000 values before it folds them): ``clean`` is a height below which
    # every entry is already in its own slot, and ``readers`` maps a variable to the positions of
    # folded entries that read it (checked on use: an entry may have been popped or materialized).
    def push(self, code: str, deps: frozenset[str], depth: int = 0) -> None:
        pos = len(self.stack)
        self.stack.append(Entry(code, deps, depth))
        readers = self.readers
        for d in deps:
            lst = readers.get(d)
            if lst is None:
                readers[d] = [pos]
            else:
                lst.append(pos)
        if depth > _MAX_FOLD_DEPTH:
            self.materialize(pos)

    def push_slot_value(self, code: str) -> None:
        """Evaluate ``code`` now into the slot at the top of the stack."""
        pos = len(self.stack)
        var = f"s{pos}"
        self.invalidate(var, -1)
        self.emit(f"{var} = {code}")
        self.stack.append(Entry(var, frozenset((var,))))
        if self.clean == pos:
            self.clean = pos + 1

    def temp(self) -> str:
        """A fresh local for an assignment expression inside a folded expression."""
        self.ntemps = getattr(self, "ntemps", 0) + 1
        return f"_t{self.ntemps}"

    def nslots(self) -> int:
        """How many stack slots the function uses (the highest ``sN`` plus one)."""
        top = -1
        for seg in self.segments:
            for _ind, txt, _off in seg.lines:
                for m in _SLOT.finditer(txt):
                    top = max(top, int(m.group(1)))
        return top + 1

    def pop(self) -> Entry:
        e = self.stack.pop()
        if self.clean > len(self.stack):
            self.clean = len(self.stack)
        return e

    def invalidate(self, var: str, skip: int) -> None:
        """Before ``var`` is assigned, evaluate every pending entry that still reads it."""
        positions = self.readers.pop(var, None)
        if not positions:
            return
        stack = self.stack
        keep = False
        for q in positions:
            if q < len(stack):
                e = stack[q]
                if var in e.deps and e.code != f"s{q}":
                    if q == skip:
                        keep = True
                    else:
                        self.materialize(q)
        if keep:
            self.readers.setdefault(var, []).append(skip)

    def materialize(self, pos: int) -> None:
        e = self.stack[pos]
        var = f"s{pos}"
        if e.code == var:
            return
        self.invalidate(var, pos)
        self.emit(f"{var} = {e.code}")
        self.stack[pos] = Entry(var, frozenset((var,)))

    def materialize_all(self) -> None:
        start = min(self.clean, len(self.stack))
        for pos in range(start, len(self.stack)):
            self.materialize(pos)
        self.clean = len(self.stack)

    def reset_stack(self, height: int) -> None:
        """The stack as control flow joins leave it: ``height`` values, each in its own slot."""
        stack = self.stack
        del stack[height:]
        for i in range(min(self.clean, len(stack)), len(stack)):
            stack[i] = Entry(f"s{i}", frozenset((f"s{i}",)))
        for i in range(len(stack), height):
            stack.append(Entry(f"s{i}", frozenset((f"s{i}",))))
        self.clean = height

    # ---- control transfer ----------------------------------------------------------------------
    def moves(self, target: Ctrl) -> str | None:
        """Assignment that puts the branch values in the target's slots, or None when in place."""
        n = target.branch_arity
        src = len(self.stack) - n
        if n == 0 or src == target.height:
            return None
        dst = ", ".join(f"s{target.height + i}" for i in range(n))
        vals = ", ".join(f"s{src + i}" for i in range(n))
        return f"{dst} = {vals}"

    def return_stmt(self) -> str:
        """Save the frame's fuel and return (one line: it may follow an ``if``)."""
        n = len(self.ftype.results)
        vals = [self.stack[len(self.stack) - n + i].code for i in range(n)]
        if n == 0:
            return f"{SAVE}; return"
        if n == 1:
            return f"{SAVE}; return {vals[0]}"
        return f"{SAVE}; return ({', '.join(vals)})"

    def jump_lines(self, target: Ctrl) -> list[str]:
        """Statements that branch to ``target`` (stack already materialized)."""
        if target.kind == -1:
            return [self.return_stmt()]
        target.used = target.branched = True
        mv = self.moves(target)
        return ([mv] if mv else []) + self.transfer(target)

    def transfer(self, target: Ctrl) -> list[str]:
        """The jump itself, once the branch values are in place: set the label, go round if back."""
        return [f"L = @{target.label}@", "continue"] if target.kind == LOOP else [f"L = @{target.label}@"]

    def branch(self, depth: int) -> None:
        target = self.ctrls[-1 - depth]
        self.materialize_all()
        for line in self.jump_lines(target):
            self.emit(line)
        self.close_segment_dead()

    def close_segment_dead(self) -> None:
        self.dead = True

    def fallthrough_to(self, label: int, loop_head: bool = False) -> None:
        """End the current segment and start ``label``, reached by falling through if live."""
        if not self.dead:
            self.materialize_all()
            self.emit(f"L = @{label}@")
        self.start_segment(label, loop_head)
        self.dead = False

    # ---- translation ---------------------------------------------------------------------------
    def block_sig(self, bt: object) -> tuple[int, int]:
        if bt is None:
            return 0, 0
        if isinstance(bt, str):
            return 0, 1
        ft = self.info.types[cast(int, bt)]
        return len(ft.params), len(ft.results)

    def prescan(self) -> None:
        """Mark the constructs that some branch targets (by the index of their first instruction)."""
        stack: list[tuple[int, int]] = []  # (kind, instruction index)
        for i, (op, imm, _off) in enumerate(self.code.body):
            if op in (BLOCK, LOOP, IF):
                stack.append((op, i))
            elif op == 0x1F:  # try_table: its catch clauses branch to labels outside it
                for _kind, _tag, label in imm[1]:
                    self._mark(stack, label)
                stack.append((op, i))
            elif op == 0x06:  # try
                stack.append((op, i))
            elif op == 0x18:  # delegate ends a try
                stack.pop()
            elif op == END:
                if stack:
                    stack.pop()
            elif op == ELSE:
                if stack:
                    self.ifs_with_else.add(stack[-1][1])
            elif op in (0x0C, 0x0D, 0xD5, 0xD6):  # br, br_if, br_on_null, br_on_non_null
                self._mark(stack, imm)
            elif op in (0xFB18, 0xFB19):  # br_on_cast, br_on_cast_fail
                self._mark(stack, imm[0])
            elif op == 0x0E:
                for d in set(imm[0]) | {imm[1]}:
                    self._mark(stack, d)

    def _mark(self, stack: list[tuple[int, int]], depth: int) -> None:
        if depth < len(stack):
            _kind, i = stack[-1 - depth]
            self.loop_used.add(i)

    def translate(self) -> tuple[list[str], list[int]]:
        ft = self.ftype
        nparams = len(ft.params)
        self.prescan()
        self.segments.append(Segment(self.new_label()))
        self.emit(ENTRY)
        self.open_chunk()
        self.ctrls.append(Ctrl(-1, 0, 0, len(ft.results), -1))
        body = self.code.body
        for i, (op, imm, off) in enumerate(body):
            self.offset = off
            if self.dead:
                self.skip_dead(op, imm, i)
                continue
            if op not in FREE_OPS:
                self.chunk_cost += 1
            self.step(op, imm, i)
        self.close_chunk()
        return self.render(nparams)

    def render(self, nparams: int) -> tuple[list[str], list[int]]:
        return render_function(self, nparams)

    def skip_dead(self, op: int, imm: object, i: int) -> None:
        if op in (BLOCK, LOOP, IF):
            self.ctrls.append(Ctrl(op, len(self.stack), 0, 0, -1, ghost=True))
        elif op == ELSE:
            c = self.ctrls[-1]
            if not c.ghost:
                self.do_else(c)
        elif op == END:
            self.do_end(self.ctrls[-1])
        elif op in _DEAD_STRUCTURE:  # try, try_table, catch, catch_all, delegate
            _DEAD_STRUCTURE[op](self, op, imm, i)

    def step(self, op: int, imm: object, i: int) -> None:
        tmpl = OPERATORS.get(op)
        if tmpl is not None:
            text, n, pure = tmpl
            if n == 1:
                a = self.pop()
                code = text.format(a=a.code)
                deps, depth = a.deps, a.depth + 1
            else:
                b = self.pop()
                a = self.pop()
                fast = FAST_BINARY.get(op)
                code = fast(self, a.code, b.code) if fast else text.format(a=a.code, b=b.code)
                deps, depth = a.deps | b.deps, max(a.depth, b.depth) + 1
            if pure:
                self.push(code, deps, depth)
            else:
                self.push_slot_value(code)
            return
        handler = _HANDLERS.get(op)
        if handler is None:
            raise NotImplementedError(f"opcode {op:#x}")
        handler(self, imm, i)

    # -- control
    def do_block(self, imm: object, i: int) -> None:
        p, r = self.block_sig(imm)
        self.ctrls.append(Ctrl(BLOCK, len(self.stack) - p, p, r, self.new_label()))

    def do_loop(self, imm: object, i: int) -> None:
        p, r = self.block_sig(imm)
        c = Ctrl(LOOP, len(self.stack) - p, p, r, self.new_label())
        self.ctrls.append(c)
        if i in self.loop_used:
            self.fallthrough_to(c.label, loop_head=True)
            self.reset_stack(c.height + p)
        else:
            self.check_here()  # a loop head even when nothing branches back

    def do_if(self, imm: object, i: int) -> None:
        p, r = self.block_sig(imm)
        cond = self.pop()
        self.materialize_all()
        c = Ctrl(IF, len(self.stack) - p, p, r, self.new_label(), else_label=self.new_label())
        self.ctrls.append(c)
        then = self.new_label()
        self.emit(f"L = @{then}@ if {cond.code} else @{c.else_label}@")
        self.start_segment(then)
        self.reset_stack(c.height + p)

    def do_else(self, c: Ctrl) -> None:
        if not self.dead:
            c.end_reachable = True
            self.materialize_all()
            c.used = True
            self.emit(f"L = @{c.label}@")
        c.has_else = True
        self.dead = False
        self.start_segment(c.else_label)
        self.reset_stack(c.height + c.nparams)

    def do_end(self, c: Ctrl) -> None:
        self.ctrls.pop()
        if c.ghost:
            return
        if c.kind in _END_HOOKS:  # try, try_table
            _END_HOOKS[c.kind](self, c)
            return
        if c.kind == -1:
            if not self.dead:
                self.materialize_all()
                self.emit(self.return_stmt())
            self.dead = True
            return
        live = not self.dead
        if c.kind == IF and not c.has_else:
            # the missing else falls through to the end with the params as results
            if live:
                self.materialize_all()
            self.fallthrough_to(c.else_label)
            self.segments[-1].label = c.else_label
            self.alias(c.label, c.else_label)
            self.reset_stack(c.height + c.nresults)
            return
        if c.kind == LOOP:
            # nothing branches to a loop's end: it is reached only by falling through
            if live:
                return
            self.dead = True
            return
        if c.used:
            self.fallthrough_to(c.label)
            self.reset_stack(c.height + c.nresults)
        elif not live:
            self.dead = True

    def alias(self, label: int, to: int) -> None:
        self.aliases[label] = to

    def do_br(self, imm: object, i: int) -> None:
        self.branch(imm)  # type: ignore[arg-type]

    def do_br_if(self, imm: object, i: int) -> None:
        target = self.ctrls[-1 - imm]  # type: ignore[operator]
        cond = self.pop()
        self.materialize_all()
        lines = self.jump_lines(target)
        if target.kind == LOOP or target.kind == -1:
            self.emit(f"if {cond.code}:")
            for line in lines:
                self.emit(line, 1)
            self.close_chunk()  # what follows is charged only when the branch is not taken
            self.open_chunk()
            return
        nxt = self.new_label()
        if len(lines) == 1:
            self.emit(f"L = @{target.label}@ if {cond.code} else @{nxt}@")
        else:
            self.emit(f"if {cond.code}:")
            for line in lines:
                self.emit(line, 1)
            self.emit("else:")
            self.emit(f"L = @{nxt}@", 1)
        self.start_segment(nxt)

    def do_br_table(self, imm: object, i: int) -> None:
        labels, default = cast("tuple[tuple[int, ...], int]", imm)
        idx = self.pop()
        self.materialize_all()
        targets = [self.ctrls[-1 - d] for d in labels]
        dtarget = self.ctrls[-1 - default]
        all_t = targets + [dtarget]
        simple = all(t.kind == BLOCK or t.kind == IF for t in all_t) and all(
            self.moves(t) is None for t in all_t
        )
        if simple and labels:
            for t in all_t:
                t.used = True
            tup = ", ".join(f"@{t.label}@" for t in targets) + ","
            self.emit(f"_i = {idx.code}")
            self.emit(f"L = ({tup})[_i] if _i < {len(labels)} else @{dtarget.label}@")
        else:
            self.emit(f"_i = {idx.code}")
            for rel, header, d in br_table_plan(labels, default):
                if header is not None:
                    self.emit(header, rel)
                else:
                    for line in self.jump_lines(self.ctrls[-1 - d]):  # type: ignore[operator]
                        self.emit(line, rel)
        self.close_segment_dead()

    def do_return(self, imm: object, i: int) -> None:
        self.materialize_all()
        self.emit(self.return_stmt())
        self.close_segment_dead()

    def do_unreachable(self, imm: object, i: int) -> None:
        self.emit(f"{SAVE}; raise _trap('wasm `unreachable` instruction executed')")
        self.close_segment_dead()

    def do_nop(self, imm: object, i: int) -> None:
        pass

    def do_drop(self, imm: object, i: int) -> None:
        self.pop()

    def do_select(self, imm: object, i: int) -> None:
        c = self.pop()
        b = self.pop()
        a = self.pop()
        self.push(
            f"({a.code} if {c.code} else {b.code})",
            a.deps | b.deps | c.deps,
            max(a.depth, b.depth, c.depth) + 1,
        )

    # -- calls
    def call_args(self, n: int) -> str:
        args = self.stack[len(self.stack) - n :] if n else []
        del self.stack[len(self.stack) - n :]
        self.clean = min(self.clean, len(self.stack))
        return ", ".join(a.code for a in args)

    def emit_call(self, callee: str, ft: FuncType) -> None:
        """A call saves the frame's fuel before and loads it after (the callee charges the same
        counter), ending the chunk there, as wasmtime does."""
        args = self.call_args(len(ft.params))
        call = f"{callee}({args})"
        n = len(ft.results)
        self.close_chunk()
        self.emit(SAVE)
        if n == 0:
            self.emit(call)
        elif n == 1:
            self.push_slot_value(call)
        else:
            base = len(self.stack)
            names = [f"s{base + k}" for k in range(n)]
            for v in names:
                self.invalidate(v, -1)
            self.emit(f"{', '.join(names)} = {call}")
            for v in names:
                self.stack.append(Entry(v, frozenset((v,))))
        self.open_chunk(reload=True)

    def do_call(self, imm: object, i: int) -> None:
        self.emit_call(f"f{imm}", self.info.func_types[cast(int, imm)])

    def do_call_indirect(self, imm: object, i: int) -> None:
        typeidx, table = cast("tuple[int, int]", imm)
        idx = self.pop()
        self.push_slot_value(idx.code)
        slot = self.pop()
        ft = self.info.types[typeidx]
        self.emit_call(f"_callee(T{table}, {slot.code}, {self.info.type_ids[typeidx]})", ft)

    # -- variables
    def do_local_get(self, imm: object, i: int) -> None:
        v = f"l{imm}"
        self.push(v, frozenset((v,)))

    def do_local_set(self, imm: object, i: int) -> None:
        v = f"l{imm}"
        e = self.pop()
        self.invalidate(v, -1)
        self.emit(f"{v} = {e.code}")

    def do_local_tee(self, imm: object, i: int) -> None:
        v = f"l{imm}"
        e = self.pop()
        self.invalidate(v, -1)
        self.emit(f"{v} = {e.code}")
        self.push(v, frozenset((v,)))

    def global_ref(self, idx: int) -> str:
        return f"g{idx}.value" if idx in self.info.global_cells else f"g{idx}"

    def do_global_get(self, imm: object, i: int) -> None:
        self.push_slot_value(self.global_ref(imm))  # type: ignore[arg-type]

    def do_global_set(self, imm: object, i: int) -> None:
        e = self.pop()
        if imm not in self.info.global_cells:
            self.cells_set.add(f"g{imm}")
        self.emit(f"{self.global_ref(imm)} = {e.code}")  # type: ignore[arg-type]

    # -- constants
    def do_i32_const(self, imm: object, i: int) -> None:
        self.push(str(imm), frozenset())

    def float_const(self, value: float) -> str:
        if value != value or value in (float("inf"), float("-inf")):
            name = f"_k{len(self.consts)}_{self.index}"
            self.consts[name] = value
            return name
        return repr(value)

    def do_f32_const(self, imm: object, i: int) -> None:
        self.push(self.float_const(f32_from_bits(imm)), frozenset())  # type: ignore[arg-type]

    def do_f64_const(self, imm: object, i: int) -> None:
        self.push(self.float_const(f64_from_bits(imm)), frozenset())  # type: ignore[arg-type]

    # -- memory
    def ea(self, addr: Entry, offset: int) -> str:
        return f"{addr.code} + {offset}" if offset else addr.code

    def do_load(self, imm: object, i: int, op: int = 0) -> None:
        _align, offset, k = memarg(imm)  # type: ignore[arg-type]
        a = self.pop()
        if offset + ACCESS_SIZE[op] > self.info.memory_limit(k):
            self.static_trap(offset)
            return
        self.push_slot_value((load_template(op, k) if k else LOADS[op]).format(ea=self.ea(a, offset)))

    def do_store(self, imm: object, i: int, op: int = 0) -> None:
        _align, offset, k = memarg(imm)  # type: ignore[arg-type]
        v = self.pop()
        a = self.pop()
        if offset + ACCESS_SIZE[op] > self.info.memory_limit(k):
            self.static_trap(offset)
            return
        self.emit((store_template(op, k) if k else STORES[op]).format(ea=self.ea(a, offset), v=v.code))

    def static_trap(self, offset: int = 0) -> None:
        """An access whose offset alone passes the most memory there can ever be: it always traps,
        and wasmtime compiles it as a trap that saves the fuel first (like ``unreachable``), when
        the offset fits 32 bits; a larger one (a 64-bit memory's) is checked as any other address,
        so its trap loses what the frame used since its last save."""
        if offset > 0xFFFFFFFF:
            self.emit(f"raise _trap({MEMORY_OOB!r})")
        else:
            self.emit(f"{SAVE}; raise _trap({MEMORY_OOB!r})")
        self.close_segment_dead()

    def do_table_size(self, imm: object, i: int) -> None:
        size = self.info.fixed_tables.get(imm)  # type: ignore[call-overload]
        if size is not None:  # a constant, also for fuel (a grow by it is charged up front)
            self.push(str(size), frozenset())
        else:
            self.push_slot_value(f"_tsize(T{imm})")

    def do_memory_size(self, imm: object, i: int) -> None:
        self.push_slot_value(f"(len({memory_name(imm or 0)}) >> 16)")  # type: ignore[arg-type]

    def do_memory_grow(self, imm: object, i: int) -> None:
        k: int = imm or 0  # type: ignore[assignment]
        self.grow_op(f"{grow_name(k)}({{args}})", 1, grow_fail(self.info.memory_address(k)))

    def do_table_grow(self, imm: object, i: int) -> None:
        if self.info.table_address(imm) == I64:  # type: ignore[arg-type]
            self.grow_op(f"_tgrow64(T{imm}, {{args}})", 2, grow_fail(I64))
        else:
            self.grow_op(f"_tgrow(T{imm}, {{args}})", 2)

    def grow_op(self, call: str, nargs: int, fail: int = U32_FAIL) -> None:
        """memory.grow or table.grow (the delta on top): one unit per page or element, as wasmtime
        charges it. A constant delta of at most SMALL_BULK joins the chunk (charged even when the
        grow fails); any other is charged after a grow that succeeded, and then checked."""
        n = self.stack[-1]
        if n.code.isdigit() and int(n.code) <= SMALL_BULK:
            self.chunk_cost += int(n.code)
            self.push_slot_value(call.format(args=self.call_args(nargs)))
            return
        self.emit(f"_d = {n.code}")  # the delta outlives the slot the result goes to
        self.stack[-1] = Entry("_d", frozenset(("_d",)))
        self.close_chunk()
        self.push_slot_value(call.format(args=self.call_args(nargs)))
        self.emit(f"if {self.stack[-1].code} != {fail}:")
        self.emit("fu -= _d", 1)
        self.emit(CHECK, 1)
        self.open_chunk()

    def bulk_fuel(self, op: int, imm: object) -> None:
        """Before memory.fill/copy/init and table.fill/copy/init (the count on top): one unit per
        byte or element, as wasmtime charges it. A constant count costing at most SMALL_BULK joins
        the chunk; any other is charged and checked once the bounds are known to hold, before the
        operation runs (so a huge one is out of fuel, not done; one out of bounds traps first)."""
        n = self.stack[-1]
        if n.code.isdigit() and int(n.code) <= SMALL_BULK:
            self.chunk_cost += int(n.code)
            return
        for pos in range(len(self.stack) - 3, len(self.stack)):
            self.materialize(pos)  # each operand is used twice below
        a, b, count = (e.code for e in self.stack[-3:])
        self.close_chunk()
        self.emit(f"if {_bulk_out_of_bounds(op, imm, a, b, count)}: raise _trap({_bulk_trap(op)!r})")
        self.emit(f"fu -= {count}")
        self.emit(CHECK)
        self.open_chunk()

    def helper_call(self, name: str, nargs: int, extra: str = "", result: bool = False) -> None:
        args = self.call_args(nargs)
        sep = ", " if extra and args else ""
        code = f"{name}({extra}{sep}{args})"
        if result:
            self.push_slot_value(code)
        else:
            self.emit(code)

    # -- references and tables
    def do_ref_null(self, imm: object, i: int) -> None:
        self.push("None", frozenset())

    def do_ref_is_null(self, imm: object, i: int) -> None:
        a = self.pop()
        self.push(f"({a.code} is None)", a.deps, a.depth + 1)

    def do_ref_func(self, imm: object, i: int) -> None:
        self.push_slot_value(f"_ref({imm})")


def _bind(name: str, helper: str, nargs: int, result: bool, extra: str):
    def handler(t: FunctionTranslator, imm: object, i: int) -> None:
        t.helper_call(helper, nargs, extra.format(imm=imm, a=_first(imm), b=_second(imm)), result)

    handler.__name__ = name
    return handler


def _first(imm: object) -> object:
    return imm[0] if isinstance(imm, tuple) else imm


def _second(imm: object) -> object:
    return imm[1] if isinstance(imm, tuple) else imm


# Handlers of structure in unreachable code, beside block/loop/if/else/end (compiler/exceptions.py).
_DEAD_STRUCTURE: dict[int, Any] = {}
_END_HOOKS: dict[int, Any] = {}  # the end of constructs other than block/loop/if, by kind
# The flat shape's exception handlers: the dispatch wrapped around the segments (exceptions.py).
FLAT_HANDLERS: list[Any] = []
_HANDLERS = {
    0x00: lambda t, imm, i: t.do_unreachable(imm, i),
    0x01: FunctionTranslator.do_nop,
    BLOCK: lambda t, imm, i: t.do_block(imm, i),
    LOOP: lambda t, imm, i: t.do_loop(imm, i),
    IF: lambda t, imm, i: t.do_if(imm, i),
    ELSE: lambda t, imm, i: t.do_else(t.ctrls[-1]),
    END: lambda t, imm, i: t.do_end(t.ctrls[-1]),
    0x0C: lambda t, imm, i: t.do_br(imm, i),
    0x0D: lambda t, imm, i: t.do_br_if(imm, i),
    0x0E: lambda t, imm, i: t.do_br_table(imm, i),
    0x0F: lambda t, imm, i: t.do_return(imm, i),
    0x10: FunctionTranslator.do_call,
    0x11: FunctionTranslator.do_call_indirect,
    0x1A: FunctionTranslator.do_drop,
    0x1B: FunctionTranslator.do_select,
    0x1C: FunctionTranslator.do_select,
    0x20: FunctionTranslator.do_local_get,
    0x21: FunctionTranslator.do_local_set,
    0x22: FunctionTranslator.do_local_tee,
    0x23: FunctionTranslator.do_global_get,
    0x24: FunctionTranslator.do_global_set,
    0x41: FunctionTranslator.do_i32_const,
    0x42: FunctionTranslator.do_i32_const,
    0x43: FunctionTranslator.do_f32_const,
    0x44: FunctionTranslator.do_f64_const,
    0x3F: FunctionTranslator.do_memory_size,
    0x40: FunctionTranslator.do_memory_grow,
    0xD0: FunctionTranslator.do_ref_null,
    0xD1: FunctionTranslator.do_ref_is_null,
    0xD2: FunctionTranslator.do_ref_func,
    0x25: _bind("table_get", "_tget", 1, True, "T{imm}"),
    0x26: _bind("table_set", "_tset", 2, False, "T{imm}"),
    NAMES["table.size"]: FunctionTranslator.do_table_size,
    NAMES["table.grow"]: FunctionTranslator.do_table_grow,
    NAMES["table.fill"]: _bind("table_fill", "_tfill", 3, False, "T{imm}"),
    NAMES["table.copy"]: _bind("table_copy", "_tcopy", 3, False, "T{a}, T{b}"),
    NAMES["table.init"]: _bind("table_init", "_tinit", 3, False, "T{b}, _E, {a}"),
    NAMES["elem.drop"]: _bind("elem_drop", "_edrop", 0, False, "_E, {imm}"),
    NAMES["memory.init"]: lambda t, imm, i: t.helper_call(
        "_minit", 3, f"{memory_name(imm[1])}, _D, {imm[0]}"
    ),
    NAMES["data.drop"]: _bind("data_drop", "_ddrop", 0, False, "_D, {imm}"),
    NAMES["memory.copy"]: lambda t, imm, i: t.helper_call(copy_call(*imm)[0], 3, copy_call(*imm)[1]),
    NAMES["memory.fill"]: lambda t, imm, i: t.helper_call("_mfill", 3, memory_name(imm or 0)),
}
_BULK = [
    NAMES[name]
    for name in ("table.fill", "table.copy", "table.init", "memory.init", "memory.copy", "memory.fill")
]
for _op in _BULK:
    _HANDLERS[_op] = (lambda op, h: lambda t, imm, i: (t.bulk_fuel(op, imm), h(t, imm, i)))(
        _op, _HANDLERS[_op]
    )


def _bulk_out_of_bounds(op: int, imm: Any, a: str, b: str, n: str) -> str:
    """The condition under which a bulk operation traps, from its operands (the runtime helpers
    check the same before they act)."""
    if op == NAMES["memory.fill"]:
        return f"{a} + {n} > len({memory_name(imm or 0)})"
    if op == NAMES["memory.copy"]:
        dst, src = (memory_name(k) for k in imm)
        return f"{b} + {n} > len({src}) or {a} + {n} > len({dst})"
    if op == NAMES["memory.init"]:
        return f"{b} + {n} > len(_D[{imm[0]}]) or {a} + {n} > len({memory_name(imm[1])})"
    if op == NAMES["table.fill"]:
        return f"{a} + {n} > len(T{imm}.elems)"
    if op == NAMES["table.copy"]:
        dst, src = imm
        return f"{b} + {n} > len(T{src}.elems) or {a} + {n} > len(T{dst}.elems)"
    elem, table = imm
    return f"{b} + {n} > len(_E[{elem}]) or {a} + {n} > len(T{table}.elems)"


def _bulk_trap(op: int) -> str:
    memory = op in (NAMES["memory.fill"], NAMES["memory.copy"], NAMES["memory.init"])
    return MEMORY_OOB if memory else TABLE_OOB


_HANDLERS.update(GC_HANDLERS)  # typed function references and GC (compiler/gc.py)
for _op in LOADS:
    _HANDLERS[_op] = (lambda op: lambda t, imm, i: t.do_load(imm, i, op))(_op)
for _op in STORES:
    _HANDLERS[_op] = (lambda op: lambda t, imm, i: t.do_store(imm, i, op))(_op)
_HANDLERS.update(SIMD_HANDLERS)


SMALL_SWITCH = 8  # br_table targets tested one after another; more go through a tree of ranges


def br_table_plan(labels: tuple[int, ...], default: int) -> list[tuple[int, str | None, int | None]]:
    """How a br_table on ``_i`` picks its target, as lines: (relative indent, an ``if``/``elif``/
    ``else`` header, None) or (relative indent, None, label depth to jump to). Up to SMALL_SWITCH
    targets are tested in turn; past that, a binary tree over the runs of indices that share a
    target, so a switch of hundreds of cases costs a handful of comparisons."""
    cases = br_table_cases(labels, default)
    if len(cases) <= SMALL_SWITCH:
        if not cases:
            return [(0, None, default)]
        plan: list[tuple[int, str | None, int | None]] = []
        for k, (d, cond) in enumerate(cases):
            plan += [(0, f"{'if' if k == 0 else 'elif'} {cond}:", None), (1, None, d)]
        return plan + [(0, "else:", None), (1, None, default)]
    runs: list[tuple[int, int]] = []  # (first index, label depth), in index order
    for n, d in enumerate(labels):
        if not runs or runs[-1][1] != d:
            runs.append((n, d))
    if runs[-1][1] != default:
        runs.append((len(labels), default))  # every index past the table

    out: list[tuple[int, str | None, int | None]] = []

    def tree(lo: int, hi: int, level: int) -> None:
        if hi - lo == 1:
            out.append((level, None, runs[lo][1]))
            return
        mid = (lo + hi) // 2
        out.append((level, f"if _i < {runs[mid][0]}:", None))
        tree(lo, mid, level + 1)
        out.append((level, "else:", None))
        tree(mid, hi, level + 1)

    tree(0, len(runs), 0)
    return out


def br_table_cases(labels: tuple[int, ...], default: int) -> list[tuple[int, str]]:
    """(label depth, condition on ``_i``) for each non-default target of a br_table, in order."""
    by_target: dict[int, list[int]] = {}
    for n, d in enumerate(labels):
        if d != default:
            by_target.setdefault(d, []).append(n)
    return [
        (d, f"_i == {ns[0]}" if len(ns) == 1 else f"_i in {frozenset(ns)!r}") for d, ns in by_target.items()
    ]


_CHARGE = re.compile(r"fu -= (\d+)")
_RELOAD = re.compile(r"fu = _fuel - (\d+)")


def fuse_fuel(lines: list[tuple[int, str, int]]) -> list[tuple[int, str, int]]:
    """Drop empty lines and fuse fuel statements that follow each other into one (fewer bytecodes
    on every call and loop turn; the same counts): a check and the charge after it, a charge or a
    reload and the save after it."""
    out: list[tuple[int, str, int]] = []
    for ind, txt, off in lines:
        if not txt:
            continue
        if out and out[-1][0] == ind:
            prev = out[-1][1]
            charge = _CHARGE.fullmatch(txt)
            if charge and prev in (CHECK, ENTRY):
                c = int(charge.group(1))
                start = f"fu - {c}" if prev == CHECK else f"_fuel - {c + 1}"
                out[-1] = (ind, f"if (fu := {start}) <= -{c}: fu = _refuel(fu + {c}) - {c}", out[-1][2])
                continue
            if txt.startswith(SAVE) and (txt == SAVE or txt[len(SAVE)] == ";"):
                # a save is always followed by a call, a return or a raise, and a call by a reload:
                # the count is dead after it, so the charge before it goes straight to ``_fuel``
                rest = txt[len(SAVE) :]
                if m := _CHARGE.fullmatch(prev):
                    out[-1] = (ind, f"_fuel = fu - {m.group(1)}{rest}", out[-1][2])
                    continue
                if m := _RELOAD.fullmatch(prev):
                    out[-1] = (ind, f"_fuel -= {m.group(1)}{rest}", out[-1][2])
                    continue
                if prev == "fu = _fuel":
                    if rest:
                        out[-1] = (ind, rest[2:], out[-1][2])
                    else:
                        out.pop()
                    continue
        out.append((ind, txt, off))
    return out


def _render_placeholder(text: str, index: dict[int, int]) -> str:
    if "@" not in text:
        return text
    parts = text.split("@")
    for k in range(1, len(parts), 2):
        parts[k] = str(index[int(parts[k])])
    return "".join(parts)


HOT_BACK_EDGES = 8  # a loop head this many backward branches go to is tested before the tree
MAX_HOISTED = 2


def hot_loop_heads(t: FunctionTranslator, index: dict[int, int]) -> list[int]:
    """The segments (positions) of the loop heads most backward branches go to, when many do: an
    interpreter's dispatch loop, which every case of its ``switch`` goes back to.

    Every backward branch goes round the dispatch loop, and in a big function finding its segment
    costs a descent of the dispatch tree; testing these few first, at the top of the loop, makes
    the commonest jump in the function one comparison. A hoisted segment reached by falling
    through goes round the loop once more to find its test: a cost paid once per loop entry."""
    counts: dict[int, int] = {}
    for seg in t.segments:
        lines = seg.lines
        for k in range(len(lines) - 1):
            text = lines[k][1]
            if lines[k + 1][1] == "continue" and text.startswith("L = @") and text.endswith("@"):
                pos = index.get(int(text[5:-1]), -1)
                if pos >= 0:
                    counts[pos] = counts.get(pos, 0) + 1
    hot = sorted((n, pos) for pos, n in counts.items() if n >= HOT_BACK_EDGES)
    return [pos for _n, pos in hot[::-1][:MAX_HOISTED]]


def declarations(cells_set: set[str], stack_guard: bool) -> str:
    """A function's first statement: the state cells it assigns (``compiler/contract.py``: the fuel
    count and the Wasm globals it sets) and, for a big frame, the stack budget."""
    cells = f"nonlocal {', '.join([FUEL, *sorted(cells_set)])}"
    return f"{cells}; global _stk" if stack_guard else cells


def render_function(t: FunctionTranslator, nparams: int) -> tuple[list[str], list[int]]:
    """Assemble the Python source lines of the function, with the Wasm offset of each line."""
    name = f"f{t.index}"
    params = ", ".join(f"l{k}" for k in range(nparams))
    out: list[str] = [f"def {name}({params}):"]
    offs: list[int] = [t.code.offset]
    frame = nparams + len(t.code.locals) + t.nslots()
    guard = frame > BIG_FRAME
    out.append("    " + declarations(t.cells_set, guard))
    offs.append(t.code.offset)
    if t.code.locals:
        zeros = ["None" if ty not in _ZERO else _ZERO[ty] for ty in t.code.locals]
        out.append("    " + "; ".join(f"l{nparams + k} = {z}" for k, z in enumerate(zeros)))
        offs.append(t.code.offset)
    aliases = t.aliases
    index: dict[int, int] = {}
    for pos, seg in enumerate(t.segments):
        index[seg.label] = pos
    for a, b in aliases.items():
        index[a] = index[b]
    for lbl in range(t.nlabels):
        index.setdefault(lbl, -1)
    single = len(t.segments) == 1
    if not single:
        out.append("    L = 0")
        offs.append(t.code.offset)
    pad = ""
    if guard:
        out.append(f"    _stk += {frame}")
        out.append(f"    if _stk > {STACK_BUDGET}: _stk -= {frame}; raise _trap('call stack exhausted')")
        out.append("    try:")
        offs.extend([t.code.offset] * 3)
        pad = "    "
    # Without backward branches the checks run once, top to bottom: no loop is needed. Past GROUP
    # segments they sit in a binary tree of ``L <`` tests, in order, GROUP to a leaf: a branch costs
    # a descent of the tree and at most GROUP tests, however many segments there are; a segment
    # falling through to the next one finds its test right after it, or (at the end of a leaf)
    # goes round the loop once more.
    tree = not single and len(t.segments) > GROUP
    looping = tree or any(txt == "continue" for seg in t.segments for _i, txt, _o in seg.lines)
    handlers = FLAT_HANDLERS[0](t, index) if FLAT_HANDLERS else None
    if handlers:  # exception handlers: the dispatch loop runs inside a try, in a loop
        looping = True
        out.extend([pad + "    while True:", pad + "        try:"])
        offs.extend([t.code.offset] * 2)
        pad += "        "
    if looping:
        out.append(pad + "    while True:")
        offs.append(t.code.offset)
    top = (1 + looping) + (1 if guard else 0) + (2 if handlers else 0)

    def emit_segment(pos: int, level: int) -> None:
        seg = t.segments[pos]
        base = level
        if not single:
            out.append(f"{'    ' * level}if L == {pos}:")
            offs.append(seg.lines[0][2] if seg.lines else t.code.offset)
            base = level + 1
        body = fuse_fuel(seg.lines)
        if not body and not single:
            body = [(0, "pass", t.code.offset)]
        for ind, txt, off in body:
            out.append("    " * (base + ind) + _render_placeholder(txt, index))
            offs.append(off)

    hoisted = hot_loop_heads(t, index) if tree else []

    def emit_tree(lo: int, hi: int, level: int) -> None:
        if hi - lo <= GROUP:
            for pos in range(lo, hi):
                if pos not in hoisted:
                    emit_segment(pos, level)
            return
        mid = lo + (hi - lo + 2 * GROUP - 1) // (2 * GROUP) * GROUP
        out.append(f"{'    ' * level}if L < {mid}:")
        offs.append(t.code.offset)
        emit_tree(lo, mid, level + 1)
        out.append(f"{'    ' * level}else:")
        offs.append(t.code.offset)
        emit_tree(mid, hi, level + 1)

    for pos in hoisted:  # tested first on every turn of the loop, before the tree
        emit_segment(pos, top)
    emit_tree(0, len(t.segments), top)
    if handlers:
        for line in handlers:
            out.append(pad + _render_placeholder(line, index))
            offs.append(t.code.offset)
    if guard:
        out.append("    finally:")
        out.append(f"        _stk -= {frame}")
        offs.extend([t.code.offset] * 2)
    return out, offs
