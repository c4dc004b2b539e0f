"""SIMD benchmark: the same C kernels built scalar and with ``-msimd128``, run by asyncwasm and wasmtime-py.

``simd/kernel.c`` holds three vectorisable loops over static arrays (an i32 dot product, a float
saxpy, a sum of absolute byte differences); the two builds committed beside it were made with
clang 14 (Debian packages ``clang lld wasi-libc libclang-rt-14-dev-wasm32``) by

    clang --target=wasm32-wasi -O2 -nostdlib -Wl,--no-entry -o kernel_scalar.wasm kernel.c
    clang --target=wasm32-wasi -O2 -msimd128 -nostdlib -Wl,--no-entry -o kernel_simd.wasm kernel.c

(in ``benchmarks/simd``; ``--rebuild`` runs these again when clang is there). The script prints a
table of seconds per call: the fastest of ``--repeat`` rounds, after one warm-up call that also
translates the code; each round calls every engine and build in turn, so that load from elsewhere
on a shared machine hits them alike, and the minimum is the call least disturbed for asyncwasm and wasmtime-py on both builds, and asyncwasm's scalar/SIMD ratio. Every
engine and build must compute the same result, or the script stops.

    python benchmarks/simd.py [--repeat N] [--n N] [--rebuild]
"""

from __future__ import annotations

import argparse
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

import asyncwasm

HERE = Path(__file__).resolve().parent / "simd"
BUILDS = {"scalar": [], "simd": ["-msimd128"]}
KERNELS = [("dot", lambda n: (n,)), ("saxpy", lambda n: (n, 1.5)), ("sad", lambda n: (n,))]


def rebuild() -> None:
    for name, flags in BUILDS.items():
        subprocess.run(
            [
                "clang",
                "--target=wasm32-wasi",
                "-O2",
                *flags,
                "-nostdlib",
                "-Wl,--no-entry",
                "-o",
                str(HERE / f"kernel_{name}.wasm"),
                str(HERE / "kernel.c"),
            ],
            check=True,
        )


def asyncwasm_calls(wasm: bytes, n: int) -> dict[str, Callable[[], Any]]:
    """One call per kernel, on a fresh asyncwasm instance (raw values: no conversion is timed)."""

    async def build() -> Any:
        inst = await asyncwasm.Linker().instantiate(asyncwasm.Module(wasm))
        await inst.call("init", 7)
        return inst

    inst = anyio.run(build)
    calls = {}
    for name, args in KERNELS:
        f = inst.get_func(name)
        raw = list(args(n))
        calls[name] = lambda f=f, raw=raw: inst.call_raw_sync(f, raw)
    return calls


def wasmtime_calls(wasm: bytes, n: int) -> dict[str, Callable[[], Any]] | None:
    try:
        import wasmtime
    except ImportError:
        return None
    store = wasmtime.Store()
    inst = wasmtime.Instance(store, wasmtime.Module(store.engine, wasm), [])
    exports = inst.exports(store)
    exports["init"](store, 7)
    calls = {}
    for name, args in KERNELS:
        a = args(n)
        calls[name] = lambda f=exports[name], a=a: f(store, *a)
    return calls


def measure(
    calls: dict[str, dict[str, Callable[[], Any]]], repeat: int
) -> dict[str, dict[str, tuple[float, Any]]]:
    """The fastest of ``repeat`` rounds for every kernel of every engine and build. The rounds take
    the engines in turn, so a burst of load from elsewhere on the machine hits them alike."""
    out: dict[str, dict[str, tuple[float, Any]]] = {key: {} for key in calls}
    for name, _args in KERNELS:
        results = {key: c[name]() for key, c in calls.items()}  # warm-up: the first call translates
        best = dict.fromkeys(calls, float("inf"))
        for _ in range(repeat):
            for key, c in calls.items():
                start = time.perf_counter()
                got = c[name]()
                best[key] = min(best[key], time.perf_counter() - start)
                if got != results[key]:
                    raise SystemExit(f"{key} {name}: the result changed between calls")
        for key in calls:
            out[key][name] = (best[key], results[key])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--n", type=int, default=4096, help="elements per kernel call (at most 4096)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the two .wasm files with clang first")
    opts = ap.parse_args()
    if opts.rebuild:
        rebuild()
    calls: dict[str, dict[str, Callable[[], Any]]] = {}
    for build in BUILDS:
        wasm = (HERE / f"kernel_{build}.wasm").read_bytes()
        calls[f"asyncwasm {build}"] = asyncwasm_calls(wasm, opts.n)
        wt = wasmtime_calls(wasm, opts.n)
        if wt is not None:
            calls[f"wasmtime {build}"] = wt
    results = measure(calls, opts.repeat)
    print(f"n = {opts.n}, best of {opts.repeat} calls, seconds per call\n")
    print("| kernel | asyncwasm scalar | asyncwasm SIMD | SIMD speed-up | wasmtime scalar | wasmtime SIMD |")
    print("|---|---|---|---|---|---|")
    for name, _args in KERNELS:
        scalar, simd = results["asyncwasm scalar"][name][0], results["asyncwasm simd"][name][0]
        row = [name, f"{scalar:.4f}", f"{simd:.4f}", f"{scalar / simd:.2f}x"]
        for build in BUILDS:
            wt = results.get(f"wasmtime {build}")
            row.append("-" if wt is None else f"{wt[name][0]:.6f}")
        values = {r[name][1] for r in results.values()}
        if len(values) != 1:
            raise SystemExit(f"{name}: the engines disagree: {values}")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
