"""Hostile modules against the engine: each tries to take the host process down or make it spend
without bound, and each must end in a clean trap or a bounded result.

Modules are written with tests/wasm_builder.py: they are too big or too regular for text.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from wasm_builder import ModuleBuilder, call, i32_const, uleb

import asyncwasm

REPO = Path(__file__).resolve().parent.parent


def _run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncwasm", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def first_call_chain(n: int) -> bytes:
    """``_start`` calls f1, which calls f2, ... fn: every call is the callee's first, so each one
    translates its callee (the module is big enough to be translated lazily)."""
    b = ModuleBuilder()
    t = b.type((), ())
    for k in range(n):
        b.func(t, call(k + 1) if k + 1 < n else b"", export="_start" if k == 0 else None)
    return b.build()


def test_a_chain_of_25000_first_calls_does_not_overflow_the_native_stack(tmp_path: Path) -> None:
    path = tmp_path / "chain.wasm"
    path.write_bytes(first_call_chain(25_000))
    proc = _run_cli("run", "--invoke", "_start", str(path))
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_first_call_chain_deeper_than_max_depth_is_a_clean_trap(tmp_path: Path) -> None:
    path = tmp_path / "chain.wasm"
    path.write_bytes(first_call_chain(150_000))
    proc = _run_cli("run", "--invoke", "_start", str(path))
    assert proc.returncode == 134, proc.stderr[-2000:]
    assert "call stack exhausted" in proc.stderr


def _reentrant_module() -> bytes:
    """``f`` calls the host's ``h``, which calls ``f`` again: native frames nest at every level."""
    b = ModuleBuilder()
    t = b.type((), ())
    h = b.import_func("env", "h", t)
    b.func(t, call(h), export="f")
    return b.build()


@pytest.mark.anyio
async def test_host_reentry_ends_in_a_trap_at_the_nesting_limit() -> None:
    module = asyncwasm.Module(_reentrant_module())
    levels = 0
    box: dict[str, asyncwasm.Instance] = {}

    def h() -> None:
        nonlocal levels
        levels += 1
        box["inst"].get_func("f").fn()  # straight back into Wasm, on the same native stack

    linker = asyncwasm.Linker()
    linker.define_func("env", "h", asyncwasm.FuncType((), ()), h)
    inst = box["inst"] = await linker.instantiate(module, asyncwasm.Store(max_host_nesting=300))
    with pytest.raises(asyncwasm.Trap, match="call stack exhausted"):
        await inst.call("f")
    assert levels == 300
    # the count unwound with the trap: the next call nests just as deep again
    levels = 0
    with pytest.raises(asyncwasm.Trap, match="call stack exhausted"):
        await inst.call("f")
    assert levels == 300


def test_host_reentry_at_the_default_limit_does_not_crash_the_process(tmp_path: Path) -> None:
    script = tmp_path / "reenter.py"
    script.write_text(
        "import sys, anyio, asyncwasm\n"
        f"wasm = {_reentrant_module()!r}\n"
        "async def main():\n"
        "    box = {}\n"
        "    linker = asyncwasm.Linker()\n"
        "    linker.define_func('env', 'h', asyncwasm.FuncType((), ()), lambda: box['i'].get_func('f').fn())\n"
        "    box['i'] = await linker.instantiate(asyncwasm.Module(wasm))\n"
        "    try:\n"
        "        await box['i'].call('f')\n"
        "    except asyncwasm.Trap as trap:\n"
        "        print(trap.message)\n"
        "anyio.run(main)\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "call stack exhausted"


def _many_tables(ntables: int, grow_by: int) -> bytes:
    """``grow`` grows each of ``ntables`` tables by ``grow_by`` null elements and returns how many
    of the grows succeeded."""
    b = ModuleBuilder()
    for _ in range(ntables):
        b.table(0)
    t = b.type((), ("i32",))
    body = bytearray(i32_const(0))
    for k in range(ntables):
        # ref.null func; i32.const grow_by; table.grow k; i32.const -1; i32.ne; i32.add
        body += b"\xd0\x70" + i32_const(grow_by) + b"\xfc\x0f" + uleb(k) + i32_const(-1) + b"\x47\x6a"
    b.func(t, body, export="grow")
    return b.build()


@pytest.mark.anyio
async def test_tables_share_one_element_budget_per_store() -> None:
    module = asyncwasm.Module(_many_tables(100, 10_000_000))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    inst = await asyncwasm.Linker().instantiate(module, asyncwasm.Store())
    assert await inst.call("grow") == 1  # the default budget is 10 million elements in all
    assert time.perf_counter() - start < 10
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 1024 * 1024  # under 1 GiB of peak growth for the whole store
    small = await asyncwasm.Linker().instantiate(module, asyncwasm.Store(max_table_elements_total=25_000_000))
    assert await small.call("grow") == 2


@pytest.mark.anyio
async def test_a_module_whose_tables_start_over_the_budget_fails_to_instantiate() -> None:
    b = ModuleBuilder()
    for _ in range(3):
        b.table(400_000)
    module = asyncwasm.Module(b.build())
    with pytest.raises(asyncwasm.Trap, match="budget of 1000000 table elements"):
        await asyncwasm.Linker().instantiate(module, asyncwasm.Store(max_table_elements_total=1_000_000))


def deep_expression(n: int) -> bytes:
    """``sum`` pushes ``n`` constants (1, 2, ... n) and adds them up with ``n - 1`` i32.add: one
    expression ``n`` deep, which a translator folding expressions could make quadratic."""
    b = ModuleBuilder()
    t = b.type((), ("i32",))
    body = bytearray()
    for k in range(1, n + 1):
        body += i32_const(k)
    body += b"\x6a" * (n - 1)
    b.func(t, body, export="sum")
    return b.build()


def _translate_seconds(n: int) -> float:
    from asyncwasm.compiler.structured import translate_function

    info, index, body, ftype, _filename = asyncwasm.Module(deep_expression(n)).compiled.job(0)
    start = time.perf_counter()
    translate_function(info, index, body, ftype)
    return time.perf_counter() - start


def test_translation_time_is_linear_in_expression_depth() -> None:
    _translate_seconds(2_000)  # warm up
    small = min(_translate_seconds(10_000) for _ in range(2))
    big = min(_translate_seconds(40_000) for _ in range(2))
    assert big < 8 * small, (small, big)  # 4x the code: quadratic would be 16x


@pytest.mark.anyio
async def test_a_huge_function_is_translated_in_a_worker_and_gives_the_right_sum() -> None:
    n = 20_000
    inst = await asyncwasm.Linker().instantiate(asyncwasm.Module(deep_expression(n)))
    assert await inst.call("sum") == (n * (n + 1) // 2) & 0xFFFFFFFF
    assert await inst.call("sum") == (n * (n + 1) // 2) & 0xFFFFFFFF  # translated once, kept


@pytest.mark.anyio
async def test_a_trap_in_a_function_translated_in_a_worker_names_its_offset() -> None:
    b = ModuleBuilder()
    t = b.type((), ())
    body = bytearray()
    for _ in range(6_000):
        body += i32_const(1) + b"\x1a"  # i32.const 1; drop
    body += b"\x00"  # unreachable
    b.func(t, body, export="boom")
    wasm = b.build()
    inst = await asyncwasm.Linker().instantiate(asyncwasm.Module(wasm))
    with pytest.raises(asyncwasm.Trap, match="unreachable") as info:
        await inst.call("boom")
    frames = info.value.frames
    assert frames and frames[0].offset == wasm.rindex(b"\x00\x0b")  # the unreachable's own byte


@pytest.mark.anyio
async def test_a_timeout_stops_the_first_call_of_a_huge_function_while_the_loop_runs() -> None:
    import anyio

    module = asyncwasm.Module(deep_expression(100_000))
    inst = await asyncwasm.Linker().instantiate(module, asyncwasm.Store(timeout=2))
    gaps: list[float] = []

    async def timer() -> None:
        last = time.perf_counter()
        while True:
            await anyio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(timer)
        with pytest.raises(asyncwasm.Interrupted, match="time limit"):
            await inst.call("sum")
        tg.cancel_scope.cancel()
    assert time.perf_counter() - start < 5
    assert len(gaps) > 50 and max(gaps) < 0.5, (len(gaps), max(gaps))
