"""Scheduler benchmarks: many instances sharing one event loop through the CPU token.

Measures, on one loop and one thread:

- crowd: ``--instances`` CPU-bound instances (an LCG loop counting its iterations in an exported
  global) started at once, each doing the same work; total throughput against one instance doing all
  of that work alone (judged with the two interleaved on one core, see ``Interleaved``); the
  lateness of a 1 ms periodic timer in another task; each instance's progress against the mean, part-way through; the scheduler's per-instance counters. Run twice: equal
  weights, then weights 1 and 2 alternating, each instance's work in proportion to its weight so that
  all should finish together (progress compared per unit of weight).
- echo: an instance answering each line of its stdin, beside ``--neighbours`` CPU-bound ones: the time
  from a line sent to its echo received.
- fresh: a new instance's first answer (instantiate and call) beside ``--neighbours`` CPU-bound ones.
- burst: ``--burst`` WASI instances (the corpus's ``cat``, wasi-libc) started at once, each blocking in
  ``fd_read``, beside a 1 ms timer: how late the timer gets while they start, then every one answers a line.
- progress spread at several points of the crowd's work, with a forced full garbage collection half-way.
- hello: instantiating an already compiled WASI hello-world and running it to completion, per second.
- idle memory: what an instance suspended in a host call holds beyond its linear memory (tracemalloc).
- serve-stdin: a real ``asyncwasm serve-stdin`` subprocess (``--serve-workers`` workers, this backend)
  serving a C line service (wasi-libc): ``--serve-spinners`` connections make it spin forever, then
  ``--serve-connections`` new connections one at a time: connect to first answer, and each of
  ``--serve-lines`` lines, against 100 ms and 20 ms at the maximum (and the same with no spinners first).

``--only SECTION[,...]`` runs a subset (crowd, echo, fresh, burst, serve, hello, idle).

    python benchmarks/scheduler.py                        # both backends, 1,000 instances, 40 s runs
    python benchmarks/scheduler.py --backend trio --quick # 100 instances, ~4 s runs
    python benchmarks/scheduler.py --only serve           # serve-stdin beside 50 spinning connections
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
from anyio.streams.buffered import BufferedByteReceiveStream

import asyncwasm
from asyncwasm import collector
from asyncwasm.cpu import DEFAULT_SLICE
from wasi_async import WasiConfig, WasiContext, run_command

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ASYNCWASM_SHARED", ROOT.parent / "shared"))

THROUGHPUT_TARGET = 0.90  # crowd throughput / alone throughput
TIMER_TARGET_SLICES = 3.0  # p99 lateness of a 1 ms timer, in slices
TIMER_MAX_TARGET = 0.030  # the worst lateness of that timer, in seconds (beside the crowd, and in a burst)
FAIRNESS_TARGET = 0.10  # every instance's progress within this fraction of the mean
FAIRNESS_AT = 0.90  # ... when the crowd has done this share of its work
FRESH_TARGET = 0.020  # seconds to a fresh instance's first answer beside the CPU-bound ones
ECHO_TARGET = 0.010  # p99 seconds from a line sent to its echo
HELLO_TARGET = 1000.0  # hello-world runs per second
ECHO_GIVE_UP = 5.0  # seconds after which a line counts as unanswered

# spin(n): n iterations of an LCG (n = -1: forever), the count kept in the exported global "count".
SPIN_WAT = """
(module
  (global $count (export "count") (mut i64) (i64.const 0))
  (func (export "spin") (param $n i64) (local $x i32) (local $i i64)
    (loop $l
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1664525)) (i32.const 1013904223)))
      (global.set $count (local.tee $i (i64.add (local.get $i) (i64.const 1))))
      (br_if $l (i64.ne (local.get $i) (local.get $n))))))
"""

# A WASI command that writes back each chunk it reads from stdin until end of input.
ECHO_WAT = """
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $n i32)
    (loop $l
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (i32.const 4096))
      (if (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)) (then (return)))
      (local.set $n (i32.load (i32.const 8)))
      (if (i32.eqz (local.get $n)) (then (return)))
      (i32.store (i32.const 4) (local.get $n))
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))
      (br $l))))
"""

# An instance that waits in an async host function (the smallest suspended instance).
WAIT_WAT = """
(module
  (import "env" "wait" (func $wait))
  (memory (export "memory") 1)
  (func (export "run") (call $wait)))
"""


# ---- helpers ----------------------------------------------------------------------------------------


def wat_to_wasm(text: str) -> bytes:
    """WebAssembly text to binary with the engine's own encoder. (Not wabt's or wasmtime's: loading
    wasmtime's bindings into this process added 14,000 objects and 14 ms to every full collection,
    which the timer tables would then show as the scheduler's.)"""
    from asyncwasm.text import wat_to_wasm as encode

    return encode(text)


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by the nearest-rank method."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def ms(s: float) -> str:
    return f"{s * 1e3:.2f}"


def yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "unknown"


def source_revision() -> str:
    """The git revision of the asyncwasm that was imported, or where it came from if not this checkout."""
    imported = Path(asyncwasm.__file__).resolve().parent.parent
    if imported != ROOT:
        return f"the copy in {imported}"
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "asyncwasm"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return f"git {head}" + (" with uncommitted changes in asyncwasm/" if dirty else "")


def table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")
    print()


class PeriodicTimer:
    """A task that wants to wake every ``period`` seconds and records how late each wake-up was."""

    def __init__(self, period: float = 0.001) -> None:
        self.period = period
        self.lateness: list[float] = []
        self.at: list[float] = []  # when each wake-up was due (perf_counter)

    async def run(self) -> None:
        due = anyio.current_time() + self.period
        while True:
            await anyio.sleep_until(due)
            now = anyio.current_time()
            self.lateness.append(now - due)
            self.at.append(time.perf_counter() - (now - due))
            due = max(due + self.period, now)

    def wakeups_outside(self, start: float, end: float) -> list[tuple[float, float]]:
        """(lateness, when due) of the wake-ups that were not due while [start, end] held the loop."""
        return [
            (late, at)
            for late, at in zip(self.lateness, self.at, strict=True)
            if not (at <= end and at + late >= start)
        ]

    def outside(self, start: float, end: float) -> list[float]:
        """The lateness of the wake-ups that were not due while [start, end] held the loop."""
        return [late for late, _ in self.wakeups_outside(start, end)]


class PauseMeter:
    """The garbage collector's pauses while it is on (``on``/``off``, or ``paused`` to leave one out):
    how many, how long in all, the longest."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.longest = 0.0
        self._started = 0.0

    def _callback(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            pause = time.perf_counter() - self._started
            self.count += 1
            self.seconds += pause
            self.longest = max(self.longest, pause)

    def on(self) -> None:
        gc.callbacks.append(self._callback)

    def off(self) -> None:
        gc.callbacks.remove(self._callback)


# ---- crowd: many CPU-bound instances ----------------------------------------------------------------


@dataclass
class Crowd:
    """What one crowd run measured."""

    label: str
    weights: list[float]
    works: list[int]  # iterations per instance (in proportion to its weight)
    wall: float = 0.0
    cpu: float = 0.0
    timer: PeriodicTimer = field(default_factory=PeriodicTimer)
    samples: list[tuple[float, list[int], list[int]]] = field(default_factory=list)  # (t, counts, slices)
    finish: list[float] = field(default_factory=list)
    stats: list[asyncwasm.RunStats] = field(default_factory=list)
    fuel: list[int] = field(default_factory=list)
    forced_gc: tuple[float, float] = (0.0, 0.0)  # when the forced collection began and ended
    pauses: PauseMeter = field(default_factory=PauseMeter)  # the collector's own, during the run

    def timer_lateness(self) -> list[float]:
        """The timer's lateness, less the wake-ups held up by the benchmark's own forced collection."""
        return self.timer.outside(*self.forced_gc)

    def worst_wakeups(self, k: int = 3) -> str:
        """The ``k`` latest wake-ups (outside the forced collection): ms late, at s into the crowd."""
        start = self.timer.at[0] if self.timer.at else 0.0
        kept = self.timer.wakeups_outside(*self.forced_gc)
        return ", ".join(f"{ms(late)} at {at - start:.1f} s" for late, at in sorted(kept, reverse=True)[:k])


INTERLEAVE_PERIOD = 0.1  # seconds each process runs before the other gets the core
INTERLEAVE_WARMUP = 1.0  # CPU seconds of each process left out (instantiation, the crowd's first round)
SAMPLE_EVERY = 0.1  # seconds between a throughput process's samples of its work


class Interleaved:
    """Throughput with the machine's drift cancelled: the crowd and one instance alone, each in a
    process of its own, pinned to the same core and taking turns on it every ``INTERLEAVE_PERIOD``
    (SIGSTOP, SIGCONT), each counting its work against its own CPU time. A shared machine's speed
    drifts by 10-20% within seconds, and by as much between its two cores, so one instance alone
    before and after the crowd, or on the other core beside it, measures the drift as much as the
    scheduler; turns of a tenth of a second on one core see the same machine.

    Each process writes ``cpu_seconds iterations`` lines (``time.thread_time``, the sum of its
    instances' counts) to a file read when the run is over."""

    def __init__(self, backend: str, instances: int, weighted: bool, seconds: float) -> None:
        self.backend, self.instances, self.weighted, self.seconds = backend, instances, weighted, seconds
        self.samples: dict[str, list[tuple[float, int]]] = {}  # CPU seconds, iterations

    async def _spawn(self, role: str, path: Path, core: int) -> subprocess.Popen[bytes]:
        args = [sys.executable, __file__, "--throughput-process", f"{role},{self.backend},{core},{path}"]
        if role == "crowd":
            args[-1] += f",{self.instances},{int(self.weighted)}"
        proc = subprocess.Popen(args)
        give_up = time.perf_counter() + 120.0  # 1,000 instances start in a few seconds
        while not path.exists() or path.stat().st_size == 0:
            if proc.poll() is not None:
                raise RuntimeError(f"the {role} process ended with {proc.returncode}")
            if time.perf_counter() > give_up:
                proc.kill()
                raise RuntimeError(f"the {role} process wrote nothing in 120 s")
            await anyio.sleep(0.01)
        return proc

    async def run(self) -> None:
        core = max(os.sched_getaffinity(0))
        with tempfile.TemporaryDirectory(prefix="sched-throughput-") as tmp:
            paths = {role: Path(tmp) / f"{role}.txt" for role in ("alone", "crowd")}
            procs: dict[str, subprocess.Popen[bytes]] = {}
            try:
                procs["alone"] = await self._spawn("alone", paths["alone"], core)
                procs["alone"].send_signal(signal.SIGSTOP)
                procs["crowd"] = await self._spawn("crowd", paths["crowd"], core)
                turn = "crowd"
                end = time.perf_counter() + self.seconds
                while time.perf_counter() < end:
                    await anyio.sleep(INTERLEAVE_PERIOD)
                    other = "alone" if turn == "crowd" else "crowd"
                    procs[turn].send_signal(signal.SIGSTOP)
                    procs[other].send_signal(signal.SIGCONT)
                    turn = other
            finally:
                for proc in procs.values():
                    proc.send_signal(signal.SIGCONT)
                    proc.terminate()
                    proc.wait()
            for role, path in paths.items():
                self.samples[role] = [
                    (float(c), int(n)) for c, n in (line.split() for line in path.read_text().splitlines())
                ]

    def rate(self, role: str) -> float:
        """Iterations per CPU second of ``role``'s process, past its warm-up."""
        samples = self.samples[role]
        start = samples[0][0] + INTERLEAVE_WARMUP
        kept = [s for s in samples if s[0] >= start]
        if len(kept) < 2:
            return float("nan")
        return (kept[-1][1] - kept[0][1]) / (kept[-1][0] - kept[0][0])

    def cpu(self, role: str) -> float:
        """CPU seconds ``role``'s process ran past its warm-up."""
        samples = self.samples[role]
        return max(0.0, samples[-1][0] - samples[0][0] - INTERLEAVE_WARMUP)


def throughput_process(spec: str) -> None:
    """A process of ``Interleaved``: ``alone,BACKEND,CORE,FILE`` or ``crowd,BACKEND,CORE,FILE,N,WEIGHTED``:
    instances spinning forever, and a task writing their work against the thread's CPU time."""
    role, backend, core, path, *rest = spec.split(",")
    os.sched_setaffinity(0, {int(core)})
    module = asyncwasm.Module(wat_to_wasm(SPIN_WAT), name="spin")
    n, weighted = (int(rest[0]), rest[1] == "1") if role == "crowd" else (1, False)

    async def go() -> None:
        stores = [asyncwasm.Store(weight=1.0 + (i % 2) if weighted else 1.0) for i in range(n)]
        insts = [await asyncwasm.Linker().instantiate(module, st) for st in stores]
        counters = [inst.exports["count"] for inst in insts]
        async with anyio.create_task_group() as tg:
            for inst in insts:
                tg.start_soon(inst.call, "spin", -1)
            with open(path, "w", buffering=1) as out:
                while True:
                    work = sum(c.value for c in counters)  # type: ignore[union-attr]
                    out.write(f"{time.thread_time()!r} {work}\n")
                    await anyio.sleep(SAMPLE_EVERY)

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    anyio.run(go, backend=backend)


async def spin_rate(module: asyncwasm.Module, seconds: float) -> float:
    """Iterations per second of one instance alone (run for about ``seconds``)."""
    inst = await asyncwasm.Linker().instantiate(module, asyncwasm.Store())
    n = 100_000
    while True:
        t0 = time.perf_counter()
        await inst.call("spin", n)
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt
        n = int(n * max(2.0, 1.2 * seconds / max(dt, 1e-6)))


async def run_alone(module: asyncwasm.Module, total: int) -> tuple[float, float]:
    """Wall and CPU seconds of one instance doing ``total`` iterations."""
    inst = await asyncwasm.Linker().instantiate(module, asyncwasm.Store())
    gc.collect()
    c0, t0 = time.thread_time(), time.perf_counter()
    await inst.call("spin", total)
    return time.perf_counter() - t0, time.thread_time() - c0


async def run_crowd(module: asyncwasm.Module, crowd: Crowd, sample_every: float) -> None:
    """Start every instance at once, each spinning its ``crowd.works`` iterations, until all are done."""
    stores = [asyncwasm.Store(weight=w) for w in crowd.weights]
    insts = [await asyncwasm.Linker().instantiate(module, s) for s in stores]
    counters = [inst.exports["count"] for inst in insts]
    n = len(insts)
    crowd.finish = [0.0] * n
    gc.collect()
    t0 = time.perf_counter()
    c0 = time.thread_time()

    async def spin(i: int) -> None:
        await insts[i].call("spin", crowd.works[i])
        crowd.finish[i] = time.perf_counter() - t0

    async def sample() -> None:
        k = 0  # a sample every 40th of the expected run, so that 90% of the work is hit closely
        while True:
            await anyio.sleep(sample_every)
            k += 1
            if k == 20:  # half-way: a full collection, whose pause must not be billed to one guest
                g0 = time.perf_counter()
                crowd.pauses.off()  # its own pause is reported apart
                gc.collect()
                crowd.pauses.on()
                crowd.forced_gc = (g0, time.perf_counter())
            crowd.samples.append(
                (
                    time.perf_counter() - t0,
                    [c.value for c in counters],  # type: ignore[union-attr]
                    [inst.stats.slices for inst in insts],
                )
            )

    crowd.pauses.on()
    try:
        async with anyio.create_task_group() as outer:
            outer.start_soon(crowd.timer.run)
            outer.start_soon(sample)
            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(spin, i)
            crowd.wall = time.perf_counter() - t0
            crowd.cpu = time.thread_time() - c0
            outer.cancel_scope.cancel()
    finally:
        crowd.pauses.off()
    crowd.stats = [inst.stats for inst in insts]
    crowd.fuel = [s.fuel_used for s in stores]


def fairness_sample(crowd: Crowd, share: float = FAIRNESS_AT) -> tuple[float, list[float], list[int]] | None:
    """The sample taken when the crowd had done about ``share`` of its work (the first at or past it):
    (time, progress per unit of weight, slices)."""
    total = sum(crowd.works)
    for t, counts, slices in crowd.samples:
        if sum(min(c, w) for c, w in zip(counts, crowd.works, strict=True)) >= share * total:
            return t, [c / w for c, w in zip(counts, crowd.weights, strict=True)], slices
    return None


def report_crowds(
    crowds: list[Crowd],
    alone: dict[str, tuple[float, float]],
    interleaved: dict[str, Interleaved],
    slice_s: float,
) -> dict[str, bool]:
    """Print the crowd tables; returns which targets were met."""
    met: dict[str, bool] = {}
    print("#### Throughput: the crowd against one instance alone")
    print()
    print(
        "*Interleaved* is what the target is judged on: the crowd and one instance alone, each in a process "
        f"of its own, pinned to one core and taking turns on it every {INTERLEAVE_PERIOD * 1e3:g} ms, each "
        "counting its iterations per CPU second (see `Interleaved`). *Sequential* is the crowd above "
        "against one instance doing the same total work alone, half just before it and half just after: "
        "it also measures how the machine's speed drifted between them (10-20% within seconds here)."
    )
    print()
    rows = []
    for c in crowds:
        total = sum(c.works)
        a_wall, a_cpu = alone[c.label]
        r_wall, r_cpu = a_wall / c.wall, a_cpu / c.cpu
        il = interleaved[c.label]
        r_il = il.rate("crowd") / il.rate("alone")
        met[f"throughput {c.label}"] = r_il >= THROUGHPUT_TARGET
        rows.append(
            [
                c.label,
                f"{len(c.weights):,}",
                f"{il.cpu('crowd'):.1f} / {il.cpu('alone'):.1f}",
                f"{il.rate('crowd') / 1e6:.2f}",
                f"{il.rate('alone') / 1e6:.2f}",
                f"{r_il:.1%}",
                yes(r_il >= THROUGHPUT_TARGET),
                f"{total / 1e6:.1f}",
                f"{c.wall:.2f} / {a_wall:.2f}",
                f"{c.cpu:.2f} / {a_cpu:.2f}",
                f"{r_wall:.1%}",
                f"{r_cpu:.1%}",
            ]
        )
    table(
        [
            "run",
            "instances",
            "interleaved: CPU s, crowd / alone",
            "crowd M it/s per CPU s",
            "alone M it/s per CPU s",
            "interleaved crowd/alone",
            f">= {THROUGHPUT_TARGET:.0%}",
            "sequential: M iterations",
            "wall s, crowd / alone",
            "CPU s, crowd / alone",
            "crowd/alone (wall)",
            "crowd/alone (CPU)",
        ],
        rows,
    )

    print(
        f"#### A 1 ms periodic timer in another task (target: p99 late by at most {TIMER_TARGET_SLICES:g} "
        f"slices = {ms(TIMER_TARGET_SLICES * slice_s)} ms, at most {ms(TIMER_MAX_TARGET)} ms at worst)"
    )
    print()
    print(
        "The benchmark forces a full collection half-way (for the fairness table): the wake-ups due while "
        "that call held the loop are left out here, and its length is shown beside the collector's own "
        "longest pause."
    )
    print()
    rows = []
    for c in crowds:
        late = c.timer_lateness()
        p99 = pct(late, 99)
        ok = p99 <= TIMER_TARGET_SLICES * slice_s and bool(late) and max(late) <= TIMER_MAX_TARGET
        met[f"timer {c.label}"] = ok
        rows.append(
            [
                c.label,
                f"{len(late):,}",
                f"{len(late) / c.wall:.0f}",
                ms(pct(late, 50)),
                ms(pct(late, 90)),
                ms(p99),
                ms(max(late) if late else float("nan")),
                f"{c.pauses.count:,}, longest {ms(c.pauses.longest)}",
                ms(c.forced_gc[1] - c.forced_gc[0]),
                c.worst_wakeups(),
                yes(ok),
            ]
        )
    table(
        [
            "run",
            "wake-ups",
            "per s (ideal 1000)",
            "p50 ms late",
            "p90 ms",
            "p99 ms",
            "max ms",
            "collector's pauses",
            "forced collection ms",
            "latest three: ms, at s into the crowd",
            "met",
        ],
        rows,
    )

    print(
        f"#### Progress of each instance when the crowd had done {FAIRNESS_AT:.0%} of its work (target: within "
        f"{FAIRNESS_TARGET:.0%} of the mean, per unit of weight; a full garbage collection was forced half-way)"
    )
    print()
    rows = []
    for c in crowds:
        s = fairness_sample(c)
        if s is None:
            rows.append([c.label] + ["-"] * 9)
            met[f"fairness {c.label}"] = False
            continue
        t, prog, slices = s
        mean = statistics.fmean(prog)
        rel = [p / mean for p in prog]
        outside = sum(1 for r in rel if abs(r - 1) > FAIRNESS_TARGET)
        starved = sum(1 for p in prog if p == 0)
        ok = outside == 0
        met[f"fairness {c.label}"] = ok
        rows.append(
            [
                c.label,
                f"{t:.1f} of {c.wall:.1f}",
                f"{statistics.fmean(slices):.1f}",
                f"{min(rel):.3f}",
                f"{pct(rel, 1):.3f}",
                f"{pct(rel, 99):.3f}",
                f"{max(rel):.3f}",
                str(starved),
                str(outside),
                yes(ok),
            ]
        )
    table(
        [
            "run",
            "at s",
            "slices per instance",
            "min / mean",
            "p1",
            "p99",
            "max / mean",
            "starved",
            f"outside +-{FAIRNESS_TARGET:.0%}",
            "met",
        ],
        rows,
    )
    print("Spread (min / max of progress over the mean) as the run goes on:")
    print()
    points = (0.25, 0.5, 0.75, 0.9)
    rows = []
    for c in crowds:
        row = [c.label]
        for share in points:
            sp = fairness_sample(c, share)
            if sp is None:
                row.append("-")
                continue
            mean = statistics.fmean(sp[1])
            row.append(f"{min(sp[1]) / mean:.3f} / {max(sp[1]) / mean:.3f} at {sp[0]:.1f} s")
        rows.append(row)
    table(["run"] + [f"at {q:.0%} of the work" for q in points], rows)
    for c in crowds:
        ws = sorted(set(c.weights))
        if len(ws) > 1:
            s = fairness_sample(c)
            if s is not None:
                t, prog, _ = s
                by_w = {
                    w: statistics.fmean(p * w for p, ww in zip(prog, c.weights, strict=True) if ww == w)
                    for w in ws
                }
                parts = ", ".join(f"weight {w:g}: {by_w[w] / by_w[ws[0]]:.3f}" for w in ws)
                print(f"- {c.label}: mean progress relative to weight {ws[0]:g} at {t:.1f} s: {parts}")
    print()
    print("#### What the scheduler measured, per instance (RunStats and the store's fuel)")
    print()
    rows = []
    for c in crowds:
        fin = sorted(c.finish)
        for w in sorted(set(c.weights)):
            st = [s for s, ww in zip(c.stats, c.weights, strict=True) if ww == w]
            fuel = [f for f, ww in zip(c.fuel, c.weights, strict=True) if ww == w]
            sl = [s.slices for s in st]
            rt = [s.run_time for s in st]
            wt = [s.wait_time for s in st]
            rows.append(
                [
                    c.label,
                    f"{w:g}",
                    f"{len(st):,}",
                    f"{min(sl)} / {statistics.fmean(sl):.1f} / {max(sl)}",
                    f"{statistics.fmean(rt):.4f}",
                    f"{statistics.fmean(wt):.2f}",
                    f"{1e3 * statistics.fmean(rt) / max(statistics.fmean(sl), 1):.2f}",
                    f"{statistics.fmean(fuel) / 1e6:.1f}",
                    f"{fin[0]:.1f} - {fin[-1]:.1f}",
                ]
            )
    table(
        [
            "run",
            "weight",
            "instances",
            "slices min / mean / max",
            "run s (mean)",
            "waiting s (mean)",
            "ms per slice",
            "M fuel (mean)",
            "finished between s",
        ],
        rows,
    )
    return met


# ---- echo beside CPU-bound instances ----------------------------------------------------------------


class _Stamped(anyio.abc.ByteSendStream):
    """The echo's stdout: notes when each write arrives."""

    def __init__(self) -> None:
        self.received = 0
        self.event = anyio.Event()

    async def send(self, item: bytes) -> None:
        self.received += len(item)
        self.event.set()

    async def send_eof(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


@dataclass
class Echo:
    neighbours: int
    latency: list[float] = field(default_factory=list)
    echo_stats: asyncwasm.RunStats | None = None
    neighbour_slices: float = 0.0
    unanswered: int = 0  # lines not echoed within ECHO_GIVE_UP seconds (counted at that value)


async def run_echo(
    spin: asyncwasm.Module, echo: asyncwasm.Module, neighbours: int, lines: int, max_seconds: float = 30.0
) -> Echo:
    """Send ``lines`` lines, one at a time at random 2-10 ms gaps, to an echo instance beside
    ``neighbours`` instances spinning forever (stopping early after ``max_seconds``)."""
    result = Echo(neighbours)
    insts = [await asyncwasm.Linker().instantiate(spin, asyncwasm.Store()) for _ in range(neighbours)]
    to_guest, stdin = anyio.create_memory_object_stream[bytes](100)
    out = _Stamped()
    rng = random.Random(1)
    async with anyio.create_task_group() as tg:
        for inst in insts:
            tg.start_soon(inst.call, "spin", -1)

        async def serve() -> None:
            store = asyncwasm.Store()
            async with WasiContext(WasiConfig(args=["echo"], stdin=stdin, stdout=out)) as ctx:
                linker = asyncwasm.Linker()
                ctx.add_to_linker(linker)
                inst = await linker.instantiate(echo, store)
                result.echo_stats = inst.stats
                await inst.call("_start")

        tg.start_soon(serve)
        await anyio.sleep(max(0.5, neighbours * DEFAULT_SLICE * 2))  # every neighbour has had turns
        line = b"x" * 63 + b"\n"
        stop_at = time.perf_counter() + max_seconds
        for _ in range(lines):
            if time.perf_counter() > stop_at:
                break  # far too slow to wait for every line
            out.event = anyio.Event()
            want = out.received + len(line)
            t0 = time.perf_counter()
            await to_guest.send(line)
            with anyio.move_on_after(ECHO_GIVE_UP):
                while out.received < want:
                    await out.event.wait()
                    out.event = anyio.Event()
            result.latency.append(time.perf_counter() - t0)
            if out.received < want:  # no answer in time: count it, wait for it before the next line
                result.unanswered += 1
                with anyio.move_on_after(max_seconds):
                    while out.received < want:
                        await out.event.wait()
                        out.event = anyio.Event()
                if out.received < want:
                    break
            await anyio.sleep(rng.uniform(0.002, 0.010))
        result.neighbour_slices = statistics.fmean(i.stats.slices for i in insts)
        tg.cancel_scope.cancel()
    return result


def report_echo(e: Echo) -> bool:
    lat = e.latency
    ok = pct(lat, 99) <= ECHO_TARGET and not e.unanswered
    print(
        f"#### An echo instance beside {e.neighbours} CPU-bound instances (target: p99 at most "
        f"{ms(ECHO_TARGET)} ms from a line sent to its echo)"
    )
    print()
    st = e.echo_stats
    table(
        [
            "CPU-bound neighbours",
            "lines",
            f"unanswered after {ECHO_GIVE_UP:g} s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "echo: slices",
            "echo: run ms",
            "echo: waiting ms",
            "neighbour slices (mean)",
            "met",
        ],
        [
            [
                e.neighbours,
                len(lat),
                e.unanswered,
                ms(pct(lat, 50)),
                ms(pct(lat, 90)),
                ms(pct(lat, 99)),
                ms(max(lat)),
                st.slices if st else "-",
                ms(st.run_time) if st else "-",
                ms(st.wait_time) if st else "-",
                f"{e.neighbour_slices:.1f}",
                yes(ok),
            ]
        ],
    )
    return ok


# ---- a fresh call beside CPU-bound instances ---------------------------------------------------------


async def run_fresh(spin: asyncwasm.Module, neighbours: int, calls: int) -> list[float]:
    """Seconds from starting a fresh instance (instantiate, then spin(1000)) to its answer, ``calls``
    times at random 10-50 ms gaps, beside ``neighbours`` instances spinning forever."""
    insts = [await asyncwasm.Linker().instantiate(spin, asyncwasm.Store()) for _ in range(neighbours)]
    rng = random.Random(2)
    took: list[float] = []
    async with anyio.create_task_group() as tg:
        for inst in insts:
            tg.start_soon(inst.call, "spin", -1)
        await anyio.sleep(max(0.5, neighbours * DEFAULT_SLICE * 2))  # every neighbour has had turns
        for _ in range(calls):
            t0 = time.perf_counter()
            fresh = await asyncwasm.Linker().instantiate(spin, asyncwasm.Store())
            await fresh.call("spin", 1000)
            took.append(time.perf_counter() - t0)
            await anyio.sleep(rng.uniform(0.010, 0.050))
        tg.cancel_scope.cancel()
    return took


def report_fresh(neighbours: int, took: list[float]) -> bool:
    ok = max(took) <= FRESH_TARGET
    print(
        f"#### A fresh instance's first answer beside {neighbours} CPU-bound instances (instantiate and call "
        f"spin(1000); target: at most {ms(FRESH_TARGET)} ms every time)"
    )
    print()
    table(
        ["calls", "p50 ms", "p90 ms", "max ms", "met"],
        [[len(took), ms(pct(took, 50)), ms(pct(took, 90)), ms(max(took)), yes(ok)]],
    )
    return ok


# ---- a burst of WASI instances starting at once ---------------------------------------------------


@dataclass
class Burst:
    count: int
    tenured: bool = False  # run with asyncwasm.collector.tenure on
    started: float = 0.0  # seconds until every instance was blocked in fd_read
    answered: float = 0.0  # seconds from the first line sent until every instance had answered
    timer: PeriodicTimer = field(default_factory=PeriodicTimer)
    wrong: int = 0
    pauses: PauseMeter = field(default_factory=PauseMeter)  # the collector's, while they start


async def run_burst(cat: asyncwasm.Module, count: int, tenured: bool = False) -> Burst:
    """Start ``count`` instances of a line echo at once, each with its own stdin; a 1 ms timer beside.
    ``tenured``: with the collector's tenuring on (``asyncwasm.collector.tenure``)."""
    b = Burst(count, tenured)
    blocked = 0
    all_blocked = anyio.Event()

    class _Out(anyio.abc.ByteSendStream):
        def __init__(self) -> None:
            self.data = b""
            self.event = anyio.Event()

        async def send(self, item: bytes) -> None:
            self.data += item
            self.event.set()

        async def send_eof(self) -> None:
            return None

        async def aclose(self) -> None:
            return None

    class _In(anyio.abc.ByteReceiveStream):
        def __init__(self) -> None:
            self.send, self.recv = anyio.create_memory_object_stream[bytes](4)
            self.first = True

        async def receive(self, max_bytes: int = 65536) -> bytes:
            nonlocal blocked
            if self.first:  # the instance has started and now waits for its input
                self.first = False
                blocked += 1
                if blocked == count:
                    all_blocked.set()
            try:
                return await self.recv.receive()
            except anyio.EndOfStream:
                raise anyio.EndOfStream from None

        async def aclose(self) -> None:
            return None

    async def one(i: int) -> None:
        result = await run_command(cat, ["cat"], stdin=ins[i], stdout=outs[i])
        if result.exit_code != 0:
            b.wrong += 1

    ins = [_In() for _ in range(count)]
    outs = [_Out() for _ in range(count)]
    senders = [i.send for i in ins]
    gc.collect()
    if tenured:
        collector.tenure(True)
    try:
        await _burst(b, count, one, senders, outs, all_blocked)
    finally:
        collector.tenure(False)
    return b


async def _burst(
    b: Burst,
    count: int,
    one: Any,
    senders: list[anyio.abc.ObjectSendStream[bytes]],
    outs: list[Any],
    all_blocked: anyio.Event,
) -> None:
    async with anyio.create_task_group() as outer:
        outer.start_soon(b.timer.run)
        await anyio.sleep(0.05)
        b.pauses.on()
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(count):
                tg.start_soon(one, i)
                if i % 100 == 99:  # the spawning loop itself must not be what holds the loop
                    await anyio.sleep(0)
            await all_blocked.wait()
            b.started = time.perf_counter() - t0
            b.pauses.off()
            late_at_start = len(b.timer.lateness)
            t1 = time.perf_counter()
            for k, snd in enumerate(senders):
                await snd.send(b"line %d\n" % k)
            for k, out in enumerate(outs):
                while out.data != b"line %d\n" % k:
                    out.event = anyio.Event()
                    await out.event.wait()
            b.answered = time.perf_counter() - t1
            for snd in senders:
                await snd.aclose()
        b.timer.lateness = b.timer.lateness[:late_at_start]  # the start-up phase is what is measured
        outer.cancel_scope.cancel()


def report_burst(runs: list[Burst]) -> dict[str, bool]:
    """The burst table, a row per collector setting; returns which met the target."""
    met: dict[str, bool] = {}
    print(
        f"#### {runs[0].count:,} WASI instances (corpus cat.wasm, wasi-libc) started at once, each then blocking "
        f"in fd_read; a 1 ms timer beside (target: late at most {ms(TIMER_MAX_TARGET)} ms while they start)"
    )
    print()
    print(
        "Once with CPython's collector as it comes, once with asyncwasm's tenuring on "
        "(`asyncwasm.collector.tenure`: the survivors of each collection out of its sight, docs/limits.md)."
    )
    print()
    rows = []
    for b in runs:
        late = b.timer.lateness
        ok = bool(late) and max(late) <= TIMER_MAX_TARGET and not b.wrong
        label = "tenured" if b.tenured else "as it comes"
        met[f"burst, collector {label}"] = ok
        rows.append(
            [
                label,
                f"{b.count:,}",
                f"{b.started:.2f}",
                len(late),
                ms(pct(late, 50)),
                ms(pct(late, 99)),
                ms(max(late)) if late else "-",
                f"{b.answered:.2f}",
                b.wrong,
                f"{b.pauses.count:,}, {b.pauses.seconds:.2f} s",
                ms(b.pauses.longest),
                yes(ok),
            ]
        )
    table(
        [
            "collector",
            "instances",
            "all started s",
            "timer wake-ups",
            "timer p50 ms",
            "p99 ms",
            "max ms",
            "all answered a line s",
            "wrong",
            "GC pauses while starting",
            "longest GC pause ms",
            "met",
        ],
        rows,
    )
    return met


# ---- serve-stdin: a line service beside CPU-bound connections ------------------------------------

SERVE_FIRST_TARGET = 0.100  # seconds from connect to a new connection's first answer, at the maximum
SERVE_LINE_TARGET = 0.020  # seconds from a line sent to its answer on an open connection, at the maximum
SERVE_GIVE_UP = 5.0  # an answer not back after this long counts as unanswered (and ends that connection)
SERVE_SPIN_GIVE_UP = 60.0  # how long all the spinners together may take to say they are spinning
SERVE_START_GIVE_UP = 60.0  # how long the server may take to say it listens

# A line service with wasi-libc, stdout line-buffered: each line is answered with itself; the line
# "spin" is answered "spinning" and the instance then computes forever without reading again. One
# module, so the spinning and the answering connections share the same server and workers.
SERVE_LINE_C = r"""
#include <stdio.h>
#include <string.h>

int main(void) {
    static char line[4096];
    setvbuf(stdout, NULL, _IOLBF, BUFSIZ);
    while (fgets(line, sizeof line, stdin)) {
        if (strcmp(line, "spin\n") == 0) {
            puts("spinning");
            volatile unsigned x = 1;
            for (;;) x = x * 1664525u + 1013904223u;
        }
        fputs(line, stdout);
    }
    return 0;
}
"""
SERVE_CLANG = ["clang", "--target=wasm32-wasi", "-O2", "-Wall"]

# The same service in WAT, for a machine without clang and wasi-libc: each chunk read is written
# back; a chunk starting with "spin" is answered "spinning\n" and the instance computes forever.
SERVE_LINE_WAT = r"""
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 32) "spinning\n")
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16))))
  (func $spin (local $x i32)
    (loop $l (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1664525)) (i32.const 1013904223)))
      (br $l)))
  (func (export "_start") (local $n i32)
    (loop $again
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (i32.const 4096))
      (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)) (then (return)))
      (local.set $n (i32.load (i32.const 16)))
      (if (i32.eqz (local.get $n)) (then (return)))
      (if (i32.eq (i32.load (i32.const 1024)) (i32.const 0x6e697073))  ;; "spin"
        (then (call $write (i32.const 32) (i32.const 9)) (call $spin)))
      (call $write (i32.const 1024) (local.get $n))
      (br $again))))
"""


def build_serve_guest(tmp: Path) -> tuple[Path, str]:
    """The line service as a Wasm file in ``tmp``: the C one if clang can build it, else the WAT one;
    returns (path, description)."""
    src, out = tmp / "line.c", tmp / "line.wasm"
    src.write_text(SERVE_LINE_C)
    if shutil.which(SERVE_CLANG[0]) is not None:
        built = subprocess.run([*SERVE_CLANG, "-o", str(out), str(src)], capture_output=True, text=True)
        if built.returncode == 0:
            return out, f"C line service (wasi-libc, stdout line-buffered, {out.stat().st_size:,} bytes)"
        print(f"clang could not build the C line service, using WAT:\n{built.stderr}", file=sys.stderr)
    out.write_bytes(wat_to_wasm(SERVE_LINE_WAT))
    return out, f"WAT line service (no libc, {out.stat().st_size:,} bytes; clang with wasi-libc not found)"


@dataclass
class LineAnswers:
    """The timed connections of one phase (times in seconds)."""

    first: list[float] = field(default_factory=list)  # connect to first answer, per answering connection
    first_at: list[int] = field(default_factory=list)  # the connection of each of ``first``
    line: list[float] = field(default_factory=list)  # line sent to its answer, every line answered
    line_at: list[tuple[int, int]] = field(default_factory=list)  # (connection, line) of each of ``line``
    ports: dict[int, int] = field(default_factory=dict)  # connection -> its client port (for the log)
    unanswered: int = 0  # answers not back within SERVE_GIVE_UP (each ends its connection)
    wrong: int = 0  # answers that were not the line sent


@dataclass
class ServeRun:
    """What one serve-stdin run measured."""

    guest: str
    workers: int
    spinners: int
    connections: int
    lines: int
    alone: LineAnswers = field(default_factory=LineAnswers)  # before the spinners: the baseline
    beside: LineAnswers = field(default_factory=LineAnswers)  # beside the spinners: what is judged
    spinning_after: float = float("nan")  # seconds until every spinner had answered "spinning"
    client_timer: PeriodicTimer = field(default_factory=lambda: PeriodicTimer(0.005))  # this side's loop
    spinner_ports: set[int] = field(default_factory=set)  # client ports, to find them in the server's log
    worker_of: dict[int, str] = field(default_factory=dict)  # client port -> worker, from the log
    spinner_ends: dict[str, int] = field(default_factory=dict)  # how the spinners ended, from the log
    error: str = ""  # why the run stopped early, if it did


async def start_serve_stdin(
    wasm: Path, backend: str, workers: int, log: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``asyncwasm serve-stdin`` on a free port in a session of its own; returns (process, port).

    No idle timeout (a spinner moves no byte) and no grace period (the spinners never end by
    themselves); the asyncwasm imported here is the one the server runs."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(asyncwasm.__file__).resolve().parent.parent), *filter(None, [env.get("PYTHONPATH")])]
    )
    cmd = [
        sys.executable,
        "-m",
        "asyncwasm",
        "serve-stdin",
        "--port",
        "0",
        "--workers",
        str(workers),
        "--backend",
        backend,
        "--idle-timeout",
        "0",
        "--grace",
        "0s",
        str(wasm),
    ]
    with log.open("wb") as err:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            start_new_session=True,
        )
    try:
        with anyio.fail_after(SERVE_START_GIVE_UP):  # TimeoutError: it never said it listens
            while True:
                m = re.search(r"listening on \S+:(\d+)", log.read_text(errors="replace"))
                if m:
                    return proc, int(m.group(1))
                if proc.poll() is not None:
                    tail = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"serve-stdin exited with status {proc.returncode}:\n{tail}")
                await anyio.sleep(0.05)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await stop_serve_stdin(proc)
        raise


async def stop_serve_stdin(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the supervisor stops its workers and exits after them), then SIGKILL to the whole
    session if it is still there after 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with anyio.move_on_after(15):
            while proc.poll() is None:
                await anyio.sleep(0.05)
    if proc.poll() is None:  # not reaped, so its session is still the one started here
        os.killpg(proc.pid, signal.SIGKILL)  # the workers too
        await anyio.to_thread.run_sync(proc.wait)


class _LineClient:
    """One connection to the line service: send a line, read the answer up to its newline."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)
        self.port: int = stream.extra(anyio.abc.SocketAttribute.local_port)

    @classmethod
    async def connect(cls, port: int) -> _LineClient:
        return cls(await anyio.connect_tcp("127.0.0.1", port))

    async def ask(self, line: bytes) -> bytes:
        await self.stream.send(line)
        return await self.reader.receive_until(b"\n", 65536) + b"\n"

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self.stream.aclose()


async def run_serve(
    wasm: Path, guest: str, backend: str, workers: int, spinners: int, connections: int, lines: int
) -> ServeRun:
    """``connections`` line connections one at a time with nothing else running (the baseline); then
    ``spinners`` connections spinning, and ``connections`` line connections again beside them. Each
    line connection is timed from connect to its first answer, then ``lines`` lines at 2-10 ms gaps."""
    run = ServeRun(guest, workers, spinners, connections, lines)
    clients: list[_LineClient] = []
    with tempfile.TemporaryDirectory(prefix="sched-serve-") as tmp:
        log = Path(tmp) / "server.log"
        proc: subprocess.Popen[bytes] | None = None
        try:
            try:
                proc, port = await start_serve_stdin(wasm, backend, workers, log)
                await _line_connections(port, connections, lines, random.Random(3), run.alone)
                run.spinning_after = await _start_spinners(port, spinners, clients, run)
                async with anyio.create_task_group() as tg:  # a stall on this side would show here
                    tg.start_soon(run.client_timer.run)
                    await _line_connections(port, connections, lines, random.Random(4), run.beside)
                    tg.cancel_scope.cancel()
            except* SERVE_FAILURES as group:  # the spinners' task group wraps what its tasks raise
                run.error = "; ".join(f"{type(e).__name__}: {e}" for e in _leaves(group))
        finally:
            with anyio.CancelScope(shield=True):
                if proc is not None:  # stopped before the spinners close, so they end as cancelled by it
                    await stop_serve_stdin(proc)
                for c in clients:
                    await c.aclose()
        _read_serve_log(log.read_text(errors="replace"), run)
    return run


async def _line_connections(port: int, count: int, lines: int, rng: random.Random, into: LineAnswers) -> None:
    for k in range(count):
        await _one_line_connection(port, k, lines, rng, into)
        await anyio.sleep(rng.uniform(0.010, 0.050))


SERVE_FAILURES = (OSError, TimeoutError, RuntimeError, anyio.EndOfStream, anyio.BrokenResourceError)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in a (possibly nested) exception group, each once (a failure of many spinners
    at once is one line per distinct message)."""
    out: list[BaseException] = []
    seen: set[str] = set()
    for e in group.exceptions:
        for leaf in _leaves(e) if isinstance(e, BaseExceptionGroup) else [e]:
            key = f"{type(leaf).__name__}: {leaf}"
            if key not in seen:
                seen.add(key)
                out.append(leaf)
    return out


async def _start_spinners(port: int, count: int, clients: list[_LineClient], run: ServeRun) -> float:
    """Open ``count`` spinning connections at once; seconds until every one had said "spinning"."""
    t0 = time.perf_counter()

    async def one() -> None:
        c = await _LineClient.connect(port)
        clients.append(c)
        run.spinner_ports.add(c.port)
        got = await c.ask(b"spin\n")
        if got != b"spinning\n":
            raise RuntimeError(f"a spinner answered {got!r}")

    try:
        with anyio.fail_after(SERVE_SPIN_GIVE_UP):
            async with anyio.create_task_group() as tg:
                for _ in range(count):
                    tg.start_soon(one)
    except TimeoutError:
        raise TimeoutError(f"not every spinner was spinning after {SERVE_SPIN_GIVE_UP:g} s") from None
    return time.perf_counter() - t0


async def _one_line_connection(port: int, k: int, lines: int, rng: random.Random, into: LineAnswers) -> None:
    """Connect, time the first answer, then ``lines`` lines; an answer that is late ends the connection."""
    t0 = time.perf_counter()
    c: _LineClient | None = None
    with anyio.move_on_after(SERVE_GIVE_UP):
        c = await _LineClient.connect(port)
    if c is None:
        into.unanswered += 1
        return
    try:
        into.ports[k] = c.port
        first = f"connection {k}\n".encode()
        got = b""
        with anyio.move_on_after(SERVE_GIVE_UP - (time.perf_counter() - t0)):
            got = await c.ask(first)
        if not got:
            into.unanswered += 1
            return
        into.first.append(time.perf_counter() - t0)
        into.first_at.append(k)
        into.wrong += got != first
        for j in range(lines):
            await anyio.sleep(rng.uniform(0.002, 0.010))
            line = f"connection {k} line {j} {'x' * 40}\n".encode()
            got = b""
            t1 = time.perf_counter()
            with anyio.move_on_after(SERVE_GIVE_UP):
                got = await c.ask(line)
            if not got:
                into.unanswered += 1
                return
            into.line.append(time.perf_counter() - t1)
            into.line_at.append((k, j))
            into.wrong += got != line
    finally:
        await c.aclose()


def _read_serve_log(text: str, run: ServeRun) -> None:
    """Which worker served each connection, and how the spinners ended, from the per-connection lines."""
    for m in re.finditer(r"\[(w\d+)#\d+ [^\]]*:(\d+)\] (.*?) in [\d.]+ms", text):
        port, how = int(m.group(2)), m.group(3)
        run.worker_of[port] = m.group(1)
        if port in run.spinner_ports:
            run.spinner_ends[how] = run.spinner_ends.get(how, 0) + 1


def report_serve(backend: str, r: ServeRun) -> dict[str, bool]:
    """Print the serve-stdin table; the targets are judged beside the spinners only."""
    want_lines = r.connections * r.lines
    b = r.beside
    first_ok = len(b.first) == r.connections and max(b.first, default=float("inf")) <= SERVE_FIRST_TARGET
    line_ok = (
        len(b.line) == want_lines and max(b.line, default=float("inf")) <= SERVE_LINE_TARGET and not b.wrong
    )
    print(
        f"#### serve-stdin ({backend}, {r.workers} workers): a new connection beside {r.spinners} CPU-bound "
        f"connections (target: first answer at most {ms(SERVE_FIRST_TARGET)} ms and every line at most "
        f"{ms(SERVE_LINE_TARGET)} ms, at the maximum)"
    )
    print()
    print(
        f"- guest: {r.guest}, one server for all connections; {r.connections} connections one at a time, "
        f"each timed from connect to its first answer, then {r.lines} lines at 2-10 ms gaps: first with "
        f"nothing else running, then beside {r.spinners} connections that sent `spin` (all answered "
        f"`spinning` within {r.spinning_after:.2f} s) and compute forever"
    )
    per_worker: dict[str, list[int]] = {}
    for port, w in r.worker_of.items():
        counts = per_worker.setdefault(w, [0, 0])
        counts[0] += port in r.spinner_ports
        counts[1] += port in b.ports.values()
    if per_worker:
        parts = ", ".join(f"{w}: {s} spinning, {e} timed" for w, (s, e) in sorted(per_worker.items()))
        print(f"- connections per worker beside the spinners (from the server's log): {parts}")
    if r.spinner_ends:
        ends = ", ".join(f"{how} {n}" for how, n in sorted(r.spinner_ends.items()))
        print(f"- how the spinners ended: {ends} (all should be cancelled by the shutdown at the end)")
    if b.first:
        order = ", ".join(
            f"{ms(t)} ({r.worker_of.get(b.ports[k], '?')})" for t, k in zip(b.first, b.first_at, strict=True)
        )
        print(f"- first answers beside the spinners in connection order, ms (worker): {order}")
    if b.line:
        slow = sorted(zip(b.line, b.line_at, strict=True), reverse=True)[:5]
        parts = ", ".join(
            f"{ms(t)} (connection {k} on {r.worker_of.get(b.ports[k], '?')}, line {j})" for t, (k, j) in slow
        )
        print(f"- slowest lines beside the spinners, ms: {parts}")
    late = r.client_timer.lateness
    if late:
        print(
            f"- the client's own loop meanwhile (a 5 ms timer in this process): late p99 {ms(pct(late, 99))} "
            f"ms, max {ms(max(late))} ms (a stall on the client's side would show here)"
        )
    if r.error:
        print(f"- **stopped early**: {r.error}")
    print()
    rows = []
    for phase, a in (("alone", r.alone), (f"beside {r.spinners} spinning", b)):
        for what, vals, want, target, ok in (
            ("first answer (connect to answer)", a.first, r.connections, SERVE_FIRST_TARGET, first_ok),
            ("a line on an open connection", a.line, want_lines, SERVE_LINE_TARGET, line_ok),
        ):
            judged = a is b
            rows.append(
                [
                    phase,
                    what,
                    f"{len(vals)} of {want}",
                    ms(pct(vals, 50)),
                    ms(pct(vals, 99)),
                    ms(max(vals)) if vals else "-",
                    ms(target) if judged else "-",
                    yes(ok) if judged else "-",
                ]
            )
    table(["connections", "answer", "answered", "p50 ms", "p99 ms", "max ms", "target max ms", "met"], rows)
    print(
        f"serve-stdin targets ({backend}, beside {r.spinners} spinning): first answer "
        f"{'met' if first_ok else 'NOT met'} (max {ms(max(b.first, default=float('nan')))} ms), every line "
        f"{'met' if line_ok else 'NOT met'} (max {ms(max(b.line, default=float('nan')))} ms); "
        f"{b.unanswered} unanswered after {SERVE_GIVE_UP:g} s, {b.wrong} wrong"
    )
    print()
    return {"serve-stdin: first answer": first_ok, "serve-stdin: every line": line_ok}


# ---- hello world per second ------------------------------------------------------------------------


async def hello_rate(
    module: asyncwasm.Module, expect: bytes, seconds: float, concurrency: int
) -> tuple[int, float]:
    """Runs of ``module`` completed per second, ``concurrency`` at a time; returns (runs, per second)."""
    assert (await run_command(module)).stdout == expect
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            r = await run_command(module)
            if r.stdout != expect:
                raise RuntimeError(f"unexpected output {r.stdout!r}")
            done += 1

    gc.collect()
    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return done, done / (time.perf_counter() - t0)


# ---- idle memory ----------------------------------------------------------------------------------


def short_path(name: str) -> str:
    """A source file's name from its package on (``asyncwasm/runtime/instance.py``, ``asyncio/locks.py``)."""
    parts = Path(name).parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] in ("asyncwasm", "wasi_async", "anyio", "trio", "asyncio", "benchmarks", "greenlet"):
            return "/".join(parts[i:])
    return "/".join(parts[-2:])


@dataclass
class IdleMemory:
    label: str
    count: int
    per_instance: float  # bytes traced per suspended instance
    linear: int  # bytes of linear memory per instance
    linear_traced: bool  # whether the linear memory is among the traced bytes (a bytearray, not an mmap)
    top: list[tuple[str, float]]  # (file, bytes per instance)


async def idle_memory(label: str, count: int, start_one: Any, linear: int, linear_traced: bool) -> IdleMemory:
    """Traced bytes per instance while ``count`` instances (``start_one(tg, release)``) are suspended."""
    release = anyio.Event()
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    base = tracemalloc.get_traced_memory()[0]
    async with anyio.create_task_group() as tg:
        for _ in range(count):
            await start_one(tg, release)
        await anyio.sleep(0.3)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
        after = tracemalloc.take_snapshot()
        release.set()
        tg.cancel_scope.cancel()
    tracemalloc.stop()
    by_file: dict[str, float] = {}
    for stat in after.compare_to(before, "filename"):
        name = short_path(stat.traceback[0].filename)
        by_file[name] = by_file.get(name, 0) + stat.size_diff / count
    top = sorted(by_file.items(), key=lambda kv: -kv[1])[:6]
    return IdleMemory(label, count, used / count, linear, linear_traced, top)


async def measure_idle(
    wait_mod: asyncwasm.Module, echo_mod: asyncwasm.Module, count: int
) -> list[IdleMemory]:
    out = []
    traced = isinstance(asyncwasm.Memory.new(1).data, bytearray)  # an mmap is outside tracemalloc's view

    async def host_wait(tg: anyio.abc.TaskGroup, release: anyio.Event) -> None:
        linker = asyncwasm.Linker()

        async def wait() -> None:
            await release.wait()

        linker.define_func("env", "wait", asyncwasm.FuncType((), ()), wait)
        inst = await linker.instantiate(wait_mod, asyncwasm.Store())
        tg.start_soon(inst.call, "run")

    out.append(await idle_memory("in an async host function", count, host_wait, 65536, traced))

    keep: list[Any] = []  # the senders: a stream whose sender is gone would end the guest's input

    async def wasi_read(tg: anyio.abc.TaskGroup, release: anyio.Event) -> None:
        send, stdin = anyio.create_memory_object_stream[bytes](1)
        keep.append(send)

        async def run() -> None:
            await run_command(echo_mod, ["echo"], stdin=stdin)

        tg.start_soon(run)

    out.append(
        await idle_memory("WASI echo blocked in fd_read (run_command)", count, wasi_read, 65536, traced)
    )
    keep.clear()
    return out


def report_idle(rows: list[IdleMemory]) -> None:
    print("#### Memory held by an idle, suspended instance (tracemalloc)")
    print()
    table(
        [
            "instance",
            "instances",
            "traced KiB each",
            "linear memory KiB",
            "linear memory traced",
            "beyond linear memory KiB",
            "largest parts, KiB each (where allocated)",
        ],
        [
            [
                r.label,
                f"{r.count:,}",
                f"{r.per_instance / 1024:.1f}",
                f"{r.linear / 1024:.0f}",
                "yes" if r.linear_traced else "no (mmap)",
                f"{(r.per_instance - (r.linear if r.linear_traced else 0)) / 1024:.1f}",
                "; ".join(f"{name} {size / 1024:.1f}" for name, size in r.top),
            ]
            for r in rows
        ],
    )
    print(
        "Everything the instance's task, greenlet, globals, functions, store and (for WASI) context hold "
        "while it waits; the compiled module is shared and not counted."
    )
    print()


# ---- the run --------------------------------------------------------------------------------------


SECTIONS = ("crowd", "echo", "fresh", "burst", "serve", "hello", "idle")


async def run_crowds(
    opts: argparse.Namespace, backend: str, spin: asyncwasm.Module, slice_s: float
) -> dict[str, bool]:
    rate = await spin_rate(spin, 1.0)
    work = max(1000, int(rate * opts.seconds / opts.instances))
    print(
        f"- one instance alone runs {rate / 1e6:.2f} M iterations/s; each of the {opts.instances:,} instances "
        f"runs {work:,} iterations times its weight (about {opts.seconds:g} s for all of them at weight 1, "
        f"{1.5 * opts.seconds:g} s with weights 1 and 2)"
    )
    print(f"- slice: {slice_s * 1e3:g} ms; progress sampled every {opts.seconds / 10:.1f} s")
    print()
    crowds = []
    alone: dict[str, tuple[float, float]] = {}
    interleaved: dict[str, Interleaved] = {}
    for label, weights in (
        ("equal weights", [1.0] * opts.instances),
        ("weights 1 and 2", [1.0 + (i % 2) for i in range(opts.instances)]),
    ):
        # One instance alone does half the crowd's total work just before it and half just after, so
        # that a drift in the machine's speed during the run hits both sides alike.
        works = [int(work * w) for w in weights]  # all should finish together
        half = sum(works) // 2
        print(
            f"running one instance alone, then the crowd ({label}), then alone again ...",
            file=sys.stderr,
            flush=True,
        )
        before = await run_alone(spin, half)
        c = Crowd(label, weights, works)
        await run_crowd(spin, c, opts.seconds / 40)
        crowds.append(c)
        after = await run_alone(spin, sum(works) - half)
        alone[label] = (before[0] + after[0], before[1] + after[1])
        seconds = max(4.0, opts.seconds / 2)
        print(
            f"the crowd ({label}) and one instance alone, interleaved on one core for {seconds:g} s ...",
            file=sys.stderr,
            flush=True,
        )
        il = interleaved[label] = Interleaved(backend, opts.instances, label != "equal weights", seconds)
        await il.run()
    return report_crowds(crowds, alone, interleaved, slice_s)


async def run_hellos(opts: argparse.Namespace) -> dict[str, bool]:
    met: dict[str, bool] = {}
    print(
        f"#### Instantiate an already compiled WASI hello world and run it to completion (target: at least "
        f"{HELLO_TARGET:,.0f} per second on one core)"
    )
    print()
    rows = []
    hellos = [
        ("examples/hello.wasm (WAT, no libc)", ROOT / "examples" / "hello.wasm", b"Hello from asyncwasm!\n")
    ]
    c_hello = SHARED / "corpus" / "wasm" / "hello.wasm"
    if c_hello.exists():
        hellos.append(("corpus hello.wasm (C, wasi-libc)", c_hello, b"Hello, world!\n"))
    for name, path, expect in hellos:
        module = asyncwasm.Module.from_file(path)
        for conc in (1, 100):
            runs, per_s = await hello_rate(module, expect, opts.hello_seconds, conc)
            ok = per_s >= HELLO_TARGET
            met[
                f"hello: {name.split(' (')[0]}, {'one after another' if conc == 1 else f'{conc} at a time'}"
            ] = ok
            rows.append(
                [
                    name,
                    f"{path.stat().st_size:,}",
                    "one after another" if conc == 1 else f"{conc} at a time",
                    f"{runs:,}",
                    f"{per_s:,.0f}",
                    f"{1e6 / per_s:.0f}",
                    yes(ok),
                ]
            )
    table(["module", "bytes", "how", "runs", "per second", "us each", "met"], rows)
    print(
        "Each run: a WasiContext with captured stdout, a Store, link, instantiate, `_start`, close "
        "(`run_command`)."
    )
    print()
    return met


async def run_backend(opts: argparse.Namespace, backend: str) -> dict[str, bool]:
    spin = asyncwasm.Module(wat_to_wasm(SPIN_WAT), name="spin")
    echo = asyncwasm.Module(wat_to_wasm(ECHO_WAT), name="echo")
    wait = asyncwasm.Module(wat_to_wasm(WAIT_WAT), name="wait")
    slice_s = asyncwasm.Store().slice_seconds
    only = opts.only
    print(f"### Backend: {backend}")
    print()
    print(f"- load average before: {load_average()}")
    if "crowd" not in only:
        print()
    met: dict[str, bool] = {}
    if "crowd" in only:
        met.update(await run_crowds(opts, backend, spin, slice_s))

    if "echo" in only:
        print("running the echo ...", file=sys.stderr, flush=True)
        e = await run_echo(spin, echo, opts.neighbours, opts.lines)
        met["echo"] = report_echo(e)

    if "fresh" in only:
        print("running the fresh calls ...", file=sys.stderr, flush=True)
        met["fresh call"] = report_fresh(
            opts.neighbours, await run_fresh(spin, opts.neighbours, opts.fresh_calls)
        )

    cat_path = SHARED / "corpus" / "wasm" / "cat.wasm"
    if "burst" in only and cat_path.exists():
        print("running the burst ...", file=sys.stderr, flush=True)
        cat = asyncwasm.Module.from_file(cat_path)
        met.update(
            report_burst([await run_burst(cat, opts.burst), await run_burst(cat, opts.burst, tenured=True)])
        )

    if "serve" in only:
        print("running serve-stdin ...", file=sys.stderr, flush=True)
        wasm, guest = opts.serve_guest
        r = await run_serve(
            wasm,
            guest,
            backend,
            opts.serve_workers,
            opts.serve_spinners,
            opts.serve_connections,
            opts.serve_lines,
        )
        met.update(report_serve(backend, r))

    if "hello" in only:
        print("running hello world ...", file=sys.stderr, flush=True)
        met.update(await run_hellos(opts))

    if "idle" in only:
        print("measuring idle memory ...", file=sys.stderr, flush=True)
        report_idle(await measure_idle(wait, echo, opts.idle))
    print(f"- load average after: {load_average()}")
    print()
    return met


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["asyncio", "trio", "both"], default="both")
    parser.add_argument("--instances", type=int, default=None, help="CPU-bound instances in the crowd (1000)")
    parser.add_argument("--seconds", type=float, default=None, help="length of one crowd run (40)")
    parser.add_argument("--neighbours", type=int, default=100, help="CPU-bound instances beside the echo")
    parser.add_argument("--lines", type=int, default=None, help="lines sent to the echo (400)")
    parser.add_argument("--hello-seconds", type=float, default=None, help="seconds per hello-world rate (2)")
    parser.add_argument("--idle", type=int, default=1000, help="suspended instances for the memory figure")
    parser.add_argument(
        "--fresh-calls", type=int, default=30, help="fresh calls beside the CPU-bound instances"
    )
    parser.add_argument("--burst", type=int, default=None, help="WASI instances started at once (10000)")
    parser.add_argument(
        "--serve-spinners", type=int, default=None, help="serve-stdin: CPU-bound connections (50)"
    )
    parser.add_argument(
        "--serve-connections",
        type=int,
        default=None,
        help="serve-stdin: connections timed, one at a time (10)",
    )
    parser.add_argument(
        "--serve-lines", type=int, default=None, help="serve-stdin: lines per timed connection (30)"
    )
    parser.add_argument("--serve-workers", type=int, default=2, help="serve-stdin: worker processes (2)")
    parser.add_argument(
        "--only",
        type=lambda v: [x.strip() for x in v.split(",") if x.strip()],
        default=list(SECTIONS),
        metavar="SECTION[,SECTION...]",
        help=f"run only these sections, of: {', '.join(SECTIONS)} (default: all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="100 instances, 4 s runs; serve-stdin: 20 spinners, 5 connections of 10 lines",
    )
    parser.add_argument("--throughput-process", help=argparse.SUPPRESS)  # a process of Interleaved
    opts = parser.parse_args(argv)
    if opts.throughput_process:
        throughput_process(opts.throughput_process)
        return
    unknown = [x for x in opts.only if x not in SECTIONS]
    if unknown:
        parser.error(
            f"--only: unknown section(s) {', '.join(unknown)}; the sections are {', '.join(SECTIONS)}"
        )
    opts.instances = opts.instances or (100 if opts.quick else 1000)
    opts.seconds = opts.seconds or (4.0 if opts.quick else 40.0)
    opts.lines = opts.lines or (100 if opts.quick else 400)
    opts.burst = opts.burst or (1000 if opts.quick else 10_000)
    opts.hello_seconds = opts.hello_seconds or (0.5 if opts.quick else 2.0)
    opts.serve_spinners = opts.serve_spinners or (20 if opts.quick else 50)
    opts.serve_connections = opts.serve_connections or (5 if opts.quick else 10)
    opts.serve_lines = opts.serve_lines or (10 if opts.quick else 30)
    backends = ["asyncio", "trio"] if opts.backend == "both" else [opts.backend]
    print(f"## asyncwasm scheduler benchmarks, {datetime.date.today().isoformat()}")
    print()
    print(
        f"- Python {platform.python_version()} ({platform.python_implementation()}), {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs; asyncwasm at {source_revision()}"
    )
    print(f"- {' '.join(sys.argv[1:]) or 'default options'}")
    print()
    summary: dict[str, dict[str, bool]] = {}
    with tempfile.TemporaryDirectory(prefix="sched-guest-") as tmp:
        if "serve" in opts.only:
            opts.serve_guest = build_serve_guest(Path(tmp))
        for b in backends:
            summary[b] = anyio.run(run_backend, opts, b, backend=b)
    print("### Targets")
    print()
    names = list(next(iter(summary.values())))
    table(["target"] + backends, [[n] + [yes(summary[b][n]) for b in backends] for n in names])


if __name__ == "__main__":
    main()
