"""GC: structs, arrays, i31, casts and subtyping, canonical types across modules, GC references
passed through Python, and the feature gate. Where it helps, the same module runs on wasmtime."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime
from wat import wat

import asyncwasm
from asyncwasm.runtime.gc import Array, Struct

SUBTYPES = """
(module
  (type $point (sub (struct (field i32) (field i32))))
  (type $point3 (sub final $point (struct (field i32) (field i32) (field i32))))
  (type $other (struct (field i32) (field i32)))
  (func (export "make3") (result (ref $point))
    (struct.new $point3 (i32.const 1) (i32.const 2) (i32.const 3)))
  (func (export "make2") (result (ref $point))
    (struct.new $point (i32.const 4) (i32.const 5)))
  (func (export "is3") (param (ref null $point)) (result i32)
    (ref.test (ref $point3) (local.get 0)))
  (func (export "z") (param (ref null $point)) (result i32)
    (struct.get $point3 2 (ref.cast (ref $point3) (local.get 0))))
  (func (export "x") (param (ref null $point)) (result i32)
    (struct.get $point 0 (local.get 0)))
  (func (export "test_any") (param anyref) (result i32 i32 i32 i32 i32)
    (ref.test (ref eq) (local.get 0))
    (ref.test (ref struct) (local.get 0))
    (ref.test (ref $point) (local.get 0))
    (ref.test (ref $other) (local.get 0))
    (ref.test (ref null none) (local.get 0)))
)
"""


def _instance(text: str, linker: asyncwasm.Linker | None = None) -> asyncwasm.Instance:
    return (linker or asyncwasm.Linker()).instantiate_sync(asyncwasm.Module(wat(text)))


def _call(inst: asyncwasm.Instance, name: str, *args: object) -> object:
    f = inst.get_func(name)
    return inst.call_raw_sync(f, list(args))


def test_subtype_casts_and_tests() -> None:
    inst = _instance(SUBTYPES)
    p3 = _call(inst, "make3")
    p2 = _call(inst, "make2")
    assert isinstance(p3, Struct) and p3.fields == [1, 2, 3]
    assert _call(inst, "is3", p3) == 1
    assert _call(inst, "is3", p2) == 0
    assert _call(inst, "is3", None) == 0
    assert _call(inst, "z", p3) == 3
    with pytest.raises(asyncwasm.Trap, match="cast failure"):
        _call(inst, "z", p2)
    with pytest.raises(asyncwasm.Trap, match="null structure reference"):
        _call(inst, "x", None)
    # $other has $point's structure but is final and not declared its subtype: a different type
    assert _call(inst, "test_any", p2) == (1, 1, 1, 0, 0)
    assert _call(inst, "test_any", None) == (0, 0, 0, 0, 1)


ARRAYS = """
(module
  (type $bytes (array (mut i8)))
  (type $shorts (array i16))
  (type $words (array (mut i32)))
  (memory 1)
  (data $d "\\01\\80\\ff\\7f\\00\\00\\00\\80")
  (func (export "bytes") (param i32 i32) (result (ref $bytes))
    (array.new_data $bytes $d (local.get 0) (local.get 1)))
  (func (export "shorts") (result (ref $shorts))
    (array.new_data $shorts $d (i32.const 0) (i32.const 4)))
  (func (export "words") (result (ref $words))
    (array.new_data $words $d (i32.const 0) (i32.const 2)))
  (func (export "get_s") (param (ref $bytes) i32) (result i32) (array.get_s $bytes (local.get 0) (local.get 1)))
  (func (export "get_u") (param (ref $bytes) i32) (result i32) (array.get_u $bytes (local.get 0) (local.get 1)))
  (func (export "s16") (param (ref $shorts) i32) (result i32) (array.get_s $shorts (local.get 0) (local.get 1)))
  (func (export "w") (param (ref $words) i32) (result i32) (array.get $words (local.get 0) (local.get 1)))
  (func (export "set") (param (ref $bytes) i32 i32) (array.set $bytes (local.get 0) (local.get 1) (local.get 2)))
  (func (export "len") (param arrayref) (result i32) (array.len (local.get 0)))
  (func (export "copy") (param (ref $bytes) (ref $bytes))
    (array.copy $bytes $bytes (local.get 0) (i32.const 1) (local.get 1) (i32.const 0) (i32.const 3)))
)
"""


def test_arrays_from_data_packed_and_bounds() -> None:
    inst = _instance(ARRAYS)
    b = _call(inst, "bytes", 0, 4)
    assert isinstance(b, Array) and b.elems == [1, 0x80, 0xFF, 0x7F]
    assert [_call(inst, "get_s", b, i) for i in range(4)] == [1, 0xFFFFFF80, 0xFFFFFFFF, 0x7F]
    assert [_call(inst, "get_u", b, i) for i in range(4)] == [1, 0x80, 0xFF, 0x7F]
    s = _call(inst, "shorts")
    assert [_call(inst, "s16", s, i) for i in range(4)] == [0xFFFF8001, 0x7FFF, 0, 0xFFFF8000]
    w = _call(inst, "words")
    assert [_call(inst, "w", w, i) for i in range(2)] == [0x7FFF8001, 0x80000000]
    _call(inst, "set", b, 0, 0x1234)  # a packed field keeps the low 8 bits
    assert _call(inst, "get_u", b, 0) == 0x34
    assert _call(inst, "len", b) == 4
    c = _call(inst, "bytes", 0, 4)
    _call(inst, "copy", c, b)
    assert c.elems == [1, 0x34, 0x80, 0xFF]
    with pytest.raises(asyncwasm.Trap, match="out of bounds array access"):
        _call(inst, "get_u", b, 4)
    with pytest.raises(asyncwasm.Trap, match="out of bounds memory access"):
        _call(inst, "bytes", 5, 4)
    with pytest.raises(asyncwasm.Trap, match="null array reference"):
        _call(inst, "len", None)


I31 = """
(module
  (func (export "wrap") (param i32) (result i31ref) (ref.i31 (local.get 0)))
  (func (export "s") (param i31ref) (result i32) (i31.get_s (local.get 0)))
  (func (export "u") (param i31ref) (result i32) (i31.get_u (local.get 0)))
  (func (export "eq") (param eqref eqref) (result i32) (ref.eq (local.get 0) (local.get 1)))
)
"""


def test_i31_wraps_and_extends() -> None:
    inst = _instance(I31)
    big = _call(inst, "wrap", 0xFFFFFFFF)  # the top bit is dropped
    assert _call(inst, "u", big) == 0x7FFFFFFF
    assert _call(inst, "s", big) == 0xFFFFFFFF
    assert _call(inst, "s", _call(inst, "wrap", 0x40000000)) == 0xC0000000
    assert _call(inst, "eq", _call(inst, "wrap", 5), _call(inst, "wrap", 5)) == 1
    assert _call(inst, "eq", _call(inst, "wrap", 5), None) == 0
    with pytest.raises(asyncwasm.Trap, match="null i31 reference"):
        _call(inst, "s", None)


ROUND_TRIP = """
(module
  (type $box (struct (field (mut i64))))
  (func (export "box") (param i64) (result (ref $box)) (struct.new $box (local.get 0)))
  (func (export "unbox") (param (ref $box)) (result i64) (struct.get $box 0 (local.get 0)))
  (func (export "bump") (param (ref $box))
    (struct.set $box 0 (local.get 0) (i64.add (struct.get $box 0 (local.get 0)) (i64.const 1))))
  (func (export "out") (param anyref) (result externref) (extern.convert_any (local.get 0)))
  (func (export "in") (param externref) (result anyref) (any.convert_extern (local.get 0)))
  (func (export "is_box") (param externref) (result i32)
    (ref.test (ref $box) (any.convert_extern (local.get 0))))
)
"""


@pytest.mark.anyio
async def test_gc_reference_round_trip_through_python() -> None:
    inst = await asyncwasm.Linker().instantiate(asyncwasm.Module(wat(ROUND_TRIP)))
    box = await inst.call("box", -5)
    await inst.call("bump", box)
    assert await inst.call("unbox", box) == -4  # the same object came back, mutated
    ext = await inst.call("out", box)
    assert ext is box  # a GC reference leaves as an externref unchanged
    assert await inst.call("is_box", ext) == 1
    host = object()
    assert await inst.call("is_box", host) == 0  # any Python object is an externref
    assert await inst.call("out", await inst.call("in", host)) is host
    i31 = await inst.call("out", 7)  # an int is no i31 for the host: i31 refs leave boxed
    assert i31 is not None and not isinstance(i31, int)


def test_canonical_types_link_across_modules() -> None:
    provider = _instance("""
      (module
        (rec (type $node (struct (field (ref null $node)) (field i32))))
        (func (export "mk") (param i32) (result (ref $node)) (struct.new $node (ref.null $node) (local.get 0))))""")
    linker = asyncwasm.Linker()
    linker.define_instance("p", provider)
    user = _instance(
        """
      (module
        (rec (type $n (struct (field (ref null $n)) (field i32))))
        (import "p" "mk" (func $mk (param i32) (result (ref $n))))
        (func (export "get") (result i32) (struct.get $n 1 (call $mk (i32.const 42)))))""",
        linker,
    )
    assert _call(user, "get") == 42
    with pytest.raises(asyncwasm.LinkError):
        _instance(
            """
          (module
            (rec (type $n (struct (field (ref null $n)) (field i64))))
            (import "p" "mk" (func (param i32) (result (ref $n)))))""",
            linker,
        )


def test_call_indirect_accepts_a_subtype() -> None:
    inst = _instance("""
      (module
        (type $f (sub (func (result i32))))
        (type $g (sub $f (func (result i32))))
        (type $h (func (result i32)))
        (table 2 funcref)
        (elem (i32.const 0) $one $two)
        (func $one (type $g) (i32.const 1))
        (func $two (type $h) (i32.const 2))
        (func (export "call") (param i32) (result i32) (call_indirect (type $f) (local.get 0))))""")
    assert _call(inst, "call", 0) == 1
    with pytest.raises(asyncwasm.Trap, match="indirect call type mismatch"):
        _call(inst, "call", 1)  # $h has $f's structure but is final, with no supertype


@pytest.mark.parametrize(
    "text",
    [
        "(module (type $a (struct)) (type (sub $a (struct))))",  # $a is final
        "(module (type $a (sub (struct (field i32)))) (type (sub $a (struct (field i64)))))",
        "(module (type $a (struct (field i32))) (func (param (ref $a)) (struct.set $a 0 (local.get 0) (i32.const 1))))",
        "(module (type $a (array i8)) (func (param (ref $a)) (result i32) (array.get $a (local.get 0) (i32.const 0))))",
        "(module (func (param anyref) (result (ref any)) (local.get 0)))",
    ],
)
def test_invalid_gc_modules(text: str) -> None:
    with pytest.raises(asyncwasm.InvalidModule):
        asyncwasm.Module(wat(text))


def test_gc_needs_the_feature() -> None:
    with pytest.raises(asyncwasm.UnsupportedFeature, match="gc"):
        asyncwasm.Module(wat(I31), features=asyncwasm.Features.wasm2())
    with pytest.raises(asyncwasm.UnsupportedFeature, match="gc"):
        asyncwasm.Module(wat("(module (type (struct)))"), features=asyncwasm.Features.parse("-gc"))


def test_same_results_as_wasmtime() -> None:
    text = """
      (module
        (type $v (array (mut i32)))
        (func (export "sum") (param i32) (result i32)
          (local $a (ref $v)) (local $i i32) (local $s i32)
          (local.set $a (array.new $v (i32.const 3) (local.get 0)))
          (array.fill $v (local.get $a) (i32.const 1) (i32.const 7) (i32.sub (local.get 0) (i32.const 1)))
          (block $done
            (loop $l
              (br_if $done (i32.ge_u (local.get $i) (array.len (local.get $a))))
              (local.set $s (i32.add (local.get $s) (array.get $v (local.get $a) (local.get $i))))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br $l)))
          (local.get $s)))"""
    binary = wat(text)
    config = wasmtime.Config()
    config.wasm_gc = True
    config.wasm_function_references = True
    store = wasmtime.Store(wasmtime.Engine(config))
    theirs = wasmtime.Instance(store, wasmtime.Module(store.engine, binary), []).exports(store)["sum"]
    inst = _instance(text)
    for n in (1, 2, 10, 100):
        assert _call(inst, "sum", n) == theirs(store, n)


FUEL = """
(module
  (type $a (array (mut i32)))
  (type $fa (array (mut funcref)))
  (type $s (struct (field i32) (field (mut i64))))
  (type $t (func (param i32) (result i32)))
  (memory 1)
  (data $d "0123456789abcdef0123456789abcdef")
  (elem $e func $inc $inc $inc $inc)
  (func $inc (type $t) (i32.add (local.get 0) (i32.const 1)))
  (func $branches (param $n i32) (result i32)
    (local $i i32) (local $acc i32) (local $r anyref)
    (loop $l
      (local.set $r (if (result anyref) (i32.and (local.get $i) (i32.const 1))
                      (then (ref.i31 (local.get $i))) (else (ref.null any))))
      (block $null
        (local.set $acc (i32.add (local.get $acc)
          (i31.get_u (ref.cast (ref i31) (br_on_null $null (local.get $r)))))))
      (drop (block $cast (result (ref i31))
        (local.set $acc (i32.add (local.get $acc) (i32.const 100)))
        (drop (br_on_cast $cast anyref (ref i31) (local.get $r)))
        (ref.i31 (i32.const 0))))
      (drop (block $fail (result anyref)
        (drop (br_on_cast_fail $fail anyref (ref null i31) (local.get $r)))
        (ref.null none)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $acc))
  (func (export "run") (param $n i32) (result i32)
    (local $x (ref $a)) (local $f (ref $fa)) (local $s (ref $s))
    (local.set $x (array.new $a (i32.const 3) (local.get $n)))
    (array.fill $a (local.get $x) (i32.const 0) (i32.const 5) (local.get $n))
    (array.copy $a $a (local.get $x) (i32.const 1) (local.get $x) (i32.const 0) (i32.sub (local.get $n) (i32.const 1)))
    (array.init_data $a $d (local.get $x) (i32.const 0) (i32.const 0) (i32.const 2))
    (drop (array.new_data $a $d (i32.const 4) (i32.rem_u (local.get $n) (i32.const 7))))
    (local.set $f (array.new_elem $fa $e (i32.const 0) (i32.const 4)))
    (array.init_elem $fa $e (local.get $f) (i32.const 1) (i32.const 0) (i32.const 2))
    (drop (array.new_fixed $a 3 (i32.const 1) (i32.const 2) (i32.const 3)))
    (local.set $s (struct.new $s (local.get $n) (i64.const 7)))
    (struct.set $s 1 (local.get $s) (i64.const 8))
    (drop (ref.cast (ref $s) (ref.as_non_null (local.get $s))))
    (i32.add (call $branches (local.get $n))
      (i32.add
        (array.get $a (local.get $x) (i32.const 2))
        (call_ref $t (struct.get $s 0 (local.get $s))
                     (ref.cast (ref $t) (array.get $fa (local.get $f) (i32.const 3)))))))
)
"""


@pytest.mark.parametrize("flat", [False, True])
@pytest.mark.parametrize("n", [4, 16, 200])
def test_fuel_matches_wasmtime(n: int, flat: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-element fuel of array operations and one unit per other GC instruction, as wasmtime;
    the branches on null and casts as br_if, in both shapes of translated code."""
    if flat:
        from asyncwasm.compiler import structured

        monkeypatch.setattr(structured, "MAX_PY_LOOPS", -1)
    binary = wat(FUEL)
    config = wasmtime.Config()
    config.wasm_gc = True
    config.wasm_function_references = True
    config.consume_fuel = True
    wt_store = wasmtime.Store(wasmtime.Engine(config))
    wt_store.set_fuel(10**9)
    theirs = wasmtime.Instance(wt_store, wasmtime.Module(wt_store.engine, binary), []).exports(wt_store)[
        "run"
    ]
    result = theirs(wt_store, n)
    store = asyncwasm.Store()
    inst = asyncwasm.Linker().instantiate_sync(asyncwasm.Module(binary), store)
    assert inst.call_raw_sync(inst.get_func("run"), [n]) == result
    assert store.fuel_used == 10**9 - wt_store.get_fuel()  # instantiation and the call


def test_a_huge_array_runs_out_of_fuel_before_it_is_made() -> None:
    inst = asyncwasm.Linker().instantiate_sync(
        asyncwasm.Module(
            wat("""
      (module (type $a (array i64))
        (func (export "new") (param i32) (result i32) (array.len (array.new_default $a (local.get 0)))))""")
        ),
        asyncwasm.Store(fuel=10_000),
    )
    assert _call(inst, "new", 5_000) == 5_000
    with pytest.raises(asyncwasm.FuelExhausted):
        _call(inst, "new", 100_000_000)  # 800 MB if it were allocated


def test_canonical_ids_do_not_depend_on_the_process() -> None:
    """Cached translated code holds canonical ids as constants: another process, having seen other
    types first, must give the same types the same ids."""
    code = """
import sys
from asyncwasm import Module
from wat import wat
from asyncwasm.binary.types import canonical_ids
if sys.argv[1] == "other-first":
    Module(wat("(module (type (struct (field i64))) (type (func (param f32))))"))
m = Module(wat("(module (rec (type $a (struct (field (ref null $b)))) (type $b (array i8))) (type (func)))"))
print(canonical_ids(m.module))
"""
    env = {**os.environ, "PYTHONPATH": f"{Path(__file__).parent}:{os.environ.get('PYTHONPATH', '')}"}
    outs = {
        subprocess.run(
            [sys.executable, "-c", code, arg], capture_output=True, text=True, check=True, env=env
        ).stdout
        for arg in ("plain", "other-first")
    }
    assert len(outs) == 1 and outs.pop().startswith("[")


def test_implementation_limits() -> None:
    chain = "(type $t0 (sub (struct)))" + "".join(
        f"(type $t{k} (sub $t{k - 1} (struct)))" for k in range(1, 64)
    )
    asyncwasm.Module(wat(f"(module {chain})"))  # 63 supertypes deep: allowed
    with pytest.raises(asyncwasm.InvalidModule, match="deeper"):
        asyncwasm.Module(wat(f"(module {chain} (type (sub $t63 (struct))))"))
    with pytest.raises(asyncwasm.InvalidModule, match="new_fixed"):
        asyncwasm.Module(
            wat("(module (type $a (array i8)) (func (drop (array.new_fixed $a 10001 (unreachable)))))")
        )


def test_the_flat_shape_passes_the_branching_reference_scripts(
    shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """br_on_null/non_null/cast/cast_fail reuse br_if: the flat shape (deep functions) runs them too."""
    from asyncwasm.compiler import structured
    from asyncwasm.wast import ScriptRunner

    monkeypatch.setattr(structured, "MAX_PY_LOOPS", -1)
    for name in ("br_on_null", "br_on_non_null", "br_on_cast", "br_on_cast_fail", "call_ref", "local_init"):
        res = ScriptRunner(shared / "spec3" / "json" / name / f"{name}.json").run()
        assert res.failed == 0 and res.passed > 5, res.failures[:5]


def test_a_constant_naming_an_unknown_type_is_invalid() -> None:
    # (type (func)) (global funcref (ref.null 5)): type 5 does not exist
    binary = bytes.fromhex("0061736d010000000104016000000606017000d0050b")
    with pytest.raises(asyncwasm.InvalidModule, match="unknown type 5"):
        asyncwasm.Module(binary)


async def _call_async(inst: asyncwasm.Instance, name: str, *args: object) -> object:
    return await inst.call(name, *args)


def test_python_values_of_the_wrong_reference_type_are_refused() -> None:
    """Compiled code trusts its types: a host value of the wrong kind is a TypeError at the call,
    not a Python error inside the guest."""
    import anyio

    inst = _instance(SUBTYPES)
    p3 = _call(inst, "make3")
    arr = _instance(ARRAYS)
    bytes_ = _call(arr, "bytes", 0, 4)
    assert anyio.run(_call_async, inst, "x", p3) == 1
    for wrong in (bytes_, 5, object()):
        with pytest.raises(TypeError):
            anyio.run(_call_async, inst, "x", wrong)
    with pytest.raises(TypeError):  # non-nullable
        anyio.run(_call_async, arr, "len", object())
    assert anyio.run(_call_async, arr, "len", bytes_) == 4
    funcs = _instance(I31)
    with pytest.raises(TypeError):
        anyio.run(_call_async, funcs, "s", 1 << 31)  # not an i31
    assert anyio.run(_call_async, funcs, "u", 7) == 7  # an i31ref from Python is an int
