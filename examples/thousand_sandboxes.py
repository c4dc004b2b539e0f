"""Run 1,000 sandboxes at once on one event loop and print what the scheduler measured.

Every sandbox is an instance of ``examples/spin.wasm`` in its own store: most spin a random amount
of work and finish, one in ten is a runaway that spins until its fuel limit stops it, and one in
ten has weight 2 (twice the CPU share while it competes; half the runaways are among them). A 1 ms timer runs in another task on the
same loop and records how late it wakes up. At the end the script prints, from each instance's
``RunStats`` and its store's fuel counter: turns, CPU time, time spent waiting for the CPU, fuel,
and how they split by weight.

    python examples/thousand_sandboxes.py
    python examples/thousand_sandboxes.py --instances 200 --seconds 3 --backend trio
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

import asyncwasm

HERE = Path(__file__).resolve().parent
FUEL_PER_ITERATION = 15  # spin's loop body, counted as the store's fuel counts it


@dataclass
class Sandbox:
    instance: asyncwasm.Instance
    store: asyncwasm.Store
    work: int  # iterations asked for; -1: a runaway
    outcome: str = "running"
    finished_at: float = 0.0


def pct(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def row(name: str, values: Sequence[float], fmt: str) -> str:
    cells = [
        format(v, fmt)
        for v in (min(values), pct(values, 50), statistics.fmean(values), pct(values, 99), max(values))
    ]
    return f"{name:<28}" + "".join(f"{c:>11}" for c in cells)


async def main(n: int, seconds: float) -> None:
    module = asyncwasm.Module.from_file(HERE / "spin.wasm")
    probe = await asyncwasm.Linker().instantiate(module)
    t0 = time.perf_counter()
    await probe.call("spin", 200_000)
    rate = 200_000 / (time.perf_counter() - t0)  # iterations per second, one instance alone
    mean_work = max(1_000, int(rate * seconds / n))
    rng = random.Random(7)

    t0 = time.perf_counter()
    sandboxes = []
    for i in range(n):
        runaway = i % 20 in (0, 5)
        store = asyncwasm.Store(
            fuel=2 * mean_work * FUEL_PER_ITERATION if runaway else None, weight=2.0 if i % 10 == 5 else 1.0
        )
        instance = await asyncwasm.Linker().instantiate(module, store)
        work = -1 if runaway else rng.randint(mean_work // 2, 3 * mean_work // 2)
        sandboxes.append(Sandbox(instance, store, work))
    made = time.perf_counter() - t0
    print(
        f"{n:,} sandboxes instantiated in {made * 1e3:.0f} ms ({made / n * 1e6:.0f} us each); "
        f"one alone runs {rate / 1e6:.1f} M iterations/s; mean work {mean_work:,} iterations"
    )

    lateness: list[float] = []

    async def timer() -> None:
        due = anyio.current_time() + 0.001
        while True:
            await anyio.sleep_until(due)
            now = anyio.current_time()
            lateness.append(now - due)
            due = max(due + 0.001, now)

    async def run(box: Sandbox) -> None:
        try:
            await box.instance.call("spin", box.work)
            box.outcome = "finished"
        except asyncwasm.FuelExhausted:
            box.outcome = "out of fuel"
        except asyncwasm.Trap as trap:
            box.outcome = f"trap: {trap.message}"
        box.finished_at = time.perf_counter() - start

    mid_cpu: dict[float, list[float]] = {}
    seconds_mid = 0.0

    async def sample_mid_run() -> None:
        nonlocal seconds_mid
        await anyio.sleep(seconds / 2)
        seconds_mid = time.perf_counter() - start
        for box in sandboxes:
            mid_cpu.setdefault(box.instance.stats.weight, []).append(box.instance.stats.run_time)

    start = time.perf_counter()
    async with anyio.create_task_group() as outer:
        outer.start_soon(timer)
        outer.start_soon(sample_mid_run)
        async with anyio.create_task_group() as tg:
            for box in sandboxes:
                tg.start_soon(run, box)
        outer.cancel_scope.cancel()
    wall = time.perf_counter() - start

    outcomes: dict[str, int] = {}
    for box in sandboxes:
        outcomes[box.outcome] = outcomes.get(box.outcome, 0) + 1
    iterations = sum(box.instance.exports["count"].value for box in sandboxes)  # type: ignore[union-attr]
    print(
        f"all done in {wall:.2f} s: "
        + ", ".join(f"{v:,} {k}" for k, v in sorted(outcomes.items()))
        + f"; {iterations / wall / 1e6:.2f} M iterations/s together ({iterations / wall / rate:.0%} of one alone)"
    )
    print()
    stats = [box.instance.stats for box in sandboxes]
    print(f"{'per instance':<28}" + "".join(f"{h:>11}" for h in ("min", "p50", "mean", "p99", "max")))
    print(row("turns (slices)", [s.slices for s in stats], ".0f"))
    print(row("CPU time, ms", [s.run_time * 1e3 for s in stats], ".1f"))
    print(row("waiting for the CPU, s", [s.wait_time for s in stats], ".2f"))
    print(row("fuel used, millions", [box.store.fuel_used / 1e6 for box in sandboxes], ".2f"))
    print(row("CPU ms per turn", [s.run_time * 1e3 / max(s.slices, 1) for s in stats], ".2f"))
    print(row("finished at, s", [box.finished_at for box in sandboxes], ".2f"))
    print()
    print(f"CPU time by weight at {seconds_mid:.2f} s, half-way, while all competed:")
    for weight in sorted(mid_cpu):
        cpu = mid_cpu[weight]
        print(
            f"  weight {weight:g}: {len(cpu)} sandboxes, mean {statistics.fmean(cpu) * 1e3:.1f} ms "
            f"({statistics.fmean(cpu) / statistics.fmean(mid_cpu[min(mid_cpu)]):.2f}x weight {min(mid_cpu):g})"
        )
    total_cpu = sum(s.run_time for s in stats)
    print()
    print(
        f"CPU time in guests: {total_cpu:.2f} s of {wall:.2f} s wall ({total_cpu / wall:.0%}); "
        f"turns taken: {sum(s.slices for s in stats):,}"
    )
    print(
        f"1 ms timer in another task: {len(lateness):,} wake-ups, late by p50 {pct(lateness, 50) * 1e3:.2f} ms, "
        f"p99 {pct(lateness, 99) * 1e3:.2f} ms, max {max(lateness) * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0, help="roughly how long the whole run takes")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    opts = parser.parse_args()
    anyio.run(main, opts.instances, opts.seconds, backend=opts.backend)
