"""Helpers for the serve-stdin tests: an in-process server on a real 127.0.0.1 socket, and clients."""

from __future__ import annotations

import os
import re
import resource
import select
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from wat import wat

import asyncwasm
from asyncwasm.serve.config import ServeOptions
from asyncwasm.serve.connection import initialise
from asyncwasm.serve.net import Endpoint, listener_from_sockets
from asyncwasm.serve.server import Server
from wasi_async import Preopen

_modules: dict[bytes, asyncwasm.Module] = {}


def guest_file(tmp_path: Path, text_or_bytes: str | bytes, name: str = "guest.wasm") -> Path:
    data = wat(text_or_bytes) if isinstance(text_or_bytes, str) else text_or_bytes
    path = tmp_path / name
    path.write_bytes(data)
    return path


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclass
class Running:
    server: Server
    port: int

    async def connect(self) -> anyio.abc.SocketStream:
        return await anyio.connect_tcp("127.0.0.1", self.port)

    async def exchange(self, data: bytes, *, timeout: float = 10.0) -> bytes:
        """Send ``data``, half-close, and read the answer until the server closes."""
        with anyio.fail_after(timeout):
            async with await self.connect() as s:
                if data:
                    await s.send(data)
                await s.send_eof()
                return await read_all(s)

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Until no connection is open on the server (its bookkeeping is the leak check)."""
        with anyio.fail_after(timeout):
            while self.server.connections:
                await anyio.sleep(0.01)


async def read_all(s: anyio.abc.ByteReceiveStream) -> bytes:
    chunks = []
    try:
        while True:
            chunks.append(await s.receive())
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        pass
    return b"".join(chunks)


async def read_exactly(s: anyio.abc.ByteReceiveStream, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        buf += await s.receive(n - len(buf))
    return buf


@asynccontextmanager
async def serving(wasm_path: Path, *, init: str | None = None, **options: Any) -> AsyncIterator[Running]:
    """Run a server for ``wasm_path`` in this event loop; stop it (and wait for it) on the way out.

    ``init``: as ``serve-stdin --init``, initialise once and start every connection from the snapshot."""
    data = wasm_path.read_bytes()
    module = _modules.get(data)
    if module is None:
        module = _modules[data] = asyncwasm.Module(data, name=wasm_path.stem)
    opts = ServeOptions(module_path=str(wasm_path), **options)
    snapshot = None
    if init is not None:
        preopens = [Preopen(host=h, guest=g) for h, g in opts.preopens]
        snapshot = await initialise(module, opts, [wasm_path.name, *opts.args], preopens, init)
    endpoint = Endpoint(host="127.0.0.1", port=0)
    sock = endpoint.tcp_socket(reuse_port=False)
    server = Server(opts, module, snapshot=snapshot)
    listener = await listener_from_sockets([sock])
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, listener)
        await server.ready.wait()
        try:
            yield Running(server, endpoint.port)
        finally:
            server.shutdown(force=True)
            with anyio.fail_after(10):
                while server.connections:
                    await anyio.sleep(0.01)


# ---- the command line as a real process (for what only a whole process shows: memory, descriptors)

ROOT = Path(__file__).resolve().parent.parent


class CliServer:
    """A ``python -m asyncwasm serve-stdin`` process and its log."""

    def __init__(self, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.popen = popen
        self.log = log
        self.port = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.text())
            if m:
                return m
            time.sleep(0.02)
        raise AssertionError(f"{pattern!r} not in the log:\n{self.text()}")

    def status(self, field: str) -> int:
        """A /proc/PID/status field in KiB (VmHWM is the peak resident set, VmRSS the current one)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))


@contextmanager
def cli_server(tmp_path: Path, *args: str, nofile: tuple[int, int] | None = None) -> Iterator[CliServer]:
    """Start serve-stdin (optionally under an RLIMIT_NOFILE of (soft, hard)) and wait until it listens."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    log = tmp_path / f"server-{time.monotonic_ns()}.log"

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

    with log.open("wb") as errf:
        popen = subprocess.Popen(
            [sys.executable, "-m", "asyncwasm", "serve-stdin", *args],
            stdout=subprocess.DEVNULL,
            stderr=errf,
            env=env,
            cwd=tmp_path,
            preexec_fn=limit,
        )
    proc = CliServer(popen, log)
    try:
        proc.port = int(proc.wait_for(r"listening on 127\.0\.0\.1:(\d+)", timeout=30).group(1))
        yield proc
    finally:
        if popen.poll() is None:
            popen.kill()
        popen.wait()


def push(port: int, first: bytes, total: int, seconds: float) -> tuple[int, bytes]:
    """Send ``first``, then zeros up to ``total`` bytes or for ``seconds``, whichever ends first; then
    half-close and collect the answer (for at most a second). Returns (bytes sent, answer)."""
    block = bytes(1 << 20)
    sent = 0
    deadline = time.monotonic() + seconds
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(first)
        s.setblocking(False)
        while sent < total:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            _, writable, _ = select.select([], [s], [], left)
            if writable:
                try:
                    sent += s.send(block[: total - sent])
                except BlockingIOError:
                    pass
        answer = b""
        if sent >= total:
            s.setblocking(True)
            s.settimeout(max(1.0, deadline - time.monotonic()))
            s.shutdown(socket.SHUT_WR)
            try:
                while chunk := s.recv(65536):
                    answer += chunk
            except OSError:
                pass
    return sent, answer
