"""``serve-stdin --http``: HTTP/1.1 in front of a WASI command, CGI style (RFC 3875).

Per request: the headers become environment variables (REQUEST_METHOD, PATH_INFO, QUERY_STRING,
CONTENT_TYPE, CONTENT_LENGTH, HTTP_*), the body streams to the guest's stdin, and what the guest
writes to stdout is a CGI response (header lines, a blank line, the body) that streams to the
client, framed by the guest's Content-Length or chunked. A fresh instance per request; the
connection is kept alive between requests. Bad requests get a 4xx, guest failures a 5xx when
no response has started (after that, the connection is closed without the final chunk, so a
client can tell a cut-short body from a complete one).
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream

from wasi_async import Errno, WasiError

from .connection import Connection, ConnectionHost, CountingStream, Outcome, linger_close, log

MAX_HEAD = 16 * 1024  # request line and headers
MAX_HEADERS = 100
MAX_CGI_HEAD = 16 * 1024  # the guest's response headers
DRAIN_LIMIT = 1 << 20  # unread request body we read and drop to keep the connection usable
DRAIN_SECONDS = 2.0
MAX_LENGTH_DIGITS = 18  # a Content-Length or chunk size past this (without leading zeros) is 413 at once
HOLD_MAX = 64 * 1024  # response bytes held back while the request body is still being read
SERVER_NAME = "asyncwasm"

REASONS = {
    100: "Continue",
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    417: "Expectation Failed",
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    418: "I'm a teapot",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_REQUEST_LINE = re.compile(rb"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP/(\d)\.(\d)$")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_DIGITS = re.compile(r"[0-9]+", re.ASCII)  # not str.isdigit: that takes any Unicode digit
_HEX = re.compile(rb"[0-9a-fA-F]+")
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
}

_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


class BadRequest(Exception):
    """The client sent something that is not acceptable HTTP: answer ``status`` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(
    status: int,
    message: str,
    *,
    retry_after: int | None = None,
    keep_alive: bool = False,
    head_only: bool = False,
) -> bytes:
    """A complete plain-text error response."""
    body = f"{status} {REASONS.get(status, 'Error')}: {message}\n".encode()
    lines = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
        f"Server: {SERVER_NAME}",
        f"Date: {_http_date()}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: keep-alive" if keep_alive else "Connection: close",
    ]
    if retry_after is not None:
        lines.append(f"Retry-After: {retry_after}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


class Request:
    """One parsed request head."""

    def __init__(
        self, method: str, target: str, version: tuple[int, int], headers: list[tuple[str, str]]
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # names lower-cased, in order
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False
        self.keep_alive = version >= (1, 1)

    def get(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


def parse_head(raw: bytes) -> Request:
    """Parse a request line and headers (without the final blank line); BadRequest when malformed."""
    lines = raw.split(b"\r\n")
    m = _REQUEST_LINE.match(lines[0])
    if not m:
        raise BadRequest(400, "malformed request line")
    major, minor = int(m.group(3)), int(m.group(4))
    if major != 1:
        raise BadRequest(505, "only HTTP/1.0 and HTTP/1.1 are served")
    headers: list[tuple[str, str]] = []
    if len(lines) - 1 > MAX_HEADERS:
        raise BadRequest(431, f"more than {MAX_HEADERS} header fields")
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name):
            raise BadRequest(
                400,
                "malformed header field"
                if line[:1] not in (b" ", b"\t")
                else "obsolete line folding is not accepted",
            )
        try:
            text = value.strip(b" \t").decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes everything
            raise BadRequest(400, "undecodable header value") from None
        if any(c in text for c in "\r\n\0"):
            raise BadRequest(400, "control characters in a header value")
        headers.append((name.decode("ascii").lower(), text))
    req = Request(m.group(1).decode("ascii"), m.group(2).decode("latin-1"), (major, minor), headers)
    _framing(req)
    return req


def _framing(req: Request) -> None:
    """Body framing and connection options, refusing what could smuggle a second request."""
    te = req.get_all("transfer-encoding")
    cl = req.get_all("content-length")
    if te:
        codings = [c.strip().lower() for v in te for c in v.split(",") if c.strip()]
        if req.version < (1, 1):
            raise BadRequest(400, "Transfer-Encoding in an HTTP/1.0 request")
        if codings != ["chunked"]:
            raise BadRequest(501, f"unsupported transfer coding {', '.join(codings)!r} (only chunked)")
        if cl:
            raise BadRequest(400, "both Content-Length and Transfer-Encoding")
        req.chunked = True
    elif cl:
        lengths = {parse_length(v.strip(" \t"), "Content-Length") for item in cl for v in item.split(",")}
        if len(lengths) != 1:
            raise BadRequest(400, "conflicting Content-Length values")
        req.content_length = lengths.pop()
    if req.version >= (1, 1) and req.get("host") is None:
        raise BadRequest(400, "missing Host header")
    tokens = {t.strip().lower() for v in req.get_all("connection") for t in v.split(",")}
    if "close" in tokens:
        req.keep_alive = False
    elif req.version < (1, 1):
        req.keep_alive = "keep-alive" in tokens
    expect = req.get("expect")
    if expect is not None:
        if expect.lower() != "100-continue":
            raise BadRequest(417, f"unsupported Expect: {expect}")
        req.expect_continue = req.version >= (1, 1)


def parse_length(text: str, what: str) -> int:
    """A decimal length of ASCII digits: 400 for anything else, 413 when it is too large for any body."""
    if not _DIGITS.fullmatch(text):
        raise BadRequest(400, f"invalid {what}")
    if len(text.lstrip("0")) > MAX_LENGTH_DIGITS:
        raise BadRequest(413, f"{what} too large")
    return int(text.lstrip("0") or "0")  # (int() refuses strings of over 4300 digits, zeros or not)


def check_body_size(req: Request, max_body: int | None) -> None:
    """413 for a declared body over --max-body (a chunked one is counted as it arrives)."""
    if max_body and req.content_length is not None and req.content_length > max_body:
        raise BadRequest(
            413, f"request body of {req.content_length} bytes, more than the limit of {max_body}"
        )


def cgi_environ(req: Request, base: dict[str, str], stream: anyio.abc.SocketStream) -> dict[str, str]:
    """The CGI meta-variables of a request (RFC 3875 section 4.1), over the server's --env."""
    target = req.target
    if target.startswith(("http://", "https://")):  # absolute-form: keep the path
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    path, _, query = target.partition("?")
    env = dict(base)
    env.update(
        {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": SERVER_NAME,
            "SERVER_PROTOCOL": f"HTTP/{req.version[0]}.{req.version[1]}",
            "REQUEST_METHOD": req.method,
            "REQUEST_URI": req.target,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, errors="surrogateescape"),
            "QUERY_STRING": query,
        }
    )
    if req.content_length is not None:
        env["CONTENT_LENGTH"] = str(req.content_length)
    ctype = req.get("content-type")
    if ctype is not None:
        env["CONTENT_TYPE"] = ctype
    _addresses(env, req, stream)
    seen: dict[str, str] = {}
    for name, value in req.headers:
        if name in ("content-type", "content-length", "proxy"):  # Proxy: httpoxy
            continue
        key = "HTTP_" + name.upper().replace("-", "_")
        sep = "; " if name == "cookie" else ", "
        seen[key] = f"{seen[key]}{sep}{value}" if key in seen else value
    env.update(seen)
    return env


def _addresses(env: dict[str, str], req: Request, stream: anyio.abc.SocketStream) -> None:
    try:
        remote = stream.extra(SocketAttribute.remote_address)
        local = stream.extra(SocketAttribute.local_address)
    except anyio.TypedAttributeLookupError:
        remote = local = None
    if isinstance(remote, tuple):
        env["REMOTE_ADDR"], env["REMOTE_PORT"] = str(remote[0]), str(remote[1])
    if isinstance(local, tuple):
        env["SERVER_PORT"] = str(local[1])
        env["SERVER_NAME"] = str(local[0])
    host = req.get("host")
    if host:
        env["SERVER_NAME"] = host.rsplit(":", 1)[0] if not host.endswith("]") else host


# ---- the request body as the guest's stdin ------------------------------------------------------


class RequestBody(anyio.abc.ByteReceiveStream):
    """The request body, fixed-length or chunked, read from the connection as the guest asks for it.

    A framing error (a malformed chunk, a body over ``max_body``, the client closing early) is
    kept in ``broken`` and ``broken_status`` (400, 413, 431) and reaches the guest as EIO, so
    that it never takes a cut-short body for the whole one."""

    def __init__(
        self,
        reader: BufferedByteReceiveStream,
        req: Request,
        on_first_read: Any = None,
        *,
        max_body: int | None = None,
    ) -> None:
        self.reader = reader
        self.remaining = req.content_length or 0
        self.chunked = req.chunked
        self.done = not self.chunked and self.remaining == 0
        self.broken: str | None = None  # why the body could not be read to its end
        self.broken_status = 400
        self.max_body = max_body
        self.total = 0  # body bytes so far (chunked: counted against max_body)
        self.on_complete: Any = None  # awaited once the body has been read to its end, cleanly
        self._on_first_read = on_first_read
        self._after_chunk = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self._on_first_read is not None:
            first, self._on_first_read = self._on_first_read, None
            await first()
        try:
            return await self._read(max_bytes)
        except anyio.EndOfStream:
            if self.broken is not None:
                raise WasiError(Errno.IO, f"request body: {self.broken}") from None
            raise

    async def _read(self, max_bytes: int) -> bytes:
        while not self.done:
            if self.chunked and self.remaining == 0:
                await self._next_chunk()
                continue
            try:
                data = await self.reader.receive(min(max_bytes, self.remaining))
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                self._break(BadRequest(400, "the client closed the connection in the middle of the body"))
                break
            self.remaining -= len(data)
            self.total += len(data)
            if not self.chunked and self.remaining == 0:
                await self._complete()
            return data
        raise anyio.EndOfStream

    def _break(self, exc: BadRequest) -> None:
        self.broken, self.broken_status, self.done = exc.message, exc.status, True

    async def _complete(self) -> None:
        self.done = True
        if self.on_complete is not None:
            complete, self.on_complete = self.on_complete, None
            await complete()

    async def _next_chunk(self) -> None:
        try:
            if self._after_chunk:
                if await self.reader.receive_exactly(2) != b"\r\n":
                    raise BadRequest(400, "chunk not followed by CRLF")
            line = await self.reader.receive_until(b"\r\n", 1024)
            size_text = line.split(b";", 1)[0].strip(b" \t")
            if not _HEX.fullmatch(size_text):
                raise BadRequest(400, "malformed chunk size")
            if len(size_text.lstrip(b"0")) > MAX_LENGTH_DIGITS - 3:  # 15 hex digits: 2**60
                raise BadRequest(413, "chunk size too large")
            size = int(size_text, 16)
            if self.max_body and self.total + size > self.max_body:
                raise BadRequest(413, f"request body of more than {self.max_body} bytes (the limit)")
            self._after_chunk = True
            if size == 0:
                trailers = 0
                while await self.reader.receive_until(b"\r\n", 8192):  # trailer fields, ignored
                    trailers += 1
                    if trailers > MAX_HEADERS:
                        raise BadRequest(431, "too many trailer fields")
                await self._complete()
            self.remaining = size
        except BadRequest as exc:
            self._break(exc)
        except (anyio.IncompleteRead, anyio.DelimiterNotFound, anyio.EndOfStream, anyio.BrokenResourceError):
            self._break(BadRequest(400, "malformed or truncated chunked body"))

    async def drain(self, limit: int) -> bool:
        """Read and drop the rest of the body (up to ``limit`` bytes); whether it ended cleanly."""
        dropped = 0
        try:
            while dropped <= limit:
                dropped += len(await self._read(65536))
        except anyio.EndOfStream:
            return self.broken is None
        return False

    async def aclose(self) -> None:
        return None


# ---- the guest's stdout as a CGI response -------------------------------------------------------


class CgiResponse(anyio.abc.ByteSendStream):
    """Reads the CGI header block the guest writes, then streams the body with HTTP framing.

    A guest that writes a malformed header block, or more than MAX_CGI_HEAD bytes of it, gets
    EPIPE on its next write (so it stops) and the client a 502.

    While the request body is still being read, up to HOLD_MAX bytes of the response are held
    back (``hold``), so that a framing error found in the rest of the body can still be answered
    with a 400 or 413 instead of a response that began as a 200; past HOLD_MAX, or once the body
    is complete, it streams."""

    def __init__(self, stream: CountingStream, req: Request, keep_alive: bool, *, hold: bool = False) -> None:
        self.stream = stream
        self._held: bytearray | None = bytearray() if hold else None
        self.committed = False  # some of the response went out to the client
        self.req = req
        self.keep_alive = keep_alive
        self.head = bytearray()
        self.state = "head"  # -> "body" -> "done"; or "invalid"
        self.invalid: str | None = None
        self.status = 200
        self.chunked = False
        self.length: int | None = None  # the guest's Content-Length
        self.sent_body = 0
        self.no_body = req.method == "HEAD"

    @property
    def started(self) -> bool:
        """Some of the response went out: its status can no longer change."""
        return self.committed

    @property
    def head_done(self) -> bool:
        return self.state in ("body", "done")

    async def _out(self, data: bytes) -> None:
        if self._held is not None:
            self._held += data
            if len(self._held) <= HOLD_MAX:
                return
            data, self._held = bytes(self._held), None
        if data:
            self.committed = True
            await self.stream.send(data)

    async def release(self) -> None:
        """The request body is complete: what was held goes out, and the rest streams."""
        if self._held is not None:
            data, self._held = bytes(self._held), None
            await self._out(data)

    async def send(self, item: bytes) -> None:
        if self.state == "body":
            await self._body(item)
            return
        if self.state != "head":
            raise anyio.BrokenResourceError
        self.head += item
        m = _BLANK_LINE.search(self.head)
        if m is None:
            if len(self.head) > MAX_CGI_HEAD:
                self._fail(f"no end of the CGI header block in the first {MAX_CGI_HEAD} bytes")
            return
        block, rest = bytes(self.head[: m.start()]), bytes(self.head[m.end() :])
        self.head.clear()
        try:
            head = self._build_head(block)
        except ValueError as exc:
            self._fail(str(exc))
        self.state = "body"
        if rest and not self.no_body:
            await self._out(head + self._frame(rest))
        else:
            await self._out(head)

    def _fail(self, why: str) -> None:
        self.state, self.invalid = "invalid", why
        raise anyio.BrokenResourceError(why)

    def _build_head(self, block: bytes) -> bytes:
        status: int | None = None
        reason = ""
        out: list[str] = []
        location = False
        for raw in re.split(rb"\r?\n", block):
            if not raw:
                continue
            name_b, colon, value_b = raw.partition(b":")
            if not colon or not _TOKEN.match(name_b):
                raise ValueError(f"malformed CGI header line {raw[:80]!r}")
            name, value = name_b.decode("ascii"), value_b.strip(b" \t").decode("latin-1")
            low = name.lower()
            if low == "status":
                code, _, text = value.partition(" ")
                if not (len(code) == 3 and code.isdigit() and 100 <= int(code) <= 599):
                    raise ValueError(f"bad CGI Status {value!r}")
                status, reason = int(code), text.strip()
                continue
            if low in _HOP_BY_HOP:
                continue
            if low == "content-length":
                if not value.isdigit():
                    raise ValueError(f"bad Content-Length {value!r}")
                self.length = int(value)
            if low == "location":
                location = True
            out.append(f"{name}: {value}")
        if status is None:
            status = 302 if location else 200
        self.status = status
        if status in (204, 304) or 100 <= status < 200:
            self.no_body = True
            self.length = None
            out = [h for h in out if not h.lower().startswith("content-length:")]
        elif self.length is None and not self.no_body:
            if self.req.version >= (1, 1):
                self.chunked = True
                out.append("Transfer-Encoding: chunked")
            else:
                self.keep_alive = False  # the end of the body is the end of the connection
        elif self.no_body and self.length is None:
            pass
        out.append("Connection: keep-alive" if self.keep_alive else "Connection: close")
        first = f"HTTP/1.1 {status} {reason or REASONS.get(status, 'Unknown')}"
        lines = [first, f"Server: {SERVER_NAME}", f"Date: {_http_date()}", *out]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _frame(self, data: bytes) -> bytes:
        if self.length is not None:
            room = self.length - self.sent_body
            data = data[: max(room, 0)]  # bytes beyond the guest's own Content-Length are dropped
        self.sent_body += len(data)
        if self.chunked and data:
            return b"%x\r\n%s\r\n" % (len(data), data)
        return data

    async def _body(self, item: bytes) -> None:
        if self.no_body or not item:
            return
        framed = self._frame(item)
        if framed:
            await self._out(framed)

    async def finish(self, ok: bool) -> bool:
        """End the response after the guest exits; whether the connection may carry another request."""
        if self.state != "body":
            return False
        self.state = "done"
        await self.release()
        if self.no_body:
            return self.keep_alive and ok
        if self.chunked:
            if not ok:
                return False  # no last chunk: the client sees the body was cut short
            await self._out(b"0\r\n\r\n")
            return self.keep_alive
        if self.length is not None:
            return self.keep_alive and ok and self.sent_body == self.length
        return False  # delimited by the close

    async def send_eof(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def failure_status(outcome: Outcome, response: CgiResponse) -> tuple[int, str]:
    """What to answer when the guest ended without a complete CGI response head."""
    if response.invalid:
        return 502, f"the program sent an invalid CGI response ({response.invalid})"
    err = outcome.error or ""
    if err.startswith(("timeout", "idle timeout")):
        return 504, "the program did not answer in time"
    if err.startswith("cancelled"):
        return 503, "the server is shutting down"
    if err.startswith("trap"):
        return 500, "the program failed"
    if outcome.exit_code:
        return 502, f"the program exited with status {outcome.exit_code} before sending a response"
    return 502, "the program exited without sending a complete CGI response"


# ---- the connection loop ------------------------------------------------------------------------


async def serve_http_connection(server: ConnectionHost, conn: Connection, stream: CountingStream) -> None:
    """Serve requests on one connection until it closes, fails, idles or the server stops."""
    reader = BufferedByteReceiveStream(stream)
    outer = conn.scope
    while not server.stopping:
        conn.between_requests = True
        req_or_none = await _read_request(server, conn, reader, stream)
        conn.between_requests = False
        if req_or_none is None:
            return
        req = req_or_none
        conn.requests += 1
        keep = req.keep_alive and not server.stopping
        max_body = server.options.max_body
        body = RequestBody(
            reader, req, _continue_sender(stream) if req.expect_continue else None, max_body=max_body
        )
        response = CgiResponse(stream, req, keep, hold=not body.done)
        body.on_complete = response.release
        env = cgi_environ(req, server.options.env, stream)
        with anyio.CancelScope() as work:
            conn.scope = work
            outcome = await server.run_instance(conn, body, response, env)
        conn.scope = outer
        if work.cancelled_caught:
            outcome = Outcome(error=conn.stop_reason or "cancelled")
        conn.outcome = outcome if not outcome.ok or conn.outcome is None or conn.outcome.ok else conn.outcome
        if not outcome.ok:
            conn.failed_requests += 1
        again = await _complete(conn, req, body, response, outcome)
        log.debug(
            "%s %s %s -> %s (%s)", conn.tag, req.method, req.target, conn.last_status, outcome.describe()
        )
        if not again or work.cancelled_caught:
            return


def _continue_sender(stream: CountingStream) -> Any:
    async def send_continue() -> None:
        await stream.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    return send_continue


async def _read_request(
    server: ConnectionHost, conn: Connection, reader: BufferedByteReceiveStream, stream: CountingStream
) -> Request | None:
    """The next request head, or None when the client is done (or broke the protocol: then it was told)."""
    first = conn.requests == 0
    try:
        with anyio.move_on_after(server.options.keepalive_timeout):
            while True:  # empty lines before a request are allowed (RFC 9112 section 2.2)
                raw = await reader.receive_until(b"\r\n\r\n", MAX_HEAD)
                if len(raw) > MAX_HEAD:  # found, but only past the limit
                    raise anyio.DelimiterNotFound(MAX_HEAD)
                if raw.strip(b"\r\n"):
                    break
            req = parse_head(raw.lstrip(b"\r\n"))
            check_body_size(req, server.options.max_body)
            return req
        if first:
            await _send_error(stream, 408, "no request arrived in time")
        return None
    except anyio.IncompleteRead:
        if reader.buffer.strip():
            await _send_error(stream, 400, "the connection closed in the middle of a request")
        return None
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
        return None
    except anyio.DelimiterNotFound:
        conn.last_status = 431
        await _send_error(stream, 431, f"request head larger than {MAX_HEAD} bytes")
        return None
    except (BadRequest, ValueError) as exc:  # ValueError: whatever parse_head did not foresee is a 400 too
        bad = exc if isinstance(exc, BadRequest) else BadRequest(400, "malformed request head")
        conn.last_status = bad.status
        conn.outcome = Outcome(error=f"bad request: {bad.message}")
        await _send_error(stream, bad.status, bad.message)
        await _linger(stream)
        return None


async def _linger(stream: CountingStream) -> None:
    """After an error answer to a request whose body is left unread: half-close and read what the
    client still sends (bounded), so that closing does not reset the connection before the client
    has read the answer."""
    await linger_close(stream)


async def _send_error(stream: CountingStream, status: int, message: str) -> None:
    try:
        with anyio.move_on_after(2.0):
            await stream.send(error_response(status, message))
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass


async def _complete(
    conn: Connection, req: Request, body: RequestBody, response: CgiResponse, outcome: Outcome
) -> bool:
    """Finish the response after the instance; whether the connection carries on."""
    if conn.stop_reason == "client gone":
        return False  # nobody to answer
    try:
        with anyio.CancelScope(shield=True), anyio.move_on_after(DRAIN_SECONDS):
            if body.broken and not response.started:  # a framing error: the held response is dropped
                conn.last_status = body.broken_status
                if outcome.ok:
                    conn.failed_requests += 1
                conn.outcome = Outcome(error=f"bad request: {body.broken}")
                await _send_error(conn_stream(response), body.broken_status, body.broken)
                await _linger(conn_stream(response))
                return False
            if not response.started and not (outcome.ok and response.head_done):
                status, message = failure_status(outcome, response)
                conn.last_status = status
                if outcome.ok:
                    outcome.error = f"bad gateway: {message}"
                    conn.failed_requests += 1
                    conn.outcome = outcome
                await conn_stream(response).send(
                    error_response(status, message, head_only=req.method == "HEAD")
                )
                return False
            conn.last_status = response.status
            again = await response.finish(outcome.ok and body.broken is None)
            if again and not body.done:
                again = await body.drain(DRAIN_LIMIT)
            return again and body.broken is None
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        return False
    return False


def conn_stream(response: CgiResponse) -> CountingStream:
    return response.stream


__all__ = [
    "BadRequest",
    "CgiResponse",
    "Request",
    "RequestBody",
    "cgi_environ",
    "error_response",
    "failure_status",
    "parse_head",
    "serve_http_connection",
]
