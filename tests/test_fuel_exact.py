"""Fuel exactly as wasmtime counts it, case by case, against wasmtime itself: the unit a call costs
on entry, traps in the middle of a chunk (what was used since the last call or return is lost),
``unreachable``, calls, loops with and without back edges, bulk operations by size, grows that
succeed and fail, limits reached exactly, and limits changed between calls.

Each case runs one module in both engines: before every call the fuel is set, after it the result
(or the trap's kind) and the fuel left must be the same."""

from __future__ import annotations

import pytest
from wat import wat

import asyncwasm
from asyncwasm.runtime.instance import host_global, host_memory, host_table

wasmtime = pytest.importorskip("wasmtime")
pytestmark = pytest.mark.anyio

MODULE = """
(module
  (memory 1 300)
  (table $t 2 1000 funcref)
  (elem declare func $e)
  (func $e)
  (func $one (result i32) (i32.const 1))
  (func (export "empty"))
  (func (export "c1") (result i32) (i32.const 1))
  (func (export "div0") (param i32) (result i32)
    (i32.const 1) (drop) (i32.const 1) (drop) (i32.const 1) (local.get 0) (i32.div_u))
  (func (export "call_then_div0") (param i32) (result i32)
    (call $e) (i32.add (call $one) (i32.const 1)) (local.get 0) (i32.div_u))
  (func (export "unr") (i32.const 1) (drop) (i32.const 2) (drop) unreachable)
  (func (export "loop_then_trap") (param $n i32) (local $i i32)
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (drop (i32.load (i32.const 0x7fffffff))))
  (func (export "count") (param $n i32) (local $i i32)
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n)))))
  (func (export "plain_loop") (result i32) (loop (result i32) (i32.const 5)))
  (func (export "early") (param i32) (result i32)
    (br_if 0 (i32.const 7) (local.get 0)) (drop) (i32.const 1) (i32.const 2) (i32.add))
  (func (export "ifs") (param i32) (result i32)
    (if (result i32) (local.get 0)
      (then (i32.add (i32.const 1) (i32.const 2)))
      (else (i32.const 3))))
  (func (export "fill") (param i32) (memory.fill (i32.const 0) (i32.const 0) (local.get 0)))
  (func (export "fill100") (memory.fill (i32.const 0) (i32.const 0) (i32.const 100)))
  (func (export "fill200") (memory.fill (i32.const 0) (i32.const 0) (i32.const 200)))
  (func (export "copy") (param i32) (memory.copy (i32.const 0) (i32.const 100) (local.get 0)))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "grow5") (result i32) (memory.grow (i32.const 5)))
  (func (export "grow200") (result i32) (memory.grow (i32.const 200)))
  (func (export "size") (result i32) (memory.size))
  (func (export "tgrow") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0)))
  (func (export "tgrow_f") (param i32) (result i32) (table.grow $t (ref.func $e) (local.get 0)))
  (func (export "tfill") (param i32) (table.fill $t (i32.const 0) (ref.null func) (local.get 0)))
  (func (export "tsize") (result i32) (table.size $t))
  (func (export "far_load") (drop (i32.load offset=4294967295 (i32.const 0))))
  (func (export "far_store") (i64.store offset=4294967290 (i32.const 0) (i64.const 1)))
  (func $rec (export "rec") (param $n i32) (result i32)
    (if (result i32) (local.get $n)
      (then (i32.add (call $rec (i32.sub (local.get $n) (i32.const 1))) (i32.const 1)))
      (else (i32.div_u (i32.const 1) (local.get $n)))))
)
"""

BIG = 10**9
# (export, args, fuel set before the call)
CALLS = [
    ("empty", (), BIG),
    ("empty", (), 1),
    ("empty", (), 2),
    ("c1", (), 2),
    ("c1", (), 1),
    ("div0", (0,), BIG),
    ("div0", (1,), BIG),
    ("div0", (0,), 3),
    ("call_then_div0", (0,), BIG),
    ("call_then_div0", (1,), BIG),
    ("unr", (), BIG),
    ("unr", (), 1),
    ("loop_then_trap", (10,), BIG),
    ("loop_then_trap", (10,), 40),
    ("count", (50,), 350),
    ("count", (50,), 344),
    ("count", (50,), 345),
    ("count", (50,), BIG),
    ("plain_loop", (), BIG),
    ("plain_loop", (), 1),
    ("early", (0,), BIG),
    ("early", (1,), BIG),
    ("ifs", (0,), BIG),
    ("ifs", (1,), BIG),
    ("fill", (10,), BIG),
    ("fill", (0,), 5),
    ("fill", (0,), 6),
    ("fill", (20,), 10),
    ("fill", (65537,), 10),
    ("fill", (65537,), BIG),
    ("fill100", (), 50),
    ("fill100", (), BIG),
    ("fill200", (), 205),
    ("fill200", (), 206),
    ("copy", (30,), BIG),
    ("copy", (300,), 100),
    ("grow", (0,), 3),
    ("grow", (0,), 4),
    ("grow", (3,), 6),
    ("size", (), BIG),
    ("grow", (3,), BIG),
    ("grow", (100000,), 3),
    ("grow5", (), 4),
    ("grow5", (), BIG),
    ("grow200", (), 150),
    ("size", (), BIG),
    ("grow200", (), BIG),
    ("tgrow", (0,), 4),
    ("tgrow", (8,), 10),
    ("tsize", (), BIG),
    ("tgrow", (8,), BIG),
    ("tgrow_f", (5,), BIG),
    ("tgrow", (100000,), BIG),
    ("tfill", (3,), BIG),
    ("tfill", (3000,), BIG),
    ("rec", (10,), BIG),
    ("rec", (10,), 40),
    ("far_load", (), BIG),
    ("far_store", (), BIG),
]


def wasmtime_run(wasm: bytes) -> list[tuple[str, int]]:
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    engine = wasmtime.Engine(cfg)
    store = wasmtime.Store(engine)
    store.set_fuel(BIG)
    inst = wasmtime.Instance(store, wasmtime.Module(engine, wasm), [])
    out = []
    for name, args, fuel in CALLS:
        store.set_fuel(fuel)
        try:
            outcome = repr(inst.exports(store)[name](store, *args))
        except wasmtime.Trap as trap:
            outcome = _kind(str(trap))
        out.append((outcome, store.get_fuel()))
    return out


def _kind(message: str) -> str:
    for kind in (
        "all fuel consumed",
        "divide by zero",
        "unreachable",
        "out of bounds memory",
        "out of bounds table",
        "undefined element",
    ):
        if kind in message:
            return kind
    return message


async def test_fuel_matches_wasmtime_call_by_call() -> None:
    wasm = wat(MODULE)
    expected = wasmtime_run(wasm)
    store = asyncwasm.Store(fuel=BIG)
    inst = await asyncwasm.Linker().instantiate(asyncwasm.Module(wasm), store)
    for (name, args, fuel), want in zip(CALLS, expected, strict=True):
        store.set_fuel(fuel)
        try:
            result = await inst.call(name, *args)
            outcome = repr(_signed(result))
        except asyncwasm.Trap as trap:
            outcome = _kind("all fuel consumed" if isinstance(trap, asyncwasm.FuelExhausted) else str(trap))
        assert (outcome, store.get_fuel()) == want, (name, args, fuel)


def _signed(value: object) -> object:
    if isinstance(value, int) and value >= 1 << 31:
        return value - (1 << 32)
    return value


# (module, fuel): instantiation's cost, with the imports "m" "m" (a memory of 1 page), "m" "g" (an
# immutable i32 global, 3) and "m" "t" (a funcref table of 5) where a module asks for them
DATA190 = '"' + "0123456789" * 19 + '"'
ELEMS200 = "(ref.func $f) " * 200
INSTANTIATIONS = [
    ("(module (func $s) (start $s))", BIG),
    ("(module (func $s) (start $s))", 3),
    ("(module (func $s) (start $s))", 4),
    ("(module (func $s) (start $s))", 0),
    ("(module (func $s (i32.const 1) (drop)) (start $s))", BIG),
    ('(module (memory 1) (data (i32.const 0) "hello") (data (i32.const 100) "ab"))', BIG),
    ('(module (memory 1) (data "passive"))', BIG),
    ("(module (global i32 (i32.const 5)) (global (mut i64) (i64.const 5)))", BIG),
    ("(module (global funcref (ref.null func)))", BIG),
    ("(module (table 3 funcref) (func $f) (elem (i32.const 0) $f $f))", BIG),
    ("(module (func $f) (elem func $f $f $f))", BIG),
    ("(module (func $f) (elem declare func $f))", BIG),
    ("(module (func $f) (elem funcref (ref.func $f) (ref.null func)))", BIG),
    ("(module (table 3 funcref) (func $f) (elem (i32.const 0) funcref (ref.func $f) (ref.null func)))", BIG),
    ('(module (import "m" "g" (global $g i32)) (table 10 funcref) (func $f) (elem (global.get $g) $f))', BIG),
    (
        "(module (table 10 funcref) (func $f) (elem (i32.const 0) $f $f $f) (elem (i32.const 5) funcref (ref.func $f)))",
        BIG,
    ),
    ("(module (table 10 funcref) (func $f) (elem (i32.const 8) $f $f $f))", BIG),
    ("(module (table 10 funcref) (func $f) (elem (i32.const 20) funcref (ref.null func)))", BIG),
    ("(module (table 10 externref) (elem (i32.const 1) externref (ref.null extern)))", BIG),
    (f"(module (table 300 funcref) (func $f) (elem (i32.const 0) funcref {ELEMS200}))", 402),
    (f"(module (table 300 funcref) (func $f) (elem (i32.const 0) funcref {ELEMS200}))", 403),
    (f'(module (import "m" "g" (global $g i32)) (memory 1) (data (global.get $g) {DATA190}))', BIG),
    (f'(module (import "m" "g" (global $g i32)) (memory 1) (data (global.get $g) {DATA190}))', 100),
    (
        '(module (import "m" "g" (global $g i32)) (memory 1) (data (i32.const 0) "abcd") (data (global.get $g) "xy"))',
        BIG,
    ),
    ('(module (memory 1) (data (i32.const 0) "abcd") (data (i32.const 70000) "xy"))', BIG),
    ('(module (memory 1) (data (i32.const 65536) ""))', BIG),
    ('(module (memory 1) (data (i32.const 65537) ""))', BIG),
    ('(module (memory 200) (data (i32.const 12000000) "ab"))', BIG),
    ('(module (memory 2000) (data (i32.const 0) "a") (data (i32.const 120000000) "ab"))', BIG),
    ("(module (memory 1) (func $s (i32.const 1) (i32.const 0) (i32.div_u) (drop)) (start $s))", BIG),
    ('(module (memory 1 1) (data (i32.const 0) "abcd") (func $s) (start $s))', BIG),
    (
        '(module (memory 1) (data $d "abc") (func $s (memory.init $d (i32.const 0) (i32.const 0) (i32.const 3))) (start $s))',
        BIG,
    ),
    ('(module (import "m" "m" (memory 1)) (data (i32.const 0) "hello") (data (i32.const 10) "ab"))', BIG),
    ('(module (import "m" "g" (global i32)) (global i32 (global.get 0)))', BIG),
    ('(module (import "m" "g" (global i32)) (memory 1) (data (global.get 0) "abc"))', BIG),
    ('(module (import "m" "t" (table 5 funcref)) (func $f) (elem (i32.const 0) $f $f))', BIG),
    # function-index segments after one applied at run time are applied at run time too
    (
        "(module (table 4 funcref) (func $f) (elem (i32.const 2) funcref (ref.func $f)) (elem (i32.const 0) func $f))",
        BIG,
    ),
    (
        "(module (table 4 4 funcref) (table 2 2 funcref) (elem (table 1) (i32.const 2) funcref) (elem (table 0) (i32.const 0) func))",
        BIG,
    ),
    # with a memory image, only the start-up code's entry and the start call are charged
    (
        '(module (memory 1) (data (i32.const 0) "v") (table 4 funcref) (elem (i32.const 1) funcref (ref.null func) (ref.null func)))',
        BIG,
    ),
    (
        '(module (memory 1) (global externref (ref.null extern)) (data (i32.const 0) "v") (func $s) (start $s))',
        BIG,
    ),
    ('(module (memory 1) (global externref (ref.null extern)) (data (i32.const 0) ""))', BIG),
]


def _wasmtime_instantiate(source: str, fuel: int) -> tuple[str, int]:
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    engine = wasmtime.Engine(cfg)
    store = wasmtime.Store(engine)
    store.set_fuel(fuel)
    module = wasmtime.Module(engine, wat(source))
    offered = {
        ("m", "m"): lambda: wasmtime.Memory(store, wasmtime.MemoryType(wasmtime.Limits(1, None))),
        ("m", "g"): lambda: wasmtime.Global(store, wasmtime.GlobalType(wasmtime.ValType.i32(), False), 3),
        ("m", "t"): lambda: wasmtime.Table(
            store, wasmtime.TableType(wasmtime.ValType.funcref(), wasmtime.Limits(5, None)), None
        ),
    }
    try:
        wasmtime.Instance(store, module, [offered[(i.module, i.name)]() for i in module.imports])
        outcome = "ok"
    except wasmtime.Trap as trap:
        outcome = _kind(str(trap))
    return outcome, store.get_fuel()


@pytest.mark.parametrize(("source", "fuel"), INSTANTIATIONS)
async def test_instantiation_costs_what_it_costs_in_wasmtime(source: str, fuel: int) -> None:
    store = asyncwasm.Store(fuel=fuel)
    linker = asyncwasm.Linker()
    linker.define("m", "m", host_memory(1))
    linker.define("m", "g", host_global("i32", 3))
    linker.define("m", "t", host_table(min_size=5))
    try:
        await linker.instantiate(asyncwasm.Module(wat(source)), store)
        outcome = "ok"
    except asyncwasm.Trap as trap:
        outcome = _kind("all fuel consumed" if isinstance(trap, asyncwasm.FuelExhausted) else str(trap))
    assert (outcome, store.get_fuel()) == _wasmtime_instantiate(source, fuel)


async def test_set_fuel_from_a_host_function_takes_effect_at_once() -> None:
    source = """
    (module
      (import "env" "tighten" (func $tighten))
      (func (export "run") (local $i i32)
        (call $tighten)
        (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $l))))
    """
    store = asyncwasm.Store(fuel=BIG)
    linker = asyncwasm.Linker()
    linker.define_func("env", "tighten", asyncwasm.FuncType((), ()), lambda: store.set_fuel(100))
    inst = await linker.instantiate(asyncwasm.Module(wat(source)), store)
    with pytest.raises(asyncwasm.FuelExhausted):
        await inst.call("run")
    # 2 units spent when it was called (entering run, the call), then exactly 100 more
    assert store.get_fuel() == 0
    assert store.fuel_used == 2 + 100


async def test_accesses_past_the_memory_maximum_and_sizes_of_fixed_tables() -> None:
    """An access whose offset passes the memory's maximum is a trap that saves the fuel first; the
    size of a table that cannot grow is a constant, so growing memory by it is charged up front."""
    source = """
    (module (memory 1 1) (table $t 3 3 funcref)
      (func (export "far") (drop (i32.load8_u offset=65536 (i32.const 0))))
      (func (export "edge") (drop (i32.load offset=65532 (i32.const 0))))
      (func (export "grow_by_size") (drop (memory.grow (table.size $t)))))
    """
    wasm = wat(source)
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    engine = wasmtime.Engine(cfg)
    wt_store = wasmtime.Store(engine)
    wt_inst = wasmtime.Instance(wt_store, wasmtime.Module(engine, wasm), [])
    store = asyncwasm.Store(fuel=BIG)
    inst = await asyncwasm.Linker().instantiate(asyncwasm.Module(wasm), store)
    for name in ("far", "edge", "grow_by_size"):
        wt_store.set_fuel(100)
        store.set_fuel(100)
        try:
            wt_inst.exports(wt_store)[name](wt_store)
        except wasmtime.Trap:
            pass
        try:
            await inst.call(name)
        except asyncwasm.Trap:
            pass
        assert store.get_fuel() == wt_store.get_fuel(), name
