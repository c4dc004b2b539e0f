"""Short garbage-collector pauses with thousands of live instances: tenuring (opt-in).

CPython's cycle collector stops the whole process for a full collection, and a full collection
looks at every live container object. Ten thousand WASI instances waiting on their input hold 2.5
million of them (about 250 each: functions, closures, coroutines, the WASI context); starting them
at once, one full collection took 855 ms, a stall of every guest and task on the loop that no
scheduler can share out, and the collector spent 4.8 s of the 8.6 s start walking the same live
instances again and again.

Tenuring moves whatever survives a collection out of the collector's sight (``gc.freeze``: the
permanent generation), at the scheduler's next turn. The collector then only ever looks at what was
made since its last collection, so every pause is short however many instances live. Starting those
10,000 instances with it, the longest pause was 0.34 ms, a 1 ms timer beside them was late by 6.5 ms
at worst (738 ms without), and they were all started in 3.7 s instead of 7.6 s.

The price is CPython's: a frozen object is still freed when its last reference goes, but one that
dies in a reference cycle (an instance does: its functions and its globals refer to each other) is
not, until the permanent generation is handed back (``gc.unfreeze``) and collected. So the frozen
objects are held against what the live guests explain: the process's own objects (frozen when
tenuring is turned on) and about ``PER_GUEST`` objects for each guest alive (a call in progress or
a set-up turn), as measured at the last hand-back with many guests alive. When the permanent generation grows past ``HAND_BACK``
times that, it is handed back and collected in full once: one long pause, after which the frozen
objects are again all alive. While instances only start (a burst) the two grow together and nothing
is handed back; when they come and go at a steady number, the garbage frozen with them is collected
each time it reaches the live objects' count, and when the last guest ends it is handed back at once
if it is more than that. So memory holds at most about ``HAND_BACK`` times what is alive, where
CPython's own schedule allows a quarter more.

With fewer than ``TENURE_FROM`` guests alive nothing is tenured: a full collection over them is
short anyway, and their garbage is best freed young by the collector, not tenured to be handed back
later (connections that come and go a few at a time would otherwise pay a hand-back every few
hundred).

The work happens at the scheduler's turns (``maintain``, called between two guests' turns), never
inside a collection and never billed to a guest. It is process-wide, as the collector is:
``tenure(True)`` turns it on (for a server that owns its process), ``tenure(False)`` hands everything
back and turns it off.
"""

from __future__ import annotations

import gc

HAND_BACK = 2.0  # the permanent generation may grow to this many times what the live guests explain
PER_GUEST = 500.0  # objects a live guest is taken to explain until a hand-back measures it
MEASURE_AT = 100  # guests alive for a hand-back to measure the objects per guest
TENURE_FROM = 100  # guests alive for survivors to be tenured: with fewer, a full collection is short


class State:
    enabled = False
    due = False  # a collection ended (or the last guest did): tenure at the scheduler's next turn
    ours = False  # the collection running is the hand-back's own
    guests = 0  # guest calls and set-up turns alive in the process
    base = 0  # frozen objects no guest explains: the process's own
    per_guest = PER_GUEST  # frozen objects a live guest explains
    handed_back = 0  # times the permanent generation was handed back and collected
    frozen = 0  # objects frozen: counted at the last hand-back, plus what each freeze moved since (an
    # upper bound: frozen objects freed by their last reference leave unseen; counting them exactly
    # walks them all, so that is done only when this bound passes the limit)


def _on_gc(phase: str, _info: dict[str, int]) -> None:
    if phase == "stop" and State.enabled and not State.ours:
        State.due = True


gc.callbacks.append(_on_gc)


def tenure(enabled: bool = True) -> None:
    """Turn tenuring on or off for the whole process.

    On: a full collection, and what is alive then (the modules, classes and code the process has
    loaded) goes out of the collector's sight at once. Off: everything frozen is handed back."""
    if enabled and not State.enabled:
        _collect_in_full()
        State.base = State.frozen
        State.per_guest = PER_GUEST
    elif State.enabled and not enabled:
        gc.unfreeze()
        State.frozen = 0
    State.enabled = enabled
    State.due = False


def tenuring() -> bool:
    """Whether tenuring is on."""
    return State.enabled


def tenured() -> int:
    """Objects out of the collector's sight, counted exactly (a walk over them all; 0 unless
    tenuring is on). ``scheduler_stats().tenured`` is the cheap upper bound the hand-back uses."""
    return gc.get_freeze_count() if State.enabled else 0


def handed_back() -> int:
    """Times the tenured objects were handed back and collected in full."""
    return State.handed_back


def guest_started() -> None:
    """A guest call or set-up turn begins (it explains objects: its instance, its task)."""
    State.guests += 1


def guest_ended() -> None:
    """A guest call or set-up turn is over; with the last one gone, look at once whether the frozen
    objects should be handed back (what they explained may now be garbage)."""
    State.guests -= 1
    if State.guests == 0 and State.enabled:
        _hand_back_if_unexplained()


def maintain() -> None:
    """Between two turns, after a collection: hand the permanent generation back if the live guests
    no longer explain it, else move the collection's survivors out of sight."""
    if not State.due:
        return
    State.due = False
    if not _hand_back_if_unexplained() and State.guests >= TENURE_FROM:
        _freeze()


def _hand_back_if_unexplained() -> bool:
    """Hand the permanent generation back and collect it in full if it holds more than ``HAND_BACK``
    times what the live guests and the process explain; whether it did."""
    guests = State.guests
    limit = HAND_BACK * (State.base + State.per_guest * guests)
    if State.frozen > limit:
        State.frozen = gc.get_freeze_count()  # the bound passed: count them (a walk over them all)
    if State.frozen <= limit:
        return False
    _collect_in_full()
    State.handed_back += 1
    # Everything frozen is alive now, and the measure of what explains it from here on.
    if guests >= MEASURE_AT:
        State.per_guest = max(1.0, (State.frozen - State.base) / guests)
    else:
        State.base = max(0, int(State.frozen - State.per_guest * guests))
    return True


def _freeze() -> None:
    """Move every tracked object (the young generations: the survivors since the last freeze) out of
    sight, and count them."""
    State.frozen += sum(len(gc.get_objects(generation)) for generation in range(3))
    gc.freeze()


def _collect_in_full() -> None:
    """Hand everything back, collect in full, and move what survived (all alive) out of sight."""
    State.ours = True
    try:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
    finally:
        State.ours = False
    State.frozen = gc.get_freeze_count()
