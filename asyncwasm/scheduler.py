"""Run Wasm code as a coroutine: the guest runs in a greenlet, and whenever it must wait (an async
host call, the end of its time slice) it switches back to this driver with what it waits for; the
driver awaits it on the event loop and switches back in with the result or the exception.

The guest holds the loop's CPU token (``cpu``) only while its Python code runs, so other guests
and tasks take turns between its slices and while it waits on a host call. Every point where a guest
gives the loop back is here: ``await_in_guest`` (an async host call), ``end_slice_if_due`` (called
by a frame's ``_refuel`` when the slice is over), and ``run_setup`` (an instance's set-up takes a
turn like any slice).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel
from greenlet import getcurrent, greenlet

from . import collector, cpu
from .cpu import RunStats, unbilled_seconds
from .errors import Frame
from .traps import as_trap, suspended_frames, wasm_frames

if TYPE_CHECKING:
    from .store import Store

T = TypeVar("T")

_HOST_HEADROOM = 200  # frames left for host functions called at the guest's deepest point


class NativeNesting:
    """How many host calls the running guest greenlet is inside, one inside another.

    Wasm-to-Wasm calls cost no native stack (CPython runs Python-to-Python calls in one C frame),
    but every host call that calls back into Wasm, synchronously, nests native frames: about 380
    bytes a level, so 22,000 levels overflow an 8 MiB C stack and kill the process. Host calls count
    themselves here and trap past ``Store.max_host_nesting``. Each guest greenlet has its own count
    (it has its own stack): the driver swaps the count in and out around every switch.
    """

    __slots__ = ("depth",)

    def __init__(self) -> None:
        self.depth = 0


native = NativeNesting()


class SliceEnd:
    """What a guest greenlet hands its driver when its time slice is over."""


SLICE_END = SliceEnd()


class _Clock(threading.local):
    """When the running guest's slice ends (one guest runs at a time on a thread)."""

    deadline = float("inf")


slice_clock = _Clock()


def end_slice_if_due() -> None:
    """Called from guest code (a frame out of its fuel grant, or back from synchronous host calls):
    if the slice is over, switch to the driver, which lets others run, and come back when it is
    this guest's turn again."""
    if time.perf_counter() < slice_clock.deadline:
        return
    cur = getcurrent()
    if getattr(cur, "asyncwasm_guest", False):
        cur.parent.switch(SLICE_END)


async def run_setup(fn: Callable[[], T], stats: RunStats) -> T:
    """Run ``fn`` (an instance's set-up: building it, its segments) as a turn of the CPU token, so that
    starting thousands of instances at once takes turns with everyone else and the loop keeps ticking."""
    async with cpu.cpu_turn(stats):
        return fn()


class _Suspend:
    """What a guest greenlet hands to its driver: an awaitable to await on its behalf."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.awaitable = awaitable


class _Resume:
    """Await the rest of an awaitable whose first step was already taken (and yielded ``first``)."""

    __slots__ = ("steps", "first")

    def __init__(self, steps: Generator[Any, Any, Any], first: Any) -> None:
        self.steps = steps
        self.first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        steps, value = self.steps, self.first
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # thrown in by the event loop (cancellation): pass it on
                try:
                    value = steps.throw(exc)
                except StopIteration as done:
                    return done.value
                continue
            try:
                value = steps.send(sent)
            except StopIteration as done:
                return done.value


def in_guest() -> bool:
    """Whether this code runs inside a guest's greenlet, driven by ``run_guest`` (so it may wait)."""
    return bool(getattr(getcurrent(), "asyncwasm_guest", False))


def await_in_guest(awaitable: Awaitable[Any]) -> Any:
    """Called from guest code (inside its greenlet): suspend until ``awaitable`` completes."""
    current = getcurrent()
    parent = current.parent
    if parent is None or not getattr(current, "asyncwasm_guest", False):
        if hasattr(awaitable, "close"):
            awaitable.close()  # type: ignore[union-attr]
        raise RuntimeError("an async host function was called outside an asyncwasm call")
    return parent.switch(_Suspend(awaitable))


def _set_depth_limit(limit: int) -> int:
    """Set the recursion limit for guest code about to run; return the one to restore."""
    prev = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(limit)
    except RecursionError:  # the caller is already deeper than that: leave it
        pass
    return prev


async def run_guest(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    store: Store,
    stats: RunStats | None = None,
    on_abort: Callable[[tuple[list[Frame], int]], None] | None = None,
) -> Any:
    """Call ``fn(*args)`` in a fresh greenlet, serving its suspensions until it returns.

    ``on_abort`` is called when a guest that had started is stopped from outside (cancelled), with
    the Wasm frames it was stopped in (for the backtrace of a timeout).

    A fresh greenlet starts at recursion depth zero, so the recursion limit set while it runs is
    exactly the store's call-depth bound (plus room for the host functions it calls).
    """
    sched = cpu.current()
    if sched.owner is None:  # it may run at once, without an await: a call already cancelled does not start
        await anyio.lowlevel.checkpoint_if_cancelled()
    if stats is None:
        stats = RunStats(weight=store.weight)
    stats.calls += 1
    g = greenlet(fn)
    g.asyncwasm_guest = True  # type: ignore[attr-defined]
    limit = store.max_depth + _HOST_HEADROOM
    send: Callable[..., Any] = g.switch
    payload: tuple[Any, ...] = args
    turn: object | None = None  # the CPU token, while this call holds it
    runnable = False  # counted in the scheduler's virtual time (running or waiting for the token)
    nesting = 0  # host calls this guest is inside (its greenlet's own count)
    collector.guest_started()
    try:
        runnable = True
        turn = await sched.acquire(stats)
        slice_end = time.perf_counter() + store.slice_seconds
        while True:
            t0 = time.perf_counter()
            u0 = unbilled_seconds()
            f0 = store.fuel_used  # current: every turn ends by accounting the store's fuel
            slice_clock.deadline = slice_end  # a quick host call does not start a new slice
            prev = _set_depth_limit(limit)
            outer, native.depth = native.depth, nesting
            try:
                value = send(*payload)
            finally:
                nesting, native.depth = native.depth, outer
                sys.setrecursionlimit(prev)
                slice_clock.deadline = float("inf")
                ran = time.perf_counter() - t0 - (unbilled_seconds() - u0)
                store.account()
                sched.charge(stats, ran, store.fuel_used - f0)
            if g.dead:
                return value
            if value is SLICE_END:
                send, payload = g.switch, ()
                turn, slice_end = await _next_slice(sched, stats, store, turn)
                continue
            if not isinstance(value, _Suspend):
                raise RuntimeError("guest greenlet switched out without a suspension")
            # Step the host's awaitable once while holding the token: most host calls (a write
            # into a buffer, a read of bytes already there) finish without waiting, and then the
            # guest goes on at once instead of queueing behind every CPU-bound guest.
            steps = value.awaitable.__await__()
            try:
                first = steps.send(None)
            except StopIteration as done:
                send, payload = g.switch, (done.value,)
                if time.perf_counter() >= slice_end:
                    # The slice ran out in host calls that finish at once (a guest writing forever
                    # into a buffer uses little fuel between them): it ends here as at a fuel check.
                    turn, slice_end = await _next_slice(sched, stats, store, turn)
                continue
            except BaseException as exc:
                send, payload = g.throw, (exc,)
                continue
            sched.release(turn)  # it must wait: nobody waits for a guest that waits on I/O
            turn = None
            sched.leave(stats)
            runnable = False
            sched.blocked += 1
            try:
                result = await _Resume(steps, first)
            except BaseException as exc:  # cancellation included: it unwinds the guest
                send, payload = g.throw, (exc,)
            else:
                send, payload = g.switch, (result,)
            finally:
                sched.blocked -= 1
            sched.ticked()
            runnable = True
            turn = await sched.acquire(stats)
            slice_end = time.perf_counter() + store.slice_seconds
    except BaseException as exc:
        cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
        where: tuple[list[Any], int] = ([], 0)
        if cancelled and on_abort is not None:  # where the guest was: suspended, or unwound by the cancel
            where = suspended_frames(g.gr_frame) if g and not g.dead else wasm_frames(exc.__traceback__)
        if g and not g.dead:  # cancelled between turns: unwind the guest's frames now
            prev = _set_depth_limit(limit)
            try:
                _kill(g)
            finally:
                sys.setrecursionlimit(prev)
        if on_abort is not None and g.dead and cancelled:
            on_abort(where)
        mapped = as_trap(exc)
        if mapped is exc:
            raise
        raise mapped from None
    finally:
        if turn is not None:
            sched.release(turn)
        if runnable:
            sched.leave(stats)
        collector.guest_ended()
        store.settle()


async def _next_slice(
    sched: cpu.CpuScheduler, stats: RunStats, store: Store, turn: object
) -> tuple[object, float]:
    """A guest's slice is over (counted in its store): keep the token while the loop runs its other
    tasks, so that every other runnable guest queues for it and the next turn goes by the scheduler's
    choice, not by wake-up order; then hand it on if another guest should run. Returns the turn now
    held and when the next slice ends (a cancellation on the way leaves no turn held: ``release`` of
    a turn no longer held does nothing)."""
    store.slice_ended()
    await anyio.lowlevel.checkpoint()  # cancellation lands here too
    sched.ticked()
    if sched.should_yield(stats):
        sched.release(turn)
        turn = await sched.acquire(stats, fresh=False)
    return turn, time.perf_counter() + store.slice_seconds


def _kill(g: greenlet) -> None:
    """Unwind a suspended guest (its finally blocks run) without letting it run on."""
    try:
        g.throw()  # GreenletExit
    except BaseException:
        pass


def run_guest_sync(fn: Callable[..., Any], args: tuple[Any, ...], store: Store) -> Any:
    """Run guest code to completion without an event loop (no async host functions allowed)."""
    depth = 0
    f: FrameType | None = sys._getframe()
    while f is not None:
        depth += 1
        f = f.f_back
    prev = _set_depth_limit(depth + store.max_depth + _HOST_HEADROOM)
    try:
        return fn(*args)
    except BaseException as exc:
        mapped = as_trap(exc)
        if mapped is exc:
            raise
        raise mapped from None
    finally:
        sys.setrecursionlimit(prev)
        store.settle()
