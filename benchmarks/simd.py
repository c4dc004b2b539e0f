"""SIMD benchmark: the same C kernels built scalar and with ``-msimd128``, run by asyncwasm and wasmtime-py.

``simd/kernel.c`` holds three vectorisable loops over static arrays (an i32 dot product, a float
saxpy, a sum of absolute byte differences); the two builds committed beside it were made with
clang 14 (Debian packages ``clang lld wasi-libc libclang-rt-14-dev-wasm32``) by

    clang --target=wasm32-wasi -O2 -nostdlib -Wl,--no-entry -o kernel_scalar.wasm kernel.c
    clang --target=wasm32-wasi -O2 -msimd128 -nostdlib -Wl,--no-entry -o kernel_simd.wasm kernel.c

(in ``benchmarks/simd``; ``--rebuild`` runs these again when clang is there). The script prints a
table of seconds per call (the fastest of ``--repeat`` calls, after one warm-up call that also
translates the code: on a shared machine the minimum is the run least disturbed by others) for asyncwasm and wasmtime-py on both builds, and asyncwasm's scalar/SIMD ratio. Every
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
        subprocess.run(["clang", "--target=wasm32-wasi", "-O2", *flags, "-nostdlib", "-Wl,--no-entry",
                        "-o", str(HERE / f"kernel_{name}.wasm"), str(HERE / "kernel.c")], check=True)


def best_time(call: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    result = call()  # warm-up: the first call translates the function
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        again = call()
        times.append(time.perf_counter() - start)
        if again != result:
            raise SystemExit(f"the result changed between calls: {result!r} then {again!r}")
    return min(times), result


async def run_asyncwasm(wasm: bytes, n: int, repeat: int) -> dict[str, tuple[float, Any]]:
    inst = await asyncwasm.Linker().instantiate(asyncwasm.Module(wasm))
    await inst.call("init", 7)
    out = {}
    for name, args in KERNELS:
        f = inst.get_func(name)
        raw = list(args(n))

        def call(f: Any = f, raw: list[Any] = raw) -> Any:
            return inst.call_raw_sync(f, raw)
        out[name] = best_time(call, repeat)
    return out


def run_wasmtime(wasm: bytes, n: int, repeat: int) -> dict[str, tuple[float, Any]] | None:
    try:
        import wasmtime
    except ImportError:
        return None
    store = wasmtime.Store()
    inst = wasmtime.Instance(store, wasmtime.Module(store.engine, wasm), [])
    exports = inst.exports(store)
    exports["init"](store, 7)
    out = {}
    for name, args in KERNELS:
        f = exports[name]
        a = args(n)
        out[name] = best_time(lambda f=f, a=a: f(store, *a), repeat)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--n", type=int, default=4096, help="elements per kernel call (at most 4096)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the two .wasm files with clang first")
    opts = ap.parse_args()
    if opts.rebuild:
        rebuild()
    results: dict[tuple[str, str], dict[str, tuple[float, Any]] | None] = {}
    for build in BUILDS:
        wasm = (HERE / f"kernel_{build}.wasm").read_bytes()
        results["asyncwasm", build] = anyio.run(run_asyncwasm, wasm, opts.n, opts.repeat)
        results["wasmtime", build] = run_wasmtime(wasm, opts.n, opts.repeat)
    print(f"n = {opts.n}, best of {opts.repeat} calls, seconds per call\n")
    print("| kernel | asyncwasm scalar | asyncwasm SIMD | SIMD speed-up | wasmtime scalar | wasmtime SIMD |")
    print("|---|---|---|---|---|---|")
    for name, _args in KERNELS:
        row = [name]
        values = set()
        for engine, build in (("asyncwasm", "scalar"), ("asyncwasm", "simd")):
            t, v = results[engine, build][name]  # type: ignore[index]
            row.append(f"{t:.4f}")
            values.add(v)
        scalar, simd = results["asyncwasm", "scalar"][name][0], results["asyncwasm", "simd"][name][0]  # type: ignore[index]
        row.append(f"{scalar / simd:.2f}x")
        for build in BUILDS:
            wt = results["wasmtime", build]
            if wt is None:
                row.append("-")
            else:
                row.append(f"{wt[name][0]:.6f}")
                values.add(wt[name][1])
        if len(values) != 1:
            raise SystemExit(f"{name}: the engines disagree: {values}")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
