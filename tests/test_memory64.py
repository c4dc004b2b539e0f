"""memory64, table64, multiple memories and extended constant expressions: what the guest sees
(i64 addresses that trap exactly, grows that fail with an i64 -1, copies between memories,
constant expressions with arithmetic), the store's page budget over all its memories, the
feature gates that keep Wasm 2.0's rules under the 2.0 preset, and agreement with wasmtime on
results, traps and fuel."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import wasmtime

import asyncwasm
from asyncwasm.binary.reader import decode_module
from asyncwasm.errors import InvalidModule, MalformedModule, Trap, UnsupportedFeature
from asyncwasm.features import WASM2, Features
from asyncwasm.runtime.instance import host_global, host_memory
from asyncwasm.text import wat_to_wasm
from asyncwasm.validate import validate_module
from asyncwasm.wast import DEFAULT_KNOWN_FAILURES, ScriptRunner, failure_key, load_known_failures

pytestmark = pytest.mark.anyio

M64 = (1 << 64) - 1

# One 64-bit memory (a) and one 32-bit memory (b), a 64-bit table, and constant expressions
# with arithmetic and reads of earlier globals.
MODULE = r"""
(module
  (memory $a (export "a") i64 1 8)
  (memory $b (export "b") 2)
  (data (memory $b) (i32.const 8) "hello")
  (data $p "passive-bytes")
  (global $base i64 (i64.const 16))
  (global $off i64 (i64.add (global.get $base) (i64.const 4)))
  (global $m (export "m") i32 (i32.mul (i32.const 6) (i32.sub (i32.const 10) (i32.const 3))))
  (table $t i64 2 funcref)
  (func $seven (result i32) (i32.const 7))
  (elem (table $t) (i64.const 0) func $seven)
  (func (export "load") (param i64) (result i32) (i32.load8_u $a (local.get 0)))
  (func (export "load32") (param i64) (result i32) (i32.load $a offset=3 (local.get 0)))
  (func (export "store32") (param i64 i32) (i32.store $a offset=3 (local.get 0) (local.get 1)))
  (func (export "loadb") (param i32) (result i64) (i64.load $b (local.get 0)))
  (func (export "grow") (param i64) (result i64) (memory.grow $a (local.get 0)))
  (func (export "growb") (param i32) (result i32) (memory.grow $b (local.get 0)))
  (func (export "size") (result i64) (memory.size $a))
  (func (export "copy") (memory.copy $a $b (global.get $off) (i32.const 8) (i32.const 5)))
  (func (export "copyn") (param i64 i32 i32) (memory.copy $a $b (local.get 0) (local.get 1) (local.get 2)))
  (func (export "fill") (param i64 i64) (memory.fill $a (local.get 0) (i32.const 9) (local.get 1)))
  (func (export "init") (param i64 i32) (memory.init $a $p (local.get 0) (i32.const 0) (local.get 1)))
  (func (export "tgrow") (param i64) (result i64) (table.grow $t (ref.null func) (local.get 0)))
  (func (export "tsize") (result i64) (table.size $t))
  (func (export "call") (param i64) (result i32) (call_indirect $t (result i32) (local.get 0)))
)
"""

PAGE = 65536
CALLS: list[tuple[str, tuple[int, ...]]] = [
    ("copy", ()),
    ("load", (20,)),
    ("load", (24,)),
    ("load", (25,)),
    ("size", ()),
    ("grow", (1,)),
    ("grow", (100,)),
    ("grow", (M64,)),
    ("size", ()),
    ("load", (2 * PAGE - 1,)),
    ("load", (2 * PAGE,)),
    ("load", (M64,)),
    ("load", (1 << 63,)),
    ("load32", (2 * PAGE - 7,)),
    ("load32", (2 * PAGE - 6,)),
    ("load32", (M64 - 2,)),
    ("store32", (M64 - 2, 1)),
    ("store32", (1 << 63, 1)),
    ("store32", (2 * PAGE - 7, 0x01020304)),
    ("load", (2 * PAGE - 1,)),
    ("loadb", (2 * PAGE - 8,)),
    ("loadb", (2 * PAGE - 7,)),
    ("growb", (1,)),
    ("loadb", (2 * PAGE - 7,)),
    ("copyn", (0, 0, 200)),
    ("copyn", (2 * PAGE - 100, 0, 200)),
    ("copyn", (M64, 0, 0)),
    ("copyn", (2 * PAGE, 0, 0)),
    ("copyn", (2 * PAGE + 1, 0, 0)),
    ("fill", (5, 1000)),
    ("fill", (2 * PAGE - 10, 11)),
    ("fill", (M64, 2)),
    ("load", (6,)),
    ("init", (0, 13)),
    ("init", (2 * PAGE - 1, 2)),
    ("load", (0,)),
    ("tsize", ()),
    ("tgrow", (3,)),
    ("tsize", ()),
    ("call", (0,)),
    ("call", (1,)),
    ("call", (1 << 63,)),
]


def _signed(v: Any) -> Any:
    """Results as wasmtime-py gives them (i32 and i64 signed)."""
    if isinstance(v, int) and v > 0x7FFFFFFFFFFFFFFF:
        return v - (1 << 64)
    return v


def run_wasmtime(wasm: bytes, calls: list[tuple[str, tuple[int, ...]]]) -> list[tuple[str, Any, int]]:
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    cfg.wasm_memory64 = True
    cfg.wasm_multi_memory = True
    engine = wasmtime.Engine(cfg)
    store = wasmtime.Store(engine)
    store.set_fuel(10**9)
    inst = wasmtime.Instance(store, wasmtime.Module(engine, wasm), [])
    out: list[tuple[str, Any, int]] = [("instantiate", None, 10**9 - store.get_fuel())]
    for name, args in calls:
        before = store.get_fuel()
        try:
            result: Any = inst.exports(store)[name](store, *[_signed(a) for a in args])
        except wasmtime.Trap as exc:
            result = f"trap {exc.trap_code}"
        out.append((name, result, before - store.get_fuel()))
    return out


_TRAP_CODES = {
    "out of bounds memory access": "MEMORY_OUT_OF_BOUNDS",
    "undefined element": "TABLE_OUT_OF_BOUNDS",
    "uninitialized element": "INDIRECT_CALL_TO_NULL",
}


async def run_asyncwasm(wasm: bytes, calls: list[tuple[str, tuple[int, ...]]]) -> list[tuple[str, Any, int]]:
    store = asyncwasm.Store()
    inst = await asyncwasm.Linker().instantiate(asyncwasm.Module(wasm), store)
    out: list[tuple[str, Any, int]] = [("instantiate", None, store.fuel_used)]
    for name, args in calls:
        before = store.fuel_used
        try:
            result: Any = await inst.call(name, *args)
        except Trap as exc:
            result = f"trap TrapCode.{_TRAP_CODES.get(exc.message, exc.message)}"
        out.append((name, result, store.fuel_used - before))
    return out


async def test_results_traps_and_fuel_agree_with_wasmtime() -> None:
    wasm = wat_to_wasm(MODULE)
    ours = await run_asyncwasm(wasm, CALLS)
    theirs = await anyio.to_thread.run_sync(run_wasmtime, wasm, CALLS)
    assert ours == theirs
    # the calls reach what they are meant to: copied bytes, i64 -1 from failed grows, exact traps
    got = {(n, a): r for (n, r, _f), (_n, a) in zip(ours[1:], CALLS, strict=True)}
    assert got[("load", (20,))] == ord("h") and got[("load", (24,))] == ord("o")
    assert got[("grow", (M64,))] == -1 and got[("size", ())] == 2
    assert got[("load", (M64,))] == got[("load32", (M64 - 2,))] == "trap TrapCode.MEMORY_OUT_OF_BOUNDS"
    assert got[("load", (2 * PAGE - 1,))] == 0x01  # the last byte of the store at 2 pages - 4


SIMD_MODULE = r"""
(module
  (memory $a i64 1 2)
  (memory $b 1)
  (func (export "st") (param i64 i64) (v128.store $a (local.get 0) (i64x2.splat (local.get 1))))
  (func (export "ld") (param i64) (result i64) (i64x2.extract_lane 1 (v128.load $a offset=8 (local.get 0))))
  (func (export "lane") (param i64) (result i32)
    (i32x4.extract_lane 0 (v128.load32_lane $a 0 (local.get 0) (v128.const i32x4 0 0 0 0))))
  (func (export "big") (param i64) (result i64) (i64x2.extract_lane 0 (v128.load $a offset=0x100000000 (local.get 0))))
  (func (export "copyb") (param i32) (v128.store $b (local.get 0) (v128.load $a (i64.const 0))))
  (func (export "ldb") (param i32) (result i64) (i64x2.extract_lane 0 (v128.load $b (local.get 0))))
)
"""
SIMD_CALLS: list[tuple[str, tuple[int, ...]]] = [
    ("st", (0, 0x1122334455667788)),
    ("ld", (0,)),
    ("ld", (PAGE - 24,)),
    ("ld", (PAGE - 23,)),
    ("ld", (M64,)),
    ("lane", (PAGE - 4,)),
    ("lane", (PAGE - 3,)),
    ("big", (0,)),
    ("copyb", (PAGE - 16,)),
    ("copyb", (PAGE - 15,)),
    ("ldb", (PAGE - 16,)),
]


async def test_simd_accesses_to_a_64_bit_and_a_second_memory_agree_with_wasmtime() -> None:
    wasm = wat_to_wasm(SIMD_MODULE)
    ours = await run_asyncwasm(wasm, SIMD_CALLS)
    assert ours == await anyio.to_thread.run_sync(run_wasmtime, wasm, SIMD_CALLS)
    assert ours[-1][1] == 0x1122334455667788  # copied from the 64-bit memory into memory 1


INSTANTIATION = [
    "(module (global i32 (i32.add (i32.const 1) (i32.const 2))))",
    "(module (global i32 (i32.const 1)) (global i32 (global.get 0)))",
    "(module (global i64 (i64.const 1)) (global i64 (i64.mul (global.get 0) (i64.const 5))))",
    '(module (memory 1) (data (i32.add (i32.const 1) (i32.const 2)) "abc"))',
    '(module (memory i64 1) (data (i64.const 7) "abc"))',
    '(module (memory i64 1) (data (i64.add (i64.const 7) (i64.const 1)) "abc"))',
    '(module (memory 1) (memory 2) (data (memory 1) (i32.const 70000) "abc") (data (memory 0) (i32.const 5) "x"))',
    '(module (global $g i32 (i32.const 3)) (memory 1) (data (global.get $g) "abc"))',
    "(module (table i64 4 funcref) (func $f) (elem (i64.const 1) func $f))",
    "(module (table i64 4 funcref) (func $f) (elem (i64.add (i64.const 1) (i64.const 1)) func $f $f))",
    "(module (table 4 funcref) (global $g i32 (i32.const 1)) (func $f) (elem (global.get $g) func $f))",
]


@pytest.mark.parametrize("wat", INSTANTIATION)
async def test_instantiation_fuel_agrees_with_wasmtime(wat: str) -> None:
    """Constant expressions with arithmetic or reads of defined globals, 64-bit offsets and data for
    a second memory cost what wasmtime's start-up code costs (or nothing, as a data image)."""
    wasm = wat_to_wasm(wat)
    ours = await run_asyncwasm(wasm, [])
    assert ours == await anyio.to_thread.run_sync(run_wasmtime, wasm, [])


@pytest.mark.parametrize("offset", [1 << 18, (1 << 32) - 1, 1 << 32, (1 << 64) - 1])
async def test_an_offset_past_the_maximum_traps_with_wasmtime_s_fuel(offset: int) -> None:
    """An offset alone past the memory's maximum always traps: wasmtime saves the fuel first for an
    offset that fits 32 bits, and loses what the frame used for a larger one (a 64-bit memory's)."""
    wat = f"""(module (memory i64 0 3)
      (func (export "f") (result i32) (i32.add (i32.const 1) (i32.load8_u offset={offset} (i64.const 0)))))"""
    wasm = wat_to_wasm(wat)
    ours = await run_asyncwasm(wasm, [("f", ())])
    assert ours == await anyio.to_thread.run_sync(run_wasmtime, wasm, [("f", ())])
    assert ours[1][1] == "trap TrapCode.MEMORY_OUT_OF_BOUNDS" and ours[1][2] == (4 if offset < 1 << 32 else 0)


def _wasmtime_with_memory(wasm: bytes) -> int:
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    cfg.wasm_multi_memory = True
    engine = wasmtime.Engine(cfg)
    store = wasmtime.Store(engine)
    store.set_fuel(10**9)
    memory = wasmtime.Memory(store, wasmtime.MemoryType(wasmtime.Limits(1, None)))
    wasmtime.Instance(store, wasmtime.Module(engine, wasm), [memory])
    return 10**9 - store.get_fuel()


@pytest.mark.parametrize(
    "data",
    [
        '(data (memory 1) (i32.const 5) "x")',
        '(data (memory 1) (i32.const 4095) "xy")',
        '(data (memory 1) (i32.const 5) "x") (data (memory 1) (i32.const 9000) "\\00y\\00")',
    ],
)
async def test_a_data_image_beside_an_imported_memory_costs_its_pages(data: str) -> None:
    """A module that imports a memory gets no mapped image from wasmtime: its start-up code copies
    each image, in whole 4 KiB pages, and is charged for them."""
    wasm = wat_to_wasm(
        f'(module (import "e" "m" (memory 1)) (memory 1) {data} (global i32 (i32.mul (i32.const 2) (i32.const 3))))'
    )
    linker = asyncwasm.Linker()
    linker.define("e", "m", host_memory(1))
    store = asyncwasm.Store()
    await linker.instantiate(asyncwasm.Module(wasm), store)
    assert store.fuel_used == await anyio.to_thread.run_sync(_wasmtime_with_memory, wasm)
    assert store.fuel_used > 4096


async def test_data_for_a_defined_memory_after_an_imported_one() -> None:
    provider = await asyncwasm.Linker().instantiate(
        asyncwasm.Module(wat_to_wasm('(module (memory (export "m") 1))'))
    )
    linker = asyncwasm.Linker()
    linker.define_instance("p", provider)
    wat = """(module (memory (import "p" "m") 1) (memory $own (export "own") 1)
      (data (memory 1) (i32.const 10) "mine") (data (memory 0) (i32.const 3) "theirs"))"""
    inst = await linker.instantiate(asyncwasm.Module(wat_to_wasm(wat)))
    assert inst.exports["own"].read(10, 4) == b"mine"  # type: ignore[union-attr]
    assert provider.exports["m"].read(3, 6) == b"theirs"  # type: ignore[union-attr]


async def test_a_64_bit_address_plus_offset_past_2_64_traps_instead_of_wrapping() -> None:
    # offset 2^64-1 on a memory that may grow to 2^48 pages: not a static trap, the sum must trap
    wat = """(module (memory i64 1)
      (func (export "at") (param i64) (result i32) (i32.load8_u offset=0xFFFFFFFFFFFFFFFF (local.get 0)))
      (func (export "near") (param i64) (result i64) (i64.load offset=0x8000000000000000 (local.get 0))))"""
    inst = await asyncwasm.Linker().instantiate(asyncwasm.Module(wat_to_wasm(wat)))
    # byte loads index the buffer (IndexError past the end), wider ones go through struct (OverflowError
    # past 2^63): both trap as out of bounds
    for name, addr in (("at", 1), ("at", 0), ("near", 0), ("near", 1 << 63)):  # 2^64, 2^64-1, 2^63, 2^64
        with pytest.raises(Trap, match="out of bounds memory access"):
            await inst.call(name, addr)


async def test_copy_between_memories_and_data_for_a_second_memory() -> None:
    wat = """(module
      (memory $x (export "x") 1) (memory $y (export "y") 1)
      (data (memory $y) (i32.const 100) "abc")
      (func (export "move") (memory.copy $x $y (i32.const 0) (i32.const 100) (i32.const 3))))"""
    inst = await asyncwasm.Linker().instantiate(asyncwasm.Module(wat_to_wasm(wat)))
    x, y = inst.exports["x"], inst.exports["y"]
    assert isinstance(x, asyncwasm.Memory) and isinstance(y, asyncwasm.Memory)
    assert x.read(0, 3) == bytes(3) and y.read(100, 3) == b"abc"
    await inst.call("move")
    assert x.read(0, 3) == b"abc"


async def test_extended_constant_expressions_and_reads_of_earlier_globals() -> None:
    wat = """(module
      (global $g (import "env" "g") i64)
      (global $a i64 (i64.mul (global.get $g) (i64.const 3)))
      (global $b (export "b") i64 (i64.sub (global.get $a) (i64.const 1)))
      (global $c (export "c") i32 (i32.add (i32.const 0x7FFFFFFF) (i32.const 2))))"""
    linker = asyncwasm.Linker()
    linker.define("env", "g", host_global("i64", 14))
    inst = await linker.instantiate(asyncwasm.Module(wat_to_wasm(wat)))
    assert inst.exports["b"].value == 41  # type: ignore[union-attr]
    assert inst.exports["c"].value == 0x80000001  # type: ignore[union-attr]  # wraps as an i32
    with pytest.raises(InvalidModule, match="extended-const"):
        asyncwasm.Module(wat_to_wasm(wat), features=WASM2)


async def test_the_store_page_budget_covers_all_memories_together() -> None:
    wat = """(module (memory (export "m0") 2) (memory (export "m1") i64 1)
      (func (export "grow0") (param i32) (result i32) (memory.grow 0 (local.get 0)))
      (func (export "grow1") (param i64) (result i64) (memory.grow 1 (local.get 0))))"""
    module = asyncwasm.Module(wat_to_wasm(wat))
    store = asyncwasm.Store(max_memory_pages=4)
    inst = await asyncwasm.Linker().instantiate(module, store)
    assert await inst.call("grow1", 1) == 1  # 2 + 2 pages: the whole budget
    assert await inst.call("grow0", 1) == -1 and await inst.call("grow1", 1) == -1
    assert inst.exports["m0"].pages == 2 and inst.exports["m1"].pages == 2  # type: ignore[union-attr]
    with pytest.raises(Trap, match="budget"):  # a second instance finds the budget spent
        await asyncwasm.Linker().instantiate(module, store)
    # by default a store holds 65,536 pages (4 GiB) in all: a 64-bit memory cannot pass it
    big = asyncwasm.Module(
        wat_to_wasm("""(module (memory i64 0)
      (func (export "grow") (param i64) (result i64) (memory.grow (local.get 0))))""")
    )
    inst = await asyncwasm.Linker().instantiate(big)
    assert await inst.call("grow", 65537) == -1


async def test_table64_and_a_copy_between_a_32_and_a_64_bit_table() -> None:
    wat = """(module
      (table $t32 (export "t32") 4 funcref) (table $t64 (export "t64") i64 4 funcref)
      (func $f (result i32) (i32.const 5)) (elem declare func $f)
      (func (export "set") (param i64) (table.set $t64 (local.get 0) (ref.func $f)))
      (func (export "copy") (param i32 i64 i32) (table.copy $t32 $t64 (local.get 0) (local.get 1) (local.get 2)))
      (func (export "call32") (param i32) (result i32) (call_indirect $t32 (result i32) (local.get 0)))
      (func (export "fill") (param i64 i64) (table.fill $t64 (local.get 0) (ref.null func) (local.get 1))))"""
    inst = await asyncwasm.Linker().instantiate(asyncwasm.Module(wat_to_wasm(wat)))
    await inst.call("set", 2)
    await inst.call("copy", 1, 2, 1)  # the count is an i32: the narrower of the two index types
    assert await inst.call("call32", 1) == 5
    with pytest.raises(Trap, match="out of bounds table access"):
        await inst.call("set", 1 << 63)
    with pytest.raises(Trap, match="out of bounds table access"):
        await inst.call("fill", 3, (1 << 64) - 1)
    with pytest.raises(InvalidModule, match="type mismatch"):  # an i64 count between mixed tables
        asyncwasm.Module(wat_to_wasm(wat.replace("(param i32 i64 i32)", "(param i32 i64 i64)")))


def test_under_the_2_0_preset_the_new_encodings_and_rules_are_refused() -> None:
    two = wat_to_wasm("(module (memory 1) (memory 1))")
    with pytest.raises(InvalidModule, match="multi-memory"):
        validate_module(decode_module(two, WASM2), WASM2)
    validate_module(decode_module(two))
    with pytest.raises(UnsupportedFeature, match="memory64"):
        decode_module(wat_to_wasm("(module (memory i64 1))"), WASM2)
    # a memory index in a memarg (flag bit 6) is not 2.0's encoding
    indexed = wat_to_wasm("(module (memory 1) (memory 1) (func (drop (i32.load 1 (i32.const 0)))))")
    with pytest.raises(MalformedModule, match="malformed memop flags"):
        decode_module(indexed, WASM2)
    # only the multi-memory gate: memory64 on, multi-memory off
    no_multi = Features.parse("2.0,+memory64")
    with pytest.raises(InvalidModule, match="multi-memory"):
        validate_module(decode_module(two, no_multi), no_multi)
    own = wat_to_wasm("(module (global i32 (i32.const 1)) (global i32 (global.get 0)))")
    with pytest.raises(InvalidModule, match="unknown global"):
        validate_module(decode_module(own, WASM2), WASM2)
    validate_module(decode_module(own))


def test_offsets_of_a_32_bit_memory_stay_below_2_32() -> None:
    ok = wat_to_wasm("(module (memory i64 1) (func (drop (i32.load offset=0x100000000 (i64.const 0)))))")
    validate_module(decode_module(ok))
    bad = ok.replace(b"\x05\x03\x01\x04\x01", b"\x05\x03\x01\x00\x01")  # the same memory, 32-bit
    assert bad != ok
    with pytest.raises(InvalidModule, match="offset out of range"):
        validate_module(decode_module(bad))


AREA = (
    "address64 align64 bulk64 call_indirect64 endianness64 float_memory64 load64 memory64 memory64-imports "
    "memory_copy64 memory_fill64 memory_grow64 memory_init64 memory_redundancy64 memory_trap64 table64 "
    "table_copy64 table_fill64 table_get64 table_grow64 table_init64 table_set64 table_size64 binary_leb128_64 "
    "table_copy_mixed address0 address1 align0 load0 load1 load2 store0 store1 store2 memory-multi "
    "memory_size0 memory_size1 memory_size2 memory_size3 memory_size_import memory_grow memory_trap0 "
    "memory_trap1 memory_copy0 memory_copy1 memory_fill0 memory_init0 float_memory0 data0 data1 data_drop0 "
    "traps0 start0 exports0 binary0 imports0 imports1 imports2 imports3 imports4 linking0 linking1 linking2 "
    "linking3 global simd_memory-multi"
).split()


def test_the_spec_scripts_of_memory64_and_multi_memory_pass(shared: Path) -> None:
    """Every command of these spec3 scripts passes, but any listed in the known-failures file
    (commands of other proposals a branch may lack), which must still fail."""
    failures: set[str] = set()
    commands = 0
    for name in AREA:
        path = shared / "spec3" / "json" / name / f"{name}.json"
        commands += len(json.loads(path.read_text())["commands"])
        failures |= {failure_key(path, where) for where, _msg in ScriptRunner(path).run().failures}
    assert commands > 9_700
    known = {
        k
        for k in load_known_failures(DEFAULT_KNOWN_FAILURES)
        if k.startswith("spec3/") and k[6:].rpartition(":")[0] in AREA
    }
    assert not failures - known, sorted(failures - known)[:20]
    assert not known - failures, f"now passing, remove from the known failures: {sorted(known - failures)}"


SMITH_SEEDS = range(40)


def test_random_modules_with_64_bit_and_several_memories_agree_with_wasmtime(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """tests/differential.py's harness on `wasm-tools smith` modules that may have up to three
    memories, 64-bit ones among them, and extended constant expressions: results, traps, state and
    fuel agree with wasmtime call by call."""
    import differential

    flags = list(differential.SMITH_FLAGS)
    for name, value in (
        ("--memory64-enabled", "true"),
        ("--extended-const-enabled", "true"),
        ("--max-memories", "3"),
        ("--max-memory64-bytes", str(4 * 65536)),
    ):
        if name in flags:
            flags[flags.index(name) + 1] = value
        else:
            flags += [name, value]
    monkeypatch.setattr(differential, "SMITH_FLAGS", tuple(flags))
    cfg = wasmtime.Config()  # the harness's 2.0 configuration, plus the memory proposals
    cfg.consume_fuel = True
    for feature in (
        "simd",
        "relaxed_simd",
        "threads",
        "tail_call",
        "gc",
        "function_references",
        "exceptions",
        "wide_arithmetic",
        "custom_page_sizes",
        "component_model",
    ):
        setattr(cfg, f"wasm_{feature}", False)
    cfg.wasm_memory64 = cfg.wasm_multi_memory = True
    cfg.cranelift_opt_level = "none"
    monkeypatch.setattr(differential, "_engine", wasmtime.Engine(cfg))
    disagreements, several, wide = [], 0, 0
    for seed in SMITH_SEEDS:
        wasm = differential.generate(seed)
        if wasm is None:
            continue
        memories = decode_module(wasm).memory_types()
        several += len(memories) > 1
        wide += any(m.address == "i64" for m in memories)
        disagreements += differential.run_module(wasm, seed).disagreements
    assert not disagreements, [str(d) for d in disagreements[:10]]
    assert several >= 5 and wide >= 5  # the seeds do reach the features


def test_the_flat_shape_passes_the_multi_memory_and_memory64_scripts(
    shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory operations translate the same in the flat shape (deeply nested functions take it)."""
    from asyncwasm.compiler import structured

    monkeypatch.setattr(structured, "MAX_PY_LOOPS", -1)
    for name in (
        "address64",
        "memory_trap64",
        "memory_copy1",
        "memory-multi",
        "load2",
        "store2",
        "bulk64",
        "table_copy_mixed",
        "memory_grow64",
        "memory_init0",
        "float_memory64",
    ):
        res = ScriptRunner(shared / "spec3" / "json" / name / f"{name}.json").run()
        assert res.failed == 0 and res.passed > 0, res.failures[:5]


def test_the_cli_memory_limit_is_for_all_memories_together(tmp_path: Path) -> None:
    module = tmp_path / "two.wat"
    module.write_text('(module (memory 2) (memory 2) (func (export "_start")))')
    run = [sys.executable, "-m", "asyncwasm", "run", "--max-memory"]
    over = subprocess.run([*run, "192KiB", str(module)], capture_output=True, text=True, timeout=60)
    assert over.returncode == 1 and "start at 4 pages together" in over.stderr
    fits = subprocess.run([*run, "256KiB", str(module)], capture_output=True, text=True, timeout=60)
    assert fits.returncode == 0, fits.stderr
