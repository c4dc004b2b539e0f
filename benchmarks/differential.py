"""Differential run of asyncwasm against wasmtime on many `wasm-tools smith` modules.

    python benchmarks/differential.py --count 3000 [--start-seed S] [--jobs 2] [--no-fuel]

Each seed makes one random Wasm 2.0 module (see tests/differential.py for what is generated,
called and compared); the script prints a summary table (modules, calls, agreements,
disagreements by category, time) and then every disagreement with its seed, function, arguments
and both engines' outcomes. ``--show-wat SEED`` prints the module of one seed instead. The exit
status is 1 when there is a disagreement other than fuel (or fuel too, with ``--strict-fuel``).
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import differential  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=1000, help="modules to generate (default 1000)")
    p.add_argument("--start-seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--no-fuel", action="store_true", help="do not compare fuel")
    p.add_argument("--strict-fuel", action="store_true", help="fuel disagreements fail the run too")
    p.add_argument(
        "--free-nans",
        action="store_true",
        help="do not canonicalize NaNs (results then allow NaN sign/payload differences; "
        "state may differ legitimately)",
    )
    p.add_argument(
        "--smith-fuel",
        type=int,
        default=differential.DEFAULT.smith_fuel,
        help="smith's loop/call budget per call",
    )
    p.add_argument("--list", type=int, default=200, help="disagreements to list at most (default 200)")
    p.add_argument("--show-wat", type=int, metavar="SEED", help="print the module of SEED and stop")
    opts = p.parse_args(argv)

    config = replace(
        differential.DEFAULT,
        compare_fuel=not opts.no_fuel,
        canonicalize_nans=not opts.free_nans,
        smith_fuel=opts.smith_fuel,
    )
    if opts.show_wat is not None:
        wasm = differential.generate(opts.show_wat, config)
        print(differential.wat_text(wasm) if wasm is not None else "smith made no module from this seed")
        return 0

    seeds = range(opts.start_seed, opts.start_seed + opts.count)
    start = time.perf_counter()

    def progress(done: int) -> None:
        if done % 500 == 0:
            print(f"... {done} modules, {time.perf_counter() - start:.0f}s", file=sys.stderr)

    results = differential.run_seeds(seeds, config, opts.jobs, progress)
    elapsed = time.perf_counter() - start

    generated = [r for r in results if r.generated]
    by_cat: collections.Counter[str] = collections.Counter()
    modules_by_cat: collections.Counter[str] = collections.Counter()
    for r in results:
        cats = [d.category for d in r.disagreements]
        by_cat.update(cats)
        modules_by_cat.update(set(cats))
    calls = sum(r.calls for r in results)
    agreed = sum(r.agreed_calls for r in results)
    uncompared = sum(r.uncompared_calls for r in results)
    clean = sum(1 for r in generated if not r.disagreements)
    rows = [
        ("seeds", f"{opts.start_seed}..{opts.start_seed + opts.count - 1}"),
        ("modules generated", f"{len(generated)} (smith made none for {len(results) - len(generated)})"),
        ("modules with no disagreement", str(clean)),
        ("calls compared", str(calls)),
        ("calls agreeing (outcome and state)", str(agreed)),
        ("calls not compared (after a module's first divergence)", str(uncompared)),
        ("fuel compared", "no" if opts.no_fuel else "yes"),
        ("NaNs canonicalized", "no" if opts.free_nans else "yes"),
    ]
    for cat in differential.CATEGORIES:
        rows.append((f"disagreements: {cat}", f"{by_cat[cat]} in {modules_by_cat[cat]} modules"))
    rows.append(("time", f"{elapsed:.1f}s with {opts.jobs} job(s)"))
    width = max(len(k) for k, _ in rows)
    print(f"| {'what':<{width}} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for k, v in rows:
        print(f"| {k:<{width}} | {v} |")

    listed = [d for r in results for d in r.disagreements]
    if listed:
        print(
            f"\n{len(listed)} disagreements"
            + (f" (the first {opts.list})" if len(listed) > opts.list else "")
            + ":"
        )
        for d in listed[: opts.list]:
            print(f"  {d}")
    failing = {c for c in by_cat if c != "fuel" or opts.strict_fuel}
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
