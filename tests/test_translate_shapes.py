"""Every valid function translates, however deep its control flow: CPython refuses more than 20
nested loops or 100 indentation levels, so a run of nested blocks becomes one stage loop and only
functions too deep even so take the flat shape. Each case is checked
against the answer the Wasm semantics give, on both shapes where both apply."""

from __future__ import annotations

import anyio
import pytest
from wat import wat

import asyncwasm
from asyncwasm.compiler import structured


def _switch(depth: int) -> str:
    """A C-style switch: br_table over `depth` nested blocks; leaving block $bK returns
    (depth - 1 - K) * 10 + 7 (the innermost block's end comes first)."""
    opens = "".join(f"(block $b{k}\n" for k in range(depth))
    table = " ".join(f"$b{k}" for k in range(depth - 1))
    body = f"(br_table {table} $b{depth - 1} (local.get $x))"
    closes = "".join(f")\n(return (i32.const {k * 10 + 7}))\n" for k in range(depth))
    return f"""(module (func (export "switch") (param $x i32) (result i32)
        {opens}{body}{closes}(i32.const -1)))"""


def _nested_loops(depth: int) -> str:
    """`depth` nested counted loops; the innermost 8 run twice, the others once."""
    head = ""
    tail = ""
    for k in range(depth):
        head += f"(local.set $i{k} (i32.const 0)) (loop $l{k}\n"
        runs = 2 if k >= depth - 8 else 1
        tail = (
            f"(local.set $i{k} (i32.add (local.get $i{k}) (i32.const 1)))"
            f"(br_if $l{k} (i32.lt_u (local.get $i{k}) (i32.const {runs}))))\n"
        ) + tail
    locals_ = " ".join(f"(local $i{k} i32)" for k in range(depth))
    inner = "(local.set $n (i32.add (local.get $n) (i32.const 1)))"
    return f"""(module (func (export "count") (result i32) (local $n i32) {locals_}
        {head}{inner}{tail}(local.get $n)))"""


def _nested_ifs(depth: int) -> str:
    """`depth` nested ifs with results: the value says how deep the condition held."""
    expr = "(i32.const 0)"
    for k in reversed(range(depth)):
        expr = (
            f"(if (result i32) (i32.gt_u (local.get $x) (i32.const {k}))"
            f" (then {expr.replace('(i32.const 0)', f'(i32.const {k + 1})', 1) if k == depth - 1 else expr})"
            f" (else (i32.const {k})))"
        )
    return f"""(module (func (export "depth") (param $x i32) (result i32) {expr}))"""


async def _call(wasm: bytes, name: str, *args: int) -> object:
    inst = await asyncwasm.Linker().instantiate(asyncwasm.Module(wasm))
    return await inst.call(name, *args)


@pytest.fixture(params=["structured-first", "flat-only"])
def shape(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "flat-only":
        monkeypatch.setattr(structured, "MAX_PY_LOOPS", -1)
    return str(request.param)


@pytest.mark.parametrize("depth", [3, 30, 300])
def test_br_table_switch_over_deeply_nested_blocks(depth: int, shape: str) -> None:
    wasm = wat(_switch(depth))
    for x in (0, 1, depth // 2, depth - 1, depth, depth + 5, 2**31):
        want = (depth - 1 - min(x, depth - 1)) * 10 + 7
        assert anyio.run(_call, wasm, "switch", x) == want, (x, shape)


@pytest.mark.parametrize("depth", [4, 19, 21, 25])
def test_loops_nested_past_pythons_limit(depth: int, shape: str) -> None:
    assert anyio.run(_call, wat(_nested_loops(depth)), "count") == 2 ** min(depth, 8)


@pytest.mark.parametrize("depth", [5, 60, 150])
def test_ifs_nested_past_the_indentation_limit(depth: int, shape: str) -> None:
    wasm = wat(_nested_ifs(depth))
    for x in (0, 1, depth // 2, depth - 1, depth, depth + 10):
        got = anyio.run(_call, wasm, "depth", x)
        assert got == min(x, depth), (x, got)


def test_flat_and_structured_agree_on_the_spec_control_flow_scripts(shared, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The flat shape alone passes the control-flow scripts of the spec suite too."""
    from asyncwasm.wast import ScriptRunner

    monkeypatch.setattr(structured, "MAX_PY_LOOPS", -1)
    for name in ("block", "br", "br_if", "br_table", "loop", "if", "labels", "switch", "unwind", "return"):
        res = ScriptRunner(shared / "spec" / "json" / name / f"{name}.json").run()
        assert res.failed == 0, res.failures[:5]


def test_a_br_table_of_many_runs_picks_every_target_right(shape: str) -> None:
    """A switch whose 200 indices go to 13 targets in runs of varying length (a tree of ranges
    decides it, not a chain of tests): every index, and those past the table, land right."""
    blocks = 13
    labels = [(k // 3 + k * 7 // 11) % blocks for k in range(200)]
    default = 4
    opens = "".join(f"(block $b{k}\n" for k in range(blocks))
    body = f"(br_table {' '.join(f'$b{d}' for d in labels)} $b{default} (local.get $x))"
    closes = "".join(f")\n(return (i32.const {k}))\n" for k in range(blocks))
    wasm = wat(
        f'(module (func (export "switch") (param $x i32) (result i32) {opens}{body}{closes}(i32.const -1)))'
    )
    for x in [*range(205), 2**31, 2**32 - 1]:
        target = labels[x] if x < len(labels) else default
        assert anyio.run(_call, wasm, "switch", x) == blocks - 1 - target, (x, shape)  # $b12 is innermost


def _interpreter(cases: int) -> str:
    """An interpreter's shape: a loop around a C switch over ``cases`` directly nested blocks (the
    code after the end of block $b{cases-1-k} is case k; the last case is after the switch). Case k
    adds k + 1 to the accumulator; every fifth case then branches to case k + 2, other even ones to
    case k + 3, odd ones fall through into case k + 1; case 3 runs an inner loop that leaves through
    the outermost block, to the last case. ``pc`` steps by 7 (mod cases) ``n`` times."""
    opens = "".join(f"(block $b{k}\n" for k in range(cases))
    table = " ".join(f"$b{cases - 1 - k}" for k in range(cases))
    body = []
    for k in range(cases):  # the code after the end of $b{cases-1-k} is case k
        code = f"(local.set $acc (i32.add (local.get $acc) (i32.const {k + 1})))"
        if k == 3:
            code += (
                "(local.set $j (i32.const 0))"
                "(loop $in (local.set $acc (i32.add (local.get $acc) (i32.const 1000)))"
                "  (local.set $j (i32.add (local.get $j) (i32.const 1)))"
                "  (br_if $b0 (i32.eq (local.get $j) (i32.const 3))) (br $in))"
            )
        elif k % 5 == 0 and cases - 1 - k - 2 >= 0:
            code += f"(br $b{cases - 1 - k - 2})"
        elif k % 2 == 0 and cases - 4 - k >= 0:
            code += f"(br $b{cases - 4 - k})"
        body.append(f"){code}\n")
    return f"""(module (func (export "run") (param $n i32) (result i32) (local $pc i32) (local $acc i32)
        (local $steps i32) (local $j i32)
        (block $exit (loop $top
          (br_if $exit (i32.ge_u (local.get $steps) (local.get $n)))
          {opens}(br_table {table} $b0 (local.get $pc)){"".join(body)}
          (local.set $pc (i32.rem_u (i32.add (local.get $pc) (i32.const 7)) (i32.const {cases})))
          (local.set $steps (i32.add (local.get $steps) (i32.const 1)))
          (br $top)))
        (local.get $acc)))"""


def _interpreter_model(cases: int, n: int) -> int:
    acc = pc = 0
    for _ in range(n):
        k = pc
        while k < cases:  # run case k, then decide where control goes
            acc += k + 1
            if k == 3:
                acc += 3000
                k = cases - 1  # out through $b0: the code after the switch
            elif k % 5 == 0 and cases - 3 - k >= 0:
                k += 2
            elif k % 2 == 0 and cases - 4 - k >= 0:
                k += 3
            else:
                k += 1
        pc = (pc + 7) % cases
    return acc & 0xFFFFFFFF


@pytest.mark.parametrize("cases", [9, 40, 300])
def test_an_interpreter_loop_around_a_big_switch(cases: int, shape: str) -> None:
    wasm = wat(_interpreter(cases))
    for n in (0, 1, 5, 3 * cases):
        assert anyio.run(_call, wasm, "run", n) == _interpreter_model(cases, n), (n, shape)


def _paired_blocks(depth: int) -> str:
    """``depth`` levels of two blocks opened one right inside the other (``$a`` around ``$b``), each
    level inside the ``$b`` of the one before: 2 * depth nested targeted blocks, in runs of two, the
    shape compilers give a chain of conditions. Bit 2k of ``x`` leaves level k through ``$a``, bit
    2k + 1 through ``$b``; the accumulator records which code ran, in order."""
    acc = "(local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 3)) (i32.const {})))"
    body = acc.format(5)
    for k in reversed(range(depth)):
        bit = "(i32.and (i32.shr_u (local.get $x) (i32.const {})) (i32.const 1))"
        body = (
            f"(block $a{k} (block $b{k} (br_if $a{k} {bit.format(2 * k)}) (br_if $b{k} {bit.format(2 * k + 1)})"
            f" {body} {acc.format(1)}) {acc.format(2)})"
        )
    return (
        f'(module (func (export "run") (param $x i32) (result i32) (local $acc i32) {body} (local.get $acc)))'
    )


def _paired_blocks_model(depth: int, x: int) -> int:
    acc = 0

    def level(k: int) -> None:
        nonlocal acc
        if k == depth:
            acc = (acc * 3 + 5) & 0xFFFFFFFF
            return
        if x >> (2 * k) & 1:
            return
        if not x >> (2 * k + 1) & 1:
            level(k + 1)
            acc = (acc * 3 + 1) & 0xFFFFFFFF
        acc = (acc * 3 + 2) & 0xFFFFFFFF

    level(0)
    return asyncwasm.signed32(acc)


def _is_flat(wasm: bytes) -> bool:
    m = asyncwasm.Module(wasm)
    src, _offs, _consts = structured.translate_function(
        m.compiled.info, 0, m.module.codes[0], m.compiled.func_types[0]
    )
    return "    L = 0" in src


@pytest.mark.parametrize("depth", [3, 12])
def test_short_runs_of_nested_blocks_past_pythons_limit_stay_structured(depth: int, shape: str) -> None:
    """24 nested targeted blocks in runs of two are too deep as one Python loop each: tried again
    with every run as one stage loop, the function keeps the structured shape (not flat)."""
    wasm = wat(_paired_blocks(depth))
    if shape == "structured-first":
        assert not _is_flat(wasm)
    for x in [0, 1, 2, 3, 0b0110, 0xAAAAAA, 0x555555, 1 << (2 * depth - 1), (1 << 2 * depth) - 1, 0x123456]:
        assert anyio.run(_call, wasm, "run", x) == _paired_blocks_model(depth, x), (x, shape)


def test_a_function_too_deep_for_every_chain_length_goes_flat(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the retries with shorter chains, the same function takes the flat shape."""
    wasm = wat(_paired_blocks(12))
    monkeypatch.setattr(structured, "CHAIN_RETRIES", (structured.CHAIN_MIN,))
    assert _is_flat(wasm)
    for x in (0, 0b10, 0x555555):
        assert anyio.run(_call, wasm, "run", x) == _paired_blocks_model(12, x)


def _mixed_table_interpreter() -> str:
    """A dispatch loop whose br_table mostly picks a case of a 12-block chain but also goes round
    the loop ($top) or leaves it ($exit), as an interpreter's opcode switch does. The code after the
    end of $bK is case 11 - K: it adds its number to the accumulator, then even cases go round,
    odd ones fall into the next case."""
    labels = [f"$b{(i * 5) % 12}" for i in range(12)] + ["$top"] * 4 + ["$exit"] * 4
    opens = "".join(f"(block $b{k} " for k in range(12))
    cases = ""
    for k in range(12):
        step = "(br $top)" if k % 2 == 0 else ""
        cases += (
            f") (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 3)) (i32.const {k}))) {step}\n"
        )
    return f"""(module (func (export "run") (param $x i32) (result i32) (local $acc i32) (local $n i32) (local $i i32)
      (block $exit
        (loop $top
          (local.set $n (i32.add (local.get $n) (i32.const 1)))
          (br_if $exit (i32.gt_u (local.get $n) (i32.const 50)))
          {opens}
            (local.set $i (i32.rem_u (local.get $x) (i32.const 23)))
            (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 7)) (i32.const 3)))
            (br_table {" ".join(labels)} $b5 (local.get $i))
          {cases}
          (br $top)))
      (local.get $acc)))"""


def _mixed_table_model(x: int) -> int:
    table: list[object] = [(i * 5) % 12 for i in range(12)] + ["top"] * 4 + ["exit"] * 4
    acc = n = 0
    while True:
        n += 1
        if n > 50:
            break
        i = x % 23
        x = (x * 7 + 3) & 0xFFFFFFFF
        target = table[i] if i < len(table) else 5
        if target == "exit":
            break
        if target == "top":
            continue
        k = 11 - int(target)  # type: ignore[call-overload]
        while True:
            acc = (acc * 3 + k) & 0xFFFFFFFF
            if k % 2 == 0 or k == 11:
                break
            k += 1
    return asyncwasm.signed32(acc)


def test_a_br_table_mostly_into_a_block_chain_and_partly_out_of_it(shape: str) -> None:
    wasm = wat(_mixed_table_interpreter())
    for x in (0, 1, 2, 7, 11, 12, 16, 19, 20, 22, 23, 1000, 2**31 + 5, 2**32 - 1):
        assert anyio.run(_call, wasm, "run", x) == _mixed_table_model(x), (x, shape)
