"""The fast shape for functions whose nesting Python can compile: Wasm control flow as Python's.

A loop that some branch targets becomes ``while True: ...; break`` (a branch to it is ``continue``),
a targeted block or if is wrapped in a ``while True: ...; break`` so a branch out is ``break``, and an
if is a Python if/else. A branch that leaves several Python loops sets ``_b`` to its target and
breaks; a check after each loop passes it on. When the nesting would pass CPython's limits (20
nested loops, 100 indentation levels) the flat translator takes the function instead.
"""

from __future__ import annotations

from typing import cast

from ..binary.opcodes import IF, LOOP
from . import exceptions, tailcall
from .translate import (
    BIG_FRAME,
    CHECK,
    GROUP,
    SMALL_SWITCH,
    STACK_BUDGET,
    Ctrl,
    FunctionTranslator,
    Segment,
    br_table_plan,
    declarations,
    fuse_fuel,
)

MAX_PY_LOOPS = 17  # CPython allows 20 nested blocks; the stack guard's try takes one
MAX_INDENT = 90
CHAIN_MIN = 8  # directly nested blocks (a C switch) from this many on are one dispatch loop
# A function too deep for Python's 20 nested blocks is tried again with shorter chains made stage
# loops: a run of blocks opened one inside the other takes one Python loop however long it is, and
# compilers nest runs of two or three targeted blocks (a chain of conditions) as often as switches.
# QuickJS's and MicroPython's interpreter loops need it; only past the last try is a function flat.
CHAIN_RETRIES = (CHAIN_MIN, 4, 2)


class BlockChain:
    """Blocks opened one right inside the other, B_0 (outermost) ... B_{n-1}: the shape a C
    ``switch`` compiles to, a br_table inside the innermost and one case's code after each end.
    Nested Python loops for them would pass CPython's limit at 20 and make a branch break out
    level by level, so the whole chain is one ``while True`` loop over stages: stage n is the code
    inside B_{n-1}, stage k (n > k > 0) the code after the end of B_k, stage 0 leaves the loop. A
    branch to B_k sets the stage variable to k and goes round; the stages sit in a tree of
    comparisons, GROUP to a leaf, in descending order, so that falling through from stage k to
    k - 1 finds its test right after it."""

    def __init__(self, n: int, label: int, loop: Ctrl) -> None:
        self.n = n
        self.var = f"_c{label}"
        self.loop = loop  # the Python loop standing for every block of the chain
        self.base = 0  # the indentation of the loop's body
        self.events = _stage_tree(self.var, n)
        self.next_event = 0
        self.leaf_start = 0  # the line where the current stage's code begins
        self.stage = n  # the stage whose code is being emitted
        self.leaf_indent = 0  # the indentation of that code


def _stage_tree(var: str, n: int) -> list[tuple[int, str | None, int]]:
    """(level, header, -1) and (level, None, stage) items, in source order, for stages n..0.

    Stage n, the code inside the innermost block, is tested first, before the tree: every entry to
    the chain begins there (an interpreter's dispatch loop enters it once per bytecode, and its
    br_table is there), so entering costs one comparison instead of a descent of the tree."""
    out: list[tuple[int, str | None, int]] = [(0, None, n)]

    def tree(hi: int, lo: int, level: int) -> None:
        count = hi - lo + 1
        if count <= GROUP:
            out.extend((level, None, k) for k in range(hi, lo - 1, -1))
            return
        mid = hi - (count + 2 * GROUP - 1) // (2 * GROUP) * GROUP + 1
        out.append((level, f"if {var} >= {mid}:", -1))
        tree(hi, mid, level + 1)
        out.append((level, "else:", -1))
        tree(mid - 1, lo, level + 1)

    tree(n - 1, 0, 0)
    return out


class TooDeep(Exception):
    """The function nests deeper than CPython compiles: use the flat shape."""


class StructuredTranslator(FunctionTranslator):
    def __init__(self, *args: object, chain_min: int = CHAIN_MIN) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.chain_min = chain_min  # runs of directly nested blocks this long become stage loops
        self.indent = 0
        self.pyloops: list[Ctrl] = []
        self.crossed: dict[int, set[int]] = {}  # id(ctrl) -> labels of outer targets branched through it
        self.uses_b = False
        self.header_at: list[int] = []
        self.refunds: list[tuple[int, int]] = []  # (line, chunk cost so far) of each br_if's refund
        self.chains: dict[int, int] = {}  # instruction index -> length of the block chain it opens
        self.skip_blocks = 0  # blocks of a chain already opened, still to come in the body
        self.other_blocks = 0  # Python blocks open that are not loops (exception handlers' try/except)

    # ---- emission at the current indentation ----------------------------------------------------
    def emit(self, text: str, indent: int = 0) -> None:
        self.segments[-1].lines.append((self.indent + indent, text, self.offset))

    def new_chunk(self) -> None:
        self.close_chunk()
        self.open_chunk()

    def open_block(self, header: str) -> None:
        self.emit(header)
        self.indent += 1
        if self.indent > MAX_INDENT:
            raise TooDeep()
        self.header_at.append(len(self.segments[-1].lines))

    def close_block(self) -> None:
        start = self.header_at.pop()
        if not any(txt for _i, txt, _o in self.segments[-1].lines[start:]):
            self.emit("pass")
        self.indent -= 1

    def open_pyloop(self, c: Ctrl) -> None:
        self.open_block("while True:")
        self.pyloops.append(c)
        if len(self.pyloops) + self.other_blocks > MAX_PY_LOOPS:
            raise TooDeep()

    def count_blocks(self, n: int) -> None:
        """``n`` more (or fewer) Python blocks that are not loops: CPython's limit counts them too."""
        self.other_blocks += n
        if len(self.pyloops) + self.other_blocks > MAX_PY_LOOPS:
            raise TooDeep()

    def close_pyloop(self, c: Ctrl, final_break: bool = True) -> None:
        """End ``c``'s Python loop, then pass on branches bound further out."""
        if final_break:
            self.emit("break")
        self.close_block()
        self.pyloops.pop()
        crossed = self.crossed.pop(id(c), set())
        if not crossed:
            return
        outer = self.pyloops[-1]
        self.open_block("if _b:")
        if outer.label in crossed:
            if crossed == {outer.label}:
                self.emit("_b = 0")
                self.emit("continue" if outer.kind == LOOP else "break")
            else:
                self.open_block(f"if _b == {outer.label}:")
                self.emit("_b = 0")
                self.emit("continue" if outer.kind == LOOP else "break")
                self.close_block()
                self.emit("break")
        else:
            self.emit("break")
        self.close_block()

    # ---- branches -------------------------------------------------------------------------------
    def transfer(self, target: Ctrl) -> list[str]:
        chain = target.chain
        if isinstance(chain, BlockChain):  # go round the chain's loop to the stage after the block
            return [f"{chain.var} = {target.stage}", *self.transfer(chain.loop)]
        if self.pyloops and self.pyloops[-1] is target:
            return ["continue" if target.kind == LOOP else "break"]
        self.uses_b = True
        for p in reversed(self.pyloops):
            if p is target:
                break
            self.crossed.setdefault(id(p), set()).add(target.label)
        return [f"_b = {target.label}", "break"]

    def do_br_if(self, imm: object, i: int) -> None:
        """The fall-through path stays in the current fuel chunk (one charge per loop iteration);
        the taken path refunds what the chunk charges for the instructions after the branch."""
        target = self.ctrls[-1 - imm]  # type: ignore[operator]
        cond = self.pop()
        self.materialize_all()
        self.open_block(f"if {cond.code}:")
        self.emit("")
        self.refunds.append((len(self.segments[-1].lines) - 1, self.chunk_cost))
        for line in self.jump_lines(target):
            self.emit(line)
        self.close_block()

    def open_chunk(self, reload: bool = False) -> None:
        super().open_chunk(reload)
        self.refunds = []

    def close_chunk(self) -> None:
        if self.chunk_line >= 0:
            lines = self.segments[-1].lines
            for at, cost in self.refunds:
                ind, _t, off = lines[at]
                extra = self.chunk_cost - cost
                lines[at] = (ind, f"fu += {extra}" if extra else "", off)
            self.refunds = []
        super().close_chunk()

    def do_br_table(self, imm: object, i: int) -> None:
        labels, default = cast("tuple[tuple[int, ...], int]", imm)
        idx = self.pop()
        self.materialize_all()
        targets = [self.ctrls[-1 - d] for d in (*labels, default)]
        # the chain most targets are blocks of (a C switch, perhaps with a few exits), counted in
        # one pass: a br_table may have any number of labels
        count: dict[int, int] = {}
        for t in targets:
            if t.chain is not None:
                count[id(t.chain)] = count.get(id(t.chain), 0) + 1
        if count:
            top = max(count, key=count.__getitem__)
            chain = next(t.chain for t in targets if id(t.chain) == top)
            inside = count[top]
            if isinstance(chain, BlockChain) and (
                inside == len(targets) or inside * 2 > len(targets) > SMALL_SWITCH
            ):
                self.chain_table(chain, idx.code, labels, targets)
                return
        self.emit(f"_i = {idx.code}")
        plan = br_table_plan(labels, default)
        if self.indent + max(rel for rel, _h, _d in plan) > MAX_INDENT:
            raise TooDeep()
        for rel, header, d in plan:
            if header is not None:
                self.emit(header, rel)
            else:
                for line in self.jump_lines(self.ctrls[-1 - d]):  # type: ignore[operator]
                    self.emit(line, rel)
        self.dead = True

    def chain_table(
        self, chain: BlockChain, index: str, labels: tuple[int, ...], targets: list[Ctrl]
    ) -> None:
        """A br_table whose targets are the blocks of one chain (a C switch), or mostly so (an
        interpreter's opcode switch with a few cases that leave it): the stage comes straight from
        a tuple; the targets outside the chain get negative codes, tested one after another."""
        others: dict[int, Ctrl] = {}  # by identity, in the order first met: target k has code -1 - k
        code_of: dict[int, int] = {}
        codes: list[str] = []
        for t in targets:
            if t.chain is chain:
                t.used = t.branched = True
                codes.append(str(t.stage))
                continue
            if id(t) not in others:
                code_of[id(t)] = -1 - len(others)
                others[id(t)] = t
            codes.append(str(code_of[id(t)]))
        var = chain.var
        if labels:
            self.emit(f"_i = {index}")
            self.emit(f"{var} = ({', '.join(codes[:-1])},)[_i] if _i < {len(labels)} else {codes[-1]}")
        else:
            self.emit(f"{var} = {codes[-1]}")
        if others and self.indent + 1 > MAX_INDENT:
            raise TooDeep()
        for key, o in others.items():
            self.emit(f"if {var} == {code_of[key]}:")
            for line in self.jump_lines(o):
                self.emit(line, 1)
        self.into_stage_tree(chain)

    def into_stage_tree(self, chain: BlockChain) -> None:
        """After a br_table set the chain's stage: go to it. From the top level of the entry
        stage, which is tested before the tree, falling out of its ``if`` reaches the tree (what
        follows in the stage is dead), so neither a go round the loop nor the entry test is paid."""
        if not (
            chain.stage == chain.n and self.indent == chain.leaf_indent and self.pyloops[-1] is chain.loop
        ):
            for line in self.transfer(chain.loop):
                self.emit(line)
        self.dead = True

    # ---- structured control ---------------------------------------------------------------------
    def do_block(self, imm: object, i: int) -> None:
        if self.skip_blocks:
            self.skip_blocks -= 1  # opened with its chain
            return
        n = self.chains.get(i, 0)
        if n:
            self.open_chain(n)
            return
        p, r = self.block_sig(imm)
        c = Ctrl(0x02, len(self.stack) - p, p, r, self.new_label())
        self.ctrls.append(c)
        if i in self.loop_used:
            self.materialize_all()
            self.open_pyloop(c)
            c.used = True

    # ---- block chains (C switches) --------------------------------------------------------------
    def prescan(self) -> None:
        super().prescan()
        body = self.code.body
        i = 0
        while i < len(body):
            if body[i][0] == 0x02 and body[i][1] is None:
                j = i
                while j < len(body) and body[j][0] == 0x02 and body[j][1] is None:
                    j += 1
                if j - i >= self.chain_min:
                    self.chains[i] = j - i
                i = j
            else:
                i += 1

    def open_chain(self, n: int) -> None:
        self.materialize_all()
        self.close_chunk()
        loop = Ctrl(LOOP, len(self.stack), 0, 0, self.new_label())
        chain = BlockChain(n, loop.label, loop)
        for k in range(n):  # B_0 outermost: ending B_k runs stage k
            self.ctrls.append(Ctrl(0x02, len(self.stack), 0, 0, self.new_label(), chain=chain, stage=k))
        self.skip_blocks = n - 1
        self.emit(f"{chain.var} = {n}")
        self.open_pyloop(loop)
        chain.base = self.indent
        self.enter_stage(chain, n)

    def enter_stage(self, chain: BlockChain, stage: int) -> None:
        """Emit the tree's tests up to ``stage``'s leaf and start its code."""
        while True:
            level, header, k = chain.events[chain.next_event]
            chain.next_event += 1
            self.indent = chain.base + level
            if header is not None:
                self.emit(header)
                continue
            assert k == stage, (k, stage)
            self.emit(f"if {chain.var} == {k}:")
            self.indent += 1
            if self.indent > MAX_INDENT:
                raise TooDeep()
            chain.leaf_start = len(self.segments[-1].lines)
            chain.stage, chain.leaf_indent = stage, self.indent
            self.open_chunk()
            return

    def end_chain_block(self, c: Ctrl, live: bool) -> None:
        """The end of B_k: the stage before it falls through to stage k (or ends the loop)."""
        chain = c.chain
        assert isinstance(chain, BlockChain)
        if live:
            self.materialize_all()
            self.emit(f"{chain.var} = {c.stage}")
        self.close_chunk()
        if not any(txt for _i, txt, _o in self.segments[-1].lines[chain.leaf_start :]):
            self.emit("pass")
        self.enter_stage(chain, c.stage)
        reach = live or c.branched
        if c.stage == 0:  # the end of the outermost block: leave the loop
            self.emit("break")
            self.indent = chain.base
            self.close_chunk()
            self.close_pyloop(chain.loop, final_break=False)
            self.open_chunk()
        self.dead = not reach
        self.reset_stack(c.height)

    def do_loop(self, imm: object, i: int) -> None:
        p, r = self.block_sig(imm)
        c = Ctrl(LOOP, len(self.stack) - p, p, r, self.new_label())
        self.ctrls.append(c)
        if i in self.loop_used:
            self.materialize_all()
            self.close_chunk()
            self.open_pyloop(c)
            c.used = True
            self.emit(CHECK)
            self.open_chunk()
        else:
            self.check_here()  # a loop head even when nothing branches back

    def do_if(self, imm: object, i: int) -> None:
        p, r = self.block_sig(imm)
        cond = self.pop()
        self.materialize_all()
        c = Ctrl(IF, len(self.stack) - p, p, r, self.new_label())
        self.ctrls.append(c)
        if i in self.loop_used:
            self.open_pyloop(c)
            c.used = True
        if i in self.ifs_with_else:
            # The then-branch's cost goes on the chunk that is open here; the else-branch refunds it.
            c.fuel_mark = (self.chunk_line, self.chunk_cost)
            self.open_block(f"if {cond.code}:")
            return
        self.close_chunk()
        self.open_block(f"if {cond.code}:")
        self.open_chunk()

    def do_else(self, c: Ctrl) -> None:
        if not self.dead:
            c.end_reachable = True
            self.materialize_all()
        mark_line, mark_cost = c.fuel_mark
        then_cost = (
            self.chunk_cost if self.chunk_line == mark_line else self.closed_costs[mark_line]
        ) - mark_cost
        self.close_chunk()
        self.close_block()
        self.open_block("else:")
        self.open_chunk()
        self.chunk_cost = -then_cost
        c.has_else = True
        self.dead = False
        self.reset_stack(c.height + c.nparams)

    def do_end(self, c: Ctrl) -> None:
        self.ctrls.pop()
        if c.ghost:
            return
        if c.kind in exceptions.TRY_KINDS:
            exceptions.end(self, c)
            return
        live = not self.dead
        if c.chain is not None:
            self.end_chain_block(c, live)
            return
        if c.kind == -1:
            if live:
                self.materialize_all()
                self.emit(self.return_stmt())
            self.dead = True
            return
        if live:
            self.materialize_all()
        if c.kind == IF:
            reach = live or c.end_reachable or not c.has_else or c.branched
            self.close_chunk()
            self.close_block()
            if c in self.pyloops:
                self.close_pyloop(c)
            self.open_chunk()
            self.dead = not reach
            self.reset_stack(c.height + c.nresults)
            return
        if c in self.pyloops:
            reach = live or (c.kind != LOOP and c.branched)
            self.close_chunk()
            self.close_pyloop(c)
            self.open_chunk()
            self.dead = not reach
            self.reset_stack(c.height + c.nresults)
            return
        # a block or loop nothing branches to: its end is reached only by falling through
        self.dead = not live
        if live:
            self.reset_stack(c.height + c.nresults)

    def render(self, nparams: int) -> tuple[list[str], list[int]]:
        return _render_structured(self, nparams)


def _render_structured(t: StructuredTranslator, nparams: int) -> tuple[list[str], list[int]]:
    out = [f"def f{t.index}({', '.join(f'l{k}' for k in range(nparams))}):"]
    offs = [t.code.offset]
    frame = nparams + len(t.code.locals) + t.nslots()
    guard = frame > BIG_FRAME
    out.append("    " + declarations(t.cells_set, guard))
    offs.append(t.code.offset)
    pre = []
    if t.code.locals:
        zeros = [
            {"i32": "0", "i64": "0", "f32": "0.0", "f64": "0.0", "v128": "0"}.get(ty, "None")
            for ty in t.code.locals
        ]
        pre.append("; ".join(f"l{nparams + k} = {z}" for k, z in enumerate(zeros)))
    if t.uses_b:
        pre.append("_b = 0")
    if getattr(t, "uses_dg", False):
        pre.append("_dg = 0")  # the target of a legacy delegate (compiler/exceptions.py)
    for line in pre:
        out.append("    " + line)
        offs.append(t.code.offset)
    base = 1
    if guard:
        out.append(f"    _stk += {frame}")
        out.append(f"    if _stk > {STACK_BUDGET}: _stk -= {frame}; raise _trap('call stack exhausted')")
        out.append("    try:")
        offs.extend([t.code.offset] * 3)
        base = 2
    body = fuse_fuel(t.segments[0].lines)
    for ind, txt, off in body:
        out.append("    " * (base + ind) + txt)
        offs.append(off)
    if guard:
        out.append("    finally:")
        out.append(f"        _stk -= {frame}")
        offs.extend([t.code.offset] * 2)
    return out, offs


def translate_function(
    info: object, index: int, code: object, ftype: object
) -> tuple[list[str], list[int], dict]:
    """Python source lines (and the Wasm offset of each) for one function, in the best shape that
    compiles: structured, with ever shorter block chains as stage loops (``CHAIN_RETRIES``), else flat."""
    t: FunctionTranslator
    for chain_min in CHAIN_RETRIES:
        try:
            t = StructuredTranslator(info, index, code, ftype, chain_min=chain_min)
            lines, offs = t.translate()
            break
        except TooDeep:
            continue
    else:
        t = FunctionTranslator(info, index, code, ftype)  # type: ignore[arg-type]
        lines, offs = t.translate()
    lines, offs = tailcall.finish(t, lines, offs)
    return lines, offs, t.consts


__all__ = ["StructuredTranslator", "translate_function", "Segment"]
