"""SIMD and relaxed SIMD: every vector operator against wasmtime on the same inputs, memory accesses
and their traps, fuel as wasmtime counts it, the deterministic relaxed results, feature gating, v128
at the host boundary, and the spec's SIMD suite under the 2.0 preset with SIMD."""

from __future__ import annotations

import random
import struct
import time
from pathlib import Path

import anyio
import pytest
import wasmtime
from wat import wat

import asyncwasm
from asyncwasm.binary.simd_opcodes import SIMD_NAMES
from asyncwasm.errors import Trap, UnsupportedFeature
from asyncwasm.features import Features
from asyncwasm.runtime.values import from_raw, to_raw
from asyncwasm.validate_simd import SIMD_SIGNATURES
from asyncwasm.wast import run_scripts

M64 = (1 << 64) - 1

# operators whose inputs and result are all v128 (relaxed ones have their own test: wasmtime's
# default relaxed results are the host CPU's, not the deterministic profile's)
BINARY = sorted(
    n for n, op in SIMD_NAMES.items() if SIMD_SIGNATURES.get(op) == (2, "v128", "v128") and "relaxed" not in n
)
UNARY = sorted(
    n for n, op in SIMD_NAMES.items() if SIMD_SIGNATURES.get(op) == (1, "v128", "v128") and "relaxed" not in n
)
TESTS = sorted(n for n, op in SIMD_NAMES.items() if SIMD_SIGNATURES.get(op) == (1, "v128", "i32"))
SHIFTS = [f"{s}.{o}" for s in ("i8x16", "i16x8", "i32x4", "i64x2") for o in ("shl", "shr_s", "shr_u")]

_F32 = [
    0,
    0x80000000,
    0x3F800000,
    0xBF800000,
    0x7F800000,
    0xFF800000,
    0x7FC00000,
    0x7FA00001,
    0xFFC00000,
    0x00000001,
    0x807FFFFF,
    0x7F7FFFFF,
    0x4B000000,
    0x3F000000,
    0x3FC00000,
    0x4F000000,
    0xCF000001,
    0x5F000000,
]
_F64 = [
    0,
    1 << 63,
    0x3FF0000000000000,
    0x7FF0000000000000,
    0xFFF0000000000000,
    0x7FF8000000000000,
    0x7FF4000000000001,
    0x0000000000000001,
    0x7FEFFFFFFFFFFFFF,
    0x41E0000000000000,
    0xC1E0000000200000,
    0x3FE0000000000000,
    0x3FF8000000000000,
    0x4330000000000000,
    0x41EFFFFFFFE00000,
]


def _vectors(rng: random.Random, n: int) -> list[int]:
    """Random v128 values, many built from special float lanes and integer edge cases."""
    out = [
        0,
        (1 << 128) - 1,
        int.from_bytes(bytes([0x80] * 16), "little"),
        int.from_bytes(bytes(range(16)), "little"),
    ]
    while len(out) < n:
        kind = rng.randrange(4)
        if kind == 0:
            out.append(rng.getrandbits(128))
        elif kind == 1:
            out.append(int.from_bytes(struct.pack("<4I", *(rng.choice(_F32) for _ in range(4))), "little"))
        elif kind == 2:
            out.append(int.from_bytes(struct.pack("<2Q", *(rng.choice(_F64) for _ in range(2))), "little"))
        else:
            out.append(
                int.from_bytes(
                    bytes(rng.choice((0, 1, 0x7F, 0x80, 0xFF, 0x10, 0x1F)) for _ in range(16)), "little"
                )
            )
    return out


def _v(i: int) -> str:
    """The v128 made of i64 params 2i (low) and 2i+1 (high)."""
    return f"(i64x2.replace_lane 1 (i64x2.splat (local.get {2 * i})) (local.get {2 * i + 1}))"


def _module(ops: dict[str, tuple[int, str]]) -> str:
    """One export per operator: takes each v128 operand as two i64s, returns the result as two i64s
    (or the i32 result)."""
    funcs = []
    for export, (n, body) in ops.items():
        params = " ".join(["(param i64 i64)"] * n) + (" (param $c i32)" if "(local.get $c)" in body else "")
        result = "i32" if body.startswith("!") else "i64 i64"
        body = body.lstrip("!")
        if result == "i32":
            funcs.append(f'(func (export "{export}") {params} (result i32) {body})')
        else:
            funcs.append(
                f'(func (export "{export}") {params} (result i64 i64) (local $r v128)'
                f" (local.set $r {body}) (i64x2.extract_lane 0 (local.get $r))"
                f" (i64x2.extract_lane 1 (local.get $r)))"
            )
    return "(module\n" + "\n".join(funcs) + ")"


def _split(v: int) -> list[int]:
    lo, hi = v & M64, v >> 64
    return [lo - (1 << 64) if lo >> 63 else lo, hi - (1 << 64) if hi >> 63 else hi]


def _join(res: object) -> int:
    lo, hi = res  # type: ignore[misc]
    return (lo & M64) | (hi & M64) << 64


def _same(name: str, got: int, want: int) -> bool:
    """Equal bits, except that a NaN lane of a float result may be any NaN in both."""
    if got == want:
        return True
    shape = name.split(".")[0]
    if shape not in ("f32x4", "f64x2") or any(
        k in name for k in ("eq", "ne", "lt", "gt", "le", "ge", "trunc_sat")
    ):
        return False
    bits = 32 if shape == "f32x4" else 64
    exp = ((1 << (bits - 1)) - 1) ^ ((1 << (23 if bits == 32 else 52)) - 1)
    mask = (1 << bits) - 1
    for k in range(128 // bits):
        a, b = (got >> (bits * k)) & mask, (want >> (bits * k)) & mask
        if a != b and not (
            a & exp == exp and a & ~exp & (mask >> 1) and b & exp == exp and b & ~exp & (mask >> 1)
        ):
            return False
    return True


def call_sync(inst: asyncwasm.Instance, name: str, *args: object) -> object:
    """Call an export with Python values without an event loop (as ``Instance.call`` converts them)."""
    f = inst.get_func(name)
    raw = inst.call_raw_sync(f, [to_raw(t, a) for t, a in zip(f.type.params, args, strict=True)])
    results = f.type.results
    if not results:
        return None
    if len(results) == 1:
        return from_raw(results[0], raw)
    return tuple(from_raw(t, v) for t, v in zip(results, raw, strict=True))


class _Both:
    """One module instantiated in asyncwasm and in wasmtime."""

    def __init__(self, text: str) -> None:
        wasm = wat(text)
        self.ours = asyncwasm.Linker().instantiate_sync(asyncwasm.Module(wasm))
        self.store = wasmtime.Store()
        self.theirs = wasmtime.Instance(self.store, wasmtime.Module(self.store.engine, wasm), [])

    def call(self, name: str, *args: int) -> tuple[object, object]:
        return (call_sync(self.ours, name, *args), self.theirs.exports(self.store)[name](self.store, *args))


def test_every_operator_matches_wasmtime() -> None:
    ops: dict[str, tuple[int, str]] = {}
    for name in BINARY:
        ops[name] = (2, f"({name} {_v(0)} {_v(1)})")
    for name in UNARY:
        ops[name] = (1, f"({name} {_v(0)})")
    for name in TESTS:
        ops[name] = (1, f"!({name} {_v(0)})")
    for name in SHIFTS:
        ops[name] = (1, f"({name} {_v(0)} (local.get $c))")
    ops["v128.bitselect"] = (3, f"(v128.bitselect {_v(0)} {_v(1)} {_v(2)})")
    ops["i8x16.shuffle"] = (2, f"(i8x16.shuffle 31 0 17 2 19 4 5 6 23 8 9 25 26 11 30 15 {_v(0)} {_v(1)})")
    both = _Both(_module({k.replace(".", "_"): v for k, v in ops.items()}))
    rng = random.Random(1234)
    vectors = _vectors(rng, 24)
    mismatches = []
    checked = 0
    for name, (n, body) in ops.items():
        for _ in range(12):
            operands = [rng.choice(vectors) for _ in range(n)]
            args = [x for v in operands for x in _split(v)]
            if "(local.get $c)" in body:
                args.append(rng.choice((0, 1, 7, 8, 15, 16, 31, 33, 63, 64, 65, -1)))
            ours, theirs = both.call(name.replace(".", "_"), *args)
            checked += 1
            if body.startswith("!"):
                if ours != theirs:
                    mismatches.append(f"{name}{tuple(hex(v) for v in operands)}: {ours} != {theirs}")
            elif not _same(name, _join(ours), _join(theirs)):
                mismatches.append(
                    f"{name}{tuple(hex(v) for v in operands)}: {_join(ours):#x} != {_join(theirs):#x}"
                )
    assert checked > 2000
    assert not mismatches, "\n".join(mismatches[:20])


LANES = """
(module
  (func (export "splat_extract") (param i32 i64 f32 f64) (result i32 i32 i32 i32 i64 f32 f64)
    (i8x16.extract_lane_s 15 (i8x16.splat (local.get 0)))
    (i8x16.extract_lane_u 3 (i8x16.splat (local.get 0)))
    (i16x8.extract_lane_s 7 (i16x8.splat (local.get 0)))
    (i32x4.extract_lane 2 (i32x4.splat (local.get 0)))
    (i64x2.extract_lane 1 (i64x2.splat (local.get 1)))
    (f32x4.extract_lane 3 (f32x4.splat (local.get 2)))
    (f64x2.extract_lane 1 (f64x2.splat (local.get 3))))
  (func (export "replace") (param i32 i64 f32 f64) (result i64 i64)
    (local $v v128)
    (local.set $v (i8x16.replace_lane 5 (v128.const i64x2 0 0) (local.get 0)))
    (local.set $v (i16x8.replace_lane 7 (local.get $v) (local.get 0)))
    (local.set $v (f32x4.replace_lane 2 (local.get $v) (local.get 2)))
    (i64x2.extract_lane 0 (local.get $v))
    (i64x2.extract_lane 1 (f64x2.replace_lane 0 (local.get $v) (local.get 3)))))
"""


def test_lanes_match_wasmtime() -> None:
    both = _Both(LANES)
    for args in [(-1, -2, 1.5, -2.25), (0x1234_5678, 1 << 62, float("inf"), 1e300), (200, 5, -0.0, 5e-324)]:
        for name in ("splat_extract", "replace"):
            ours, theirs = both.call(name, *args)
            assert list(ours) == list(theirs), (name, args)


MEMORY = """
(module
  (memory (export "mem") 1 1)
  (func (export "copy") (param i32 i32) (v128.store (local.get 1) (v128.load (local.get 0))))
  (func (export "widen") (param i32 i32)
    (v128.store (local.get 1) (v128.load8x8_s (local.get 0)))
    (v128.store offset=16 (local.get 1) (v128.load16x4_u (local.get 0)))
    (v128.store offset=32 (local.get 1) (v128.load32x2_s (local.get 0)))
    (v128.store offset=48 (local.get 1) (v128.load16_splat (local.get 0)))
    (v128.store offset=64 (local.get 1) (v128.load64_zero (local.get 0)))
    (v128.store offset=80 (local.get 1) (v128.load8_lane 9 (local.get 0) (v128.const i64x2 -1 -1))))
  (func (export "lane_store") (param i32 i32)
    (v128.store32_lane 3 (local.get 1) (v128.load (local.get 0)))
    (v128.store8_lane offset=4 14 (local.get 1) (v128.load (local.get 0))))
  (func (export "load_at") (param i32) (result i64) (i64x2.extract_lane 1 (v128.load offset=8 (local.get 0)))))
"""


def test_memory_matches_wasmtime_and_traps_like_scalar_loads() -> None:
    both = _Both(MEMORY)
    ours_mem = both.ours.exports["mem"]
    theirs_mem = both.theirs.exports(both.store)["mem"]
    pattern = bytes((k * 37 + 11) & 0xFF for k in range(64))
    ours_mem.write(0, pattern)
    theirs_mem.write(both.store, pattern, 0)
    for name, args in [("copy", (3, 200)), ("widen", (5, 1000)), ("lane_store", (7, 2000))]:
        both.call(name, *args)
    assert ours_mem.read(0, 4096) == theirs_mem.read(both.store, 0, 4096)
    assert both.call("load_at", 65536 - 32) == both.call("load_at", 65536 - 32)[::-1]
    for addr in (65536 - 23, 65536, 0xFFFFFFFF):
        with pytest.raises(Trap, match="out of bounds memory access"):
            call_sync(both.ours, "load_at", addr - (1 << 32) if addr >> 31 else addr)
        with pytest.raises(wasmtime.Trap, match="out of bounds memory access"):
            both.theirs.exports(both.store)["load_at"](both.store, addr - (1 << 32) if addr >> 31 else addr)


def _fuel(engine: str, wasm: bytes, name: str, args: tuple[int, ...]) -> tuple[int, object]:
    if engine == "wasmtime":
        cfg = wasmtime.Config()
        cfg.consume_fuel = True
        wt_engine = wasmtime.Engine(cfg)
        store = wasmtime.Store(wt_engine)
        store.set_fuel(10**9)
        inst = wasmtime.Instance(store, wasmtime.Module(wt_engine, wasm), [])
        result = inst.exports(store)[name](store, *args)
        return 10**9 - store.get_fuel(), result

    async def run() -> tuple[int, object]:
        astore = asyncwasm.Store()
        inst = await asyncwasm.Linker().instantiate(asyncwasm.Module(wasm), astore)
        result = await inst.call(name, *args)
        return astore.fuel_used, result

    return anyio.run(run)


FUEL = """
(module
  (memory 1)
  (global $g (mut v128) (v128.const i32x4 1 2 3 4))
  (func (export "kernel") (param $n i32) (result i32) (local $acc v128) (local $i i32)
    (loop $top
      (v128.store (i32.and (i32.mul (local.get $i) (i32.const 16)) (i32.const 0xFFF)) (local.get $acc))
      (local.set $acc (i32x4.add (local.get $acc)
        (i32x4.mul (v128.load (i32.and (i32.mul (local.get $i) (i32.const 16)) (i32.const 0xFFF)))
                   (i32x4.splat (local.get $i)))))
      (local.set $acc (v128.bitselect (local.get $acc) (global.get $g) (v128.const i64x2 -1 0)))
      (global.set $g (f32x4.add (global.get $g) (f32x4.convert_i32x4_s (local.get $acc))))
      (if (v128.any_true (i8x16.eq (local.get $acc) (v128.const i8x16 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0)))
        (then (local.set $acc (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 (local.get $acc) (local.get $acc)))))
      (br_if $top (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $n))))
    (i32x4.extract_lane 1 (local.get $acc))))
"""


def test_fuel_matches_wasmtime() -> None:
    wasm = wat(FUEL)
    for n in (1, 2, 37):
        assert _fuel("asyncwasm", wasm, "kernel", (n,)) == _fuel("wasmtime", wasm, "kernel", (n,)), n


RELAXED = """
(module
  (func (export "op3") (param i64 i64 i64 i64 i64 i64 i32) (result i64 i64) (local $a v128) (local $b v128) (local $c v128) (local $r v128)
    (local.set $a (i64x2.replace_lane 1 (i64x2.splat (local.get 0)) (local.get 1)))
    (local.set $b (i64x2.replace_lane 1 (i64x2.splat (local.get 2)) (local.get 3)))
    (local.set $c (i64x2.replace_lane 1 (i64x2.splat (local.get 4)) (local.get 5)))
    (block $b7 (block $b6 (block $b5 (block $b4 (block $b3 (block $b2 (block $b1 (block $b0
      (br_table $b0 $b1 $b2 $b3 $b4 $b5 $b6 $b7 (local.get 6)))
      (local.set $r (i8x16.relaxed_swizzle (local.get $a) (local.get $b))) (br $b7))
      (local.set $r (i32x4.relaxed_trunc_f32x4_s (local.get $a))) (br $b7))
      (local.set $r (f32x4.relaxed_madd (local.get $a) (local.get $b) (local.get $c))) (br $b7))
      (local.set $r (i16x8.relaxed_laneselect (local.get $a) (local.get $b) (local.get $c))) (br $b7))
      (local.set $r (f32x4.relaxed_min (local.get $a) (local.get $b))) (br $b7))
      (local.set $r (i16x8.relaxed_q15mulr_s (local.get $a) (local.get $b))) (br $b7))
      (local.set $r (i32x4.relaxed_dot_i8x16_i7x16_add_s (local.get $a) (local.get $b) (local.get $c))))
    (i64x2.extract_lane 0 (local.get $r)) (i64x2.extract_lane 1 (local.get $r))))
"""


def _i(values: list[int], fmt: str) -> list[int]:
    return _split(int.from_bytes(struct.pack(fmt, *values), "little"))


def test_relaxed_simd_is_the_deterministic_profile() -> None:
    inst = asyncwasm.Linker().instantiate_sync(asyncwasm.Module(wat(RELAXED)))

    def run(which: int, a: list[int], b: list[int], c: list[int], out: str) -> tuple[int, ...]:
        return struct.unpack(out, _join(call_sync(inst, "op3", *a, *b, *c, which)).to_bytes(16, "little"))

    zero = [0, 0]
    idx = _i([0, 16, 255, 15, 128, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], "<16B")
    src = _i(list(range(100, 116)), "<16B")
    assert run(0, src, idx, zero, "<16B") == (
        100,
        0,
        0,
        115,
        0,
        101,
        102,
        103,
        104,
        105,
        106,
        107,
        108,
        109,
        110,
        111,
    )
    floats = _i([0x7FC00000, 0x4F000000, 0xFF800000, 0xC0490FDB], "<4I")  # nan, 2^31, -inf, -3.14159
    assert run(1, floats, zero, zero, "<4i") == (0, 2**31 - 1, -(2**31), -3)  # trunc_sat
    # unfused: 0x3f800001 * 0x3f800001 rounds to 0x3f800002 before -1.0 is added
    a = _i([0x3F800001] * 4, "<4I")
    m1 = _i([0xBF800000] * 4, "<4I")
    assert run(2, a, a, m1, "<4I") == (0x34800000,) * 4
    mask = _i([0x8000, 0x00FF, 0xFFFF, 0, 0x7FFF, 0x0F0F, 1, 0x8001], "<8H")
    ones = _i([0xFFFF] * 8, "<8H")
    assert run(3, ones, zero, mask, "<8H") == (
        0x8000,
        0x00FF,
        0xFFFF,
        0,
        0x7FFF,
        0x0F0F,
        1,
        0x8001,
    )  # bitselect
    mins = run(
        4,
        _i([0x7FC00000, 0x80000000, 0x3F800000, 0], "<4I"),
        _i([0x3F800000, 0, 0x7FA00000, 0x80000000], "<4I"),
        zero,
        "<4I",
    )
    assert mins[0] == 0x7FC00000 and mins[1] == 0x80000000 and mins[2] == 0x7FC00000 and mins[3] == 0x80000000
    q = _i([-32768, -32768, 16384, 0, 0, 0, 0, 0], "<8h")
    assert run(5, q, q, zero, "<8h")[:3] == (32767, 32767, 8192)  # q15mulr_sat: -1 * -1 saturates
    dot = run(6, _i([-128] * 16, "<16b"), _i([-128] * 16, "<16b"), _i([1, 2, 3, 4], "<4i"), "<4i")
    assert dot == (32767 * 2 + 1, 32767 * 2 + 2, 32767 * 2 + 3, 32767 * 2 + 4)  # signed, saturated pairs


def test_v128_at_the_host_boundary_is_an_int() -> None:
    text = """(module
      (global (export "g") (mut v128) (v128.const i32x4 1 2 3 0xffffffff))
      (func (export "id") (param v128) (result v128) (local.get 0))
      (func (export "swap") (param v128) (result v128) (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7
        (local.get 0) (local.get 0))))"""
    inst = asyncwasm.Linker().instantiate_sync(asyncwasm.Module(wat(text)))
    assert inst.exports["g"].value == 1 | 2 << 32 | 3 << 64 | 0xFFFFFFFF << 96
    assert call_sync(inst, "id", -1) == (1 << 128) - 1
    assert call_sync(inst, "swap", 5 | 7 << 64) == 7 | 5 << 64
    inst.exports["g"].value = 42
    assert inst.exports["g"].value == 42


def test_simd_needs_its_feature() -> None:
    wasm = wat('(module (func (export "f") (result i32) (i32x4.extract_lane 0 (v128.const i32x4 7 0 0 0))))')
    with pytest.raises(UnsupportedFeature, match="simd"):
        asyncwasm.Module(wasm, features=Features.wasm2())
    inst = asyncwasm.Linker().instantiate_sync(asyncwasm.Module(wasm, features=Features.parse("2.0,+simd")))
    assert call_sync(inst, "f") == 7
    relaxed = wat(
        "(module (func (param v128) (result v128) (f32x4.relaxed_min (local.get 0) (local.get 0))))"
    )
    with pytest.raises(UnsupportedFeature, match="relaxed-simd"):
        asyncwasm.Module(relaxed, features=Features.parse("2.0,+simd"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("(func (param v128) (result i32) (i8x16.extract_lane_s 16 (local.get 0)))", "invalid lane index"),
        ("(memory 1) (func (param i32) (result v128) (v128.load align=32 (local.get 0)))", "alignment"),
        (
            "(memory 1) (func (param i32 v128) (v128.store16_lane align=4 0 (local.get 0) (local.get 1)))",
            "alignment",
        ),
        (
            "(memory 1) (func (param i32 v128) (result v128) (v128.load32_lane 4 (local.get 0) (local.get 1)))",
            "invalid lane index",
        ),
        (
            "(func (param v128 v128) (result v128) (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 32 "
            "(local.get 0) (local.get 1)))",
            "invalid lane index",
        ),
        ("(func (param v128 i64) (result v128) (i32x4.shl (local.get 0) (local.get 1)))", "type mismatch"),
        ("(memory 1) (func (param i32) (result v128) (v128.load 1 (local.get 0)))", "unknown memory 1"),
        ("(func (param i32) (result v128) (v128.load32_zero (local.get 0)))", "unknown memory 0"),
        ("(func (param f32) (result v128) (i32x4.splat (local.get 0)))", "type mismatch"),
    ],
)
def test_invalid_simd(text: str, message: str) -> None:
    with pytest.raises(asyncwasm.InvalidModule, match=message):
        asyncwasm.Module(wat(f"(module {text})"))


def test_spec_simd_suite_under_2_0_with_simd(shared: Path) -> None:
    scripts = sorted((shared / "spec" / "simd" / "json").glob("*/*.json"))
    assert len(scripts) > 50
    start = time.monotonic()
    result = run_scripts(scripts, Features.parse("2.0,+simd"))
    assert result.failures == []
    assert result.passed > 25000
    assert time.monotonic() - start < 60


def test_flat_shape_runs_simd_too(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Functions too deep for the structured shape take the flat one: SIMD translates the same there."""
    from asyncwasm.compiler import structured
    from asyncwasm.wast import ScriptRunner

    monkeypatch.setattr(structured, "MAX_PY_LOOPS", -1)
    names = (
        "simd_lane",
        "simd_load",
        "simd_store",
        "simd_select",
        "simd_address",
        "simd_load8_lane",
        "simd_store64_lane",
        "simd_i32x4_arith",
        "simd_f32x4",
        "simd_bitwise",
        "simd_splat",
        "simd_conversions",
        "simd_i8x16_arith2",
        "simd_i16x8_extmul_i8x16",
    )
    passed = 0
    for name in names:
        res = ScriptRunner(
            shared / "spec" / "simd" / "json" / name / f"{name}.json", Features.parse("2.0,+simd")
        ).run()
        assert res.failed == 0, res.failures[:5]
        passed += res.passed
    assert passed > 2400


def test_wast_v128_expectations() -> None:
    """The runner's reading of v128 results: lanes by their bits, NaN patterns per lane, 'either'."""
    from asyncwasm.wast import _matches, _parse_value

    arg = _parse_value(
        {"type": "v128", "lane_type": "i16", "value": ["-1", "2", "0", "0", "0", "0", "0", "65535"]}
    )
    assert arg == 0xFFFF | 2 << 16 | 0xFFFF << 112
    lanes = struct.pack("<4I", 0x7FC00000, 0xFFC00000, 0x7FE00001, 0x3F800000)
    got = int.from_bytes(lanes, "little")
    nan_lanes = {
        "type": "v128",
        "lane_type": "f32",
        "value": ["nan:canonical", "nan:canonical", "nan:arithmetic", "1065353216"],
    }
    assert _matches(nan_lanes, got)
    assert not _matches(
        {**nan_lanes, "value": ["nan:canonical"] * 3 + ["1065353216"]}, got
    )  # lane 2 is not canonical
    assert not _matches({**nan_lanes, "value": ["nan:arithmetic"] * 4}, got)  # lane 3 is 1.0
    signalling = int.from_bytes(struct.pack("<4I", 0x7F800001, 0, 0, 0), "little")
    assert not _matches({**nan_lanes, "value": ["nan:arithmetic", "0", "0", "0"]}, signalling)
    either = {
        "type": "either",
        "values": [
            {"type": "v128", "lane_type": "i32", "value": ["1", "2", "3", "4"]},
            {"type": "v128", "lane_type": "i64", "value": ["-1", "0"]},
        ],
    }
    assert _matches(either, 1 | 2 << 32 | 3 << 64 | 4 << 96)
    assert _matches(either, M64)
    assert not _matches(either, 5)


def test_v128_through_a_host_function() -> None:
    """A host function takes and returns a v128 as an int; a negative int is wrapped to 128 bits."""
    seen: list[int] = []

    def host(v: int) -> int:
        seen.append(v)
        return -1 if v == 0 else v ^ (1 << 127)

    linker = asyncwasm.Linker()
    linker.define_func("env", "flip", asyncwasm.FuncType(("v128",), ("v128",)), host)
    text = """(module (import "env" "flip" (func $flip (param v128) (result v128))) (memory 1)
      (func (export "f") (param v128) (result i64 i64) (local $r v128)
        (v128.store (i32.const 16) (call $flip (local.get 0)))
        (local.set $r (v128.load (i32.const 16)))
        (i64x2.extract_lane 0 (local.get $r)) (i64x2.extract_lane 1 (local.get $r))))"""
    inst = linker.instantiate_sync(asyncwasm.Module(wat(text)))
    assert call_sync(inst, "f", 5) == (5, -(1 << 63))
    assert call_sync(inst, "f", 0) == (-1, -1)
    assert seen == [5, 0]
