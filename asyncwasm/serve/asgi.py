"""A CGI-style WASI command as an ASGI application: ``WasmApp``.

    from asyncwasm.serve.asgi import WasmApp
    app = WasmApp("hello_cgi.wasm", fuel=50_000_000, timeout=2.0)   # uvicorn module:app

The contract is ``serve-stdin --http``'s (``cgi.py``): each request runs a fresh instance of the
module, compiled once, with the request's CGI meta-variables as its environment, the request body
streamed to its stdin as the server receives it, and its stdout, a CGI header block then the body,
streamed out as ``http.response.start`` and ``http.response.body`` events while it runs. The limits
(fuel, wall clock, memory, tables, open files, request body) are per request, in a Store of its
own. It runs wherever ASGI does: uvicorn (asyncio), hypercorn (asyncio or trio), mounted in
Starlette or FastAPI (``Mount("/tools", app=WasmApp(...))``: the mount point is SCRIPT_NAME, the
rest of the path PATH_INFO).

Answers of its own, before the program's response head: 413 for a body over ``max_body``, 500 when
the program traps, 504 when it runs past ``timeout``, 502 when it exits without a valid CGI header
block. After the head a failure cannot change the status: the app raises ``ResponseCutShort``, so
that the server closes the connection instead of ending the body as if it were complete.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import anyio
import anyio.abc

from wasi_async import CommandResult, Errno, Preopen, WasiError, run_command

from .. import CompiledModule, Interrupted, Store
from ..store import DEFAULT_TABLE_ELEMENTS
from .cgi import SERVER_NAME, CgiError, CgiHeadReader, cgi_environ
from .config import DEFAULT_MAX_BODY, DEFAULT_MAX_OPEN_FILES

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("asyncwasm.serve.asgi")
STDERR_LINE_MAX = 2000


class ResponseCutShort(Exception):
    """The program failed after its response had started: the response cannot be completed."""


class _Body(anyio.abc.ByteReceiveStream):
    """The request body as the guest's stdin: ``http.request`` events, pulled as the guest reads.

    Over ``max_body`` bytes, or a client gone in the middle, is EIO to the guest (never a plain end
    of file) and noted in ``broken``."""

    def __init__(self, receive: Receive, max_body: int | None) -> None:
        self._receive = receive
        self.max_body = max_body
        self.total = 0
        self.done = False
        self.broken: str | None = None
        self.broken_status = 400
        self._pending = b""

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while not self._pending:
            if self.done:
                if self.broken is not None:
                    raise WasiError(Errno.IO, f"request body: {self.broken}")
                raise anyio.EndOfStream
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.done, self.broken = True, "the client went away in the middle of the body"
                continue
            data = bytes(message.get("body", b""))
            self.total += len(data)
            self.done = not message.get("more_body", False)
            if self.max_body and self.total > self.max_body:
                self.done, self.broken = True, f"request body of more than {self.max_body} bytes (the limit)"
                self.broken_status = 413
                continue
            self._pending = data
        data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data

    async def aclose(self) -> None:
        return None


class _Response(anyio.abc.ByteSendStream):
    """The guest's stdout: its CGI header block becomes ``http.response.start``, the rest body events."""

    def __init__(self, send: Send, head_only: bool, plain: bytes | None = None) -> None:
        self._send = send
        self.reader = CgiHeadReader()
        self.plain = plain  # not CGI: the whole output is the body, of this Content-Type
        self.started = False
        self.invalid: str | None = None
        self.gone = False
        self.length: int | None = None
        self.sent = 0
        self.no_body = head_only

    async def _emit(self, message: Message) -> None:
        try:
            await self._send(message)
        except Exception as exc:  # noqa: BLE001 - the server's way to say the client is gone varies
            self.gone = True
            raise anyio.BrokenResourceError from exc

    async def send(self, item: bytes) -> None:
        if self.invalid is not None or self.gone:
            raise anyio.BrokenResourceError
        if self.started:
            await self._body(item)
            return
        if self.plain is not None:
            await self.start_plain()
            await self._body(item)
            return
        try:
            got = self.reader.feed(item)
        except CgiError as exc:
            self.invalid = str(exc)
            raise anyio.BrokenResourceError from None
        if got is None:
            return
        head, rest = got
        self.length = head.length
        self.no_body = self.no_body or head.bodiless
        headers = [(b"server", SERVER_NAME.encode())]
        headers += [(k.lower().encode("ascii"), v.encode("latin-1")) for k, v in head.headers]
        self.started = True
        await self._emit({"type": "http.response.start", "status": head.status, "headers": headers})
        if rest:
            await self._body(rest)

    async def start_plain(self) -> None:
        """Start a 200 response of the ``plain`` Content-Type (a program that is not CGI)."""
        self.started = True
        headers = [(b"server", SERVER_NAME.encode()), (b"content-type", self.plain or b"")]
        await self._emit({"type": "http.response.start", "status": 200, "headers": headers})

    async def _body(self, item: bytes) -> None:
        if self.no_body:
            return
        if self.length is not None:
            item = item[: max(self.length - self.sent, 0)]
        if item:
            self.sent += len(item)
            await self._emit({"type": "http.response.body", "body": item, "more_body": True})

    @property
    def complete(self) -> bool:
        return self.length is None or self.no_body or self.sent >= self.length

    async def finish(self) -> None:
        await self._emit({"type": "http.response.body", "body": b"", "more_body": False})

    async def send_eof(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class _StderrLog(anyio.abc.ByteSendStream):
    """The guest's stderr, a line at a time, to the ``asyncwasm.serve.asgi`` log (bounded lines)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self._partial = bytearray()

    async def send(self, item: bytes) -> None:
        self._partial += item
        while (nl := self._partial.find(b"\n")) >= 0:
            self._emit(bytes(self._partial[:nl]))
            del self._partial[: nl + 1]
        if len(self._partial) > STDERR_LINE_MAX:
            self.flush()

    def _emit(self, line: bytes) -> None:
        log.info("%s stderr: %s", self.tag, line[:STDERR_LINE_MAX].decode("utf-8", "replace").rstrip("\r"))

    def flush(self) -> None:
        if self._partial:
            self._emit(bytes(self._partial))
            self._partial.clear()

    async def send_eof(self) -> None:
        self.flush()

    async def aclose(self) -> None:
        self.flush()


def _error(status: int, message: str) -> tuple[Message, Message]:
    reasons = {
        413: "Content Too Large",
        500: "Internal Server Error",
        502: "Bad Gateway",
        504: "Gateway Timeout",
    }
    body = f"{status} {reasons.get(status, 'Error')}: {message}\n".encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"server", SERVER_NAME.encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": body, "more_body": False}


class WasmApp:
    """An ASGI application that answers every HTTP request with a fresh instance of a CGI program.

    ``module``: a compiled ``asyncwasm.Module``, Wasm bytes, or a file path (compiled once, here).
    ``args``: the guest's arguments after argv[0] (the module's name). ``env``: variables every
    request gets beneath its CGI meta-variables. ``preopens``: ``(host_dir, guest_path)`` pairs or
    ``Preopen``s granted to every instance. Limits per request: ``fuel`` (units), ``timeout``
    (seconds of wall time), ``max_memory`` (bytes of linear memory), ``max_table_elements``,
    ``max_open_files`` (descriptors the guest opens itself; 64 by default) and ``max_body``
    (request body bytes, 16 MiB by default; None for no limit). The guest's stderr goes to the
    ``asyncwasm.serve.asgi`` log, a line at a time.

    ``cgi=False`` serves any WASI command instead: its whole stdout is the body of a 200 response
    of ``content_type``, started at its first write (or when it exits 0 having written nothing).
    ``on_result``, if given, is called with each request's ``wasi_async.CommandResult`` (exit
    status, trap, fuel used, scheduler statistics) once its instance has ended.

    Raises ``WasmError`` at construction when the module cannot be compiled, and ``NotACommand``
    (at the first request) when it exports no ``_start``.
    """

    def __init__(
        self,
        module: CompiledModule | bytes | str | os.PathLike[str],
        *,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        preopens: Sequence[Preopen | tuple[str | os.PathLike[str], str]] = (),
        fuel: int | None = None,
        timeout: float | None = None,
        max_memory: int | None = None,
        max_table_elements: int | None = None,
        max_open_files: int | None = DEFAULT_MAX_OPEN_FILES,
        max_body: int | None = DEFAULT_MAX_BODY,
        cgi: bool = True,
        content_type: str = "application/octet-stream",
        on_result: Callable[[CommandResult], None] | None = None,
    ) -> None:
        if isinstance(module, CompiledModule):
            self.module = module
        elif isinstance(module, bytes | bytearray):
            self.module = CompiledModule(bytes(module))
        else:
            self.module = CompiledModule.from_file(os.fspath(module))
        self.argv = [self.module.name, *args]
        self.env = dict(env or {})
        self.preopens = list(preopens)
        self.fuel = fuel
        self.timeout = timeout
        self.max_memory_pages = None if max_memory is None else max_memory // 65536
        self.max_table_elements = DEFAULT_TABLE_ELEMENTS if max_table_elements is None else max_table_elements
        self.max_open_files = max_open_files
        self.max_body = max_body
        self.plain = None if cgi else content_type.encode("latin-1")
        self.on_result = on_result

    def store(self) -> Store:
        """A fresh Store with the per-request limits."""
        return Store(
            fuel=self.fuel,
            timeout=self.timeout,
            max_memory_pages=self.max_memory_pages,
            max_table_elements_total=self.max_table_elements,
        )

    def environ(self, scope: Scope) -> dict[str, str]:
        """The CGI meta-variables of an ASGI HTTP request."""
        root = scope.get("root_path", "") or ""
        path = scope.get("path", "/")
        path_info = path[len(root) :] if root and path.startswith(root) else path
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        raw = scope.get("raw_path") or path.encode("utf-8", "surrogateescape")
        uri = bytes(raw).decode("latin-1") + (f"?{query}" if query else "")
        headers = [
            (bytes(k).decode("latin-1").lower(), bytes(v).decode("latin-1"))
            for k, v in scope.get("headers", ())
        ]
        lengths = [v for k, v in headers if k == "content-length"]
        client, server = scope.get("client"), scope.get("server")
        return cgi_environ(
            method=scope.get("method", "GET"),
            path_info=path_info,
            query=query,
            request_uri=uri,
            protocol=f"HTTP/{scope.get('http_version', '1.1')}",
            headers=headers,
            base=self.env,
            content_length=int(lengths[0]) if lengths and lengths[0].isdigit() else None,
            remote=(str(client[0]), int(client[1])) if client else None,
            local=(str(server[0]), int(server[1] or 0)) if server else None,
            script_name=root,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"WasmApp serves HTTP, not {scope['type']!r}")
        body = _Body(receive, self.max_body)
        response = _Response(send, head_only=scope.get("method") == "HEAD", plain=self.plain)
        stderr = _StderrLog(f"[{scope.get('method')} {scope.get('path')}]")
        result = await run_command(
            self.module,
            self.argv,
            env=self.environ(scope),
            preopens=self.preopens,
            stdin=body,
            stdout=response,
            stderr=stderr,
            store=self.store(),
            max_open_files=self.max_open_files,
        )
        stderr.flush()
        if self.on_result is not None:
            self.on_result(result)
        if response.gone:
            return
        failure = self._failure(result, body, response)
        if failure is None and not response.started and self.plain is not None and result.exit_code == 0:
            await response.start_plain()  # a command that wrote nothing: an empty body
        if not response.started:
            if failure is None and result.exit_code:
                failure = 502, f"the program exited with status {result.exit_code} before sending a response"
            start, end = _error(*(failure or (502, "the program exited without a complete CGI response")))
            await send(start)
            await send(end)
        elif failure is not None or not response.complete:
            raise ResponseCutShort(
                failure[1] if failure else "the program wrote less than its Content-Length"
            )
        else:
            await response.finish()

    @staticmethod
    def _failure(result: Any, body: _Body, response: _Response) -> tuple[int, str] | None:
        if body.broken is not None:
            return body.broken_status, body.broken
        if response.invalid is not None:
            return 502, f"the program sent an invalid CGI response ({response.invalid})"
        if isinstance(result.trap, Interrupted):
            return 504, "the program did not answer in time"
        if result.trap is not None:
            return 500, f"the program failed: {result.trap.message}"
        return None

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


__all__ = ["ResponseCutShort", "WasmApp"]
