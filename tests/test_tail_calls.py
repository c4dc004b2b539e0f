"""Tail calls (return_call, return_call_indirect, return_call_ref): constant stack through the
trampoline, results and traps as wasmtime gives them, fuel as wasmtime counts it, and no change to
the code of functions that make no tail call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from wat import wat

import asyncwasm
from asyncwasm.compiler import codegen, structured

wasmtime = pytest.importorskip("wasmtime")

MUTUAL = """
(module
  (type $t (func (param i64) (result i32)))
  (import "host" "double" (func $double (param i64) (result i64)))
  (table $tab 2 funcref)
  (elem (table $tab) (i32.const 0) func $ieven $iodd)
  (func $even (export "even") (param $n i64) (result i32)
    (if (result i32) (i64.eqz (local.get $n))
      (then (i32.const 1))
      (else (return_call $odd (i64.sub (local.get $n) (i64.const 1))))))
  (func $odd (export "odd") (param $n i64) (result i32)
    (if (result i32) (i64.eqz (local.get $n))
      (then (i32.const 0))
      (else (return_call $even (i64.sub (local.get $n) (i64.const 1))))))
  ;; the same through the table
  (func $ieven (export "ieven") (param $n i64) (result i32)
    (if (result i32) (i64.eqz (local.get $n))
      (then (i32.const 1))
      (else (return_call_indirect $tab (type $t) (i64.sub (local.get $n) (i64.const 1)) (i32.const 1)))))
  (func $iodd (param $n i64) (result i32)
    (if (result i32) (i64.eqz (local.get $n))
      (then (i32.const 0))
      (else (return_call_indirect $tab (type $t) (i64.sub (local.get $n) (i64.const 1)) (i32.const 0)))))
  ;; and through references made by ref.func
  (elem declare func $reven $rodd)
  (func $reven (export "reven") (param $n i64) (result i32)
    (if (result i32) (i64.eqz (local.get $n))
      (then (i32.const 1))
      (else (return_call_ref $t (i64.sub (local.get $n) (i64.const 1)) (ref.func $rodd)))))
  (func $rodd (param $n i64) (result i32)
    (if (result i32) (i64.eqz (local.get $n))
      (then (i32.const 0))
      (else (return_call_ref $t (i64.sub (local.get $n) (i64.const 1)) (ref.func $reven)))))
  ;; an accumulating loop written as a tail call, with several results
  (func $sum (export "sum") (param $n i64) (param $acc i64) (result i64 i64)
    (if (result i64 i64) (i64.eqz (local.get $n))
      (then (local.get $acc) (local.get $n))
      (else (return_call $sum (i64.sub (local.get $n) (i64.const 1))
                              (i64.add (local.get $acc) (local.get $n))))))
  ;; a plain caller of a tail-calling function: its call is an ordinary one
  (func (export "caller") (param $n i64) (result i32)
    (i32.add (call $even (local.get $n)) (i32.const 10)))
  ;; a trap after tail calls
  (func $boom (param $n i64) (result i32) (if (i64.eqz (local.get $n)) (then unreachable)) (i32.const 0))
  (func $via (param $n i64) (result i32) (return_call $boom (local.get $n)))
  (func (export "trap_after_tail") (result i32) (i32.add (call $via (i64.const 0)) (i32.const 1)))
  ;; a tail call to an import
  (func (export "to_host") (param i64) (result i64) (return_call $double (local.get 0)))
)
"""

DEEP = 1_000_000


def _host_linker() -> asyncwasm.Linker:
    linker = asyncwasm.Linker()
    linker.define_func("host", "double", asyncwasm.FuncType(("i64",), ("i64",)), lambda x: 2 * x)
    return linker


async def _instance(store: asyncwasm.Store | None = None) -> asyncwasm.Instance:
    return await _host_linker().instantiate(asyncwasm.Module(wat(MUTUAL)), store)


@pytest.fixture(params=["structured", "flat"])
def shape(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "flat":
        monkeypatch.setattr(
            structured.StructuredTranslator, "translate", _too_deep
        )  # every function goes flat
    return str(request.param)


def _too_deep(self: object) -> None:
    raise structured.TooDeep()


@pytest.mark.parametrize("export", ["even", "ieven", "reven"])
def test_a_million_mutual_tail_calls_run_in_constant_stack(export: str) -> None:
    """Five times past the store's call-depth limit (200,000 frames): only constant stack can do it;
    the recursion limit is lowered below even that, so any frame growth would fail."""

    async def main() -> tuple[Any, Any]:
        store = asyncwasm.Store(max_depth=1_000)
        inst = await _instance(store)
        return await inst.call(export, DEEP), await inst.call(export, DEEP + 1)

    assert anyio.run(main) == (1, 0)


def test_tail_calls_with_several_results_and_ordinary_callers() -> None:
    async def main() -> tuple[Any, ...]:
        inst = await _instance(asyncwasm.Store(max_depth=1_000))
        return (
            await inst.call("sum", 300_000, 0),
            await inst.call("caller", 7),
            await inst.call("to_host", 21),
        )

    assert anyio.run(main) == ((300_000 * 300_001 // 2, 0), 10, 42)


def test_functions_without_tail_calls_are_translated_as_before() -> None:
    """Only a function that makes a tail call gets a body ``t{i}`` and a trampoline; the others
    are one plain ``f{i}`` whose calls are not checked for a tail-call marker."""
    cm = asyncwasm.Module(wat(MUTUAL))
    src = cm.compiled.source
    caller = cm.compiled.source_of(8)  # the plain caller (function 0 is the import)
    assert caller.startswith("def f8(") and "_Tail" not in caller and "def w8" not in caller
    assert "def t1(" in src and "def w1(" in src and "def f1(" not in src
    plain = asyncwasm.Module('(module (func (export "f") (result i32) (i32.const 1)))').compiled.source
    assert "_Tail" not in plain and plain.startswith("def f0(")


def _wasmtime(wasm: bytes) -> tuple[Any, Any, Any]:
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    cfg.wasm_tail_call = True
    cfg.wasm_function_references = True
    cfg.wasm_gc = True
    engine = wasmtime.Engine(cfg)
    store = wasmtime.Store(engine)
    store.set_fuel(10**12)
    linker = wasmtime.Linker(engine)
    i64 = wasmtime.ValType.i64()
    linker.define_func("host", "double", wasmtime.FuncType([i64], [i64]), lambda x: 2 * x)
    inst = linker.instantiate(store, wasmtime.Module(engine, wasm))
    return engine, store, inst


@pytest.mark.parametrize(
    ("export", "args"),
    [
        ("even", (1001,)),
        ("ieven", (999,)),
        ("reven", (1000,)),
        ("sum", (500, 3)),
        ("caller", (40,)),
        ("to_host", (-4,)),
    ],
)
def test_results_and_fuel_match_wasmtime(export: str, args: tuple[int, ...], shape: str) -> None:
    wasm = wat(MUTUAL)
    _e, wstore, winst = _wasmtime(wasm)
    want = winst.exports(wstore)[export](wstore, *args)
    want_fuel = 10**12 - wstore.get_fuel()

    async def main() -> tuple[Any, int]:
        store = asyncwasm.Store()
        inst = await _host_linker().instantiate(asyncwasm.Module(wasm), store)
        got = await inst.call(export, *args)
        return got, store.fuel_used

    got, fuel = anyio.run(main)
    assert (got if not isinstance(got, tuple) else list(got)) == want
    assert fuel == want_fuel


def test_a_trap_after_tail_calls_has_wasmtimes_backtrace(shape: str) -> None:
    """The frame that made the tail call is gone (wasmtime's backtrace has the callee and the
    ordinary caller); the trampoline never shows."""
    wasm = wat(MUTUAL)
    _e, wstore, winst = _wasmtime(wasm)
    with pytest.raises(wasmtime.Trap) as wt:
        winst.exports(wstore)["trap_after_tail"](wstore)
    want = [f.func_name for f in wt.value.frames]

    async def main() -> None:
        inst = await _host_linker().instantiate(asyncwasm.Module(wasm))
        await inst.call("trap_after_tail")

    with pytest.raises(asyncwasm.Trap) as got:
        anyio.run(main)
    assert "unreachable" in got.value.message
    assert [f.func_name for f in got.value.frames] == want
    assert want[0] == "boom" and "via" not in want


def test_lazily_translated_functions_tail_call_each_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """Functions translated on first call (big modules): the first tail call into one goes
    through its stub, every later one runs its body straight from the trampoline."""
    monkeypatch.setattr(codegen, "LAZY_THRESHOLD", 0)

    async def main() -> tuple[Any, Any, bool]:
        inst = await _instance(asyncwasm.Store(max_depth=1_000))
        lazy = inst.module.compiled.lazy
        return await inst.call("even", 200_001), await inst.call("ieven", 200_000), lazy

    assert anyio.run(main) == (0, 1, True)


def test_fuel_runs_out_inside_a_tail_call_chain() -> None:
    async def main() -> None:
        inst = await _instance(asyncwasm.Store(fuel=10_000))
        await inst.call("even", DEEP)

    with pytest.raises(asyncwasm.FuelExhausted):
        anyio.run(main)


def test_tail_calls_are_refused_without_the_feature() -> None:
    with pytest.raises(asyncwasm.UnsupportedFeature, match="tail-call"):
        asyncwasm.Module(wat(MUTUAL), features=asyncwasm.Features.wasm2())


def test_tail_calling_functions_come_back_whole_from_the_code_cache(tmp_path: Path) -> None:
    """A function with tail calls is two code objects (body and trampoline): the persistent cache
    keeps both, and a module started from it runs a million tail calls again."""
    filler = " ".join(["(local.set 1 (i32.add (local.get 1) (i32.const 1)))"] * 1_500)
    text = (
        MUTUAL.rstrip()[:-1]
        + f'(func (export "filler") (param i32) (result i32) (local i32) {filler} (local.get 1)))'
    )
    wasm = wat(text)

    async def run(cm: asyncwasm.Module) -> tuple[Any, Any]:
        inst = await _host_linker().instantiate(cm, asyncwasm.Store(max_depth=1_000))
        return await inst.call("even", DEEP), await inst.call("ieven", 201)

    first = asyncwasm.Module(wasm, cache=tmp_path)
    assert first.compiled.lazy and anyio.run(run, first) == (1, 0)
    second = asyncwasm.Module(wasm, cache=tmp_path)
    assert anyio.run(run, second) == (1, 0)
    assert second.cache_entry.functions_loaded >= 4  # even, odd, ieven, iodd (and their callers)
