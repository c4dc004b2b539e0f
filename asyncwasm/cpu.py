"""The CPU token: at most one guest runs at a time on an event loop, and each turn goes to the
runnable guest with the least virtual run time (CPU time used divided by its weight), the way
Linux's CFS picks. Between two turns the loop polls I/O and runs its other tasks, so they wait about
one slice however many guests are runnable; a guest that mostly waits on I/O is picked as soon as
its input arrives, because it has used little CPU.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

import anyio
from anyio.lowlevel import RunVar

from .store import DEFAULT_SLICE


@dataclass
class RunStats:
    """What the scheduler measured of one instance (readable while it runs)."""

    weight: float = 1.0
    vruntime: float = 0.0  # seconds of CPU divided by weight
    run_time: float = 0.0  # seconds running guest code
    wait_time: float = 0.0  # seconds runnable but waiting for the CPU token
    slices: int = 0  # turns taken
    calls: int = 0
    started: bool = False  # has had a turn: later turns come back from waiting, not new


@dataclass(order=True)
class _Waiter:
    vruntime: float
    seq: int
    stats: RunStats = field(compare=False)
    event: anyio.Event = field(compare=False, default_factory=anyio.Event)
    cancelled: bool = field(compare=False, default=False)


class CpuScheduler:
    """One per event loop (see ``current``)."""

    def __init__(self, slice_seconds: float = DEFAULT_SLICE) -> None:
        self.slice_seconds = slice_seconds
        self.owner: object | None = None  # the turn (a _Waiter, or a stats object) holding the token
        self._queue: list[_Waiter] = []
        self._seq = itertools.count()
        self.min_vruntime = 0.0
        self.turns = 0

    @property
    def runnable(self) -> int:
        return sum(1 for w in self._queue if not w.cancelled) + (self.owner is not None)

    async def acquire(self, stats: RunStats) -> object:
        """Wait for the token; returns the turn object to hand back to ``release``."""
        # A guest that waited on I/O joins at the current minimum less one slice of credit, so it
        # runs soon but cannot hoard the CPU with time it did not use. A new one joins one slice
        # after the minimum (CFS's start debit): a stream of newcomers entering below the minimum
        # would hold it still and starve every guest that had run a little longer.
        if stats.started:
            floor = self.min_vruntime - self.slice_seconds
        else:
            stats.started = True
            floor = self.min_vruntime + self.slice_seconds
        if stats.vruntime < floor:
            stats.vruntime = floor
        if self.owner is None and not self._queue:
            self.owner = stats
            return stats
        w = _Waiter(stats.vruntime, next(self._seq), stats)
        heapq.heappush(self._queue, w)
        t0 = anyio.current_time()
        try:
            await w.event.wait()
        except BaseException:
            if self.owner is w:  # the token was handed over as we were cancelled: pass it on
                self.release(w)
            else:
                w.cancelled = True
            raise
        finally:
            stats.wait_time += anyio.current_time() - t0
        return w

    def charge(self, stats: RunStats, ran: float) -> None:
        """Count ``ran`` seconds of guest code against its instance."""
        stats.vruntime += ran / stats.weight
        stats.run_time += ran
        stats.slices += 1
        self.turns += 1
        low = stats.vruntime
        if self._queue and self._queue[0].vruntime < low:
            low = self._queue[0].vruntime
        if low > self.min_vruntime:
            self.min_vruntime = low

    def should_yield(self, stats: RunStats) -> bool:
        """Whether a waiting guest has used less CPU (by weight) than the running one."""
        queue = self._queue
        while queue and queue[0].cancelled:
            heapq.heappop(queue)
        return bool(queue) and queue[0].vruntime < stats.vruntime

    def release(self, turn: object) -> None:
        """Hand the token to the waiting guest with the least virtual run time, if any."""
        if self.owner is not turn:
            return
        self.owner = None
        while self._queue:
            w = heapq.heappop(self._queue)
            if not w.cancelled:
                self.owner = w
                w.event.set()
                return


_current: RunVar[CpuScheduler] = RunVar("asyncwasm_cpu_scheduler")


def current() -> CpuScheduler:
    """The scheduler of the running event loop (made on first use)."""
    try:
        return _current.get()
    except LookupError:
        sched = CpuScheduler()
        _current.set(sched)
        return sched
