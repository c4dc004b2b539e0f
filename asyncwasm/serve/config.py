"""What a serve-stdin worker is told (``ServeOptions``) and what it counts (``Stats``).

Plain data, so it crosses a fork unchanged; the command line (cli/serve.py) fills it in, the server,
the HTTP mode and the workers read it.
"""

from __future__ import annotations

from collections.abc import MutableSequence
from dataclasses import dataclass, field

from ..cpu import SchedulerStats

DEFAULT_IDLE_TIMEOUT = 30.0  # seconds without a byte moving either way: the connection is stopped
DEFAULT_EOF_IDLE_TIMEOUT = 1.0  # the same once the client has closed its side (sent FIN)
DEFAULT_MAX_OPEN_FILES = 64  # descriptors a guest may open itself (with --dir): WasiConfig.max_open_files
DEFAULT_MAX_BODY = 16 << 20  # --http: request body bytes (--max-body); more is 413


@dataclass
class ServeOptions:
    """Everything a worker needs to serve; plain data, so it crosses a fork unchanged."""

    module_path: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    preopens: tuple[tuple[str, str], ...] = ()  # (host, guest)
    fuel: int | None = None
    timeout: float | None = None
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT  # None or 0: no limit
    eof_idle_timeout: float | None = DEFAULT_EOF_IDLE_TIMEOUT  # None or 0: only idle_timeout
    max_open_files: int | None = DEFAULT_MAX_OPEN_FILES  # per instance; None: no cap of its own
    max_body: int | None = DEFAULT_MAX_BODY  # --http: request body bytes, more is 413; None or 0: no limit
    nofile: int | None = None  # the descriptor limit the connection limit was fitted to (for the log)
    max_memory_pages: int | None = None
    max_table_elements: int | None = None  # all tables of one instance together; None: the store's default
    max_depth: int | None = None  # nested Wasm calls; None: the store's default
    max_connections: int | None = None
    overflow: str = "wait"  # or "refuse": what happens to a connection over max_connections
    grace: float = 10.0
    http: bool = False
    keepalive_timeout: float = 15.0
    tenure: bool = True  # tenure the collector's survivors in each worker (asyncwasm.collector)


# ---- counters ---------------------------------------------------------------------------------

STAT_FIELDS = ("served", "failed", "refused", "active", "bytes_in", "bytes_out", "fuel")


class Stats:
    """Counters of one worker. They may live in shared memory so a supervisor can sum the workers
    on demand; each worker is the only writer of its own slots, so no lock is needed."""

    def __init__(self, slots: MutableSequence[int] | None = None) -> None:
        self.slots: MutableSequence[int] = slots if slots is not None else [0] * len(STAT_FIELDS)

    def add(self, name: str, n: int = 1) -> None:
        i = STAT_FIELDS.index(name)
        self.slots[i] += n

    def get(self, name: str) -> int:
        return int(self.slots[STAT_FIELDS.index(name)])

    def as_dict(self) -> dict[str, int]:
        return {name: int(self.slots[i]) for i, name in enumerate(STAT_FIELDS)}


def format_summary(stats: dict[str, int], who: str = "") -> str:
    return (
        f"summary{who}: served {stats['served']}, active {stats['active']}, failed {stats['failed']}, "
        f"refused {stats['refused']}, bytes in {stats['bytes_in']}, out {stats['bytes_out']}, "
        f"fuel {stats['fuel']}"
    )


def format_scheduler(st: SchedulerStats) -> str:
    """The worker's scheduler, loop-wide (``asyncwasm.scheduler_stats()``), for the summary line."""
    return (
        f"scheduler: {st.running} running, {st.runnable} waiting for the CPU, {st.blocked} in host calls, "
        f"{st.turns} turns; collector paused {st.gc_pauses} times, {st.unbilled_gc:.3f} s, longest "
        f"{st.longest_gc_pause * 1e3:.1f} ms; tenured {st.tenured}, handed back {st.handed_back}"
    )
