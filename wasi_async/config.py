"""What an instance is granted: arguments, environment, preopened directories, stdio, clock, randomness."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import anyio.abc

from .limits import DEFAULT_MAX_OPEN_FILES


@runtime_checkable
class Clock(Protocol):
    """The time source of an instance; swap it for a fake to make a guest's clock deterministic."""

    resolution_ns: int

    def realtime_ns(self) -> int:
        """Nanoseconds since the Unix epoch."""
        ...

    def monotonic_ns(self) -> int:
        """Nanoseconds of a clock that never goes back."""
        ...


class SystemClock:
    """The host's wall clock and monotonic clock."""

    resolution_ns = 1

    def realtime_ns(self) -> int:
        """Nanoseconds since the Unix epoch (WASI's ``realtime``)."""
        return time.time_ns()

    def monotonic_ns(self) -> int:
        """Nanoseconds of a clock that never goes back (WASI's ``monotonic``)."""
        return time.monotonic_ns()

    def process_cputime_ns(self) -> int:
        """CPU nanoseconds of the host process: every instance on it shares this clock."""
        return time.process_time_ns()

    def thread_cputime_ns(self) -> int:
        """CPU nanoseconds of the host thread (all instances on one event loop share it)."""
        return time.thread_time_ns()


@dataclass(frozen=True)
class Preopen:
    """A host directory the guest sees under ``guest`` (its fd_prestat_dir_name)."""

    host: str | os.PathLike[str]
    guest: str
    readonly: bool = False


class ProcessStdio:
    """Marker: use the host process's own stdin/stdout/stderr, read and written without blocking the loop."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __repr__(self) -> str:
        return f"ProcessStdio({self.fd})"


StdinSource = (
    bytes
    | bytearray
    | memoryview
    | anyio.abc.ByteReceiveStream
    | anyio.abc.ObjectReceiveStream[bytes]
    | ProcessStdio
    | None
)
StdoutSink = anyio.abc.ByteSendStream | anyio.abc.ObjectSendStream[bytes] | ProcessStdio | None
SocketGrant = anyio.abc.ByteStream | anyio.abc.Listener


@dataclass
class WasiConfig:
    """Everything one instance may see; nothing else on the host is reachable from it.

    ``stdin``: bytes, an anyio byte stream, ``ProcessStdio(0)`` or None (empty).
    ``stdout``/``stderr``: an anyio byte send stream, ``ProcessStdio(1|2)`` or None (discarded).
    ``sockets``: extra preopened sockets (connected streams or listeners), numbered after the preopens.
    ``max_open_files``: how many descriptors the guest may hold that it opened itself (path_open,
    sock_accept), 1024 by default; one more is EMFILE. stdio, preopens and ``sockets`` do not count.
    None removes the cap (then only the host's own limit applies, shared by the whole process).
    """

    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    preopens: Sequence[Preopen] = ()
    stdin: StdinSource = None
    stdout: StdoutSink = None
    stderr: StdoutSink = None
    clock: Clock | None = None
    random: Callable[[int], bytes] | None = None
    sockets: Sequence[SocketGrant] = ()
    max_open_files: int | None = DEFAULT_MAX_OPEN_FILES

    @classmethod
    def inherit_stdio(cls, **kwargs: object) -> WasiConfig:
        """A config whose stdio is the host process's own (like ``wasmtime run``)."""
        kwargs.setdefault("stdin", ProcessStdio(0))
        kwargs.setdefault("stdout", ProcessStdio(1))
        kwargs.setdefault("stderr", ProcessStdio(2))
        return cls(**kwargs)  # type: ignore[arg-type]
