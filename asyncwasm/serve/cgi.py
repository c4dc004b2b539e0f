"""The CGI contract (RFC 3875) between a web server and a WASI command, free of any transport.

A request becomes environment variables (``cgi_environ``); the program's stdout starts with a
CGI header block (``Status:``, ``Content-Type:``, ``Location:``, other fields), a blank line, then
the body (``CgiHeadReader``). Used by ``serve-stdin --http`` (``http.py``, HTTP/1.1 on h11) and by
the ASGI adapter (``asgi.py``), so both give a program the same environment and read the same
answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

SERVER_NAME = "asyncwasm"
MAX_CGI_HEAD = 16 * 1024  # the program's response header block
# Fields the program may not set: they describe the connection, which the server frames itself.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
)
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")


def cgi_environ(
    *,
    method: str,
    path_info: str,
    query: str,
    request_uri: str,
    protocol: str,
    headers: Iterable[tuple[str, str]],
    base: dict[str, str] | None = None,
    content_length: int | None = None,
    remote: tuple[str, int] | None = None,
    local: tuple[str, int] | None = None,
    script_name: str = "",
) -> dict[str, str]:
    """The CGI meta-variables of one request (RFC 3875 section 4.1), over ``base`` (the server's env).

    ``path_info`` is the request path, percent-decoded, below ``script_name`` (where the program is
    mounted); ``query`` the query string as sent, without ``?``; ``headers`` (lower-case name, value) pairs in order. Repeated
    fields are joined with ", " ("; " for Cookie); Content-Type and Content-Length become
    CONTENT_TYPE and CONTENT_LENGTH, and a ``Proxy`` field is dropped (httpoxy)."""
    env = dict(base or {})
    env.update(
        {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": SERVER_NAME,
            "SERVER_PROTOCOL": protocol,
            "REQUEST_METHOD": method,
            "REQUEST_URI": request_uri,
            "SCRIPT_NAME": script_name,
            "PATH_INFO": path_info,
            "QUERY_STRING": query,
        }
    )
    if content_length is not None:
        env["CONTENT_LENGTH"] = str(content_length)
    if remote is not None:
        env["REMOTE_ADDR"], env["REMOTE_PORT"] = str(remote[0]), str(remote[1])
    if local is not None:
        env["SERVER_NAME"], env["SERVER_PORT"] = str(local[0]), str(local[1])
    seen: dict[str, str] = {}
    for name, value in headers:
        if name == "content-type":
            env["CONTENT_TYPE"] = value
            continue
        if name in ("content-length", "proxy"):
            continue
        if name == "host":
            env["SERVER_NAME"] = value.rsplit(":", 1)[0] if not value.endswith("]") else value
        key = "HTTP_" + name.upper().replace("-", "_")
        sep = "; " if name == "cookie" else ", "
        seen[key] = f"{seen[key]}{sep}{value}" if key in seen else value
    env.update(seen)
    return env


class CgiError(ValueError):
    """The program's output does not start with a valid CGI header block."""


@dataclass
class CgiHead:
    """A parsed CGI header block: the status, the fields to send on, the program's Content-Length."""

    status: int = 200
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    length: int | None = None

    @property
    def bodiless(self) -> bool:
        """204 and 304 responses carry no body, whatever the program writes after the head."""
        return self.status in (204, 304)


def parse_cgi_head(block: bytes) -> CgiHead:
    """The header lines before the blank line: ``Status: 404 Not Found`` (200-599: an interim 1xx
    answer is the server's to send), ``Location:`` (302 when no Status), other fields passed on except
    the hop-by-hop ones. CgiError when malformed."""
    head = CgiHead()
    status: int | None = None
    location = False
    for raw in _LINE_END.split(block):
        if not raw:
            continue
        name_b, colon, value_b = raw.partition(b":")
        if not colon or not _TOKEN.match(name_b):
            raise CgiError(f"malformed CGI header line {raw[:80]!r}")
        name, value = name_b.decode("ascii"), value_b.strip(b" \t").decode("latin-1")
        if any(c in value for c in "\r\n\0"):
            raise CgiError(f"control characters in the CGI header {name}")
        low = name.lower()
        if low == "status":
            code, _, text = value.partition(" ")
            if not (len(code) == 3 and code.isascii() and code.isdigit() and 200 <= int(code) <= 599):
                raise CgiError(f"bad CGI Status {value!r}")
            status, head.reason = int(code), text.strip()
            continue
        if low in HOP_BY_HOP:
            continue
        if low == "content-length":
            if not (value.isascii() and value.isdigit()):
                raise CgiError(f"bad Content-Length {value!r}")
            head.length = int(value)
        location = location or low == "location"
        head.headers.append((name, value))
    head.status = status if status is not None else 302 if location else 200
    if head.bodiless:
        head.length = None
        head.headers = [(k, v) for k, v in head.headers if k.lower() != "content-length"]
    return head


class CgiHeadReader:
    """Collects the program's output until the end of its header block.

    ``feed(data)`` returns None while the block is incomplete, then ``(head, rest)``, ``rest`` being
    the first bytes of the body; CgiError for a malformed block or one longer than MAX_CGI_HEAD."""

    def __init__(self, limit: int = MAX_CGI_HEAD) -> None:
        self.limit = limit
        self._buf = bytearray()

    def feed(self, data: bytes) -> tuple[CgiHead, bytes] | None:
        self._buf += data
        m = _BLANK_LINE.search(self._buf)
        if m is None:
            if len(self._buf) > self.limit:
                raise CgiError(f"no end of the CGI header block in the first {self.limit} bytes")
            return None
        block, rest = bytes(self._buf[: m.start()]), bytes(self._buf[m.end() :])
        self._buf.clear()
        return parse_cgi_head(block), rest
