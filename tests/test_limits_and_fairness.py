"""Every per-instance limit with its error, cancellation in each blocking WASI call (the instance is
dead afterwards, never half-run), and the scheduler's fairness, on asyncio and trio.

Timing tolerances are wide on purpose: they must hold on a loaded two-core machine, and still tell a
fair scheduler from one that lets a crowd of guests hold the loop.
"""

from __future__ import annotations

import statistics
import sys
import time

import anyio
import anyio.abc
import pytest
from wat import wat

import asyncwasm
from wasi_async import WasiConfig, WasiContext
from wasi_async._compat import cancel
from wasi_async.testing import CollectStream

pytestmark = pytest.mark.anyio


WASI = '(import "wasi_snapshot_preview1"'

# spin(n): n iterations (n = -1: forever), counted in the exported global "count".
SPIN = """
(module
  (global $count (export "count") (mut i64) (i64.const 0))
  (func (export "spin") (param $n i64) (local $x i32) (local $i i64)
    (loop $l
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1664525)) (i32.const 1013904223)))
      (global.set $count (local.tee $i (i64.add (local.get $i) (i64.const 1))))
      (br_if $l (i64.ne (local.get $i) (local.get $n))))))
"""

GROW = """
(module
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (func (export "grow_memory") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "memory_size") (result i32) (memory.size))
  (func (export "grow_table") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0)))
  (func (export "table_size") (result i32) (table.size $t)))
"""

DEPTH = """
(module
  (func $down (export "down") (param $n i32) (result i32)
    (if (result i32) (local.get $n)
      (then (i32.add (call $down (i32.sub (local.get $n) (i32.const 1))) (i32.const 1)))
      (else (i32.const 0)))))
"""

ECHO = f"""
(module
  {WASI} "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  {WASI} "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $n i32)
    (loop $l
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (i32.const 4096))
      (if (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)) (then (return)))
      (local.set $n (i32.load (i32.const 8)))
      (if (i32.eqz (local.get $n)) (then (return)))
      (i32.store (i32.const 4) (local.get $n))
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))
      (br $l))))
"""

# One poll_oneoff with a single clock subscription: sleep 10 s on the monotonic clock.
SLEEP = f"""
(module
  {WASI} "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i64.store (i32.const 0) (i64.const 42))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 10000000000))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))
"""

# 300 separate fd_write calls of one short line each.
CHATTY = f"""
(module
  {WASI} "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "line\\n")
  (func (export "_start") (local $i i32)
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 5))
    (loop $l
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 300))))))
"""

# Writes "y\\n" to stdout forever, like yes(1).
YES = f"""
(module
  {WASI} "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "y\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 2))
    (loop $l
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (br $l))))
"""

# sock_recv on fd 3, the first preopened socket.
RECV = f"""
(module
  {WASI} "sock_recv" (func $recv (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 100))
    (drop (call $recv (i32.const 3) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 8) (i32.const 12)))))
"""


async def instance(text: str, store: asyncwasm.Store | None = None) -> asyncwasm.Instance:
    return await asyncwasm.Linker().instantiate(asyncwasm.Module(wat(text)), store or asyncwasm.Store())


async def assert_dead(inst: asyncwasm.Instance, export: str, *args: object) -> None:
    assert inst.dead
    with pytest.raises(asyncwasm.InstanceDead):
        await inst.call(export, *args)


# ---- limits ---------------------------------------------------------------------------------------


async def test_fuel_limit_traps_with_a_clear_error_and_the_neighbour_runs_on() -> None:
    store = asyncwasm.Store(fuel=50_000)
    inst = await instance(SPIN, store)
    neighbour = await instance(SPIN)
    with pytest.raises(asyncwasm.FuelExhausted, match="all fuel consumed"):
        await inst.call("spin", -1)
    assert store.fuel_used == 50_000 and store.fuel_remaining() == 0
    await neighbour.call("spin", 100_000)
    assert neighbour.exports["count"].value == 100_000  # type: ignore[union-attr]


async def test_timeout_interrupts_a_spinning_guest_and_kills_the_instance() -> None:
    inst = await instance(SPIN, asyncwasm.Store(timeout=0.5))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.005)
            ticks += 1

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        with pytest.raises(asyncwasm.Interrupted, match="time limit"):
            await inst.call("spin", -1)
        cancel(tg.cancel_scope)
    assert 0.45 < time.perf_counter() - start < 3
    assert ticks >= 5  # the loop ran other tasks while the guest spun (a 5 ms timer: ~100 ticks)
    await assert_dead(inst, "spin", 1)


async def test_timeout_interrupts_a_guest_blocked_in_fd_read() -> None:
    _send, stdin = anyio.create_memory_object_stream[bytes](1)
    async with WasiContext(WasiConfig(stdin=stdin)) as ctx:
        linker = asyncwasm.Linker()
        ctx.add_to_linker(linker)
        inst = await linker.instantiate(asyncwasm.Module(wat(ECHO)), asyncwasm.Store(timeout=0.1))
        with pytest.raises(asyncwasm.Interrupted):
            await inst.call("_start")
    await assert_dead(inst, "_start")


async def test_memory_grow_past_the_limit_returns_minus_one() -> None:
    inst = await instance(GROW, asyncwasm.Store(max_memory_pages=3))
    assert await inst.call("grow_memory", 2) == 1  # 1 -> 3 pages: the old size
    assert await inst.call("grow_memory", 1) == -1  # a fourth page is refused, not a trap
    assert await inst.call("memory_size") == 3
    assert await inst.call("grow_memory", 0) == 3
    assert not inst.dead


async def test_memory_declared_over_the_limit_fails_to_instantiate() -> None:
    with pytest.raises(asyncwasm.WasmError, match="limit"):
        await instance("(module (memory 5))", asyncwasm.Store(max_memory_pages=4))


async def test_table_declared_over_the_limit_fails_to_instantiate() -> None:
    with pytest.raises(asyncwasm.WasmError, match="exceeds the limit of 10 elements"):
        await instance("(module (table 20 funcref))", asyncwasm.Store(max_table_elements=10))


async def test_table_grow_past_the_limit_returns_minus_one() -> None:
    inst = await instance(GROW, asyncwasm.Store(max_table_elements=10))
    assert await inst.call("grow_table", 9) == 1
    assert await inst.call("grow_table", 1) == -1
    assert await inst.call("table_size") == 10


async def test_call_depth_limit_traps_and_leaves_the_host_stack_alone() -> None:
    inst = await instance(DEPTH, asyncwasm.Store(max_depth=1_000))
    before = sys.getrecursionlimit()
    assert await inst.call("down", 500) == 500
    with pytest.raises(asyncwasm.Trap, match="call stack exhausted") as info:
        await inst.call("down", 100_000)
    assert info.value.frames and info.value.frames[0].func_name == "down"
    assert sys.getrecursionlimit() == before
    assert await inst.call("down", 500) == 500  # a trap is not a cancellation: the instance lives


# ---- cancellation in blocking WASI calls -------------------------------------------------------------


async def cancel_in_wasi(text: str, config: WasiConfig) -> asyncwasm.Instance:
    """Run ``_start`` under a 0.1 s cancel scope; returns the instance after the scope fired."""
    async with WasiContext(config) as ctx:
        linker = asyncwasm.Linker()
        ctx.add_to_linker(linker)
        inst = await linker.instantiate(asyncwasm.Module(wat(text)))
        start = time.perf_counter()
        with anyio.move_on_after(0.1) as scope:
            await inst.call("_start")
        assert scope.cancelled_caught, "the call ended by itself instead of blocking"
        assert time.perf_counter() - start < 1.5
    return inst


async def test_cancel_fd_read_on_a_quiet_stream() -> None:
    send, stdin = anyio.create_memory_object_stream[bytes](1)
    out = CollectStream()
    inst = await cancel_in_wasi(ECHO, WasiConfig(stdin=stdin, stdout=out))
    await assert_dead(inst, "_start")
    await send.send(b"late\n")  # input arriving after the cancel reaches no one
    assert out.data == b""


async def test_cancel_a_long_poll_oneoff_sleep() -> None:
    inst = await cancel_in_wasi(SLEEP, WasiConfig())
    await assert_dead(inst, "_start")


async def test_cancel_sock_recv_on_a_quiet_socket() -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with await anyio.connect_tcp("127.0.0.1", port) as client:
            inst = await cancel_in_wasi(RECV, WasiConfig(sockets=[client]))
            await assert_dead(inst, "_start")


async def test_a_cancelled_guest_leaves_its_neighbours_running() -> None:
    _send, stdin = anyio.create_memory_object_stream[bytes](1)
    neighbour = await instance(SPIN)
    done: list[int] = []

    async def run_neighbour() -> None:
        await neighbour.call("spin", 300_000)
        done.append(1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_neighbour)
        inst = await cancel_in_wasi(ECHO, WasiConfig(stdin=stdin))
    assert inst.dead and done == [1] and not neighbour.dead


# ---- fairness ---------------------------------------------------------------------------------------


async def spin_for(insts: list[asyncwasm.Instance], seconds: float) -> list[int]:
    """Run every instance's spin(-1) at once for ``seconds``; their iteration counts at that moment."""
    async with anyio.create_task_group() as tg:
        for inst in insts:
            tg.start_soon(inst.call, "spin", -1)
        await anyio.sleep(seconds)
        counts = [inst.exports["count"].value for inst in insts]  # type: ignore[union-attr]
        cancel(tg.cancel_scope)
    return counts


async def test_no_cpu_bound_instance_is_starved() -> None:
    module = asyncwasm.Module(wat(SPIN))
    insts = [await asyncwasm.Linker().instantiate(module) for _ in range(20)]
    counts = await spin_for(insts, 1.0)
    mean = statistics.fmean(counts)
    assert min(counts) > 0.4 * mean, counts
    assert max(counts) < 1.8 * mean, counts
    assert all(inst.stats.slices >= 3 for inst in insts)
    assert all(inst.stats.run_time > 0 for inst in insts)


async def test_weights_two_to_one_give_twice_the_progress() -> None:
    module = asyncwasm.Module(wat(SPIN))
    heavy = [await asyncwasm.Linker().instantiate(module, asyncwasm.Store(weight=2.0)) for _ in range(4)]
    light = [await asyncwasm.Linker().instantiate(module, asyncwasm.Store(weight=1.0)) for _ in range(4)]
    counts = await spin_for(heavy + light, 1.5)
    ratio = statistics.fmean(counts[:4]) / statistics.fmean(counts[4:])
    slices = statistics.fmean(i.stats.slices for i in heavy) / statistics.fmean(i.stats.slices for i in light)
    assert 1.5 < ratio < 2.6, (ratio, counts)
    assert 1.5 < slices < 2.6, slices


async def test_other_tasks_wait_about_a_slice_beside_many_guests() -> None:
    module = asyncwasm.Module(wat(SPIN))
    insts = [await asyncwasm.Linker().instantiate(module) for _ in range(50)]
    late: list[float] = []

    async def timer() -> None:
        due = anyio.current_time() + 0.001
        while True:
            await anyio.sleep_until(due)
            now = anyio.current_time()
            late.append(now - due)
            due = max(due + 0.001, now)

    async with anyio.create_task_group() as tg:
        tg.start_soon(timer)
        await spin_for(insts, 1.0)
        cancel(tg.cancel_scope)
    slice_s = asyncwasm.Store().slice_seconds
    assert statistics.median(late) < 5 * slice_s, f"median {statistics.median(late) * 1e3:.1f} ms"
    assert len(late) > 100  # a 1 ms timer fired at least every 10 ms on average


async def test_an_echo_answers_promptly_beside_cpu_bound_instances() -> None:
    module = asyncwasm.Module(wat(SPIN))
    spinners = [await asyncwasm.Linker().instantiate(module) for _ in range(20)]
    to_guest, stdin = anyio.create_memory_object_stream[bytes](10)
    out, from_guest = anyio.create_memory_object_stream[bytes](10)
    latency: list[float] = []
    slice_s = asyncwasm.Store().slice_seconds
    async with anyio.create_task_group() as tg:
        for inst in spinners:
            tg.start_soon(inst.call, "spin", -1)

        async def echo() -> None:
            async with WasiContext(WasiConfig(stdin=stdin, stdout=out)) as ctx:
                linker = asyncwasm.Linker()
                ctx.add_to_linker(linker)
                inst = await linker.instantiate(asyncwasm.Module(wat(ECHO)))
                await inst.call("_start")

        tg.start_soon(echo)
        await anyio.sleep(0.2)
        for i in range(30):
            line = b"line %d\n" % i
            t0 = time.perf_counter()
            await to_guest.send(line)
            with anyio.fail_after(5):
                assert await from_guest.receive() == line
            latency.append(time.perf_counter() - t0)
            if sum(1 for x in latency if x > 10 * slice_s) >= 3:
                break  # the verdict is in: do not wait for 30 slow lines
            await anyio.sleep(0.005)
        cancel(tg.cancel_scope)
    # a fair pick answers within a few slices; a round of 20 neighbours would take 20
    assert statistics.median(latency) < 5 * slice_s, f"median {statistics.median(latency) * 1e3:.1f} ms"
    assert sorted(latency)[-3] < 10 * slice_s, f"{sorted(latency)[-3] * 1e3:.1f} ms"


async def test_a_guest_making_many_quick_wasi_calls_is_not_slowed_to_one_per_turn() -> None:
    """Host calls that complete at once (a write into a buffer) must not each cost the guest a turn
    behind its CPU-bound neighbours: 300 writes beside 5 spinners take milliseconds, not 300 slices."""
    module = asyncwasm.Module(wat(SPIN))
    spinners = [await asyncwasm.Linker().instantiate(module) for _ in range(5)]
    out = CollectStream()
    async with anyio.create_task_group() as tg:
        for inst in spinners:
            tg.start_soon(inst.call, "spin", -1)
        await anyio.sleep(0.05)
        async with WasiContext(WasiConfig(stdout=out)) as ctx:
            linker = asyncwasm.Linker()
            ctx.add_to_linker(linker)
            inst = await linker.instantiate(asyncwasm.Module(wat(CHATTY)))
            start = time.perf_counter()
            await inst.call("_start")
            took = time.perf_counter() - start
        cancel(tg.cancel_scope)
    assert out.data == b"line\n" * 300
    assert took < 60 * asyncwasm.Store().slice_seconds, f"{took * 1e3:.0f} ms for 300 writes"


async def test_a_guest_started_on_an_idle_loop_does_not_run_ahead_of_later_ones() -> None:
    module = asyncwasm.Module(wat(SPIN))
    history = await asyncwasm.Linker().instantiate(module)
    await history.call("spin", 1_500_000)  # the loop has run guests before: its minimum vruntime moved on
    first = await asyncwasm.Linker().instantiate(module)
    later = await asyncwasm.Linker().instantiate(module)
    async with anyio.create_task_group() as tg:
        tg.start_soon(first.call, "spin", -1)  # finds the token free
        await anyio.sleep(0.01)
        start = time.perf_counter()
        await later.call("spin", 1_000)
        waited = time.perf_counter() - start
        cancel(tg.cancel_scope)
    assert waited < 10 * asyncwasm.Store().slice_seconds, f"waited {waited * 1e3:.0f} ms"


async def test_a_guest_writing_forever_into_a_buffer_yields_and_times_out() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        async with WasiContext(WasiConfig()) as ctx:  # stdout discarded: every write completes at once
            linker = asyncwasm.Linker()
            ctx.add_to_linker(linker)
            # the fuel is a backstop: without it a guest that never yields would hang the test
            inst = await linker.instantiate(
                asyncwasm.Module(wat(YES)), asyncwasm.Store(timeout=0.3, fuel=1_000_000)
            )
            start = time.perf_counter()
            with pytest.raises(asyncwasm.Interrupted):
                await inst.call("_start")
            took = time.perf_counter() - start
        cancel(tg.cancel_scope)
    assert took < 1.5 and ticks >= 5, (took, ticks)


async def test_a_guest_calling_a_slow_sync_host_function_in_a_loop_still_gives_the_loop_its_turns() -> None:
    """Its time goes into the host function, not into guest code that counts fuel: the slice is
    checked when each call returns."""

    def slow() -> None:
        end = time.perf_counter() + 50e-6
        while time.perf_counter() < end:
            pass

    linker = asyncwasm.Linker()
    linker.define_func("host", "slow", asyncwasm.FuncType((), ()), slow)
    module = asyncwasm.Module(
        wat(
            """(module (import "host" "slow" (func $slow))
                 (func (export "run") (loop $l (call $slow) (br $l))))"""
        )
    )
    inst = await linker.instantiate(module, asyncwasm.Store())
    lateness: list[float] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(inst.call, "run")
        for _ in range(50):
            t0 = time.perf_counter()
            await anyio.sleep(0.001)
            lateness.append(time.perf_counter() - t0 - 0.001)
        cancel(tg.cancel_scope)
    # 10,000 fuel units between two fuel checks are 3,000 calls here, 150 ms: a slice is 2 ms
    assert sorted(lateness)[-5] < 0.02, max(lateness)
