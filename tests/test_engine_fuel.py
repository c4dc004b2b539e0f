"""Fuel: limits end runaway guests, consumption is counted per instruction (wasmtime's rules), and a
CPU-bound guest gives the event loop back at every time slice so other tasks keep running."""

from __future__ import annotations

import time

import anyio
import pytest
from wat import wat

import asyncwasm

pytestmark = pytest.mark.anyio


SRC = """
(module $fuel
  (import "env" "mark" (func $mark (param i32)))
  (func $three (export "three") (result i32)
    i32.const 1 i32.const 2 i32.add)
  (func $free (export "free")
    nop block end loop end)
  ;; 7 units per iteration: loop and end are free
  (func $count (export "count") (param $n i32) (local $i i32)
    loop $l
      local.get $i i32.const 1 i32.add local.tee $i
      local.get $n i32.lt_u
      br_if $l
    end)
  (func $spin (export "spin")
    loop $l br $l end)
  (func $call_mark (export "call_mark") (param i32)
    local.get 0 call $mark)
  ;; count to $n, calling mark($id) every $every iterations
  (func $work (export "work") (param $id i32) (param $n i32) (param $every i32) (local $i i32)
    loop $l
      local.get $i i32.const 1 i32.add local.tee $i
      local.get $every i32.rem_u
      i32.eqz
      if local.get $id call $mark end
      local.get $i local.get $n i32.lt_u
      br_if $l
    end)
)
"""


async def instance(store: asyncwasm.Store, marks: list[int] | None = None) -> asyncwasm.Instance:
    sink = marks if marks is not None else []
    linker = asyncwasm.Linker()
    linker.define_func("env", "mark", asyncwasm.FuncType(("i32",), ()), sink.append)
    return await linker.instantiate(asyncwasm.Module(wat(SRC)), store)


async def test_fuel_limit_ends_an_infinite_loop() -> None:
    store = asyncwasm.Store(fuel=10_000)
    inst = await instance(store)
    start = time.perf_counter()
    with pytest.raises(asyncwasm.FuelExhausted) as info:
        await inst.call("spin")
    assert time.perf_counter() - start < 2.0
    trap = info.value
    assert isinstance(trap, asyncwasm.Trap)
    assert trap.message == "all fuel consumed by WebAssembly"
    assert [f.func_name for f in trap.frames] == ["spin"]
    assert store.fuel_used == 10_000
    assert store.fuel_remaining() == 0
    # an empty tank stays empty
    with pytest.raises(asyncwasm.FuelExhausted):
        await inst.call("three")
    assert store.fuel_used == 10_000


async def test_fuel_is_counted_per_instruction() -> None:
    store = asyncwasm.Store()
    inst = await instance(store)
    assert store.fuel_used == 0
    # as in wasmtime: one unit per instruction (nop, drop, block, loop, end... are free), plus one per call
    assert await inst.call("three") == 3
    assert store.fuel_used == 3 + 1
    await inst.call("free")
    assert store.fuel_used == 4 + 1
    await inst.call("count", 0)  # the body runs once
    assert store.fuel_used == 5 + 7 + 1
    await inst.call("count", 10)
    assert store.fuel_used == 13 + 70 + 1
    await inst.call("count", 100_000)
    assert store.fuel_used == 84 + 700_000 + 1
    before = store.fuel_used
    await inst.call("call_mark", 5)  # local.get + call + the call's unit; the host function itself is free
    assert store.fuel_used == before + 3


async def test_exactly_enough_fuel() -> None:
    store = asyncwasm.Store(fuel=8)
    inst = await instance(store)
    assert await inst.call("three") == 3
    assert await inst.call("three") == 3
    assert store.fuel_used == 8
    with pytest.raises(asyncwasm.FuelExhausted):
        await inst.call("three")
    assert store.fuel_used == 8

    store = asyncwasm.Store(fuel=7 * 50 + 1)
    inst = await instance(store)
    await inst.call("count", 50)
    with pytest.raises(asyncwasm.FuelExhausted):
        await inst.call("three")
    # Fuel is checked at loop heads, as in wasmtime: the last turn (7 units, with the call's unit
    # 351 in all) starts at 344 used, so 350 finishes (the count stops at the limit) and 344 does not.
    store = asyncwasm.Store(fuel=7 * 50)
    inst = await instance(store)
    await inst.call("count", 50)
    assert store.fuel_used == 7 * 50 and store.get_fuel() == 0
    store = asyncwasm.Store(fuel=7 * 49 + 1)
    inst = await instance(store)
    with pytest.raises(asyncwasm.FuelExhausted):
        await inst.call("count", 50)
    assert store.fuel_used == 7 * 49 + 1


async def test_concurrent_calls_into_one_instance_count_fuel_exactly() -> None:
    store = asyncwasm.Store(fuel=10**9)
    inst = await instance(store)
    results: list[int] = []

    async def short_calls() -> None:
        for _ in range(100):
            results.append(await inst.call("three"))
            await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(inst.call, "count", 1_000_000)
        tg.start_soon(short_calls)
    assert results == [3] * 100
    assert store.slices > 0
    assert store.fuel_used == 7 * 1_000_000 + 1 + 4 * 100


async def test_cpu_bound_guest_lets_other_tasks_run() -> None:
    store = asyncwasm.Store()
    inst = await instance(store)
    ticks: list[float] = []
    done = anyio.Event()

    async def ticker() -> None:
        while not done.is_set():
            await anyio.sleep(0.005)
            ticks.append(time.perf_counter())

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.sleep(0)
        start = time.perf_counter()
        await inst.call("count", 3_000_000)
        end = time.perf_counter()
        done.set()
    assert store.fuel_used == 7 * 3_000_000 + 1
    assert store.slices > 0
    during = [t for t in ticks if start <= t <= end]
    assert len(during) >= 5, (len(during), end - start)
    gaps = [b - a for a, b in zip([start, *during], [*during, end], strict=True)]
    assert max(gaps) < 0.15, max(gaps)


async def test_two_cpu_bound_guests_take_turns() -> None:
    marks: list[int] = []
    store = asyncwasm.Store()
    a = await instance(store, marks)
    b = await instance(store, marks)
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.call, "work", 1, 1_000_000, 50_000)
        tg.start_soon(b.call, "work", 2, 1_000_000, 50_000)
    assert sorted(marks) == [1] * 20 + [2] * 20
    # each yields at the end of its slice, so the marks interleave rather than run in two blocks
    switches = sum(1 for x, y in zip(marks, marks[1:], strict=False) if x != y)
    assert switches >= 3, marks
