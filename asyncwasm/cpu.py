"""The CPU token: at most one guest runs at a time on an event loop, and who runs next.

Every guest stands at a **virtual time** ``vruntime``: it advances by the seconds the guest runs
divided by its weight. The loop's virtual time ``V`` is the weighted average of the runnable guests'
(those running or waiting for the token); ``V - vruntime`` is a guest's **lag**, the service it is
owed (positive) or has had in advance (negative). This is the bookkeeping of Linux's EEVDF, and so is
the placement: a guest that stops being runnable (it waits on I/O, its call ends) keeps its lag, not
its virtual time, and comes back at ``V - lag``. Credit is kept up to one slice (sleeping never earns
a head start); a debt (it ran ahead) up to ``DEBT_SLICES`` slices, and it is paid off while the guest
waits, as V moves on (Linux's EEVDF does the same by leaving a sleeper in debt on its queue until it
is eligible): an interactive guest that ran a little ahead on one answer is not still paying for it
when the next request comes. A new guest has lag 0: no debt, no credit. Keeping the lag rather than
the virtual time is what makes placement independent of who else was runnable meanwhile: a thousand
instances set up one after another each leave with lag 0 (alone, a guest is always at ``V``) and all
start level.

Two queues hand out the token:

- the **fresh lane** (first in, first out): a guest on its first turn, or back from a host call that
  made it wait, whose debt is at most one slice. It runs within about one slice however many
  CPU-bound guests are runnable: the interactive case.
- the **main queue**: everyone else, least virtual time first (for equal slices this is also EEVDF's
  earliest virtual deadline).

While both have guests waiting, turns alternate between them, but the main queue takes its turn only
when its first guest is **eligible** (at or behind ``V``, owed service), as in EEVDF: a stream of new
or woken guests can take at most half the turns from the running ones that are owed, and a crowd
that starts at once is not skewed by the first starters running again before the last ones ran at
all. When the fresh lane is empty the main queue's first guest runs, eligible or not. A guest that
uses its whole slice goes to the main queue; one that keeps being woken but uses more than its share
runs up a debt and queues there too. What makes a guest *interactive* is exactly this: it gives the
token back (waits on I/O) before it has used more than its share.

A guest is billed only for its own execution, and by its work, not by the clock: a turn that used
``n`` units of fuel is billed ``n`` times its module's **price**, the seconds a unit of that module's
code has cost, averaged over its instances' last ``PRICE_WINDOW`` seconds of execution. Over time a
module's instances are billed the seconds they ran; but a turn that ran while the machine was slow
(another process on the core, a frequency change: on a shared machine the speed moves by a third
from one second to the next) is not billed the slowdown, which would otherwise skew the progress of
equal guests by as much. A guest is billed at least ``BILL_FLOOR`` of all the seconds it ran, so one
whose work is costlier per unit than its module's usual (host calls with little guest code in
between) gets at most twice its share; the floor is kept over its whole run, not per turn, and a
turn counts there for at most two slices, so that a turn stretched by a stall of the machine is not
billed the stall either. The measured seconds exclude the garbage collector's pauses
(``gc.callbacks``) and the translation of code (the first call of a lazily translated function,
which any instance of the module may need); both are counted loop-wide instead
(``scheduler_stats()``). A turn that used no fuel (an instance's set-up) is billed its seconds. The
token's own bookkeeping happens outside the measured interval.

The loop keeps ticking: a free token is taken without a pass through the event loop only while the
loop has had a tick within the last slice; otherwise the taker holds it through one pass, so that a
burst of guests that each run briefly and then wait (ten thousand instances starting at once) queue
for it in order while timers and I/O run every slice or so.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import itertools
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import anyio.lowlevel
from anyio.lowlevel import RunVar

from . import collector
from .compiler import codegen

DEFAULT_SLICE = 0.002  # seconds a guest runs before others (guests and tasks) get a turn
DEBT_SLICES = 4.0  # the most debt (service had in advance, in slices) a guest keeps while it waits
CREDIT_SLICES = 1.0  # the most credit (service owed, in slices) a guest keeps while it waits
PRICE_WINDOW = 30.0  # seconds of execution a module's price (seconds per fuel unit) is averaged over
BILL_FLOOR = 0.5  # the least share of a turn's measured seconds it is billed, whatever its fuel


@dataclass
class RunStats:
    """What the scheduler measured of one instance (readable while it runs). Times in seconds."""

    weight: float = 1.0
    vruntime: float = 0.0  # its virtual time: placement at V - lag, then billed / weight accumulated
    run_time: float = 0.0  # its execution measured: guest code ran (GC pauses and translation excluded)
    billed: float = 0.0  # its execution billed: fuel used at its price (over time, run_time)
    wait_time: float = 0.0  # runnable but waiting for the CPU token
    slices: int = 0  # turns taken: slices, and resumptions after host calls that waited
    calls: int = 0  # calls into the instance (the start function included)
    lag: float = 0.0  # V - vruntime when it last stopped being runnable (clamped): kept while it waits
    floor_seconds: float = field(default=0.0, repr=False)  # its turns' seconds, each capped, for the floor
    left_at: float = field(default=0.0, repr=False)  # V then: a debt is paid off as V moves on from it
    price: Price | None = field(default=None, repr=False, compare=False)  # its module's: bills its fuel


class Price:
    """What a fuel unit of one module's code costs, in seconds: the execution of the module's instances
    over their last ``PRICE_WINDOW`` seconds, over the fuel it used. Their turns are billed at it."""

    __slots__ = ("seconds", "fuel")

    def __init__(self) -> None:
        self.seconds = 0.0
        self.fuel = 0

    @property
    def per_unit(self) -> float:
        """Seconds per fuel unit (0 before any was used)."""
        return self.seconds / self.fuel if self.fuel else 0.0

    def bill(self, ran: float, fuel: int) -> float:
        """Count a turn of ``ran`` seconds that used ``fuel`` units (> 0); what it is billed."""
        seconds = self.seconds + ran
        units = self.fuel + fuel
        if seconds > PRICE_WINDOW:  # forget the older half: the price follows what the code does now
            seconds *= 0.5
            units = (units + 1) // 2
        self.seconds, self.fuel = seconds, units
        return fuel * seconds / units


@dataclass
class SchedulerStats:
    """A loop-wide view of the scheduler (``asyncwasm.scheduler_stats()``)."""

    running: int  # 0 or 1: a guest holds the token
    runnable: int  # guests waiting for the token (both queues)
    fresh: int  # of those, in the fresh lane
    blocked: int  # guests inside a host call that made them wait (I/O, sleep)
    turns: int  # turns handed out since the loop started
    virtual_time: float  # V, the weighted average virtual time of the runnable guests
    unbilled_gc: float  # seconds of garbage-collector pauses not billed to any guest
    longest_gc_pause: float  # the longest single pause so far (it stops the whole loop)
    gc_pauses: int  # the collections those seconds were spent in
    unbilled_translation: float  # seconds of code translation not billed to any guest
    tenured: int  # objects out of the collector's sight (at most; 0 unless asyncwasm.collector.tenure)
    handed_back: int  # times tenured objects were handed back to the collector and collected in full


class _GcPauses:
    """Seconds the garbage collector has paused the process (measured by ``gc.callbacks``)."""

    seconds = 0.0
    longest = 0.0
    started = 0.0
    count = 0


def _on_gc(phase: str, _info: dict[str, int]) -> None:
    if phase == "start":
        _GcPauses.started = time.perf_counter()
    else:
        pause = time.perf_counter() - _GcPauses.started
        _GcPauses.seconds += pause
        _GcPauses.count += 1
        if pause > _GcPauses.longest:
            _GcPauses.longest = pause


gc.callbacks.append(_on_gc)


def unbilled_seconds() -> float:
    """Garbage-collector pauses and code translation so far: a guest's turn is billed its length
    less what this grew by during it."""
    return _GcPauses.seconds + codegen.TRANSLATION.seconds


class _Event(Protocol):
    def set(self) -> object: ...
    async def wait(self) -> object: ...


@dataclass(eq=False)
class _Waiter:
    stats: RunStats
    seq: int
    event: _Event
    cancelled: bool = False

    def __lt__(self, other: _Waiter) -> bool:
        a, b = self.stats.vruntime, other.stats.vruntime
        return a < b or (a == b and self.seq < other.seq)


class CpuScheduler:
    """One per event loop (see ``current``)."""

    def __init__(
        self, slice_seconds: float = DEFAULT_SLICE, new_event: Callable[[], _Event] = anyio.Event
    ) -> None:
        self.slice_seconds = slice_seconds
        # The loop's own event class: anyio.Event looks the loop's library up on each construction,
        # about a quarter of what a call costs before it queues (a thousand calls start in one loop pass).
        self._new_event = new_event
        self.owner: object | None = None  # the turn (a _Waiter, or a stats object) holding the token
        self._owner_stats: RunStats | None = None
        self._fresh: deque[_Waiter] = deque()
        self._main: list[_Waiter] = []  # a heap: least virtual time first (fixed while a guest waits)
        self._seq = itertools.count()
        self._load = 0.0  # total weight of the runnable guests
        self._vsum = 0.0  # their weighted virtual times, summed
        self._vclock = 0.0  # V when nobody is runnable: where the next guest joins
        self._last_fresh = False  # the last turn handed out came from the fresh lane
        self._last_tick = time.perf_counter()  # when a guest last came back from the event loop
        self.turns = 0
        self.blocked = 0

    # -- the virtual clock --------------------------------------------------------------------------

    @property
    def virtual_time(self) -> float:
        """V: the weighted average virtual time of the runnable guests."""
        return self._vsum / self._load if self._load > 0 else self._vclock

    def _join(self, stats: RunStats) -> None:
        """Place a guest that becomes runnable at ``V - lag`` and count it in V."""
        w = stats.weight
        v = self.virtual_time
        if stats.lag < 0:  # a debt is paid off while the guest waited, as V moved on
            stats.lag = min(0.0, stats.lag + max(0.0, v - stats.left_at))
        if self._load > 0:
            # Joining moves V towards the newcomer: scale the lag so that it is exactly what the
            # guest is owed once it is counted (Linux's place_entity does the same).
            stats.vruntime = v - stats.lag * (self._load + w) / self._load
        else:
            stats.vruntime = self._vclock  # alone: V is its own virtual time, lag means nothing
        self._load += w
        self._vsum += w * stats.vruntime

    def leave(self, stats: RunStats) -> None:
        """A guest stops being runnable (it waits on a host call, or its call ended): keep its lag."""
        v = self.virtual_time
        s = self.slice_seconds
        stats.lag = min(max(v - stats.vruntime, -DEBT_SLICES * s), CREDIT_SLICES * s)
        stats.left_at = v
        self._load -= stats.weight
        self._vsum -= stats.weight * stats.vruntime
        if self._load <= 1e-12:
            self._load = 0.0
            self._vsum = 0.0
            self._vclock = v

    @property
    def runnable(self) -> int:
        waiting = sum(1 for w in self._fresh if not w.cancelled) + sum(
            1 for w in self._main if not w.cancelled
        )
        return waiting + (self.owner is not None)

    def stats(self) -> SchedulerStats:
        return SchedulerStats(
            running=int(self.owner is not None),
            runnable=self.runnable - (self.owner is not None),
            fresh=sum(1 for w in self._fresh if not w.cancelled),
            blocked=self.blocked,
            turns=self.turns,
            virtual_time=self.virtual_time,
            unbilled_gc=_GcPauses.seconds,
            longest_gc_pause=_GcPauses.longest,
            gc_pauses=_GcPauses.count,
            unbilled_translation=codegen.TRANSLATION.seconds,
            tenured=collector.State.frozen if collector.State.enabled else 0,
            handed_back=collector.State.handed_back,
        )

    # -- the token ----------------------------------------------------------------------------------

    def ticked(self) -> None:
        """A guest's driver came back from the event loop: the loop has had its turn."""
        self._last_tick = time.perf_counter()
        if collector.State.due:
            collector.maintain()

    async def acquire(self, stats: RunStats, fresh: bool = True) -> object:
        """Become runnable and wait for the token; returns the turn to hand back to ``release``.

        ``fresh``: the guest starts or comes back from waiting (placed by its lag, and eligible for
        the fresh lane); False for one that only gave the token up at the end of its slice."""
        if fresh:
            self._join(stats)
        if self.owner is None and not self._has_waiters():
            self.owner = stats
            self._owner_stats = stats
            self.turns += 1
            if time.perf_counter() - self._last_tick > self.slice_seconds:
                # The loop has not had a tick for a slice: hold the token through one pass of it, so
                # that whoever else wants it meanwhile queues in order instead of running at once.
                try:
                    await anyio.lowlevel.checkpoint()
                except BaseException:
                    self.release(stats)
                    raise
                self.ticked()
            return stats
        w = _Waiter(stats, next(self._seq), self._new_event())
        if fresh and stats.lag >= -self.slice_seconds:
            self._fresh.append(w)
        else:
            heapq.heappush(self._main, w)
        t0 = time.perf_counter()
        try:
            await w.event.wait()
        except BaseException:
            if self.owner is w:  # the token was handed over as we were cancelled: pass it on
                self.release(w)
            else:
                w.cancelled = True
            raise
        finally:
            stats.wait_time += time.perf_counter() - t0
        self.ticked()
        return w

    def charge(self, stats: RunStats, ran: float, fuel: int = 0) -> None:
        """Bill a turn of ``ran`` seconds that used ``fuel`` units to its instance (and move V with it):
        the fuel at its module's price (see ``Price``), or the seconds when it used none."""
        if ran < 0:
            ran = 0.0
        price = stats.price
        if fuel > 0 and price is not None:
            # At least BILL_FLOOR of all it ran: whatever its fuel, a guest gets at most twice its
            # share. A turn counts there for at most two slices: longer, the machine stalled (a slice
            # ends within a fuel chunk), and one stall of 80 ms put a guest 20 slices in debt.
            stats.floor_seconds += min(ran, 2 * self.slice_seconds)
            billed = max(price.bill(ran, fuel), BILL_FLOOR * stats.floor_seconds - stats.billed)
        else:
            billed = ran
        stats.vruntime += billed / stats.weight
        stats.run_time += ran
        stats.billed += billed
        stats.slices += 1
        self._vsum += billed  # weight * (billed / weight)

    def should_yield(self, stats: RunStats) -> bool:
        """At the end of a slice: whether another guest should run now."""
        self._drop_cancelled()
        if self._fresh:
            return True
        return bool(self._main) and self._main[0].stats.vruntime < stats.vruntime

    def release(self, turn: object) -> None:
        """Hand the token to the next guest: alternately the fresh lane and the main queue, whose turn
        is taken only by an eligible guest (at or behind V) while the fresh lane has guests."""
        if self.owner is not turn:
            return
        self.owner = None
        self._owner_stats = None
        if collector.State.due:  # between two turns: where tenuring (when on) does its work
            collector.maintain()
        self._drop_cancelled()
        use_fresh = bool(self._fresh) and (
            not self._main or not self._last_fresh or self._main[0].stats.vruntime > self.virtual_time
        )
        if use_fresh:
            w = self._fresh.popleft()
        elif self._main:
            w = heapq.heappop(self._main)
        else:
            return
        self._last_fresh = use_fresh
        self.owner = w
        self._owner_stats = w.stats
        self.turns += 1
        w.event.set()

    # -- queues -------------------------------------------------------------------------------------

    def _has_waiters(self) -> bool:
        self._drop_cancelled()
        return bool(self._fresh or self._main)

    def _drop_cancelled(self) -> None:
        while self._fresh and self._fresh[0].cancelled:
            self._fresh.popleft()
        while self._main and self._main[0].cancelled:
            heapq.heappop(self._main)


class cpu_turn:  # noqa: N801 - used as ``async with asyncwasm.cpu_turn():``, like a function
    """Run host-side work as a turn of the CPU token, ``async with cpu_turn(): ...``.

    Setting up an instance costs host CPU outside any guest (a WASI context, defining imports): done
    for thousands of instances started at once, it would run back to back before the loop gets a
    tick. Inside ``cpu_turn`` it takes turns with the guests instead (it queues in the fresh lane).
    Do not call guest code inside it: a guest call takes turns of its own.
    """

    def __init__(self, stats: RunStats | None = None) -> None:
        self.stats = stats if stats is not None else RunStats()
        self._turn: object | None = None
        self._t0 = 0.0
        self._u0 = 0.0

    async def __aenter__(self) -> RunStats:
        sched = current()
        collector.guest_started()
        try:
            self._turn = await sched.acquire(self.stats)
        except BaseException:
            collector.guest_ended()
            raise
        self._t0 = time.perf_counter()
        self._u0 = unbilled_seconds()
        return self.stats

    async def __aexit__(self, *exc: object) -> None:
        sched = current()
        sched.charge(self.stats, time.perf_counter() - self._t0 - (unbilled_seconds() - self._u0))
        sched.release(self._turn)
        sched.leave(self.stats)
        collector.guest_ended()


_current: RunVar[CpuScheduler] = RunVar("asyncwasm_cpu_scheduler")


_by_asyncio_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CpuScheduler] = (
    weakref.WeakKeyDictionary()
)


def current() -> CpuScheduler:
    """The scheduler of the running event loop (made on first use).

    Under asyncio it is found by the running loop (``asyncio._get_running_loop`` is a C function);
    anyio's ``RunVar`` finds it through ``asyncio.current_task``, which cost a tenth of a
    serve-stdin request's time. Under trio the ``RunVar`` is the way."""
    loop = asyncio._get_running_loop()
    if loop is not None:
        sched = _by_asyncio_loop.get(loop)
        if sched is None:
            sched = _by_asyncio_loop[loop] = CpuScheduler(new_event=asyncio.Event)
        return sched
    try:
        return _current.get()
    except LookupError:
        import trio  # anyio's other backend: no asyncio loop runs

        sched = CpuScheduler(new_event=trio.Event)
        _current.set(sched)
        return sched


def scheduler_stats() -> SchedulerStats:
    """The running event loop's scheduler, seen from outside: who runs, waits and sleeps."""
    return current().stats()
