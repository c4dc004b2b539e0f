"""serve-stdin --http (CGI) against real HTTP clients: http.client and urllib in a thread, raw sockets
for malformed requests; asyncio and trio."""

from __future__ import annotations

import http.client
import logging
import socket
import urllib.error
import urllib.request
from pathlib import Path

import anyio
import pytest
from serve_guests import CGI, ECHO_CMD
from serve_helpers import guest_file, serving

from asyncwasm.serve.http import BadRequest, parse_head


@pytest.fixture
def cgi(tmp_path: Path) -> Path:
    return guest_file(tmp_path, CGI, "cgi.wasm")


@pytest.fixture
def echo(tmp_path: Path) -> Path:
    """In --http mode the echo guest answers with the request body: the body is the CGI response."""
    return guest_file(tmp_path, ECHO_CMD, "echo_cmd.wasm")


def environ_of(body: str) -> dict[str, str]:
    head, _, _ = body.partition("--\n")
    return dict(line.split("=", 1) for line in head.splitlines())


def request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def raw_request(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.anyio
async def test_cgi_environment_and_body(cgi: Path) -> None:
    async with serving(cgi, http=True, env={"BASE": "from --env"}) as run:
        status, headers, body = await anyio.to_thread.run_sync(
            request,
            run.port,
            "POST",
            "/a%20b/c?x=1&y=%20",
            b"the body",
            {"Content-Type": "text/plain", "X-Custom": "yes", "Cookie": "a=1"},
        )
    assert status == 200
    assert headers["content-type"] == "text/plain" and headers["x-guest"] == "cgi"
    text = body.decode()
    env = environ_of(text)
    assert env["REQUEST_METHOD"] == "POST"
    assert env["PATH_INFO"] == "/a b/c"
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["CONTENT_TYPE"] == "text/plain"
    assert env["CONTENT_LENGTH"] == "8"
    assert env["HTTP_X_CUSTOM"] == "yes"
    assert env["HTTP_COOKIE"] == "a=1"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["BASE"] == "from --env"
    assert "HTTP_CONTENT_TYPE" not in env
    assert text.endswith("--\nthe body")


@pytest.mark.anyio
async def test_keep_alive_chunked_request_and_urllib(cgi: Path) -> None:
    def client(port: int) -> list[tuple[int, bytes]]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        out = []
        for i in range(3):  # three requests, one connection
            conn.request(
                "POST", f"/n{i}", body=iter([b"chunk-a ", f"chunk-{i}".encode()]), encode_chunked=True
            )
            r = conn.getresponse()
            assert r.getheader("Transfer-Encoding") == "chunked", (r.status, r.getheaders(), r.read())
            out.append((r.status, r.read()))
        conn.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/via-urllib?q=1", timeout=10) as resp:
            out.append((resp.status, resp.read()))
        return out

    async with serving(cgi, http=True) as run:
        results = await anyio.to_thread.run_sync(client, run.port)
        await run.wait_idle()
        assert run.server.stats.get("served") == 2  # connections, not requests
    for i, (status, body) in enumerate(results[:3]):
        assert status == 200 and body.endswith(f"--\nchunk-a chunk-{i}".encode())
        assert "CONTENT_LENGTH" not in environ_of(body.decode())
    assert results[3][0] == 200 and environ_of(results[3][1].decode())["PATH_INFO"] == "/via-urllib"


@pytest.mark.anyio
async def test_concurrent_http_clients(cgi: Path) -> None:
    async with serving(cgi, http=True) as run:

        async def one(i: int) -> None:
            status, _, body = await anyio.to_thread.run_sync(request, run.port, "GET", f"/client/{i}")
            assert status == 200 and environ_of(body.decode())["PATH_INFO"] == f"/client/{i}"

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(one, i)


@pytest.mark.anyio
async def test_guest_status_and_length(echo: Path) -> None:
    async with serving(echo, http=True) as run:
        cgi_out = b"Status: 404 Nothing Here\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\nmissing"
        status, headers, body = await anyio.to_thread.run_sync(request, run.port, "POST", "/", cgi_out)
        assert (status, body, headers["content-length"]) == (404, b"missing", "7")
        assert "transfer-encoding" not in headers
        redirect = b"Location: /elsewhere\n\n"  # bare LF is accepted from a CGI program
        status, headers, _ = await anyio.to_thread.run_sync(request, run.port, "POST", "/", redirect)
        assert status == 302 and headers["location"] == "/elsewhere"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"trap", 500),  # a trap before any response
        (b"exit", 502),  # proc_exit(7) before any response
        (b"not a cgi response", 502),  # no header block
        (b"bad header line\r\n\r\n", 502),
        (b"spin", 504),  # --timeout
    ],
)
async def test_guest_failures_are_5xx(
    echo: Path, body: bytes, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "asyncwasm.serve")
    async with serving(echo, http=True, timeout=0.5) as run:
        got, headers, text = await anyio.to_thread.run_sync(request, run.port, "POST", "/", body)
        assert got == status and headers["connection"] == "close"
        assert text.startswith(str(status).encode())
        # the server goes on: a good request right after
        ok = b"Content-Type: text/plain\r\n\r\nfine"
        assert (await anyio.to_thread.run_sync(request, run.port, "POST", "/", ok))[2] == b"fine"
        await run.wait_idle()
        assert run.server.stats.get("failed") == 1
    assert f"last status {status}" in caplog.text


@pytest.mark.anyio
async def test_bad_requests_are_4xx(cgi: Path) -> None:
    async with serving(cgi, http=True) as run:
        cases = [
            (b"GARBAGE\r\n\r\n", b"400"),
            (b"GET / HTTP/1.1\r\n\r\n", b"400"),  # no Host
            (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", b"505"),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", b"431"),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"400",
            ),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", b"400"),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", b"501"),
            (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", b"400"),
        ]
        for data, status in cases:
            answer = await anyio.to_thread.run_sync(raw_request, run.port, data)
            assert answer.startswith(b"HTTP/1.1 " + status), (data[:60], answer[:80])
        await run.wait_idle()


@pytest.mark.anyio
async def test_head_http10_and_pipelining(cgi: Path) -> None:
    async with serving(cgi, http=True) as run:
        head = await anyio.to_thread.run_sync(
            raw_request, run.port, b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
        old = await anyio.to_thread.run_sync(raw_request, run.port, b"GET /old HTTP/1.0\r\n\r\n")
        assert b"Connection: close" in old and b"Transfer-Encoding" not in old and b"PATH_INFO=/old" in old
        two = b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        both = await anyio.to_thread.run_sync(raw_request, run.port, two)
        assert both.count(b"HTTP/1.1 200 OK") == 2
        assert both.index(b"PATH_INFO=/one") < both.index(b"PATH_INFO=/two")


@pytest.mark.anyio
async def test_refused_over_the_limit_is_503(cgi: Path) -> None:
    async with serving(cgi, http=True, max_connections=1, overflow="refuse") as run:
        holder = await run.connect()  # an open keep-alive connection holds the only slot
        await anyio.sleep(0.1)

        def get() -> int:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{run.port}/", timeout=10)
            except urllib.error.HTTPError as exc:
                assert exc.headers["Retry-After"] == "1"
                return exc.code
            return 200

        assert await anyio.to_thread.run_sync(get) == 503
        await holder.aclose()
        await run.wait_idle()
        assert run.server.stats.get("refused") == 1


@pytest.mark.anyio
async def test_keep_alive_connection_closes_when_idle_and_at_shutdown(cgi: Path) -> None:
    async with serving(cgi, http=True, keepalive_timeout=0.3) as run:
        s = await run.connect()
        await s.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with anyio.fail_after(5):
            data = b""
            try:
                while True:
                    data += await s.receive()
            except anyio.EndOfStream:
                pass
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"0\r\n\r\n")
        await s.aclose()
    async with serving(cgi, http=True, grace=5.0) as run:
        s = await run.connect()
        await s.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await anyio.sleep(0.2)
        run.server.shutdown()  # an idle keep-alive connection is closed at once, not after the grace
        with anyio.fail_after(2):
            await run.wait_idle()
        await s.aclose()


def test_parse_head_limits() -> None:
    req = parse_head(b"GET /x?y HTTP/1.1\r\nHost: h\r\nConnection: close")
    assert (req.method, req.target, req.keep_alive) == ("GET", "/x?y", False)
    with pytest.raises(BadRequest) as exc:
        parse_head(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 2")
    assert exc.value.status == 400
    req = parse_head(b"GET / HTTP/1.0\r\nConnection: keep-alive")
    assert not req.keep_alive  # h11 serves an HTTP/1.0 client one request per connection
    req = parse_head(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0005")
    assert req.content_length == 5 and req.keep_alive
    for head, status in [
        (b"GET / HTTP/1.1\r\nHost: h\r\n folded", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1" + b"0" * 30, 413),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nExpect: magic", 417),
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"Host: h", 431),
    ]:
        with pytest.raises(BadRequest) as exc:
            parse_head(head)
        assert exc.value.status == status, head[:60]


@pytest.mark.anyio
async def test_expect_100_continue_then_the_body(cgi: Path) -> None:
    async with serving(cgi, http=True) as run:
        with anyio.fail_after(10):
            async with await run.connect() as s:
                await s.send(
                    b"POST /c HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
                )
                interim = b""
                while b"\r\n\r\n" not in interim:
                    interim += await s.receive()
                assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
                await s.send(b"hello")
                rest = interim.split(b"\r\n\r\n", 1)[1]
                while not rest.endswith(b"0\r\n\r\n"):
                    rest += await s.receive()
        assert b"HTTP/1.1 200 OK" in rest and b"\r\nhello\r\n" in rest


@pytest.mark.anyio
async def test_pipelined_requests_with_bodies_and_a_smuggling_attempt(cgi: Path) -> None:
    async with serving(cgi, http=True) as run:
        two = (
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"2\r\nde\r\n0\r\n\r\n"
        )
        both = await anyio.to_thread.run_sync(raw_request, run.port, two)
        assert both.count(b"HTTP/1.1 200 OK") == 2
        assert both.index(b"PATH_INFO=/a") < both.index(b"\r\nabc\r\n") < both.index(b"PATH_INFO=/b")
        assert both.index(b"PATH_INFO=/b") < both.index(b"\r\nde\r\n")
        # Content-Length and Transfer-Encoding together could split one request in two: refused
        smuggle = (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\nGET /hidden HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        answer = await anyio.to_thread.run_sync(raw_request, run.port, smuggle)
        assert (
            answer.startswith(b"HTTP/1.1 400 ") and b"hidden" not in answer and answer.count(b"HTTP/1.1") == 1
        )
