"""Suspension deep in recursion: a guest 100,000 Wasm frames deep awaits an async host function and
returns correctly up every frame; unbounded recursion is a clean trap that leaves everything usable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from wat import wat

import asyncwasm

pytestmark = pytest.mark.anyio


SRC = """
(module $deep
  (import "env" "bottom" (func $bottom (param i32) (result i32)))
  (import "env" "every" (func $every (param i32)))
  (global $depth (mut i32) (i32.const 0))
  ;; down(n) counts the frames in $depth, returns bottom($depth) + n, and checks each frame's local
  (func $down (export "down") (param $n i32) (result i32) (local $mine i32)
    local.get $n
    i32.const 0x5a5a
    i32.xor
    local.set $mine
    local.get $n
    i32.eqz
    if (result i32)
      global.get $depth
      call $bottom
    else
      global.get $depth i32.const 1 i32.add global.set $depth
      local.get $n i32.const 1 i32.sub
      call $down
      i32.const 1 i32.add
    end
    ;; a frame whose locals were lost would fail here
    local.get $mine i32.const 0x5a5a i32.xor local.get $n i32.ne
    if unreachable end)
  ;; calls every(n) at each depth divisible by 10,000, on the way down and on the way back up
  (func $steps (export "steps") (param $n i32) (result i32)
    local.get $n i32.const 10000 i32.rem_u i32.eqz
    if local.get $n call $every end
    local.get $n
    if (result i32)
      local.get $n i32.const 1 i32.sub call $steps i32.const 1 i32.add
    else
      i32.const 0
    end
    local.get $n i32.const 10000 i32.rem_u i32.eqz
    if local.get $n call $every end)
  (func $forever (export "forever") (param i32) (result i32)
    local.get 0 i32.const 1 i32.add call $forever i32.const 1 i32.add)
  (func (export "reset") i32.const 0 global.set $depth)
  (func (export "depth") (result i32) global.get $depth)
)
"""


def no_op(n: int) -> None:
    return None


def deep_linker(bottom: Callable[..., Any], every: Callable[..., Any] = no_op) -> asyncwasm.Linker:
    linker = asyncwasm.Linker()
    linker.define_func("env", "bottom", asyncwasm.FuncType(("i32",), ("i32",)), bottom)
    linker.define_func("env", "every", asyncwasm.FuncType(("i32",), ()), every)
    return linker


async def deep_instance(
    bottom: Callable[..., Any], every: Callable[..., Any] = no_op, store: asyncwasm.Store | None = None
) -> asyncwasm.Instance:
    return await deep_linker(bottom, every).instantiate(
        asyncwasm.Module(wat(SRC)), store or asyncwasm.Store()
    )


async def test_suspend_at_the_bottom_of_100000_frames() -> None:
    seen: list[int] = []

    async def bottom(depth: int) -> int:
        seen.append(depth)
        await anyio.sleep(0)
        await anyio.lowlevel.checkpoint()
        return depth * 3

    inst = await deep_instance(bottom)
    assert await inst.call("down", 100_000) == 100_000 * 3 + 100_000
    assert seen == [100_000]
    assert await inst.call("depth") == 100_000


async def test_other_tasks_run_while_a_deep_guest_waits() -> None:
    """The bottom waits for an event another task sets: the guest really is suspended at depth."""
    release = anyio.Event()
    arrived = anyio.Event()
    order: list[str] = []

    async def bottom(depth: int) -> int:
        order.append(f"bottom {depth}")
        arrived.set()
        await release.wait()
        order.append("released")
        return 1

    async def releaser() -> None:
        await arrived.wait()
        for _ in range(5):
            await anyio.sleep(0)
        order.append("release")
        release.set()

    inst = await deep_instance(bottom)
    results: list[int] = []

    async def run() -> None:
        results.append(await inst.call("down", 100_000))

    async with anyio.create_task_group() as tg:
        tg.start_soon(releaser)
        tg.start_soon(run)
    assert results == [100_001]
    assert order == ["bottom 100000", "release", "released"]


async def test_repeated_suspensions_up_and_down_a_deep_stack() -> None:
    calls: list[int] = []

    async def every(n: int) -> None:
        calls.append(n)
        await anyio.lowlevel.checkpoint()

    inst = await deep_instance(lambda d: d, every)
    assert await inst.call("steps", 100_000) == 100_000
    down = list(range(100_000, -1, -10_000))
    assert calls == down + down[::-1]


async def test_two_guests_suspended_deep_at_once() -> None:
    both = anyio.Event()
    waiting = 0

    async def bottom(depth: int) -> int:
        nonlocal waiting
        waiting += 1
        if waiting == 2:
            both.set()
        await both.wait()
        return depth

    a = await deep_instance(bottom)
    b = await deep_instance(bottom)
    results: dict[str, int] = {}

    async def run(name: str, inst: asyncwasm.Instance, n: int) -> None:
        results[name] = await inst.call("down", n)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "a", a, 60_000)
        tg.start_soon(run, "b", b, 40_000)
    assert results == {"a": 120_000, "b": 80_000}


async def test_unbounded_recursion_is_a_clean_trap() -> None:
    async def bottom(depth: int) -> int:
        await anyio.sleep(0)
        return depth

    inst = await deep_instance(bottom)
    with pytest.raises(asyncwasm.Trap) as info:
        await inst.call("forever", 0)
    trap = info.value
    assert type(trap) is asyncwasm.Trap
    assert trap.message == "call stack exhausted"
    assert trap.frames
    assert {f.func_name for f in trap.frames} == {"forever"}
    assert "deep!forever" in str(trap)
    # the loop, the instance and deep recursion all still work
    await anyio.sleep(0.001)
    await inst.call("reset")
    assert await inst.call("down", 100_000) == 200_000
    await inst.call("reset")
    assert await inst.call("down", 10) == 20


BIG_LOCALS = " ".join(["i64"] * 80)
BIG = f"""
(module $big
  (func $big (export "big") (param $n i32) (result i32) (local {BIG_LOCALS})
    local.get $n
    i32.eqz
    if (result i32)
      i32.const 0
    else
      local.get $n i32.const 1 i32.sub call $big i32.const 1 i32.add
    end)
  (func $endless (export "endless") (param $n i32) (result i32) (local {BIG_LOCALS})
    local.get $n i32.const 1 i32.add call $endless))
"""


async def test_unbounded_recursion_of_functions_with_many_locals() -> None:
    inst = await asyncwasm.Linker().instantiate(asyncwasm.Module(wat(BIG)), asyncwasm.Store())
    assert await inst.call("big", 10_000) == 10_000
    with pytest.raises(asyncwasm.Trap) as info:
        await inst.call("endless", 0)
    assert info.value.message == "call stack exhausted"
    assert {f.func_name for f in info.value.frames} == {"endless"}
    # whatever stack the failed call held is given back
    for _ in range(3):
        assert await inst.call("big", 30_000) == 30_000
