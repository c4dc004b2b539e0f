"""Cancellation: an anyio cancel scope or timeout around a call stops a spinning guest at its next
fuel check, and a guest waiting in an async host function at once. A guest stopped halfway may
have left its state half-updated, so its instance is dead afterwards: calls raise InstanceDead,
while its exports can still be read and the loop and other instances run on."""

from __future__ import annotations

import time

import anyio
import pytest
from wat import wat

import asyncwasm

pytestmark = pytest.mark.anyio


SRC = """
(module $cancel
  (import "env" "block" (func $block (param i32) (result i32)))
  (global $iterations (export "count") (mut i32) (i32.const 0))
  (func $spin (export "spin")
    loop $l
      global.get $iterations i32.const 1 i32.add global.set $iterations
      br $l
    end)
  (func $wait (export "wait") (param i32) (result i32)
    local.get 0 call $block i32.const 1 i32.add)
  ;; recurse $n frames, then block
  (func $deep (export "deep") (param $n i32) (result i32)
    local.get $n
    if (result i32)
      local.get $n i32.const 1 i32.sub call $deep i32.const 1 i32.add
    else
      i32.const 0 call $block
    end)
  ;; recurse $n frames, then spin
  (func $deep_spin (export "deep_spin") (param $n i32)
    local.get $n
    if
      local.get $n i32.const 1 i32.sub call $deep_spin
    else
      call $spin
    end)
  (func (export "iterations") (result i32) global.get $iterations)
  (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
)
"""


class Blocker:
    """The async host function ``block``: waits until released, recording what happened to it."""

    def __init__(self) -> None:
        self.entered = 0
        self.cancelled = 0
        self.finished = 0
        self.release = anyio.Event()

    async def block(self, x: int) -> int:
        self.entered += 1
        try:
            with anyio.fail_after(30):
                await self.release.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        self.finished += 1
        return x + 100


async def cancel_instance(blocker: Blocker, store: asyncwasm.Store | None = None) -> asyncwasm.Instance:
    linker = asyncwasm.Linker()
    linker.define_func("env", "block", asyncwasm.FuncType(("i32",), ("i32",)), blocker.block)
    return await linker.instantiate(asyncwasm.Module(wat(SRC)), store or asyncwasm.Store())


async def test_move_on_after_stops_an_infinite_loop() -> None:
    inst = await cancel_instance(Blocker())
    start = time.perf_counter()
    with anyio.move_on_after(0.1) as scope:
        await inst.call("spin")
    elapsed = time.perf_counter() - start
    assert scope.cancelled_caught
    assert 0.09 <= elapsed < 0.6, elapsed
    assert inst.exports["count"].value > 1_000  # type: ignore[union-attr]
    # the instance is dead; the loop is fine
    with pytest.raises(asyncwasm.InstanceDead, match="cancelled in the middle of a call"):
        await inst.call("add", 2, 3)
    await anyio.sleep(0.001)


async def test_fail_after_raises_timeout_error() -> None:
    inst = await cancel_instance(Blocker())
    start = time.perf_counter()
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.05):
            await inst.call("spin")
    assert time.perf_counter() - start < 0.5


async def test_cancel_a_spinning_guest_with_a_fuel_limit_keeps_the_fuel_count() -> None:
    store = asyncwasm.Store(fuel=10**12)
    inst = await cancel_instance(Blocker(), store)
    with anyio.move_on_after(0.05):
        await inst.call("spin")
    used = store.fuel_used
    iterations = inst.exports["count"].value  # type: ignore[union-attr]
    # each iteration costs 5 (global.get, i32.const, i32.add, global.set, br); the last may be partial
    assert 5 * iterations <= used <= 5 * iterations + 5 + 1  # + 1 for the call


async def test_move_on_after_stops_a_call_blocked_in_an_async_host_function() -> None:
    blocker = Blocker()
    inst = await cancel_instance(blocker)
    start = time.perf_counter()
    with anyio.move_on_after(0.1) as scope:
        await inst.call("wait", 1)
    elapsed = time.perf_counter() - start
    assert scope.cancelled_caught
    assert elapsed < 0.6, elapsed
    assert (blocker.entered, blocker.cancelled, blocker.finished) == (1, 1, 0)
    with pytest.raises(asyncwasm.InstanceDead):
        await inst.call("wait", 1)
    # a fresh instance can wait again, and this time be released
    blocker.release.set()
    fresh = await cancel_instance(blocker)
    assert await fresh.call("wait", 1) == 102
    assert (blocker.entered, blocker.cancelled, blocker.finished) == (2, 1, 1)


async def test_cancel_a_guest_blocked_deep_in_recursion() -> None:
    blocker = Blocker()
    inst = await cancel_instance(blocker)
    with anyio.move_on_after(0.1) as scope:
        await inst.call("deep", 50_000)
    assert scope.cancelled_caught
    assert blocker.cancelled == 1
    blocker.release.set()
    fresh = await cancel_instance(blocker)
    assert await fresh.call("deep", 50_000) == 50_100


async def test_cancel_a_guest_spinning_deep_in_recursion() -> None:
    inst = await cancel_instance(Blocker())
    start = time.perf_counter()
    with anyio.move_on_after(0.1) as scope:
        await inst.call("deep_spin", 50_000)
    assert scope.cancelled_caught
    assert time.perf_counter() - start < 0.8
    assert inst.exports["count"].value > 0  # type: ignore[union-attr]
    with pytest.raises(asyncwasm.InstanceDead):
        await inst.call("add", 20, 22)


async def test_cancelling_one_guest_leaves_the_others_running() -> None:
    blocker = Blocker()
    spinner = await cancel_instance(Blocker())
    waiter = await cancel_instance(blocker)
    results: list[int] = []

    async def wait_for_result() -> None:
        results.append(await waiter.call("wait", 5))

    async def spin_briefly() -> None:
        with anyio.move_on_after(0.05):
            await spinner.call("spin")
        blocker.release.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_for_result)
        tg.start_soon(spin_briefly)
    assert results == [106]
    assert blocker.cancelled == 0


async def test_cancelled_before_the_call_starts() -> None:
    inst = await cancel_instance(Blocker())
    with anyio.CancelScope() as scope:
        scope.cancel()  # already cancelled when the call begins
        await inst.call("spin")
    assert scope.cancelled_caught
    assert await inst.call("add", 1, 1) == 2  # nothing ran, so the instance is whole
