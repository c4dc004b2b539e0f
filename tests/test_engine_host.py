"""Host functions, sync and async: value conversions both ways, access to the caller's memory, async
host calls that wait while other tasks run, and exceptions that propagate out of the call."""

from __future__ import annotations

import math
import struct
import time

import anyio
import anyio.lowlevel
import pytest
from wat import wat

import asyncwasm

pytestmark = pytest.mark.anyio


FT = asyncwasm.FuncType


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


VALUES = """
(module
  (import "env" "i32" (func $h_i32 (param i32) (result i32)))
  (import "env" "i64" (func $h_i64 (param i64) (result i64)))
  (import "env" "f32" (func $h_f32 (param f32) (result f32)))
  (import "env" "f64" (func $h_f64 (param f64) (result f64)))
  (import "env" "multi" (func $h_multi (param i32 i64 f32 f64) (result f64 i32 i64)))
  (func (export "i32") (param i32) (result i32) local.get 0 call $h_i32)
  (func (export "i32_const") (result i32) i32.const -5 call $h_i32)
  ;; what the guest sees: the raw bits, unsigned
  (func (export "i32_is_neg7") (param i32) (result i32) local.get 0 call $h_i32 i32.const -7 i32.eq)
  (func (export "i32_lt0") (param i32) (result i32) local.get 0 call $h_i32 i32.const 0 i32.lt_s)
  (func (export "i64") (param i64) (result i64) local.get 0 call $h_i64)
  (func (export "i64_bits") (param i64) (result i32) local.get 0 call $h_i64 i64.const 0x8000000000000000 i64.eq)
  (func (export "f32") (param f32) (result f32) local.get 0 call $h_f32)
  (func (export "f32_bits") (param f32) (result i32) local.get 0 call $h_f32 i32.reinterpret_f32)
  (func (export "f64") (param f64) (result f64) local.get 0 call $h_f64)
  (func (export "multi") (param i32 i64 f32 f64) (result f64 i32 i64)
    local.get 0 local.get 1 local.get 2 local.get 3 call $h_multi)
  ;; consume the three results in the guest: (f64 as i32) + i32 + (i64 as i32)
  (func (export "multi_sum") (result i32)
    (local $a f64) (local $b i32) (local $c i64)
    i32.const -1 i64.const -2 f32.const 1.5 f64.const 2.5 call $h_multi
    local.set $c local.set $b local.set $a
    local.get $a i32.trunc_f64_s local.get $b i32.add local.get $c i32.wrap_i64 i32.add)
)
"""


async def values_instance(seen: list[tuple[str, object]]) -> asyncwasm.Instance:
    linker = asyncwasm.Linker()

    def h_i32(x: int) -> int:
        seen.append(("i32", x))
        return -7 if x == -5 else x

    def h_i64(x: int) -> int:
        seen.append(("i64", x))
        return -(2**63) if x == 2**63 - 1 else x

    def h_f32(x: float) -> float:
        seen.append(("f32", x))
        return 0.1 if x == 1.0 else x

    def h_f64(x: float) -> float:
        seen.append(("f64", x))
        return x * 2

    def h_multi(a: int, b: int, c: float, d: float) -> tuple[float, int, int]:
        seen.append(("multi", (a, b, c, d)))
        return (c + d, a * 2, b - 1)

    linker.define_func("env", "i32", FT(("i32",), ("i32",)), h_i32)
    linker.define_func("env", "i64", FT(("i64",), ("i64",)), h_i64)
    linker.define_func("env", "f32", FT(("f32",), ("f32",)), h_f32)
    linker.define_func("env", "f64", FT(("f64",), ("f64",)), h_f64)
    linker.define_func("env", "multi", FT(("i32", "i64", "f32", "f64"), ("f64", "i32", "i64")), h_multi)
    return await linker.instantiate(asyncwasm.Module(wat(VALUES)), asyncwasm.Store())


async def test_i32_values_are_signed_on_the_host_side() -> None:
    seen: list[tuple[str, object]] = []
    inst = await values_instance(seen)
    assert await inst.call("i32_const") == -7
    assert seen == [("i32", -5)]
    assert await inst.call("i32", 0xFFFFFFFF) == -1
    assert seen[-1] == ("i32", -1)
    assert await inst.call("i32", 0x80000000) == -(2**31)
    assert seen[-1] == ("i32", -(2**31))
    assert await inst.call("i32", 2**31 - 1) == 2**31 - 1
    assert await inst.call("i32_is_neg7", -5) == 1
    assert await inst.call("i32_lt0", -3) == 1
    assert await inst.call("i32_lt0", 3) == 0


async def test_i64_values() -> None:
    seen: list[tuple[str, object]] = []
    inst = await values_instance(seen)
    assert await inst.call("i64", -1) == -1
    assert seen[-1] == ("i64", -1)
    assert await inst.call("i64", 2**63 - 1) == -(2**63)
    assert await inst.call("i64_bits", 2**63 - 1) == 1
    assert await inst.call("i64", 2**40 + 3) == 2**40 + 3
    assert seen[-1] == ("i64", 2**40 + 3)


async def test_float_values() -> None:
    seen: list[tuple[str, object]] = []
    inst = await values_instance(seen)
    # the host's 0.1 is rounded to single precision on the way in
    assert await inst.call("f32", 1.0) == f32(0.1)
    assert await inst.call("f32_bits", 1.0) == struct.unpack("<i", struct.pack("<f", 0.1))[0]
    assert await inst.call("f32", -2.5) == -2.5
    assert seen[-1] == ("f32", -2.5)
    assert await inst.call("f32", 1e39) == math.inf  # out of f32 range: rounds to infinity
    assert await inst.call("f64", 0.1) == 0.2
    assert await inst.call("f64", -math.inf) == -math.inf
    assert math.isnan(await inst.call("f64", math.nan))


async def test_multi_value_host_function() -> None:
    seen: list[tuple[str, object]] = []
    inst = await values_instance(seen)
    assert await inst.call("multi", -3, 2**62, 0.5, 0.25) == (0.75, -6, 2**62 - 1)
    assert seen[-1] == ("multi", (-3, 2**62, 0.5, 0.25))
    # inside the guest: 4.0 + -2 + -3
    assert await inst.call("multi_sum") == -1
    assert seen[-1] == ("multi", (-1, -2, 1.5, 2.5))


MEMORY = """
(module
  (import "env" "greet" (func $greet (param i32) (result i32)))
  (import "env" "checksum" (func $checksum (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\\01\\02\\03\\04\\05")
  (func (export "greet_then_read") (param $p i32) (result i32)
    local.get $p call $greet drop
    local.get $p i32.load8_u)
  (func (export "sum") (result i32) i32.const 16 i32.const 5 call $checksum)
  (func (export "load") (param i32) (result i32) local.get 0 i32.load))
"""


async def test_host_reads_and_writes_the_callers_memory() -> None:
    linker = asyncwasm.Linker()

    def greet(caller: asyncwasm.Caller, ptr: int) -> int:
        mem = caller.memory
        assert mem is not None
        mem.write(ptr, b"hello")
        return 5

    async def checksum(caller: asyncwasm.Caller, ptr: int, n: int) -> int:
        await anyio.sleep(0)
        mem = caller.memory
        assert mem is not None
        return sum(mem.read(ptr, n))

    linker.define_func("env", "greet", FT(("i32",), ("i32",)), greet, access_caller=True)
    linker.define_func("env", "checksum", FT(("i32", "i32"), ("i32",)), checksum, access_caller=True)
    module = asyncwasm.Module(wat(MEMORY))
    a = await linker.instantiate(module, asyncwasm.Store())
    b = await linker.instantiate(module, asyncwasm.Store())
    assert await a.call("greet_then_read", 100) == ord("h")
    assert await a.call("load", 100) == int.from_bytes(b"hell", "little")
    assert await a.call("sum") == 15
    # each call sees its own caller's memory
    assert await b.call("load", 100) == 0
    mem = b.exports["memory"]
    assert isinstance(mem, asyncwasm.Memory)
    mem.write(16, b"\x0a\x0a\x0a\x0a\x0a")
    assert await b.call("sum") == 50
    assert await a.call("sum") == 15
    # a host access out of bounds is a trap
    with pytest.raises(asyncwasm.Trap, match="out of bounds memory access"):
        await a.call("greet_then_read", 65534)


SLEEPER = """
(module
  (import "env" "pause" (func $pause (param i32) (result i32)))
  (func (export "run") (param i32) (result i32)
    local.get 0 call $pause
    local.get 0 call $pause
    i32.add))
"""


async def test_async_host_function_sleeps_while_other_tasks_run() -> None:
    events: list[str] = []

    async def pause(ms: int) -> int:
        events.append("sleep")
        await anyio.sleep(ms / 1000)
        events.append("woke")
        return ms + 1

    linker = asyncwasm.Linker()
    linker.define_func("env", "pause", FT(("i32",), ("i32",)), pause)
    module = asyncwasm.Module(wat(SLEEPER))
    inst = await linker.instantiate(module, asyncwasm.Store())
    done = anyio.Event()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await anyio.sleep(0.005)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        assert await inst.call("run", 100) == 202
        done.set()
    assert events == ["sleep", "woke", "sleep", "woke"]
    assert ticks >= 10

    # many instances waiting at once wait concurrently, not one after another
    instances = [await linker.instantiate(module, asyncwasm.Store()) for _ in range(10)]
    results: list[int] = []

    async def run(i: asyncwasm.Instance) -> None:
        results.append(await i.call("run", 150))

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in instances:
            tg.start_soon(run, i)
    elapsed = time.perf_counter() - start
    assert results == [302] * 10
    assert 0.3 <= elapsed < 1.5


class HostError(Exception):
    pass


RAISER = """
(module
  (import "env" "sync_fail" (func $sync_fail (param i32)))
  (import "env" "async_fail" (func $async_fail (param i32)))
  (global $g (export "g") (mut i32) (i32.const 0))
  (func (export "sync") (param i32)
    i32.const 1 global.set $g
    local.get 0 call $sync_fail
    i32.const 2 global.set $g)
  (func (export "async") (param i32)
    i32.const 3 global.set $g
    local.get 0 call $async_fail
    i32.const 4 global.set $g)
  (func (export "ok") (result i32) i32.const 9))
"""


async def test_host_exceptions_propagate_out_of_the_call() -> None:
    raised: list[BaseException] = []

    def sync_fail(code: int) -> None:
        if code:
            exc = HostError(f"sync {code}")
            raised.append(exc)
            raise exc

    async def async_fail(code: int) -> None:
        await anyio.sleep(0.001)
        if code == 1:
            exc: BaseException = HostError(f"async {code}")
        elif code == 2:
            exc = IndexError("host index error")  # not a Wasm out-of-bounds access
        elif code == 3:
            exc = ZeroDivisionError("host division")
        else:
            return
        raised.append(exc)
        raise exc

    linker = asyncwasm.Linker()
    linker.define_func("env", "sync_fail", FT(("i32",), ()), sync_fail)
    linker.define_func("env", "async_fail", FT(("i32",), ()), async_fail)
    inst = await linker.instantiate(asyncwasm.Module(wat(RAISER)), asyncwasm.Store())
    g = inst.exports["g"]
    assert isinstance(g, asyncwasm.Global)

    with pytest.raises(HostError, match="sync 7") as info:
        await inst.call("sync", 7)
    assert info.value is raised[-1]
    assert g.value == 1
    await inst.call("sync", 0)
    assert g.value == 2

    with pytest.raises(HostError, match="async 1") as info:
        await inst.call("async", 1)
    assert info.value is raised[-1]
    assert g.value == 3
    with pytest.raises(IndexError, match="host index error"):
        await inst.call("async", 2)
    with pytest.raises(ZeroDivisionError, match="host division"):
        await inst.call("async", 3)
    await inst.call("async", 0)
    assert g.value == 4
    assert await inst.call("ok") == 9


async def test_sync_host_index_error_is_not_a_trap() -> None:
    def bad(code: int) -> None:
        [][code]

    linker = asyncwasm.Linker()
    linker.define_func("env", "sync_fail", FT(("i32",), ()), bad)
    linker.define_func("env", "async_fail", FT(("i32",), ()), bad)
    inst = await linker.instantiate(asyncwasm.Module(wat(RAISER)), asyncwasm.Store())
    with pytest.raises(IndexError):
        await inst.call("sync", 3)


REENTER = """
(module
  (import "env" "callback" (func $callback (param i32) (result i32)))
  (import "env" "boot" (func $boot (param i32) (result i32)))
  (global $g (mut i32) (i32.const 0))
  (func $start i32.const 4 call $boot global.set $g)
  (start $start)
  (func (export "g") (result i32) global.get $g)
  (func (export "add1") (param i32) (result i32) local.get 0 i32.const 1 i32.add)
  (func $rec (export "rec") (param $n i32) (result i32)
    local.get $n
    if (result i32)
      local.get $n i32.const 1 i32.sub call $rec i32.const 1 i32.add
    else
      i32.const 10 call $callback
    end))
"""


async def test_start_function_and_reentrant_calls_through_async_host_functions() -> None:
    async def boot(x: int) -> int:
        await anyio.sleep(0.001)
        return x + 1

    async def callback(caller: asyncwasm.Caller, x: int) -> int:
        await anyio.lowlevel.checkpoint()
        # call back into the instance that is suspended here, twice
        return await caller.instance.call("add1", x) + await caller.instance.call("g")

    linker = asyncwasm.Linker()
    linker.define_func("env", "callback", FT(("i32",), ("i32",)), callback, access_caller=True)
    linker.define_func("env", "boot", FT(("i32",), ("i32",)), boot)
    store = asyncwasm.Store()
    inst = await linker.instantiate(asyncwasm.Module(wat(REENTER)), store)
    assert await inst.call("g") == 5
    assert await inst.call("rec", 0) == 16
    assert await inst.call("rec", 50_000) == 50_016
