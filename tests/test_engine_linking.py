"""Linking: LinkError for missing and mistyped imports; functions, memories, tables and globals
imported from another instance; and instances of one module that share nothing."""

from __future__ import annotations

import anyio
import pytest
from wat import wat

import asyncwasm

pytestmark = pytest.mark.anyio


FT = asyncwasm.FuncType

IMPORTS_FUNC = """
(module
  (import "env" "f" (func $f (param i32) (result i32)))
  (func (export "run") (param i32) (result i32) local.get 0 call $f))
"""


async def test_missing_import_is_a_link_error() -> None:
    module = asyncwasm.Module(wat(IMPORTS_FUNC))
    with pytest.raises(asyncwasm.LinkError) as info:
        await asyncwasm.Linker().instantiate(module, asyncwasm.Store())
    assert "env" in str(info.value)
    assert "f" in str(info.value)
    linker = asyncwasm.Linker()
    linker.define_func("env", "g", FT(("i32",), ("i32",)), lambda x: x)  # the wrong name
    linker.define_func("other", "f", FT(("i32",), ("i32",)), lambda x: x)  # the wrong module
    with pytest.raises(asyncwasm.LinkError):
        await linker.instantiate(module, asyncwasm.Store())


@pytest.mark.parametrize(
    "ftype",
    [
        FT(("i64",), ("i32",)),
        FT(("i32",), ("i64",)),
        FT(("i32",), ()),
        FT(("i32", "i32"), ("i32",)),
        FT((), ("i32",)),
        FT(("i32",), ("i32", "i32")),
    ],
    ids=str,
)
async def test_function_of_the_wrong_type_is_a_link_error(ftype: asyncwasm.FuncType) -> None:
    module = asyncwasm.Module(wat(IMPORTS_FUNC))
    linker = asyncwasm.Linker()
    linker.define_func("env", "f", ftype, lambda *a: 0)
    with pytest.raises(asyncwasm.LinkError) as info:
        await linker.instantiate(module, asyncwasm.Store())
    assert "env" in str(info.value)


async def test_right_type_links_and_runs() -> None:
    linker = asyncwasm.Linker()
    linker.define_func("env", "f", FT(("i32",), ("i32",)), lambda x: x * 10)
    inst = await linker.instantiate(asyncwasm.Module(wat(IMPORTS_FUNC)), asyncwasm.Store())
    assert await inst.call("run", 4) == 40


PROVIDER = """
(module $provider
  (type $v_i (func (result i32)))
  (memory (export "memory") 1 4)
  (table (export "table") 4 funcref)
  (global (export "counter") (mut i32) (i32.const 100))
  (global (export "limit") i64 (i64.const 77))
  (elem (i32.const 0) $ten $twenty)
  (func $ten (result i32) i32.const 10)
  (func $twenty (result i32) i32.const 20)
  (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (func $fail (export "fail") (param i32) (result i32) i32.const 1 local.get 0 i32.div_u)
  (func (export "peek") (param i32) (result i32) local.get 0 i32.load)
  (func (export "size") (result i32) memory.size)
  (func (export "read_counter") (result i32) global.get 0)
  (func (export "call_slot") (param i32) (result i32) local.get 0 call_indirect (type $v_i))
  (func (export "bump") global.get 0 i32.const 1 i32.add global.set 0))
"""

CONSUMER = """
(module $consumer
  (type $v_i (func (result i32)))
  (import "provider" "add" (func $add (param i32 i32) (result i32)))
  (import "provider" "fail" (func $fail (param i32) (result i32)))
  (import "provider" "memory" (memory 1))
  (import "provider" "table" (table 2 funcref))
  (import "provider" "counter" (global $counter (mut i32)))
  (import "provider" "limit" (global $limit i64))
  (elem (i32.const 3) $thirty)
  (func $thirty (result i32) i32.const 30)
  (func (export "add3") (param i32) (result i32) local.get 0 i32.const 3 call $add)
  (func $via (export "via_fail") (param i32) (result i32) local.get 0 call $fail)
  (func (export "poke") (param i32 i32) local.get 0 local.get 1 i32.store)
  (func (export "grow") (param i32) (result i32) local.get 0 memory.grow)
  (func (export "call_slot") (param i32) (result i32) local.get 0 call_indirect (type $v_i))
  (func (export "set_slot_null") (param i32) local.get 0 ref.null func table.set 0)
  (func (export "get_counter") (result i32) global.get $counter)
  (func (export "set_counter") (param i32) local.get 0 global.set $counter)
  (func (export "limit") (result i64) global.get $limit))
"""


async def linked_pair() -> tuple[asyncwasm.Instance, asyncwasm.Instance]:
    store = asyncwasm.Store()
    provider = await asyncwasm.Linker().instantiate(asyncwasm.Module(wat(PROVIDER)), store)
    linker = asyncwasm.Linker()
    linker.define_instance("provider", provider)
    consumer = await linker.instantiate(asyncwasm.Module(wat(CONSUMER)), store)
    return provider, consumer


async def test_import_another_instances_function() -> None:
    provider, consumer = await linked_pair()
    assert await consumer.call("add3", 4) == 7
    assert await provider.call("add", 1, 2) == 3
    with pytest.raises(asyncwasm.Trap, match="integer divide by zero") as info:
        await consumer.call("via_fail", 0)
    frames = info.value.frames
    assert [(f.module_name, f.func_name) for f in frames] == [("provider", "fail"), ("consumer", "via")]


async def test_import_another_instances_memory() -> None:
    provider, consumer = await linked_pair()
    await consumer.call("poke", 8, 0x12345678)
    assert await provider.call("peek", 8) == 0x12345678
    mem = provider.exports["memory"]
    assert isinstance(mem, asyncwasm.Memory)
    assert mem.read(8, 4) == bytes.fromhex("78563412")
    assert await consumer.call("grow", 2) == 1
    assert await provider.call("size") == 3
    await consumer.call("poke", 3 * 65536 - 4, 7)
    assert await provider.call("peek", 3 * 65536 - 4) == 7
    assert await consumer.call("grow", 2) == -1  # past the provider's maximum of 4 pages
    with pytest.raises(asyncwasm.Trap, match="out of bounds memory access"):
        await consumer.call("poke", 3 * 65536, 1)


async def test_import_another_instances_table() -> None:
    provider, consumer = await linked_pair()
    # the consumer's element segment wrote into the provider's table
    assert [await provider.call("call_slot", i) for i in (0, 1, 3)] == [10, 20, 30]
    assert [await consumer.call("call_slot", i) for i in (0, 1, 3)] == [10, 20, 30]
    with pytest.raises(asyncwasm.Trap, match="uninitialized element"):
        await consumer.call("call_slot", 2)
    await consumer.call("set_slot_null", 1)
    with pytest.raises(asyncwasm.Trap, match="uninitialized element"):
        await provider.call("call_slot", 1)
    table = provider.exports["table"]
    assert isinstance(table, asyncwasm.Table)
    assert table.size == 4


async def test_import_another_instances_globals() -> None:
    provider, consumer = await linked_pair()
    assert await consumer.call("get_counter") == 100
    await consumer.call("set_counter", 5)
    assert await provider.call("read_counter") == 5
    await provider.call("bump")
    assert await consumer.call("get_counter") == 6
    counter = provider.exports["counter"]
    assert isinstance(counter, asyncwasm.Global)
    assert counter.value == 6
    assert await consumer.call("limit") == 77


@pytest.mark.parametrize(
    "desc, item",
    [
        ("(memory 1)", "func"),
        ("(memory 2)", "memory"),  # the provider's memory has 1 page
        ("(memory 1 2)", "memory"),  # the provider allows 4 pages
        ("(table 8 funcref)", "table"),  # the provider's table has 4 slots
        ("(table 1 externref)", "table"),
        ("(global i32)", "counter"),  # the provider's counter is mutable
        ("(global (mut i64))", "counter"),
        ("(global (mut i64))", "limit"),  # the provider's limit is immutable
        ("(func)", "memory"),
        ("(func (param i32) (result i32))", "add"),
    ],
    ids=lambda v: v,
)
async def test_mistyped_import_from_an_instance_is_a_link_error(desc: str, item: str) -> None:
    provider, _consumer = await linked_pair()
    item_name = {"func": "add"}.get(item, item)
    src = f'(module (import "provider" "{item_name}" {desc}))'
    linker = asyncwasm.Linker()
    linker.define_instance("provider", provider)
    with pytest.raises(asyncwasm.LinkError):
        await linker.instantiate(asyncwasm.Module(wat(src)), asyncwasm.Store())


async def test_import_a_missing_export_of_an_instance() -> None:
    provider, _consumer = await linked_pair()
    linker = asyncwasm.Linker()
    linker.define_instance("provider", provider)
    src = '(module (import "provider" "nothing" (func)))'
    with pytest.raises(asyncwasm.LinkError, match="nothing"):
        await linker.instantiate(asyncwasm.Module(wat(src)), asyncwasm.Store())


STATEFUL = """
(module
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (global $n (mut i32) (i32.const 0))
  (global $shared (export "shared") (mut i64) (i64.const 0))
  (func $one (result i32) i32.const 1)
  (func (export "incr") (result i32)
    global.get $n i32.const 1 i32.add global.set $n global.get $n)
  (func (export "store") (param i32 i32) local.get 0 local.get 1 i32.store)
  (func (export "load") (param i32) (result i32) local.get 0 i32.load)
  (func (export "grow") (result i32) i32.const 1 memory.grow)
  (func (export "size") (result i32) memory.size)
  (func (export "set_shared") (param i64) local.get 0 global.set $shared)
  (func (export "fill_table") i32.const 0 ref.func $one table.set $t)
  (func (export "table_is_null") (result i32) i32.const 0 table.get $t ref.is_null)
  (elem declare func $one))
"""


async def test_instances_of_one_module_are_isolated() -> None:
    module = asyncwasm.Module(wat(STATEFUL))
    store = asyncwasm.Store()
    a = await asyncwasm.Linker().instantiate(module, store)
    b = await asyncwasm.Linker().instantiate(module, store)
    assert [await a.call("incr") for _ in range(3)] == [1, 2, 3]
    assert await b.call("incr") == 1
    await a.call("store", 64, 1234)
    assert await a.call("load", 64) == 1234
    assert await b.call("load", 64) == 0
    assert await a.call("grow") == 1
    assert (await a.call("size"), await b.call("size")) == (2, 1)
    await b.call("set_shared", -9)
    ga, gb = a.exports["shared"], b.exports["shared"]
    assert isinstance(ga, asyncwasm.Global) and isinstance(gb, asyncwasm.Global)
    assert ga is not gb
    assert (ga.value, asyncwasm.signed64(gb.value)) == (0, -9)
    await a.call("fill_table")
    assert (await a.call("table_is_null"), await b.call("table_is_null")) == (0, 1)
    assert a.exports["memory"] is not b.exports["memory"]
    c = await asyncwasm.Linker().instantiate(module, asyncwasm.Store())
    assert await c.call("incr") == 1
    assert await c.call("size") == 1


async def test_concurrent_instances_do_not_share_state() -> None:
    module = asyncwasm.Module(wat(STATEFUL))
    instances = [await asyncwasm.Linker().instantiate(module, asyncwasm.Store()) for _ in range(5)]
    results: dict[int, list[int]] = {}

    async def count(k: int, inst: asyncwasm.Instance) -> None:
        out = []
        for _ in range(k + 1):
            out.append(await inst.call("incr"))
            await anyio.sleep(0)
        results[k] = out

    async with anyio.create_task_group() as tg:
        for k, inst in enumerate(instances):
            tg.start_soon(count, k, inst)
    assert results == {k: list(range(1, k + 2)) for k in range(5)}
