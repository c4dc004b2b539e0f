"""serve-stdin raw mode, in process, with real sockets on 127.0.0.1: answers, isolation, limits,
disconnects, backpressure and graceful shutdown, on asyncio and trio."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import anyio
import pytest
import sniffio
from preinit_guests import INIT_CMD, INIT_CMD_LINE
from serve_guests import ECHO_CMD
from serve_helpers import Running, guest_file, open_fds, read_all, read_exactly, serving


@pytest.fixture
def echo(tmp_path: Path) -> Path:
    return guest_file(tmp_path, ECHO_CMD, "echo_cmd.wasm")


async def line_exchange(run: Running, lines: list[bytes]) -> list[bytes]:
    """Send each line and wait for its echo before the next: answers must stream, not wait for exit."""
    got = []
    with anyio.fail_after(10):
        async with await run.connect() as s:
            for line in lines:
                await s.send(line)
                got.append(await read_exactly(s, len(line)))
            await s.send_eof()
            assert await read_all(s) == b""
    return got


@pytest.mark.anyio
async def test_concurrent_clients_each_get_their_own_answer(echo: Path) -> None:
    async with serving(echo) as run:
        results: dict[int, list[bytes]] = {}

        async def client(i: int) -> None:
            lines = [f"client {i} line {k}\n".encode() for k in range(5)]
            results[i] = await line_exchange(run, lines)
            assert results[i] == lines

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(client, i)
        assert len(results) == 40
        await run.wait_idle()
        assert run.server.stats.get("served") == 40
        assert run.server.stats.get("failed") == 0


@pytest.mark.anyio
async def test_corpus_cat_and_wc(shared: Path) -> None:
    corpus = shared / "corpus" / "wasm"
    async with serving(corpus / "cat.wasm") as run:
        assert await line_exchange(run, [b"hello\n", b"world\n"]) == [b"hello\n", b"world\n"]
        assert await run.exchange(b"x" * 100_000) == b"x" * 100_000
    async with serving(corpus / "wc.wasm") as run:
        assert await run.exchange(b"one two\nthree\n") == b"2 3 14\n"


@pytest.mark.anyio
async def test_trap_exit_and_spin_do_not_touch_other_connections(
    echo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "asyncwasm.serve")
    # the clients half-close and wait for an answer: the spinner is --timeout's, not --eof-idle-timeout's
    async with serving(echo, timeout=1.5, eof_idle_timeout=None) as run:
        async with anyio.create_task_group() as tg:
            answers: dict[str, bytes] = {}

            async def bad(cmd: bytes) -> None:
                answers[cmd.decode()] = await run.exchange(cmd)

            for cmd in (b"trap\n", b"exit\n", b"spin\n"):
                tg.start_soon(bad, cmd)
            await anyio.sleep(0.2)
            t0 = time.monotonic()
            for i in range(10):  # others keep getting answers while one spins
                assert await line_exchange(run, [f"ok {i}\n".encode()]) == [f"ok {i}\n".encode()]
            assert time.monotonic() - t0 < 1.4  # all ten well before the spinner's timeout
        assert answers == {"trap\n": b"", "exit\n": b"", "spin\n": b""}
        await run.wait_idle()
        assert run.server.stats.get("failed") == 2  # the trap and the timeout; an exit is an answer
    text = caplog.text
    assert "trap: wasm `unreachable` instruction executed" in text
    assert "exit 7" in text
    assert "timeout (1.5s)" in text


@pytest.mark.anyio
async def test_fuel_limit(echo: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "asyncwasm.serve")
    async with serving(echo, fuel=200_000) as run:
        with anyio.fail_after(10):
            assert await run.exchange(b"spin\n") == b""
        assert await run.exchange(b"after\n") == b"after\n"  # a fresh instance, a fresh budget
        await run.wait_idle()
    assert "trap: all fuel consumed" in caplog.text
    assert "fuel 200000" in caplog.text


@pytest.mark.anyio
async def test_max_memory(echo: Path) -> None:
    async with serving(echo, max_memory_pages=16) as run:  # 1 MiB: growing by 64 MiB fails
        assert await run.exchange(b"grow") == b"nomem\n"
    async with serving(echo) as run:
        assert await run.exchange(b"grow") == b"grew\n"


@pytest.mark.anyio
async def test_idle_timeout_closes_a_quiet_connection(echo: Path) -> None:
    async with serving(echo, idle_timeout=0.3) as run:
        async with await run.connect() as s:
            await s.send(b"hi\n")
            assert await read_exactly(s, 3) == b"hi\n"
            t0 = time.monotonic()
            with anyio.fail_after(5):
                assert await read_all(s) == b""
            assert 0.25 < time.monotonic() - t0 < 2.0
        await run.wait_idle()
        assert run.server.stats.get("failed") == 1


@pytest.mark.anyio
async def test_max_connections_wait(echo: Path) -> None:
    async with serving(echo, max_connections=2, overflow="wait") as run:
        a, b = await run.connect(), await run.connect()
        for s in (a, b):
            await s.send(b"x\n")
            assert await read_exactly(s, 2) == b"x\n"
        c = await run.connect()  # the kernel accepts; the server does not take it yet
        await c.send(b"third\n")
        with anyio.move_on_after(0.3) as waited:
            await c.receive()
        assert waited.cancelled_caught
        assert len(run.server.connections) == 2
        await a.aclose()
        with anyio.fail_after(5):
            assert await read_exactly(c, 6) == b"third\n"
        for s in (b, c):
            await s.aclose()
        await run.wait_idle()
        assert run.server.stats.get("refused") == 0


@pytest.mark.anyio
async def test_max_connections_refuse(echo: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "asyncwasm.serve")
    async with serving(echo, max_connections=1, overflow="refuse") as run:
        async with await run.connect() as a:
            await a.send(b"x\n")
            assert await read_exactly(a, 2) == b"x\n"
            with anyio.fail_after(5):
                async with await run.connect() as b:
                    with pytest.raises(anyio.BrokenResourceError):
                        await anyio.sleep(0.1)
                        await b.send(b"y\n")
                        await b.receive()  # reset: never an empty answer that looks like success
        await run.wait_idle()
        assert run.server.stats.get("refused") == 1
    assert "refused: 1 connections already running" in caplog.text


@pytest.mark.anyio
async def test_backpressure_bounds_what_a_fast_writer_can_queue(echo: Path) -> None:
    async with serving(echo) as run:
        fds = open_fds()
        s = await run.connect()
        await s.send(b"yes!")
        await anyio.sleep(0.5)  # the client reads nothing
        (conn,) = run.server.connections.values()
        first = conn.bytes_out
        await anyio.sleep(0.3)
        assert conn.bytes_out == first  # the guest is waiting, not writing into a buffer
        assert first < 16 << 20  # bounded by socket buffers, not by the guest
        got = await read_exactly(s, 1 << 20)  # and it resumes when the client reads
        assert len(got) == 1 << 20
        await s.aclose()  # a disconnect mid-stream: the guest's next write fails with EPIPE
        await run.wait_idle()
        assert conn.outcome is not None and conn.outcome.exit_code == 32
        assert open_fds() <= fds


def task_count() -> int | None:
    """Tasks alive on the loop (asyncio; trio has no public census, the fd and connection counts stand in)."""
    if sniffio.current_async_library() != "asyncio":
        return None
    import asyncio

    return len(asyncio.all_tasks())


@pytest.mark.anyio
async def test_disconnect_while_the_guest_waits_for_input(echo: Path) -> None:
    async with serving(echo) as run:
        fds = open_fds()
        tasks = task_count()
        for _ in range(5):
            raw = socket.create_connection(("127.0.0.1", run.port))
            raw.sendall(b"partial")
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            raw.close()  # RST
        s = await run.connect()
        await s.send(b"half")
        await s.aclose()  # FIN while the guest waits for the next read: EOF on fd_read
        await run.wait_idle()
        assert run.server.stats.get("served") == 6
        assert open_fds() <= fds
        assert task_count() == tasks


@pytest.mark.anyio
async def test_guest_stderr_goes_to_the_log_tagged(echo: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "asyncwasm.serve")
    async with serving(echo) as run:
        assert await run.exchange(b"errs to the log\n") == b"errs to the log\n"
        await run.wait_idle()
    stderr = [r.getMessage() for r in caplog.records if "stderr:" in r.getMessage()]
    assert len(stderr) == 1 and stderr[0].endswith("stderr: errs to the log")
    assert stderr[0].startswith("[w0#1 127.0.0.1:")
    (line,) = [r.getMessage() for r in caplog.records if "exit 0 in" in r.getMessage()]
    assert "bytes in 16 out 16" in line and "fuel " in line


@pytest.mark.anyio
async def test_graceful_shutdown_lets_running_connections_finish(echo: Path) -> None:
    async with serving(echo, grace=5.0) as run:
        s = await run.connect()
        await s.send(b"before\n")
        assert await read_exactly(s, 7) == b"before\n"
        run.server.shutdown()
        await anyio.sleep(0.1)
        with pytest.raises(OSError):
            await anyio.connect_tcp("127.0.0.1", run.port)  # not accepting any more
        await s.send(b"during\n")  # the running instance still answers
        assert await read_exactly(s, 7) == b"during\n"
        await s.send_eof()
        assert await read_all(s) == b""
        await s.aclose()
        await run.wait_idle()
        assert run.server.stats.get("failed") == 0


@pytest.mark.anyio
async def test_grace_period_ends_in_cancellation(echo: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "asyncwasm.serve")
    async with serving(echo, grace=0.3) as run:
        spinner = await run.connect()
        await spinner.send(b"spin\n")
        waiter = await run.connect()  # blocked in fd_read: cancellation must reach it there too
        await anyio.sleep(0.2)
        t0 = time.monotonic()
        run.server.shutdown()
        await run.wait_idle()
        assert time.monotonic() - t0 < 3.0
        for s in (spinner, waiter):
            assert await read_all(s) == b""
            await s.aclose()
    assert caplog.text.count("cancelled: shutdown") == 2


@pytest.mark.anyio
async def test_init_runs_once_and_every_connection_starts_from_its_snapshot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The initialiser prints, reads the environment, fills memory, globals and a table; each
    connection's ``_start`` prints that state and then changes it (a counter in memory, a global):
    every answer is the same line, so nothing one connection changed reaches the next."""
    caplog.set_level(logging.INFO, "asyncwasm.serve")
    path = guest_file(tmp_path, INIT_CMD, "init_cmd.wasm")
    async with serving(path, init="wizer.initialize", env={"X": "1"}) as run:
        answers = [await run.exchange(b"") for _ in range(3)]

        async def client() -> None:
            answers.append(await run.exchange(b""))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(client)
        await run.wait_idle()
        assert run.server.stats.get("failed") == 0
    assert answers == [INIT_CMD_LINE] * 8
    assert caplog.text.count("[init wizer.initialize] stdout: initialising") == 1
    # without the initialiser each connection gets a fresh instance: its table is empty, it traps
    async with serving(path) as run:
        assert await run.exchange(b"") == b""
        await run.wait_idle()
        assert run.server.stats.get("failed") == 1
