"""Helpers for the serve-stdin tests: an in-process server on a real 127.0.0.1 socket, and clients."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from wat import wat

import asyncwasm
from asyncwasm.serve_net import Endpoint, listener_from_sockets
from asyncwasm.serve_server import ServeOptions, Server

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
async def serving(wasm_path: Path, **options: Any) -> AsyncIterator[Running]:
    """Run a server for ``wasm_path`` in this event loop; stop it (and wait for it) on the way out."""
    data = wasm_path.read_bytes()
    module = _modules.get(data)
    if module is None:
        module = _modules[data] = asyncwasm.Module(data, name=wasm_path.stem)
    opts = ServeOptions(module_path=str(wasm_path), **options)
    endpoint = Endpoint(host="127.0.0.1", port=0)
    sock = endpoint.tcp_socket(reuse_port=False)
    server = Server(opts, module)
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
