"""``serve-stdin --http``: HTTP/1.1 in front of a WASI command, CGI style (RFC 3875), on h11.

h11 (the sans-IO HTTP/1.1 implementation) parses requests and frames responses: request lines
and fields, Content-Length and chunked bodies, keep-alive, pipelining, ``100-continue``, HEAD and
HTTP/1.0. This module moves the bytes and adds what a server in front of untrusted programs and
clients needs beyond it: a request head of at most MAX_HEAD bytes and MAX_HEADERS fields (431), no
obsolete line folding and no request with both Content-Length and Transfer-Encoding (400, against
request smuggling), lengths of ASCII digits only, and anything that could never be read (more than
MAX_LENGTH_DIGITS digits, a chunk size of 16 hex digits or more) or more than ``--max-body``
answered 413.

Per request: the fields become environment variables (``cgi.cgi_environ``), the body streams to
the guest's stdin, and what the guest writes to stdout is a CGI response (``cgi.CgiHeadReader``)
that streams to the client. A fresh instance per request; h11 says whether the connection may
carry another. Bad requests get a 4xx, guest failures a 5xx when no response has started (after
that, the connection is closed without the final chunk, so a client can tell a cut-short body
from a complete one).
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from typing import Any, NoReturn
from urllib.parse import unquote

import anyio
import anyio.abc
import h11
from anyio.abc import SocketAttribute

from wasi_async import Errno, WasiError

from .cgi import SERVER_NAME, CgiError, CgiHeadReader, cgi_environ
from .connection import Connection, ConnectionHost, CountingStream, Outcome, linger_close, log

MAX_HEAD = 16 * 1024  # request line and fields
MAX_HEADERS = 100
DRAIN_LIMIT = 1 << 20  # unread request body we read and drop to keep the connection usable
DRAIN_SECONDS = 2.0
MAX_LENGTH_DIGITS = 18  # a Content-Length past this (without leading zeros) is 413 at once
MAX_CHUNK_DIGITS = 15  # hex digits of a chunk size (2**60); more is 413
HOLD_MAX = 64 * 1024  # response bytes held back while the request body is still being read

REASONS = {
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
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    417: "Expectation Failed",
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

_HEAD_END = re.compile(rb"\n\r?\n")  # where h11 ends a head: it takes bare LF line ends too
_LINE_END = re.compile(rb"\r?\n")
_DIGITS = re.compile(rb"[0-9]+")  # not str.isdigit: that takes any Unicode digit
_LONG_CHUNK = re.compile(rb"[0-9a-fA-F]{%d,}" % (MAX_CHUNK_DIGITS + 1))

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
    status: int, message: str, *, retry_after: int | None = None, head_only: bool = False
) -> bytes:
    """A complete plain-text error response that closes the connection (sent outside h11: also to a
    client that sent no request at all, or one h11 refused)."""
    reason = REASONS.get(status, "Error")
    body = f"{status} {reason}: {message}\n".encode()
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Server: {SERVER_NAME}",
        f"Date: {_http_date()}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if retry_after is not None:
        lines.append(f"Retry-After: {retry_after}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


class Request:
    """One request head, as h11 parsed it, with the checks h11 leaves to the server."""

    def __init__(self, event: h11.Request) -> None:
        self.method = event.method.decode("ascii")
        self.target = event.target.decode("latin-1")
        major, _, minor = event.http_version.partition(b".")
        self.version = (int(major), int(minor))
        self.headers = [(name.decode("ascii"), value.decode("latin-1")) for name, value in event.headers]
        if self.version[0] != 1:
            raise BadRequest(505, "only HTTP/1.0 and HTTP/1.1 are served")
        lengths = self.get_all("content-length")
        self.content_length = int(lengths[0]) if lengths else None
        self.chunked = bool(self.get_all("transfer-encoding"))
        if self.chunked and lengths:
            raise BadRequest(400, "both Content-Length and Transfer-Encoding")
        if self.chunked and self.version < (1, 1):
            raise BadRequest(400, "Transfer-Encoding in an HTTP/1.0 request")
        expect = self.get("expect")
        if expect is not None and expect.lower() != "100-continue":
            raise BadRequest(417, f"unsupported Expect: {expect}")
        tokens = {t.strip().lower() for v in self.get_all("connection") for t in v.split(",")}
        # What the client asks for; whether the connection is reused is h11's call, after the response.
        self.keep_alive = self.version >= (1, 1) and "close" not in tokens

    def get(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


def parse_length(text: bytes, what: str) -> int:
    """A decimal length of ASCII digits: 400 for anything else, 413 when it is too large for any body."""
    if not _DIGITS.fullmatch(text):
        raise BadRequest(400, f"invalid {what}")
    digits = text.lstrip(b"0")
    if len(digits) > MAX_LENGTH_DIGITS:
        raise BadRequest(413, f"{what} too large")
    return int(digits or b"0")  # (int() refuses strings of over 4300 digits, zeros or not)


def _screen_head(raw: bytes) -> bytes:
    """The head lines (without the blank line) checked for what h11 accepts but this server does not,
    Content-Length normalised; returned as the head to give h11, blank line included."""
    lines = _LINE_END.split(raw)
    if len(lines) - 1 > MAX_HEADERS:
        raise BadRequest(431, f"more than {MAX_HEADERS} header fields")
    out = [lines[0]]
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise BadRequest(400, "obsolete line folding is not accepted")
        name, colon, value = line.partition(b":")
        if colon and name.lower() == b"content-length":
            values = {parse_length(v.strip(b" \t"), "Content-Length") for v in value.split(b",")}
            if len(values) != 1:
                raise BadRequest(400, "conflicting Content-Length values")
            line = b"Content-Length: %d" % values.pop()
        out.append(line)
    return b"\r\n".join(out) + b"\r\n\r\n"


def start_request(raw: bytes) -> tuple[Request, h11.Connection]:
    """A request head (without its blank line) through h11: the Request and the h11 connection that
    will read its body and frame its response. BadRequest when it is not acceptable."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    conn.receive_data(_screen_head(raw))
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError as exc:
        raise BadRequest(exc.error_status_hint, str(exc) or "malformed request head") from None
    if not isinstance(event, h11.Request):  # pragma: no cover - a whole head always gives a Request
        raise BadRequest(400, "malformed request head")
    return Request(event), conn


def parse_head(raw: bytes) -> Request:
    """A request head (without its blank line) as a Request; BadRequest when it is not acceptable."""
    return start_request(raw)[0]


def check_body_size(req: Request, max_body: int | None) -> None:
    """413 for a declared body over --max-body (a chunked one is counted as it arrives)."""
    if max_body and req.content_length is not None and req.content_length > max_body:
        raise BadRequest(
            413, f"request body of {req.content_length} bytes, more than the limit of {max_body}"
        )


def request_environ(req: Request, base: dict[str, str], stream: anyio.abc.SocketStream) -> dict[str, str]:
    """The CGI meta-variables of a request, over the server's --env."""
    target = req.target
    if target.startswith(("http://", "https://")):  # absolute-form: keep the path
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    path, _, query = target.partition("?")
    remote: object = None
    local: object = None
    try:
        remote = stream.extra(SocketAttribute.remote_address)
        local = stream.extra(SocketAttribute.local_address)
    except anyio.TypedAttributeLookupError:
        pass
    return cgi_environ(
        method=req.method,
        path_info=unquote(path, errors="surrogateescape"),
        query=query,
        request_uri=req.target,
        protocol=f"HTTP/{req.version[0]}.{req.version[1]}",
        headers=req.headers,
        base=base,
        content_length=req.content_length,
        remote=(str(remote[0]), int(remote[1])) if isinstance(remote, tuple) else None,
        local=(str(local[0]), int(local[1])) if isinstance(local, tuple) else None,
    )


# ---- the request body as the guest's stdin ------------------------------------------------------


class RequestBody(anyio.abc.ByteReceiveStream):
    """The request body, read through h11 from the connection as the guest asks for it.

    A framing error (a malformed chunk, a body over ``max_body``, the client closing early) is kept
    in ``broken`` and ``broken_status`` (400, 413) and reaches the guest as EIO, so that it never
    takes a cut-short body for the whole one. The first read answers ``Expect: 100-continue``."""

    def __init__(
        self, h: h11.Connection, stream: CountingStream, req: Request, *, max_body: int | None = None
    ) -> None:
        self.h = h
        self.stream = stream
        self.done = not req.chunked and not req.content_length
        if self.done:  # no body: h11 ends the request at once, without reading
            end = h.next_event()
            assert isinstance(end, h11.EndOfMessage), end
        self.broken: str | None = None  # why the body could not be read to its end
        self.broken_status = 400
        self.max_body = max_body
        self.total = 0  # body bytes so far
        self.on_complete: Any = None  # awaited once the body has been read to its end, cleanly
        self._pending = b""
        # Expect: 100-continue is answered at the first read, unless the response went out before
        # (h11 forgets the client waits once a response was handed to it, held back or not).
        self.expect_continue = h.they_are_waiting_for_100_continue
        self.response: CgiResponse | None = None  # the answer to this request, once there is one

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self.expect_continue:
            self.expect_continue = False
            if not self.done and (self.response is None or not self.response.started):
                await self.stream.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self._pending:
            data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
            return data
        try:
            data = await self._read()
        except anyio.EndOfStream:
            if self.broken is not None:
                raise WasiError(Errno.IO, f"request body: {self.broken}") from None
            raise
        data, self._pending = data[:max_bytes], data[max_bytes:]
        return data

    async def _read(self) -> bytes:
        while not self.done:
            try:
                event = self.h.next_event()
            except h11.RemoteProtocolError as exc:
                self._break(self._refusal(exc))
                break
            if event is h11.NEED_DATA:
                try:
                    data = await self.stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    data = b""  # h11 then says whether the body was complete
                self.h.receive_data(data)
                continue
            if isinstance(event, h11.Data):
                self.total += len(event.data)
                if self.max_body and self.total > self.max_body:
                    self._break(
                        BadRequest(413, f"request body of more than {self.max_body} bytes (the limit)")
                    )
                    break
                if event.data:
                    return bytes(event.data)
                continue
            if isinstance(event, h11.EndOfMessage):
                await self._complete()
                break
            self._break(BadRequest(400, "the client closed the connection in the middle of the body"))
        raise anyio.EndOfStream

    def _refusal(self, exc: h11.RemoteProtocolError) -> BadRequest:
        _pending, closed = self.h.trailing_data
        text = str(exc)
        if "chunk header" in text and _LONG_CHUNK.search(text.encode("latin-1", "replace")):
            return BadRequest(413, "chunk size too large")  # h11 refuses it (and quotes it): it is too long
        if closed:
            return BadRequest(400, "the client closed the connection in the middle of the body")
        return BadRequest(exc.error_status_hint, f"malformed or truncated body: {exc}")

    def _break(self, exc: BadRequest) -> None:
        self.broken, self.broken_status, self.done = exc.message, exc.status, True

    async def _complete(self) -> None:
        self.done = True
        if self.on_complete is not None:
            complete, self.on_complete = self.on_complete, None
            await complete()

    async def drain(self, limit: int) -> bool:
        """Read and drop the rest of the body (up to ``limit`` bytes); whether it ended cleanly."""
        dropped = len(self._pending)
        self._pending = b""
        try:
            while dropped <= limit:
                dropped += len(await self._read())
        except anyio.EndOfStream:
            return self.broken is None
        return False

    async def aclose(self) -> None:
        return None


# ---- the guest's stdout as a CGI response -------------------------------------------------------


class CgiResponse(anyio.abc.ByteSendStream):
    """Reads the CGI header block the guest writes, then streams the body, framed by h11.

    A guest that writes a malformed header block, or more than MAX_CGI_HEAD bytes of it, gets
    EPIPE on its next write (so it stops) and the client a 502. Bytes past the guest's own
    Content-Length are dropped.

    While the request body is still being read, up to HOLD_MAX bytes of the response are held
    back (``hold``), so that a framing error found in the rest of the body can still be answered
    with a 400 or 413 instead of a response that began as a 200; past HOLD_MAX, or once the body
    is complete, it streams."""

    def __init__(
        self, h: h11.Connection, stream: CountingStream, req: Request, keep_alive: bool, *, hold: bool = False
    ) -> None:
        self.h = h
        self.stream = stream
        self.req = req
        self.keep_alive = keep_alive  # False: the server wants this connection closed after the response
        self._held: bytearray | None = bytearray() if hold else None
        self.committed = False  # some of the response went out to the client
        self.reader = CgiHeadReader()
        self.state = "head"  # -> "body" -> "done"; or "invalid"
        self.invalid: str | None = None
        self.status = 200
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
        try:
            got = self.reader.feed(item)
        except CgiError as exc:
            self._fail(str(exc))
        if got is None:
            return
        head, rest = got
        self.status, self.length = head.status, head.length
        self.no_body = self.no_body or head.bodiless
        fields = [(b"Server", SERVER_NAME.encode()), (b"Date", _http_date().encode())]
        fields += [(k.encode("ascii"), v.encode("latin-1")) for k, v in head.headers]
        if not self.keep_alive:
            fields.append((b"Connection", b"close"))
        reason = head.reason or REASONS.get(head.status, "Unknown")
        try:
            data = self.h.send(
                h11.Response(status_code=head.status, headers=fields, reason=reason.encode("latin-1"))
            )
        except (h11.LocalProtocolError, UnicodeEncodeError) as exc:
            self._fail(f"the CGI header block cannot be sent: {exc}")
        self.state = "body"
        await self._out(data or b"")
        if rest:
            await self._body(rest)

    def _fail(self, why: str) -> NoReturn:
        self.state, self.invalid = "invalid", why
        raise anyio.BrokenResourceError(why)

    async def _body(self, item: bytes) -> None:
        if self.no_body or not item:
            return
        if self.length is not None:
            item = item[: max(self.length - self.sent_body, 0)]
            if not item:
                return
        self.sent_body += len(item)
        await self._out(self.h.send(h11.Data(data=item)) or b"")

    async def finish(self, ok: bool) -> bool:
        """End the response after the guest exits; whether h11 lets the connection carry another request."""
        if self.state != "body":
            return False
        self.state = "done"
        await self.release()
        if not ok or (self.length is not None and not self.no_body and self.sent_body < self.length):
            return False  # cut short: no end of message, the close tells the client
        await self._out(self.h.send(h11.EndOfMessage()) or b"")
        return self.h.our_state is h11.DONE

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
    outer = conn.scope
    leftover = b""  # bytes after the last request (a pipelined next request)
    while not server.stopping:
        conn.between_requests = True
        started = await _read_request(server, conn, stream, leftover)
        conn.between_requests = False
        if started is None:
            return
        req, h = started
        conn.requests += 1
        keep = req.keep_alive and not server.stopping
        body = RequestBody(h, stream, req, max_body=server.options.max_body)
        response = CgiResponse(h, stream, req, keep, hold=not body.done)
        body.on_complete = response.release
        body.response = response
        env = request_environ(req, server.options.env, stream)
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
        leftover = h.trailing_data[0]


async def _read_request(
    server: ConnectionHost, conn: Connection, stream: CountingStream, leftover: bytes
) -> tuple[Request, h11.Connection] | None:
    """The next request, or None when the client is done (or broke the protocol: then it was told)."""
    first = conn.requests == 0
    buf = bytearray(leftover)
    try:
        with anyio.move_on_after(server.options.keepalive_timeout):
            while True:
                while buf[:1] in (b"\r", b"\n"):  # empty lines before a request are allowed (RFC 9112 2.2)
                    del buf[:1]
                m = _HEAD_END.search(buf)
                if m is not None and m.start() <= MAX_HEAD:
                    break
                if len(buf) > MAX_HEAD:
                    raise BadRequest(431, f"request head larger than {MAX_HEAD} bytes")
                try:
                    buf += await stream.receive()
                except anyio.EndOfStream:
                    if buf.strip():
                        await _send_error(stream, 400, "the connection closed in the middle of a request")
                    return None
            req, h = start_request(bytes(buf[: m.start()]).rstrip(b"\r"))
            if len(buf) > m.end():  # (h11 takes b"" for the end of the stream)
                h.receive_data(bytes(buf[m.end() :]))
            check_body_size(req, server.options.max_body)
            return req, h
        if first:
            await _send_error(stream, 408, "no request arrived in time")
        return None
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        return None
    except BadRequest as bad:
        conn.last_status = bad.status
        conn.outcome = Outcome(error=f"bad request: {bad.message}")
        await _send_error(stream, bad.status, bad.message)
        await linger_close(stream)
        return None


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
                await _send_error(response.stream, body.broken_status, body.broken)
                await linger_close(response.stream)
                return False
            if not response.started and not (outcome.ok and response.head_done):
                status, message = failure_status(outcome, response)
                conn.last_status = status
                if outcome.ok:
                    outcome.error = f"bad gateway: {message}"
                    conn.failed_requests += 1
                    conn.outcome = outcome
                await response.stream.send(error_response(status, message, head_only=req.method == "HEAD"))
                return False
            conn.last_status = response.status
            again = await response.finish(outcome.ok and body.broken is None)
            if again and not body.done:
                again = await body.drain(DRAIN_LIMIT)
            return again and body.broken is None and body.h.their_state is h11.DONE
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError, h11.LocalProtocolError):
        return False
    return False


__all__ = [
    "BadRequest",
    "CgiResponse",
    "Request",
    "RequestBody",
    "error_response",
    "failure_status",
    "parse_head",
    "request_environ",
    "serve_http_connection",
    "start_request",
]
