"""poll_oneoff: clock subscriptions become timed waits, fd subscriptions readiness waits, all in one
task group whose cancel scope ends the others as soon as one fires. Every subscription that is ready
by then is reported. A subscription on a bad fd is reported at once with the error in its event
(as poll(2) reports POLLNVAL) rather than failing the whole call. More than MAX_SUBSCRIPTIONS
subscriptions is EINVAL, as poll(2) with more fds than it may open.
"""

from __future__ import annotations

import os
import select
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from ._compat import cancel
from .clock import clock_reader
from .errno import Errno, WasiError
from .fdtable import FileEntry, ListenerEntry, StreamEntry
from .flags import EVENT_FD_READWRITE_HANGUP, SUBSCRIPTION_CLOCK_ABSTIME, Clockid, Eventtype, Rights
from .hostfunc import wasi
from .layout import GuestMemory, Subscription, pack_event, read_subscriptions
from .limits import MAX_SUBSCRIPTIONS
from .streams import InputStream, OutputStream, poll_now

if TYPE_CHECKING:
    from .context import WasiContext


class _Probe:
    """One subscription: can it fire now, how to wait until it can, and the event it reports."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub

    @property
    def key(self) -> object:
        """Probes with equal keys wait on the same thing, which must be waited on only once
        (two concurrent receives on one anyio stream, or two waits on one fd, are an error)."""
        return self

    def ready(self) -> bool:
        return True

    async def wait(self) -> None:
        return None

    def event(self) -> bytes:
        return pack_event(self.sub.userdata, 0, self.sub.tag)


class _Failed(_Probe):
    def __init__(self, sub: Subscription, errno: Errno) -> None:
        super().__init__(sub)
        self.errno = errno

    def event(self) -> bytes:
        return pack_event(self.sub.userdata, self.errno, self.sub.tag)


class _Clock(_Probe):
    def __init__(self, sub: Subscription, now: Callable[[], int]) -> None:
        super().__init__(sub)
        self.now = now
        start = 0 if sub.flags & SUBSCRIPTION_CLOCK_ABSTIME else now()
        self.deadline = start + sub.timeout

    def ready(self) -> bool:
        return self.now() >= self.deadline

    async def wait(self) -> None:
        await anyio.sleep(max(0, self.deadline - self.now()) / 1e9)


class _File(_Probe):
    """Regular files are always ready; nbytes is what remains after the current offset."""

    def __init__(self, sub: Subscription, entry: FileEntry) -> None:
        super().__init__(sub)
        self.entry = entry

    def event(self) -> bytes:
        nbytes = 0
        if self.sub.tag == Eventtype.FD_READ:
            fd = self.entry.host_fd
            nbytes = max(0, os.fstat(fd).st_size - os.lseek(fd, 0, os.SEEK_CUR))
        return pack_event(self.sub.userdata, 0, self.sub.tag, nbytes)


class _Readable(_Probe):
    def __init__(self, sub: Subscription, stream: InputStream) -> None:
        super().__init__(sub)
        self.stream = stream

    @property
    def key(self) -> object:
        return (self.stream, "read")

    def ready(self) -> bool:
        return self.stream.is_ready()

    async def wait(self) -> None:
        await self.stream.wait_readable()

    def event(self) -> bytes:
        hangup = EVENT_FD_READWRITE_HANGUP if self.stream.at_eof else 0
        return pack_event(
            self.sub.userdata, 0, self.sub.tag, 0 if hangup else self.stream.ready_bytes(), hangup
        )


class _Writable(_Probe):
    def __init__(self, sub: Subscription, stream: OutputStream) -> None:
        super().__init__(sub)
        self.stream = stream

    @property
    def key(self) -> object:
        return (self.stream, "write")

    def ready(self) -> bool:
        return self.stream.is_ready()

    async def wait(self) -> None:
        await self.stream.wait_writable()

    def event(self) -> bytes:
        return pack_event(self.sub.userdata, 0, self.sub.tag, 1)


class _Acceptable(_Probe):
    """A listener is readable when a connection waits; without its raw socket we cannot tell, so: ready."""

    def __init__(self, sub: Subscription, listener: anyio.abc.Listener | None) -> None:
        super().__init__(sub)
        self.sock = (
            listener.extra(anyio.abc.SocketAttribute.raw_socket, None) if listener is not None else None
        )

    @property
    def key(self) -> object:
        return (self.sock, "accept") if self.sock is not None else self

    def ready(self) -> bool:
        return self.sock is None or poll_now(self.sock.fileno(), select.POLLIN)

    async def wait(self) -> None:
        if self.sock is not None:
            await anyio.wait_readable(self.sock)


def _probe(ctx: WasiContext, sub: Subscription) -> _Probe:
    if sub.tag == Eventtype.CLOCK:
        if sub.clock_id not in (Clockid.REALTIME, Clockid.MONOTONIC):
            raise WasiError(Errno.INVAL, f"cannot wait on clock {sub.clock_id}")
        return _Clock(sub, clock_reader(ctx, sub.clock_id))
    if sub.tag not in (Eventtype.FD_READ, Eventtype.FD_WRITE):
        raise WasiError(Errno.INVAL, f"unknown event type {sub.tag}")
    reading = sub.tag == Eventtype.FD_READ
    try:
        entry = ctx.fds.get(sub.fd)
    except WasiError as exc:
        return _Failed(sub, exc.errno)
    if isinstance(entry, FileEntry):
        probe: _Probe = _File(sub, entry)
    elif isinstance(entry, StreamEntry) and reading and entry.input is not None:
        probe = _Readable(sub, entry.input)
    elif isinstance(entry, StreamEntry) and not reading and entry.output is not None:
        probe = _Writable(sub, entry.output)
    elif isinstance(entry, ListenerEntry) and reading:
        return _Acceptable(sub, entry.listener)
    else:
        return _Failed(sub, Errno.BADF)
    if entry.rights_base & (Rights.FD_READ if reading else Rights.FD_WRITE) == 0:
        return _Failed(sub, Errno.NOTCAPABLE)
    return probe


async def _wait_any(probes: list[_Probe]) -> set[_Probe]:
    """Wait until one probe fires; returns the probes whose wait (or an equal-keyed one's) completed."""
    distinct: dict[object, _Probe] = {}
    for probe in probes:
        distinct.setdefault(probe.key, probe)
    fired: set[object] = set()
    if len(distinct) == 1:  # a plain sleep, or one stream: no task group needed
        ((key, probe),) = distinct.items()
        await probe.wait()
        fired.add(key)
    else:
        async with anyio.create_task_group() as tg:

            async def watch(key: object, probe: _Probe) -> None:
                await probe.wait()
                fired.add(key)
                cancel(tg.cancel_scope)

            for key, probe in distinct.items():
                tg.start_soon(watch, key, probe)
    return {p for p in probes if p.key in fired}


@wasi("poll_oneoff", "i32 i32 i32 i32")
async def poll_oneoff(
    ctx: WasiContext, mem: GuestMemory, in_ptr: int, out_ptr: int, nsubscriptions: int, nevents_ptr: int
) -> None:
    if nsubscriptions == 0:
        raise WasiError(Errno.INVAL, "no subscriptions: the wait could never end")
    if (
        nsubscriptions > MAX_SUBSCRIPTIONS
    ):  # each costs host objects and maybe a task: bounded, as poll(2)'s nfds
        raise WasiError(Errno.INVAL, f"more than {MAX_SUBSCRIPTIONS} subscriptions")
    probes = [_probe(ctx, sub) for sub in read_subscriptions(mem, in_ptr, nsubscriptions)]
    fired = [p for p in probes if p.ready()]
    if not fired:
        done = await _wait_any(probes)
        fired = [p for p in probes if p in done or p.ready()]
    mem.write(out_ptr, b"".join(p.event() for p in fired))
    mem.write_u32(nevents_ptr, len(fired))
