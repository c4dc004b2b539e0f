"""Snapshots: an instance's state captured between calls starts new, independent instances."""

from __future__ import annotations

import pytest
from wat import wat

import asyncwasm
from asyncwasm import Linker, Module, SnapshotError, Store

pytestmark = pytest.mark.anyio

STATEFUL = """
(module
  (memory (export "memory") 1 100)
  (global $n (export "n") (mut i32) (i32.const 0))
  (global $hidden (mut i64) (i64.const 5))
  (table $t 2 funcref)
  (data $d "abc")
  (elem declare func $bump $twice)
  (func $bump (global.set $n (i32.add (global.get $n) (i32.const 1))))
  (func $twice (call $bump) (call $bump))
  (func (export "init")
    (drop (memory.grow (i32.const 3)))
    (i32.store (i32.const 70000) (i32.const 0x01020304))   ;; page 1
    (i32.store (i32.const 200000) (i32.const 42))          ;; page 3 (page 2 stays all zeros)
    (memory.init $d (i32.const 10) (i32.const 0) (i32.const 3))
    (data.drop $d)
    (table.set $t (i32.const 0) (ref.func $bump))
    (table.set $t (i32.const 1) (ref.func $twice))
    (global.set $hidden (i64.const 77))
    (global.set $n (i32.const 10)))
  (func (export "call") (param i32) (call_indirect (local.get 0)))
  (func (export "hidden") (result i64) (global.get $hidden))
  (func (export "load") (param i32) (result i32) (i32.load (local.get 0)))
  (func (export "reinit") (memory.init $d (i32.const 0) (i32.const 0) (i32.const 1))))
"""


async def _initialised() -> tuple[Module, asyncwasm.Instance]:
    module = Module(wat(STATEFUL))
    inst = await Linker().instantiate(module)
    await inst.call("init")
    return module, inst


async def test_a_new_instance_starts_in_the_captured_state() -> None:
    module, inst = await _initialised()
    snap = inst.snapshot()
    fresh = await Linker().instantiate(module, Store(), snapshot=snap)
    assert fresh.exports["n"].value == 10  # type: ignore[union-attr]
    assert await fresh.call("hidden") == 77
    assert fresh.exports["memory"].pages == 4  # type: ignore[union-attr]
    assert await fresh.call("load", 200000) == 42
    assert fresh.exports["memory"].read(10, 3) == b"abc"  # type: ignore[union-attr]
    with pytest.raises(asyncwasm.Trap, match="out of bounds"):
        await fresh.call("reinit")  # the data segment was dropped before the snapshot


async def test_instances_from_one_snapshot_are_independent() -> None:
    module, inst = await _initialised()
    snap = inst.snapshot()
    a = await Linker().instantiate(module, snapshot=snap)
    b = await Linker().instantiate(module, snapshot=snap)
    await a.call("call", 1)  # the table's $twice, bound to a's own functions and globals
    assert a.exports["n"].value == 12 and b.exports["n"].value == 10  # type: ignore[union-attr]
    assert inst.exports["n"].value == 10  # type: ignore[union-attr]
    a.exports["memory"].write(0, b"zz")  # type: ignore[union-attr]
    assert b.exports["memory"].read(0, 2) == b"\0\0" and inst.exports["memory"].read(0, 2) == b"\0\0"  # type: ignore[union-attr]
    await b.call("call", 0)
    assert b.exports["n"].value == 11 and a.exports["n"].value == 12  # type: ignore[union-attr]


async def test_only_pages_that_are_not_zero_are_kept() -> None:
    module, inst = await _initialised()
    snap = inst.snapshot()
    assert snap.memory_bytes == 3 * 65536  # pages 0, 1 and 3
    assert [off for off, _blob in snap.memories[0][1]] == [0, 3 * 65536]  # pages 0-1 joined, 2 left out


async def test_state_an_independent_instance_cannot_share_is_refused() -> None:
    gc_module = Module(
        wat("""(module (type $s (struct (field (mut i32))))
        (global $g (mut (ref null $s)) (ref.null $s))
        (func (export "init") (global.set $g (struct.new $s (i32.const 1)))))""")
    )
    inst = await Linker().instantiate(gc_module)
    inst.snapshot()  # a null reference is fine
    await inst.call("init")
    with pytest.raises(SnapshotError, match="global 0.*Struct"):
        inst.snapshot()
    importer = Module(wat('(module (import "env" "mem" (memory 1)))'))
    linker = Linker()
    linker.define("env", "mem", asyncwasm.Memory.new(1))
    with pytest.raises(SnapshotError, match="imports a memory"):
        (await linker.instantiate(importer)).snapshot()


async def test_a_snapshot_belongs_to_its_module_and_its_store_limits() -> None:
    module, inst = await _initialised()
    snap = inst.snapshot()
    with pytest.raises(SnapshotError, match="module it was taken from"):
        await Linker().instantiate(Module(wat(STATEFUL)), snapshot=snap)
    with pytest.raises(SnapshotError, match="exceeds this store's limit"):
        await Linker().instantiate(module, Store(max_memory_pages=2), snapshot=snap)


async def test_imports_are_the_new_instance_s_own() -> None:
    seen: list[str] = []
    module = Module(
        wat("""(module (import "env" "log" (func $log (param i32)))
        (global $x (mut i32) (i32.const 0))
        (func (export "init") (global.set $x (i32.const 7)))
        (func (export "run") (call $log (global.get $x))))""")
    )
    first = Linker()
    first.define_func("env", "log", asyncwasm.FuncType(("i32",), ()), lambda v: seen.append(f"first {v}"))
    inst = await first.instantiate(module)
    await inst.call("init")
    second = Linker()
    second.define_func("env", "log", asyncwasm.FuncType(("i32",), ()), lambda v: seen.append(f"second {v}"))
    fresh = await second.instantiate(module, snapshot=inst.snapshot())
    await fresh.call("run")
    assert seen == ["second 7"]
