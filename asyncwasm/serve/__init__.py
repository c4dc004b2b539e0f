"""Serving WASI programs: the connection server behind ``asyncwasm serve-stdin`` and an ASGI adapter.

- ``config``: what a worker is told (``ServeOptions``) and counts (``Stats``)
- ``connection``: one client connection, and how an instance runs for it (``wasi_async.run_command``)
- ``http``: the ``--http`` mode, HTTP/1.1 in front of a CGI program
- ``server``: accepting connections, limits, hang-ups, shutdown
- ``net``: listening sockets, SO_REUSEPORT worker processes, signals
- ``asgi``: a CGI program as an ASGI application (``WasmApp``), for uvicorn, hypercorn, Starlette

The command line is ``asyncwasm.cli.serve``; nothing here imports it.
"""

from __future__ import annotations

from .config import ServeOptions, Stats
from .connection import Connection, Outcome
from .net import Endpoint, serve_worker
from .server import Server, run_server

__all__ = [
    "Connection",
    "Endpoint",
    "Outcome",
    "ServeOptions",
    "Server",
    "Stats",
    "run_server",
    "serve_worker",
]
