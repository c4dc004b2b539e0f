"""stdio, poll_oneoff, clocks, args/environ, sockets: the parts of WASI that wait, and must not block the loop."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import anyio
import pytest

from wasi_async import Errno, ProcessStdio, WasiConfig, WasiContext, WasiExit
from wasi_async._compat import cancel
from wasi_async.flags import EVENT_FD_READWRITE_HANGUP, Eventtype, Fdflags, Filetype
from wasi_async.layout import EVENT
from wasi_async.testing import FakeGuest

pytestmark = pytest.mark.anyio


class FakeClock:
    resolution_ns = 1000

    def __init__(self) -> None:
        self.now = 1_700_000_000_000_000_000

    def realtime_ns(self) -> int:
        return self.now

    def monotonic_ns(self) -> int:
        return self.now - 1_600_000_000_000_000_000


def guest(**cfg: object) -> FakeGuest:
    return FakeGuest(WasiContext(WasiConfig(**cfg)))  # type: ignore[arg-type]


async def ticker(counter: list[int], period: float = 0.002) -> None:
    while True:
        await anyio.sleep(period)
        counter[0] += 1


def clock_sub(userdata: int, timeout_ns: int, clock_id: int = 1, flags: int = 0) -> bytes:
    return struct.pack("<QB7xIxxxxQQH6x", userdata, Eventtype.CLOCK, clock_id, timeout_ns, 0, flags)


def fd_sub(userdata: int, tag: int, fd: int) -> bytes:
    return struct.pack("<QB7xI28x", userdata, tag, fd)


async def poll(g: FakeGuest, *subs: bytes) -> tuple[int, list[tuple[int, ...]]]:
    sub_ptr, _ = g.put(b"".join(subs))
    out = g.alloc(EVENT.size * len(subs))
    nevents = g.alloc(4)
    err = await g.call("poll_oneoff", sub_ptr, out, len(subs), nevents)
    if err:
        return err, []
    raw = g.memory.read(out, EVENT.size * g.u32(nevents))
    return err, [EVENT.unpack_from(raw, i * EVENT.size) for i in range(g.u32(nevents))]


async def test_args_and_environ_layout() -> None:
    g = guest(args=["app.wasm", "x", "", "ünï"], env={"K": "V", "EMPTY": "", "A": "b=c"})
    sizes = g.alloc(8)
    assert await g.call("args_sizes_get", sizes, sizes + 4) == 0
    assert (g.u32(sizes), g.u32(sizes + 4)) == (4, len(b"app.wasm\0x\0\0\xc3\xbcn\xc3\xaf\0"))
    argv, buf = g.alloc(16), g.alloc(64)
    assert await g.call("args_get", argv, buf) == 0
    ptrs = [g.u32(argv + 4 * i) for i in range(4)]
    assert ptrs[0] == buf
    assert [g.memory.read(p, 16).split(b"\0")[0].decode() for p in ptrs] == ["app.wasm", "x", "", "ünï"]
    assert await g.call("environ_sizes_get", sizes, sizes + 4) == 0
    assert (g.u32(sizes), g.u32(sizes + 4)) == (3, len(b"K=V\0EMPTY=\0A=b=c\0"))
    env, ebuf = g.alloc(12), g.alloc(64)
    assert await g.call("environ_get", env, ebuf) == 0
    assert g.memory.read(ebuf, 17) == b"K=V\0EMPTY=\0A=b=c\0"
    assert [g.u32(env + 4 * i) - ebuf for i in range(3)] == [0, 4, 11]


async def test_bad_pointer_traps() -> None:
    from asyncwasm.errors import Trap

    g = guest(args=["a"])
    with pytest.raises(Trap):
        await g.call("args_sizes_get", len(g.memory.data) - 2, 0)
    with pytest.raises(Trap):
        await g.call("fd_write", 1, 0xFFFFFFF0, 1, 0)


async def test_fd_write_to_stdout_stream_gathers_iovecs() -> None:
    send, receive = anyio.create_memory_object_stream[bytes](10)
    g = guest(stdout=send)
    a, an = g.put(b"hello, ")
    b, bn = g.put(b"world\n")
    iov = g.alloc(24)
    g.memory.write(iov, struct.pack("<IIIIII", a, an, b, 0, b, bn))
    out = g.alloc(4)
    assert await g.call("fd_write", 1, iov, 3, out) == 0
    assert g.u32(out) == 13
    assert receive.receive_nowait() == b"hello, world\n"
    assert await g.fd_write(2, b"discarded") == (0, 9)  # stderr None: discarded


async def test_stdout_closed_reader_is_epipe() -> None:
    send, receive = anyio.create_memory_object_stream[bytes](10)
    receive.close()
    g = guest(stdout=send)
    assert (await g.fd_write(1, b"x"))[0] == Errno.PIPE


async def test_stdin_bytes_then_eof() -> None:
    g = guest(stdin=b"abcdef")
    assert await g.fd_read(0, 4) == (0, b"abcd")
    assert await g.fd_read(0, 4) == (0, b"ef")
    assert await g.fd_read(0, 4) == (0, b"")
    assert await guest().fd_read(0, 4) == (0, b"")


async def test_fd_read_on_quiet_stdin_lets_other_tasks_run() -> None:
    send, receive = anyio.create_memory_object_stream[bytes](10)
    g = guest(stdin=receive)
    ticks = [0]
    result: list[tuple[int, bytes]] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker, ticks)

        async def reader() -> None:
            result.append(await g.fd_read(0, 100))
            cancel(tg.cancel_scope)

        tg.start_soon(reader)
        await anyio.sleep(0.05)
        assert not result and ticks[0] >= 5  # the reader waits, the loop keeps running
        await send.send(b"line\n")
    assert result == [(0, b"line\n")]
    send.close()
    assert await g.fd_read(0, 100) == (0, b"")  # sender closed: end of stream


async def test_fd_read_more_than_the_guest_asked_is_kept() -> None:
    send, receive = anyio.create_memory_object_stream[bytes](10)
    g = guest(stdin=receive)
    await send.send(b"")  # an empty item is not the end of the stream
    await send.send(b"0123456789")
    assert await g.fd_read(0, 4) == (0, b"0123")
    assert await g.fd_read(0, 100) == (0, b"456789")


async def test_nonblocking_stdin_is_eagain() -> None:
    send, receive = anyio.create_memory_object_stream[bytes](10)
    g = guest(stdin=receive)
    assert await g.call("fd_fdstat_set_flags", 0, Fdflags.NONBLOCK) == 0
    assert (await g.fd_read(0, 4))[0] == Errno.AGAIN
    await send.send(b"x")
    assert (await poll(g, fd_sub(7, Eventtype.FD_READ, 0)))[0] == 0
    assert await g.fd_read(0, 4) == (0, b"x")


async def test_blocking_read_is_cancellable() -> None:
    _, receive = anyio.create_memory_object_stream[bytes](10)
    g = guest(stdin=receive)
    with anyio.move_on_after(0.02) as scope:
        await g.fd_read(0, 10)
    assert scope.cancelled_caught


async def test_process_stdin_pipe_waits_without_blocking() -> None:
    r, w = os.pipe()
    try:
        g = guest(stdin=ProcessStdio(r))
        ticks = [0]
        result: list[tuple[int, bytes]] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker, ticks)

            async def reader() -> None:
                result.append(await g.fd_read(0, 100))
                cancel(tg.cancel_scope)

            tg.start_soon(reader)
            await anyio.sleep(0.05)
            assert not result and ticks[0] >= 5
            os.write(w, b"from the pipe")
        assert result == [(0, b"from the pipe")]
    finally:
        os.close(r)
        os.close(w)


async def test_process_stdout_pipe() -> None:
    r, w = os.pipe()
    try:
        g = guest(stdout=ProcessStdio(w))
        big = bytes(range(256)) * 40  # more than one PIPE_BUF chunk
        received = bytearray()
        async with anyio.create_task_group() as tg:

            async def drain() -> None:
                while len(received) < len(big):
                    await anyio.wait_readable(r)
                    received.extend(os.read(r, 65536))

            tg.start_soon(drain)
            assert await g.fd_write(1, big) == (0, len(big))
        assert bytes(received) == big
    finally:
        os.close(r)
        os.close(w)


async def test_poll_sleep_lets_other_tasks_run() -> None:
    g = guest()
    ticks = [0]
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker, ticks)
        start = anyio.current_time()
        err, events = await poll(g, clock_sub(42, 50_000_000))
        elapsed = anyio.current_time() - start
        cancel(tg.cancel_scope)
    assert err == 0 and events == [(42, 0, Eventtype.CLOCK, 0, 0)]
    assert elapsed >= 0.049 and ticks[0] >= 5


async def test_poll_absolute_clocks() -> None:
    g = guest()
    for clock_id, read_clock in ((1, time.monotonic_ns), (0, time.time_ns)):
        now = read_clock()
        start = anyio.current_time()
        err, events = await poll(g, clock_sub(clock_id, now + 30_000_000, clock_id, flags=1))
        assert err == 0 and [e[0] for e in events] == [clock_id]
        assert anyio.current_time() - start >= 0.025
    # A deadline in the past fires at once.
    err, events = await poll(g, clock_sub(9, 1, 1, flags=1))
    assert err == 0 and events[0][0] == 9


async def test_poll_first_ready_wins_and_all_ready_are_reported() -> None:
    send, receive = anyio.create_memory_object_stream[bytes](10)
    g = guest(stdin=receive)
    async with anyio.create_task_group() as tg:

        async def later() -> None:
            await anyio.sleep(0.02)
            await send.send(b"data")

        tg.start_soon(later)
        start = anyio.current_time()
        err, events = await poll(g, clock_sub(1, 5_000_000_000), fd_sub(2, Eventtype.FD_READ, 0))
    assert err == 0 and anyio.current_time() - start < 1
    assert [(e[0], e[2], e[3]) for e in events] == [(2, Eventtype.FD_READ, 4)]
    # stdin has data and stdout is writable: both fire together, the clock does not.
    err, events = await poll(
        g, fd_sub(3, Eventtype.FD_READ, 0), fd_sub(4, Eventtype.FD_WRITE, 1), clock_sub(5, 5_000_000_000)
    )
    assert err == 0 and [e[0] for e in events] == [3, 4]
    send.close()
    assert await g.fd_read(0, 10) == (0, b"data")
    err, events = await poll(g, fd_sub(6, Eventtype.FD_READ, 0))
    assert events[0][4] == EVENT_FD_READWRITE_HANGUP


async def test_poll_same_stream_twice() -> None:
    r, w = os.pipe()
    try:
        g = guest(stdin=ProcessStdio(r))
        async with anyio.create_task_group() as tg:

            async def later() -> None:
                await anyio.sleep(0.02)
                os.write(w, b"x")

            tg.start_soon(later)
            err, events = await poll(
                g, fd_sub(1, Eventtype.FD_READ, 0), fd_sub(2, Eventtype.FD_READ, 0), clock_sub(3, 5 * 10**9)
            )
        assert err == 0 and [e[0] for e in events] == [1, 2]
    finally:
        os.close(r)
        os.close(w)


async def test_poll_errors() -> None:
    g = guest()
    assert (await poll(g))[0] == Errno.INVAL
    err, events = await poll(g, fd_sub(1, Eventtype.FD_READ, 99), clock_sub(2, 10**9))
    assert err == 0 and events == [(1, Errno.BADF, Eventtype.FD_READ, 0, 0)]
    err, events = await poll(g, fd_sub(1, Eventtype.FD_READ, 1))  # stdout is not readable
    assert events[0][1] == Errno.BADF
    assert (await poll(g, clock_sub(1, 0, clock_id=7)))[0] == Errno.INVAL
    assert (await poll(g, struct.pack("<QB39x", 1, 3)))[0] == Errno.INVAL


async def test_poll_is_cancellable() -> None:
    g = guest()
    with anyio.move_on_after(0.02) as scope:
        await poll(g, clock_sub(1, 10 * 10**9))
    assert scope.cancelled_caught


async def test_sched_yield_lets_others_run() -> None:
    g = guest()
    ran: list[str] = []
    async with anyio.create_task_group() as tg:

        async def other() -> None:
            ran.append("other")

        tg.start_soon(other)
        for _ in range(3):
            assert await g.call("sched_yield") == 0
        ran.append("guest")
    assert ran == ["other", "guest"]


async def test_clocks_and_random() -> None:
    clock = FakeClock()
    g = guest(clock=clock, random=lambda n: b"\x07" * n)
    out = g.alloc(8)
    assert await g.call("clock_time_get", 0, 0, out) == 0 and g.u64(out) == clock.now
    assert await g.call("clock_time_get", 1, 1, out) == 0 and g.u64(out) == clock.monotonic_ns()
    assert await g.call("clock_res_get", 1, out) == 0 and g.u64(out) == 1000
    assert await g.call("clock_time_get", 2, 0, out) == Errno.INVAL  # the fake has no CPU clock
    assert await g.call("clock_time_get", 9, 0, out) == Errno.INVAL
    real = guest()
    assert await real.call("clock_time_get", 2, 0, out) == 0
    buf = g.alloc(100_000)
    assert await g.call("random_get", buf, 100_000) == 0
    assert g.memory.read(buf, 100_000) == b"\x07" * 100_000
    assert await real.call("random_get", buf, 0) == 0


async def test_proc_exit_and_raise() -> None:
    g = guest()
    with pytest.raises(WasiExit) as info:
        await g.call("proc_exit", 33)
    assert info.value.code == 33 and g.ctx.exit_code == 33
    assert await g.call("proc_raise", 6) == Errno.NOTSUP


async def test_sockets_accept_recv_send_shutdown() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    g = guest(sockets=[listener])
    seen: list[bytes] = []

    def client() -> None:  # a plain blocking client in a thread: the guest side is what is tested
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"ping")
            seen.append(conn.recv(16))
            seen.append(conn.recv(16))  # b"" once the guest shuts down its sending side

    thread = threading.Thread(target=client)
    thread.start()
    try:
        out = g.alloc(4)
        assert await g.call("sock_accept", 3, 0, out) == 0
        conn = g.u32(out)
        buf = g.alloc(16)
        iov = g.alloc(8)
        g.memory.write(iov, struct.pack("<II", buf, 16))
        n, flags = g.alloc(4), g.alloc(4)
        assert await g.call("sock_recv", conn, iov, 1, 1, n, flags) == 0  # MSG_PEEK leaves it queued
        assert g.memory.read(buf, g.u32(n)) == b"ping"
        g.memory.write(buf, bytes(16))
        assert await g.call("sock_recv", conn, iov, 1, 0, n, flags) == 0
        assert g.memory.read(buf, g.u32(n)) == b"ping" and g.u32(flags) == 0
        p, pn = g.put(b"pong")
        g.memory.write(iov, struct.pack("<II", p, pn))
        assert await g.call("sock_send", conn, iov, 1, 0, n) == 0 and g.u32(n) == 4
        assert await g.call("sock_shutdown", conn, 2) == 0
        assert await g.call("sock_shutdown", conn, 0) == Errno.INVAL
        while thread.is_alive():
            await anyio.sleep(0.01)
        assert seen == [b"pong", b""]
        assert await g.call("fd_close", conn) == 0
    finally:
        thread.join()
        await g.ctx.aclose()
        await listener.aclose()


async def test_process_stdio_socket() -> None:
    """inetd style: the process's stdout is a socket; sock_shutdown reaches the peer."""
    ours, peer = socket.socketpair()
    with ours, peer:
        g = guest(stdout=ProcessStdio(ours.fileno()))
        assert (await g.fdstat(1))[1][0] == Filetype.SOCKET_STREAM
        assert await g.fd_write(1, b"hi") == (0, 2)
        assert await g.call("sock_shutdown", 1, 2) == 0
        peer.settimeout(5)
        assert peer.recv(16) == b"hi" and peer.recv(16) == b""


async def test_sock_calls_on_non_sockets() -> None:
    g = guest()
    assert await g.call("sock_shutdown", 1, 2) == Errno.NOTSOCK
    assert await g.call("sock_shutdown", 9, 2) == Errno.BADF
    assert await g.call("sock_accept", 0, 0, g.alloc(4)) == Errno.NOTSOCK
    assert await g.call("sock_send", 1, g.alloc(8), 0, 0, g.alloc(4)) == Errno.NOTSOCK
