"""Tenuring (asyncwasm/collector.py): survivors of a collection go out of the collector's sight at the
scheduler's next turn, so full collections stay short with thousands of live instances; frozen garbage
is handed back when the live guests no longer explain it. On asyncio and trio.

The collector is process-wide: every test turns tenuring off again, which hands everything back."""

from __future__ import annotations

import gc
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import anyio
import pytest
from test_limits_and_fairness import ECHO
from wat import wat

import asyncwasm
from asyncwasm import collector
from wasi_async import run_command

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _tenuring_off_afterwards() -> Iterator[None]:
    yield
    collector.tenure(False)
    assert gc.get_freeze_count() == 0


class _Node:
    """A container in a reference cycle with itself: only the cycle collector frees it."""

    def __init__(self) -> None:
        self.me = self


class _Lines(anyio.abc.ByteReceiveStream):
    """A stdin that gives nothing until released, then ends."""

    def __init__(self, release: anyio.Event) -> None:
        self.release = release

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await self.release.wait()
        raise anyio.EndOfStream

    async def aclose(self) -> None:
        return None


async def test_turning_tenuring_on_puts_what_is_alive_out_of_sight() -> None:
    assert collector.tenured() == 0
    collector.tenure(True)
    assert collector.tenured() > 1000  # the modules, classes and code loaded so far
    assert len(gc.get_objects()) < collector.tenured() / 10
    collector.tenure(False)
    assert collector.tenured() == 0 and gc.get_freeze_count() == 0


async def _a_turn() -> None:
    async with asyncwasm.cpu_turn():
        pass


@asynccontextmanager
async def _waiting_echoes(count: int) -> AsyncIterator[None]:
    """``count`` WASI echo commands started, each blocked reading its stdin for the block's length."""
    module = asyncwasm.Module(wat(ECHO))
    release = anyio.Event()
    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(lambda: run_command(module, ["echo"], stdin=_Lines(release)))
        while asyncwasm.scheduler_stats().blocked < count:
            await anyio.sleep(0.01)
        yield
        release.set()


async def test_live_instances_stay_out_of_the_collectors_sight() -> None:
    """Two hundred WASI instances waiting on input: with tenuring, what a full collection walks stays
    small; without it, it holds all their objects."""

    async def tracked_while_waiting() -> int:
        async with _waiting_echoes(200):
            gc.collect(0)
            await _a_turn()  # the turn after a collection
            return len(gc.get_objects())

    plain = await tracked_while_waiting()
    collector.tenure(True)
    tenured = await tracked_while_waiting()
    assert plain > 200 * 50  # each waiting instance holds dozens of container objects
    assert tenured < plain / 5


async def test_frozen_garbage_is_handed_back_when_the_live_guests_no_longer_explain_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(collector, "TENURE_FROM", 0)  # tenure with the one guest of each turn here
    collector.tenure(True)
    handed = collector.handed_back()
    explained = collector.State.base  # no guest alive: the process's own objects
    nodes = [_Node() for _ in range(int(0.4 * explained))]  # alive, and within what may be frozen
    gc.collect(0)
    await _a_turn()  # the survivors (these nodes too) go out of sight
    assert collector.handed_back() == handed
    probe = weakref.ref(nodes[0])
    del nodes  # now cyclic garbage, frozen: no collection frees it
    gc.collect()
    assert probe() is not None
    more = [_Node() for _ in range(int(0.8 * explained))]  # the frozen objects pass twice the explained
    gc.collect(0)
    await _a_turn()
    assert collector.handed_back() == handed + 1
    assert probe() is None  # collected in the hand-back
    assert more[-1].me is more[-1]  # the live ones stay, out of sight again
    assert len(gc.get_objects()) < len(more)


async def test_the_last_guest_ending_hands_back_what_it_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    """Instances frozen while they ran, garbage once their commands ended: with no guest left, they
    are handed back and collected at once (here as soon as they are a fifth of the process's own
    objects, so that a few hundred instances are enough)."""
    monkeypatch.setattr(collector, "HAND_BACK", 1.2)
    collector.tenure(True)
    handed = collector.handed_back()
    async with _waiting_echoes(300):
        gc.collect(0)
        await _a_turn()
        assert collector.State.guests == 300 and collector.handed_back() == handed
        assert gc.get_freeze_count() > collector.HAND_BACK * collector.State.base  # they are frozen
    assert collector.State.guests == 0
    assert collector.handed_back() == handed + 1
    assert gc.get_freeze_count() < collector.State.base * 1.1  # the instances are gone


async def test_with_few_guests_alive_nothing_is_tenured() -> None:
    """A full collection over a few instances is short: they are left to the collector, which frees
    their garbage while it is young, instead of tenuring it to hand it back later."""
    collector.tenure(True)
    before = gc.get_freeze_count()
    count = collector.TENURE_FROM // 2
    async with _waiting_echoes(count):
        gc.collect(0)
        await _a_turn()
        assert gc.get_freeze_count() <= before  # (some frozen objects were freed meanwhile)
        assert len(gc.get_objects()) > 50 * count  # the instances are still the collector's


async def test_a_turn_without_a_collection_freezes_nothing() -> None:
    collector.tenure(True)
    before = gc.get_freeze_count()
    async with asyncwasm.cpu_turn():
        pass
    assert gc.get_freeze_count() == before
