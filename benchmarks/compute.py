"""Compute benchmarks: asyncwasm against pywasm, the same algorithm in plain Python, and wasmtime-py.

Each workload is a WAT file in ``benchmarks/wat`` compiled to Wasm at start-up (``wat2wasm`` from wabt,
or ``wasmtime.wat2wasm`` if wabt is missing), plus a plain-Python version of the same algorithm with the
same arithmetic (``& 0xFFFFFFFF`` where the Wasm wraps). Times are medians of ``--repeat`` runs of one
call each, the engines taking turns; compilation and instantiation are not timed. pywasm is some hundred
times slower, so it runs a smaller size and its time is scaled to the full size by the ratio of Wasm
instructions executed (counted with asyncwasm's fuel). A second table shows every engine measured
directly at pywasm's size, with no scaling. Every engine's result is checked against the others.

    python benchmarks/compute.py [--quick] [--repeat N] [--only NAME[,NAME...]]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

import asyncwasm

WAT_DIR = Path(__file__).resolve().parent / "wat"
M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF
PYWASM_TARGET = 100.0  # pywasm/asyncwasm should be at least this
PYTHON_TARGET = 5.0  # asyncwasm/python should be at most this
SMALL_REPEAT = 21  # at pywasm's size the other engines take milliseconds: more runs steady the median

Args = tuple[int, ...]


# ---- the workloads in plain Python ----------------------------------------------------------------


def signed(value: int, bits: int) -> int:
    """Read an unsigned ``bits``-bit integer as two's complement."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def py_fib(n: int) -> int:
    """Recursive Fibonacci (no wrap-around: fib(n) fits in an i32 for every n used here)."""
    return n if n < 2 else py_fib(n - 1) + py_fib(n - 2)


def py_loop(n: int) -> int:
    """A linear congruential step and an xor-shift per iteration, wrapping at 32 bits."""
    acc = 0
    for i in range(n):
        acc = (acc * 1103515245 + i) & M32
        acc ^= acc >> 7
    return signed(acc, 32)


def py_fill_sum(n: int) -> int:
    """Fill ``n`` 32-bit words, then sum them back, wrapping at 32 bits."""
    words = array("I", bytes(4 * n))
    for i in range(n):
        words[i] = (i * 2654435761) & M32
    total = 0
    for w in words:
        total = (total + w) & M32
    return signed(total, 32)


def py_mandel(w: int, h: int, maxiter: int) -> int:
    """Mandelbrot iteration counts over a ``w`` x ``h`` grid; returns the total iterations."""
    total = 0
    for py in range(h):
        ci = -1.25 + 2.5 * py / h
        for px in range(w):
            cr = -2.0 + 2.5 * px / w
            zr = zi = zr2 = zi2 = 0.0
            it = 0
            while it < maxiter and zr2 + zi2 <= 4.0:
                zi = 2.0 * zr * zi + ci
                zr = zr2 - zi2 + cr
                zr2 = zr * zr
                zi2 = zi * zi
                it += 1
            total += it
    return total


def py_xorshift(n: int) -> int:
    """``n`` steps of xorshift64, summing the states, wrapping at 64 bits."""
    x = 88172645463325252
    total = 0
    for _ in range(n):
        x ^= (x << 13) & M64
        x ^= x >> 7
        x ^= (x << 17) & M64
        total = (total + x) & M64
    return signed(total, 64)


def py_sieve(n: int) -> int:
    """Sieve of Eratosthenes over a bytearray; returns the number of primes below ``n``."""
    flags = bytearray(n)
    i = 2
    while i * i < n:
        if not flags[i]:
            for j in range(i * i, n, i):
                flags[j] = 1
        i += 1
    count = 0
    for i in range(2, n):
        if not flags[i]:
            count += 1
    return count


@dataclass(frozen=True)
class Workload:
    """One benchmark: a WAT file, its export, the Python twin, and the sizes to run."""

    name: str
    export: str
    python: Callable[..., int]
    result_bits: int
    full: Args  # asyncwasm, Python and wasmtime size
    small: Args  # pywasm size
    quick_full: Args
    quick_small: Args
    describe: Callable[[Args], str]


WORKLOADS: list[Workload] = [
    Workload("fib", "fib", py_fib, 32, (28,), (20,), (22,), (13,), lambda a: f"fib({a[0]})"),
    Workload(
        "loop",
        "loop",
        py_loop,
        32,
        (3_000_000,),
        (20_000,),
        (300_000,),
        (3_000,),
        lambda a: f"{a[0]:,} iterations",
    ),
    Workload(
        "mem",
        "fill_sum",
        py_fill_sum,
        32,
        (262_144,),
        (8_192,),
        (65_536,),
        (2_048,),
        lambda a: f"{a[0] * 4 // 1024} KiB",
    ),
    Workload(
        "mandel",
        "mandel",
        py_mandel,
        32,
        (200, 200, 100),
        (16, 16, 100),
        (64, 64, 100),
        (8, 8, 100),
        lambda a: f"{a[0]}x{a[1]}, {a[2]} iter",
    ),
    Workload(
        "xorshift",
        "xorshift",
        py_xorshift,
        64,
        (1_000_000,),
        (8_000,),
        (100_000,),
        (1_500,),
        lambda a: f"{a[0]:,} steps",
    ),
    Workload(
        "sieve", "sieve", py_sieve, 32, (1_000_000,), (10_000,), (100_000,), (2_000,), lambda a: f"n={a[0]:,}"
    ),
]


# ---- compiling the WAT ------------------------------------------------------------------------------


def wat_to_wasm(path: Path) -> bytes:
    """Compile one WAT file with wabt's ``wat2wasm``, or ``wasmtime.wat2wasm`` as a fallback."""
    exe = shutil.which("wat2wasm")
    if exe is not None:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / (path.stem + ".wasm")
            subprocess.run([exe, str(path), "-o", str(out)], check=True)
            return out.read_bytes()
    try:
        import wasmtime
    except ImportError:
        sys.exit(
            "wat2wasm not found: install wabt (Debian/Ubuntu: `apt-get install wabt`; macOS: "
            "`brew install wabt`) or the wasmtime package (`pip install wasmtime`)"
        )
    return bytes(wasmtime.wat2wasm(path.read_text()))


def wat_tool() -> str:
    """Which WAT compiler ``wat_to_wasm`` uses."""
    exe = shutil.which("wat2wasm")
    if exe is None:
        return "wasmtime.wat2wasm"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True)
    return f"wat2wasm {out.stdout.strip()}"


# ---- engines ----------------------------------------------------------------------------------------

SyncCall = Callable[[Args], Any]


def pywasm_runner(wasm: bytes, export: str) -> SyncCall | None:
    """A function running ``export`` under pywasm, or None if pywasm is not installed."""
    try:
        import pywasm
    except ImportError:
        return None
    import io

    runtime = pywasm.core.Runtime()
    module = runtime.instance(pywasm.core.ModuleDesc.from_reader(io.BytesIO(wasm)))

    def call(args: Args) -> Any:
        return runtime.invocate(module, export, list(args))[0]

    return call


def wasmtime_runner(wasm: bytes, export: str) -> SyncCall | None:
    """A function running ``export`` under wasmtime-py, or None if wasmtime is not installed."""
    try:
        import wasmtime
    except ImportError:
        return None
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    instance = wasmtime.Instance(store, wasmtime.Module(engine, wasm), [])
    func = instance.exports(store)[export]

    def call(args: Args) -> Any:
        return func(store, *args)

    return call


def wasmtime_fuel(wasm: bytes, export: str, args: Args) -> int | None:
    """Wasm instructions executed by one call, counted with wasmtime's fuel (None without wasmtime)."""
    try:
        import wasmtime
    except ImportError:
        return None
    config = wasmtime.Config()
    config.consume_fuel = True
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    store.set_fuel(1 << 62)
    instance = wasmtime.Instance(store, wasmtime.Module(engine, wasm), [])
    instance.exports(store)[export](store, *args)
    return (1 << 62) - store.get_fuel()


def source_revision() -> str:
    """The git commit the asyncwasm package was imported from, and whether its files are modified."""
    root = Path(asyncwasm.__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "asyncwasm"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return f"git {head}" + (" with uncommitted changes in asyncwasm/" if dirty else "")


def version_of(dist: str) -> str:
    """An installed distribution's version, or 'not installed'."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


# ---- timing -----------------------------------------------------------------------------------------

AsyncCall = Callable[[Args], Awaitable[Any]]


def as_async(call: SyncCall) -> AsyncCall:
    """Wrap a synchronous engine call so every engine is timed by the same loop."""

    async def acall(args: Args) -> Any:
        return call(args)

    return acall


async def time_engines(
    engines: dict[str, AsyncCall], args: Args, repeat: int
) -> dict[str, tuple[float, Any]]:
    """Median seconds of ``repeat`` calls per engine, and its result; the engines take turns, so that
    a change in the machine's load hits all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in engines}
    results: dict[str, Any] = {}
    for _ in range(repeat):
        for name, call in engines.items():
            gc.collect()
            t0 = time.perf_counter()
            results[name] = await call(args)
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(ts), results[name]) for name, ts in times.items()}


@dataclass
class Row:
    """Measurements of one workload at one size; None where an engine is missing."""

    workload: Workload
    args: Args
    instructions: int
    asyncwasm: float
    python: float
    pywasm: float | None = None
    wasmtime: float | None = None
    wasmtime_fuel: int | None = None
    pywasm_scale: float = 1.0  # pywasm time is measured at a smaller size and multiplied by this
    pywasm_args: Args = ()
    results: dict[str, Any] = field(default_factory=dict)


async def measure(w: Workload, quick: bool, repeat: int, pywasm_repeat: int) -> tuple[Row, Row]:
    """Run one workload on every engine; returns the full-size row and the pywasm-size row."""
    wasm = wat_to_wasm(WAT_DIR / f"{w.name}.wat")
    full, small = (w.quick_full, w.quick_small) if quick else (w.full, w.small)

    module = asyncwasm.Module(wasm)
    store = asyncwasm.Store()
    inst = await asyncwasm.Linker().instantiate(module, store)
    fuel = [0]

    async def aw_call(args: Args) -> Any:
        before = getattr(store, "fuel_used", 0)
        result = await inst.call(w.export, *args)
        fuel[0] = getattr(store, "fuel_used", 0) - before
        return result

    engines: dict[str, AsyncCall] = {"asyncwasm": aw_call, "python": as_async(lambda a: w.python(*a))}
    wt = wasmtime_runner(wasm, w.export)
    if wt is not None:
        engines["wasmtime"] = as_async(wt)
    for call in engines.values():
        await call(small)  # warm-up

    rows = []
    for args, runs in ((full, repeat), (small, max(repeat, SMALL_REPEAT))):
        timed = await time_engines(engines, args, runs)
        row = Row(
            w,
            args,
            fuel[0],
            timed["asyncwasm"][0],
            timed["python"][0],
            results={name: res for name, (_, res) in timed.items()},
        )
        if "wasmtime" in timed:
            row.wasmtime = timed["wasmtime"][0]
            row.wasmtime_fuel = wasmtime_fuel(wasm, w.export, args)
        if not row.instructions:  # no fuel counter on this asyncwasm: count with wasmtime's
            if row.wasmtime_fuel is None:
                sys.exit(
                    "cannot count Wasm instructions: asyncwasm.Store has no fuel_used and wasmtime "
                    "is not installed"
                )
            row.instructions = row.wasmtime_fuel
        rows.append(row)
    full_row, small_row = rows

    pw = pywasm_runner(wasm, w.export)
    if pw is not None:
        small_row.pywasm, small_row.results["pywasm"] = (
            await time_engines({"pywasm": as_async(pw)}, small, pywasm_repeat)
        )["pywasm"]
        full_row.pywasm_scale = full_row.instructions / small_row.instructions
        full_row.pywasm = small_row.pywasm * full_row.pywasm_scale
        full_row.pywasm_args = small

    for row in rows:
        values = {name: signed(v, w.result_bits) for name, v in row.results.items()}
        if len(set(values.values())) != 1:
            sys.exit(f"{w.name}{row.args}: engines disagree: {values}")
    return full_row, small_row


# ---- output -----------------------------------------------------------------------------------------


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, where the platform has them."""
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "unknown"


def fmt_secs(s: float | None) -> str:
    """Seconds with three significant digits, or '-'."""
    if s is None:
        return "-"
    return f"{s:.3g}" if s >= 0.001 else f"{s:.2e}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    """``a / b`` as '12.3x', or '-'."""
    if a is None or b is None or b == 0:
        return "-"
    r = a / b
    return f"{r:,.0f}x" if r >= 100 else f"{r:.1f}x" if r >= 1 else f"{r:.2f}x"


def table(rows: Sequence[Row], scaled: bool) -> list[str]:
    """A markdown table of rows; with ``scaled``, the pywasm column is the scaled estimate."""
    pw_head = "pywasm s (scaled)" if scaled else "pywasm s"
    head = [
        "workload",
        "size",
        "Wasm instrs",
        "asyncwasm s",
        "M instr/s",
        pw_head,
        "python s",
        "wasmtime s",
        "pywasm/asyncwasm",
        "asyncwasm/python",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r.workload.name,
            r.workload.describe(r.args),
            f"{r.instructions:,}",
            fmt_secs(r.asyncwasm),
            f"{r.instructions / r.asyncwasm / 1e6:.1f}",
            fmt_secs(r.pywasm),
            fmt_secs(r.python),
            fmt_secs(r.wasmtime),
            fmt_ratio(r.pywasm, r.asyncwasm),
            fmt_ratio(r.asyncwasm, r.python),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary(rows: Sequence[Row]) -> list[str]:
    """One line per target: on how many workloads it is met, and the misses."""
    out = []
    pw = [r for r in rows if r.pywasm is not None]
    miss = [
        f"{r.workload.name} {r.pywasm / r.asyncwasm:.0f}x"
        for r in pw
        if r.pywasm / r.asyncwasm < PYWASM_TARGET
    ]
    out.append(
        f"pywasm/asyncwasm >= {PYWASM_TARGET:.0f}x: met on {len(pw) - len(miss)} of {len(pw)}"
        + (f" (missed: {', '.join(miss)})" if miss else "")
    )
    miss = [
        f"{r.workload.name} {r.asyncwasm / r.python:.1f}x"
        for r in rows
        if r.asyncwasm / r.python > PYTHON_TARGET
    ]
    out.append(
        f"asyncwasm/python <= {PYTHON_TARGET:.0f}x: met on {len(rows) - len(miss)} of {len(rows)}"
        + (f" (missed: {', '.join(miss)})" if miss else "")
    )
    return out


async def run(workloads: Sequence[Workload], quick: bool, repeat: int, pywasm_repeat: int) -> None:
    """Measure every workload and print the report."""
    print(f"# asyncwasm compute benchmarks, {datetime.date.today().isoformat()}")
    print()
    print(
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    )
    print(
        f"- asyncwasm {version_of('asyncwasm')} ({source_revision()}), pywasm {version_of('pywasm')}, "
        f"wasmtime {version_of('wasmtime')}, {wat_tool()}"
    )
    print(
        f"- {'quick' if quick else 'full'} sizes; median of {repeat} runs (pywasm: {pywasm_repeat}; "
        f"the others at pywasm's size: {max(repeat, SMALL_REPEAT)}), engines taking turns, after one "
        "untimed warm-up call (none for pywasm)"
    )
    print(f"- load average before the run: {load_average()}")
    print()
    pairs = []
    for w in workloads:
        print(f"running {w.name} ...", file=sys.stderr, flush=True)
        pairs.append(await measure(w, quick, repeat, pywasm_repeat))
    full_rows = [f for f, _ in pairs]
    small_rows = [s for _, s in pairs]

    print("## Full size (pywasm measured at a smaller size and scaled by Wasm instructions)")
    print()
    print("\n".join(table(full_rows, scaled=True)))
    print()
    for r in full_rows:
        if r.pywasm is not None:
            print(
                f"- {r.workload.name}: pywasm ran {r.workload.describe(r.pywasm_args)} "
                f"x {r.pywasm_scale:,.1f} (instruction ratio)"
            )
    print()
    print("Targets: " + "; ".join(summary(full_rows)))
    print()
    print(
        "Wasm instrs is asyncwasm's fuel used by one call (one unit per instruction executed; none for "
        "nop, drop, block, loop, end, else, return, unreachable)",
        end="",
    )
    differ = [r for r in full_rows if r.wasmtime_fuel is not None and r.wasmtime_fuel != r.instructions]
    if differ:
        print("; wasmtime's own fuel count differs on:")
        for r in differ:
            print(
                f"- {r.workload.name}: wasmtime {r.wasmtime_fuel:,} ({r.wasmtime_fuel - r.instructions:+,})"
            )
    else:
        print(".")
    print()
    print("## Every engine measured at pywasm's size (no scaling)")
    print()
    print("\n".join(table(small_rows, scaled=False)))
    print()
    print("Targets: " + "; ".join(summary(small_rows)))
    print()
    print(f"Load average after the run: {load_average()}")


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run the benchmarks."""
    names = [w.name for w in WORKLOADS]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (the whole run takes < 20 s)")
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs per measurement (median); default 5, or 3 with --quick"
    )
    parser.add_argument(
        "--pywasm-repeat", type=int, default=None, help="runs per pywasm measurement; default: --repeat"
    )
    parser.add_argument(
        "--only", default=None, metavar="NAME[,NAME...]", help=f"run only these workloads: {', '.join(names)}"
    )
    opts = parser.parse_args(argv)
    repeat = opts.repeat if opts.repeat is not None else 3 if opts.quick else 5
    if repeat < 1:
        parser.error("--repeat must be at least 1")
    pywasm_repeat = opts.pywasm_repeat if opts.pywasm_repeat is not None else repeat
    selected = WORKLOADS
    if opts.only:
        wanted = [n.strip() for n in opts.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(names)}")
        selected = [w for w in WORKLOADS if w.name in wanted]
    anyio.run(run, selected, opts.quick, repeat, pywasm_repeat)


if __name__ == "__main__":
    main()
