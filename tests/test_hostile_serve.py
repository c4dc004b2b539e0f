"""serve-stdin against hostile clients, on real sockets: a real server (in process on asyncio and trio,
or ``python -m asyncwasm serve-stdin`` where the whole process matters: memory, descriptors), a
client that misbehaves, and a bound in time on what the server must do about it.

``ASYNCWASM_HOSTILE_PUSH_MIB=1024`` makes the backpressure test push 1 GiB instead of 200 MiB
(the figure in docs/serve.md); ``-s`` shows the measured numbers.
"""

from __future__ import annotations

import logging
import os
import re
import resource
import socket
import struct
import time
from pathlib import Path

import anyio
import anyio.abc
import pytest
import sniffio
from anyio.abc import SocketAttribute
from serve_guests import CGI, HOSTILE
from serve_helpers import Running, cli_server, guest_file, push, read_all, serving

from asyncwasm.serve.config import ServeOptions
from asyncwasm.serve.connection import Connection
from asyncwasm.serve.net import connections_that_fit

BACKENDS = ["asyncio", "trio"]
MIB = 1 << 20
LINGER_0 = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # SO_LINGER on, 0 s: close() resets the connection
ERRNO_MFILE = 33  # WASI's EMFILE
PUSH = int(os.environ.get("ASYNCWASM_HOSTILE_PUSH_MIB", "200")) * MIB


def read_n(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    return guest_file(tmp_path, HOSTILE, "hostile.wasm")


# ---- 6: a client pushing at a guest that reads late or never ------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_client_pushing_at_a_guest_that_never_reads_is_held_back(
    tmp_path: Path, hostile: Path, backend: str
) -> None:
    with cli_server(tmp_path, "--port", "0", "--workers", "1", "--backend", backend, str(hostile)) as proc:
        base = proc.status("VmHWM")
        sent, _ = push(proc.port, b"late", PUSH, seconds=2.0)  # the guest never reads again
        never = proc.status("VmHWM")
        assert sent < 64 * MIB  # held back by the socket buffers, not read into the server
        sent_late, answer = push(proc.port, b"sink", PUSH, seconds=30.0)  # reads after 200 ms, all of it
        late = proc.status("VmHWM")
        assert (sent_late, answer) == (PUSH, b"sunk")
        print(
            f"\n{backend}: peak RSS {base >> 10} MiB at start, {never >> 10} MiB after a client pushed for 2 s "
            f"at a guest that never reads (it got {sent / MIB:.1f} MiB in), {late >> 10} MiB after "
            f"{PUSH // MIB} MiB went through a guest that reads late"
        )
        assert never - base < 32 * 1024 and late - base < 32 * 1024  # KiB: a bounded buffer per connection
        assert late < 300 * 1024


# ---- 8: idle and vanished clients ---------------------------------------------------------------


async def _conn_of(run: Running, s: anyio.abc.SocketStream) -> Connection:
    """The server's bookkeeping of the connection whose client end is ``s``."""
    port = s.extra(SocketAttribute.local_port)
    with anyio.fail_after(5):
        while True:
            for conn in run.server.connections.values():
                if conn.peer == f"127.0.0.1:{port}" and conn.running:
                    return conn
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_a_guest_whose_client_has_gone_is_stopped(
    hostile: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The client goes (FIN, or a reset) while its guest computes, sleeps, writes or reads: every
    instance is stopped within 2 s, and the server is left with nothing running."""
    caplog.set_level(logging.INFO, "asyncwasm.serve")
    cases = [
        (b"spin", "fin"),  # computes without a WASI call
        (b"spin", "rst"),
        (b"late", "fin"),  # waits in poll_oneoff, never reads
        (b"deaf", "fin"),  # reads on and on past the end of its input
        (b"yes?", "fin"),  # writes on and on, whatever the errors (the close is a reset: unread data)
        (b"echo", "fin"),  # waits in fd_read: sees the end of input and exits by itself
    ]
    took: dict[str, float] = {}
    async with serving(hostile) as run:  # the defaults: no --timeout

        async def client(cmd: bytes, how: str) -> None:
            s = await run.connect()
            await s.send(cmd)
            conn = await _conn_of(run, s)
            await anyio.sleep(0.3)  # let it get going
            assert conn.outcome is None
            if how == "rst":
                s.extra(SocketAttribute.raw_socket).setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
            await s.aclose()
            t0 = time.monotonic()
            with anyio.fail_after(5):
                while conn.id in run.server.connections:
                    await anyio.sleep(0.01)
            took[f"{cmd.decode()}/{how}"] = time.monotonic() - t0

        async with anyio.create_task_group() as tg:
            for cmd, how in cases:
                tg.start_soon(client, cmd, how)
        assert not run.server.connections
    print(
        f"\n{sniffio.current_async_library()}: stopped after the client went, in s: "
        + ", ".join(f"{k} {v:.2f}" for k, v in took.items())
    )
    assert len(took) == len(cases) and max(took.values()) < 2.0, took
    assert caplog.text.count("client gone in") == 5  # all but the echo, which exited


@pytest.mark.anyio
async def test_idle_connections_are_limited_and_timed_out(hostile: Path) -> None:
    """Slowloris: 30 connections that send nothing hold at most --max-connections slots, each for at
    most --idle-timeout, and a real client is still answered."""
    async with serving(hostile, idle_timeout=0.4, max_connections=10) as run:
        idle = [await run.connect() for _ in range(30)]
        most = 0
        t0 = time.monotonic()
        with anyio.fail_after(6):
            while run.server.stats.get("served") < 30:
                most = max(most, len(run.server.connections))
                await anyio.sleep(0.01)
        assert most <= 10
        assert time.monotonic() - t0 < 0.4 * 3 + 1.5  # three rounds of ten
        for s in idle:
            assert await read_all(s) == b""  # closed by the server
            await s.aclose()
        assert await run.exchange(b"echo after\n") == b"echo after\n"


def test_serve_stdin_defaults_limit_idle_time_and_connections(tmp_path: Path, hostile: Path) -> None:
    assert ServeOptions("m").idle_timeout == 30.0 and ServeOptions("m").eof_idle_timeout == 1.0
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = min(512, connections_that_fit(ServeOptions("m"), hard))  # 512 unless the hard limit is low
    with cli_server(tmp_path, "--port", "0", "--workers", "2", str(hostile)) as proc:
        line = proc.wait_for(r"limits per worker: .*").group(0)
    assert f"{expected} connections" in line
    assert "idle timeout 30s (1s once the client has closed its side)" in line


@pytest.mark.anyio
async def test_an_http_request_whose_client_has_gone_is_stopped(hostile: Path) -> None:
    async with serving(hostile, http=True) as run:
        s = await run.connect()
        await s.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nspin")
        conn = await _conn_of(run, s)
        await anyio.sleep(0.3)
        await s.aclose()
        t0 = time.monotonic()
        with anyio.fail_after(5):
            while conn.id in run.server.connections:
                await anyio.sleep(0.01)
        assert time.monotonic() - t0 < 2.0
        assert conn.outcome is not None and conn.outcome.error == "client gone"


# ---- 5: running out of descriptors --------------------------------------------------------------


def _files_dir(tmp_path: Path) -> Path:
    d = tmp_path / "files"
    d.mkdir()
    (d / "f").write_text("opened again and again")
    return d


def _ask(port: int, data: bytes, timeout: float = 2.0) -> bytes:
    """One request and its answer; b"" or the error's name when the server refuses the connection."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(data)
            return s.recv(100)
    except ConnectionError as exc:
        return type(exc).__name__.encode()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_guest_holding_many_files_leaves_room_for_other_clients(
    tmp_path: Path, hostile: Path, backend: str
) -> None:
    """Defaults under a descriptor limit of 256 (hard 512): the server raises it to 512 and fits the
    connections to it (each may hold 64 files of its own), so guests that open all they can never
    starve the process, and another client is answered at once."""
    files = _files_dir(tmp_path)
    args = ("--port", "0", "--workers", "1", "--backend", backend, "--dir", str(files), str(hostile))
    with cli_server(tmp_path, *args, nofile=(256, 512)) as proc:
        assert "descriptor limit (RLIMIT_NOFILE) raised from 256 to 512" in proc.text()
        assert re.search(
            r"limits per worker: 6 connections .*open files per instance 64, descriptors 512", proc.text()
        )
        holders = []
        for i in range(5):
            s = socket.create_connection(("127.0.0.1", proc.port), timeout=5)
            s.sendall(b"open")
            assert struct.unpack("<II", read_n(s, 8)) == (64, ERRNO_MFILE)  # the guest's own cap
            holders.append(s)
            if i == 0:
                t0 = time.monotonic()
                assert _ask(proc.port, b"next") == b"next"
                assert time.monotonic() - t0 < 2.0
        fds = proc.open_fds()
        assert 5 * 64 < fds < 512 - 64
        for s in holders:
            s.sendall(b"still here")
            assert read_n(s, 10) == b"still here"
            s.close()
        assert "accept failed" not in proc.text()
    print(f"\n{backend}: {fds} descriptors open with five guests holding 64 files each (limit 512)")


@pytest.mark.parametrize("backend", BACKENDS)
def test_accept_survives_running_out_of_descriptors(tmp_path: Path, hostile: Path, backend: str) -> None:
    """Limits that do not fit (warned at startup) let one guest take every descriptor: new clients
    are refused at once rather than left waiting, the failure is logged once, the running
    connection is served on, and accepting resumes as soon as descriptors are free."""
    files = _files_dir(tmp_path)
    args: tuple[str, ...] = ("--port", "0", "--workers", "1", "--backend", backend, "--dir", str(files))
    args += ("--max-open-files", "1000", "--max-connections", "4", str(hostile))
    with cli_server(tmp_path, *args, nofile=(200, 200)) as proc:
        assert "more than the limit of 200 holds" in proc.text()
        holder = socket.create_connection(("127.0.0.1", proc.port), timeout=5)
        holder.sendall(b"open")
        count, err = struct.unpack("<II", read_n(holder, 8))
        assert count < 200 and err == ERRNO_MFILE  # the process ran out, not the guest's cap
        assert proc.open_fds() == 200
        t0 = time.monotonic()
        for _ in range(5):  # over about a second
            t = time.monotonic()
            assert _ask(proc.port, b"anyone?") in (b"", b"ConnectionResetError")
            assert time.monotonic() - t < 2.0
            time.sleep(0.2)
        assert time.monotonic() - t0 < 5.0
        holder.sendall(b"still here")
        assert read_n(holder, 10) == b"still here"
        holder.close()
        t0 = time.monotonic()
        assert _ask(proc.port, b"back") == b"back"
        assert time.monotonic() - t0 < 2.0
        proc.wait_for("accepting again after")
        text = proc.text()
    assert text.count("accept failed") == 1
    assert re.search(r"accept failed: Too many open files .*limit 200", text)


# ---- 9: HTTP framing ----------------------------------------------------------------------------

POST = b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (POST + b"Content-Length: \xb2\r\n\r\nab", 400),  # superscript two: str.isdigit() says yes
        (POST + "Content-Length: ٣\r\n\r\nabc".encode(), 400),  # an Arabic-Indic three, in UTF-8
        (POST + b"Content-Length: " + b"1" * 5000 + b"\r\n\r\n", 413),
        (POST + b"Content-Length: " + b"0" * 5000 + b"5\r\n\r\nhello", 200),  # leading zeros are still 5
        (POST + b"Content-Length: 1" + b"0" * 30 + b"\r\n\r\n", 413),
        (POST + b"Content-Length: 1001\r\n\r\n", 413),  # over --max-body
        (POST + b"Content-Length: +5\r\n\r\nhello", 400),
        (POST + b"Content-Length: 5, 6\r\n\r\nhello", 400),
        (CHUNKED + b"4\r\nabcd\r\nzz\r\nxx\r\n0\r\n\r\n", 400),  # a bad chunk size after a good chunk
        (CHUNKED + b"4\r\nabcdXX2\r\nef\r\n0\r\n\r\n", 400),  # no CRLF after the chunk
        (CHUNKED + b"f" * 40 + b"\r\nxx\r\n", 413),
        (
            CHUNKED + b"258\r\n" + b"a" * 600 + b"\r\n258\r\n" + b"b" * 600 + b"\r\n0\r\n\r\n",
            413,
        ),  # 1200 > 1000
        (CHUNKED + b"4\r\nabcd\r\n0\r\n\r\n", 200),
    ],
)
async def test_http_framing_errors_are_400_or_413(
    tmp_path: Path, request_bytes: bytes, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The CGI guest writes its response head before it reads the body; a framing error found in the
    body is still answered 400 or 413 (the response is held back while the body is read), never a
    200 over a cut-short body, an empty answer or a traceback in the log."""
    caplog.set_level(logging.DEBUG, "asyncwasm.serve")
    cgi = guest_file(tmp_path, CGI, "cgi.wasm")
    async with serving(cgi, http=True, max_body=1000) as run:
        with anyio.fail_after(5):
            async with await run.connect() as s:
                await s.send(request_bytes)
                answer = await read_all(s)
        await run.wait_idle()
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    if status == 200:
        assert answer.endswith((b"hello\r\n0\r\n\r\n", b"abcd\r\n0\r\n\r\n")), answer[-60:]  # the whole body
    assert not [r for r in caplog.records if r.exc_info or "internal error" in r.getMessage()]
