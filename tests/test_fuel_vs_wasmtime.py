"""Fuel is counted the way wasmtime counts it, so limits mean the same in both: checked against
wasmtime itself (the differential-test reference) on real workloads."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from wat import wat

import asyncwasm

wasmtime = pytest.importorskip("wasmtime")
WAT = Path(__file__).resolve().parent.parent / "benchmarks" / "wat"

CASES = [
    ("fib", "fib", (15,)),
    ("loop", "loop", (1000,)),
    ("mandel", "mandel", (6, 6, 30)),
    ("xorshift", "xorshift", (500,)),
    ("mem", "fill_sum", (256,)),
]


def wasmtime_fuel(wasm: bytes, name: str, args: tuple[int, ...]) -> tuple[int, object]:
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    engine = wasmtime.Engine(cfg)
    store = wasmtime.Store(engine)
    store.set_fuel(10**12)
    inst = wasmtime.Instance(store, wasmtime.Module(engine, wasm), [])
    result = inst.exports(store)[name](store, *args)
    return 10**12 - store.get_fuel(), result


async def asyncwasm_fuel(wasm: bytes, name: str, args: tuple[int, ...]) -> tuple[int, object]:
    store = asyncwasm.Store()
    inst = await asyncwasm.Linker().instantiate(asyncwasm.Module(wasm), store)
    result = await inst.call(name, *args)
    return store.fuel_used, result


# if/else branches whose costs differ, a loop inside a then-branch, a br_if out of a branch
BRANCHY = """
(module
  (func (export "branchy") (param $n i32) (result i32) (local $i i32) (local $acc i32)
    (block $out
      (loop $top
        (br_if $out (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.and (local.get $i) (i32.const 1))
          (then
            (local.set $acc (i32.add (local.get $acc) (i32.const 3)))
            (block $inner
              (loop $l
                (local.set $acc (i32.add (local.get $acc) (i32.const 1)))
                (br_if $inner (i32.gt_u (local.get $acc) (i32.const 1000000)))
                (br_if $l (i32.and (local.get $acc) (i32.const 3))))))
          (else
            (if (i32.eqz (i32.rem_u (local.get $i) (i32.const 7)))
              (then (local.set $acc (i32.sub (local.get $acc) (i32.const 1))))
              (else nop))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $top)))
    (local.get $acc)))
"""


def test_fuel_matches_wasmtime_on_branchy_code() -> None:
    wasm = wat(BRANCHY)
    for n in (0, 1, 2, 7, 50, 333):
        assert anyio.run(asyncwasm_fuel, wasm, "branchy", (n,)) == wasmtime_fuel(wasm, "branchy", (n,)), n


@pytest.mark.parametrize(("file", "name", "args"), CASES)
def test_fuel_matches_wasmtime(file: str, name: str, args: tuple[int, ...]) -> None:
    wasm = wat((WAT / f"{file}.wat").read_text())
    assert anyio.run(asyncwasm_fuel, wasm, name, args) == wasmtime_fuel(wasm, name, args)
