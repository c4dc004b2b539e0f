"""asyncwasm.serve.asgi.WasmApp under real ASGI servers: uvicorn (asyncio) and hypercorn (trio), each a
subprocess on a 127.0.0.1 port, with httpx as the client; mounted in Starlette and in FastAPI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve_guests import CGI, ECHO_CMD
from serve_helpers import ROOT, guest_file

APP = """
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from asyncwasm.serve.asgi import WasmApp

cgi = WasmApp({cgi!r}, env={{"BASE": "from the app"}}, fuel=50_000_000, timeout=5.0)
echo = WasmApp({echo!r}, timeout=0.5, max_body=2_000_000)


async def hello(request):
    return PlainTextResponse("python route")


api = FastAPI()


@api.get("/health")
async def health():
    return {{"ok": True}}


api.mount("/plugin", cgi)
site = Starlette(
    routes=[Route("/", hello), Mount("/cgi", app=cgi), Mount("/echo", app=echo), Mount("/api", app=api)]
)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _command(server: str, port: int) -> list[str]:
    if server == "uvicorn":
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "asgi_app:site",
            "--port",
            str(port),
            "--loop",
            "asyncio",
            "--log-level",
            "warning",
        ]
    return [
        sys.executable,
        "-m",
        "hypercorn",
        "asgi_app:site",
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        "trio",
        "--log-level",
        "warning",
    ]


@pytest.fixture(scope="module", params=["uvicorn", "hypercorn"])
def base_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp(request.param)
    cgi, echo = guest_file(work, CGI, "cgi.wasm"), guest_file(work, ECHO_CMD, "echo.wasm")
    (work / "asgi_app.py").write_text(APP.format(cgi=str(cgi), echo=str(echo)))
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(work)]))
    log = (work / "server.log").open("wb")
    proc = subprocess.Popen(_command(request.param, port), cwd=work, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (work / "server.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def environ_of(text: str) -> dict[str, str]:
    head, _, _ = text.partition("--\n")
    return dict(line.split("=", 1) for line in head.splitlines())


def test_cgi_environment_and_body_through_a_mount(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        assert client.get("/").text == "python route"  # the Starlette app around it
        r = client.post(
            "/cgi/a%20b/c?x=1", content=b"the body", headers={"X-Custom": "yes", "Content-Type": "text/plain"}
        )
    assert r.status_code == 200 and r.headers["x-guest"] == "cgi"
    env = environ_of(r.text)
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == "/cgi" and env["PATH_INFO"] == "/a b/c"
    assert (
        env["QUERY_STRING"] == "x=1" and env["CONTENT_LENGTH"] == "8" and env["CONTENT_TYPE"] == "text/plain"
    )
    assert (
        env["HTTP_X_CUSTOM"] == "yes" and env["BASE"] == "from the app" and env["REMOTE_ADDR"] == "127.0.0.1"
    )
    assert r.text.endswith("--\nthe body")


def test_mounted_in_fastapi(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        assert client.get("/api/health").json() == {"ok": True}  # a FastAPI route beside the guest
        r = client.post("/api/plugin/run?n=2", content=b"payload")
    assert r.status_code == 200 and r.headers["x-guest"] == "cgi"
    env = environ_of(r.text)
    assert env["SCRIPT_NAME"] == "/api/plugin" and env["PATH_INFO"] == "/run" and env["QUERY_STRING"] == "n=2"
    assert r.text.endswith("--\npayload")


def test_bodies_stream_both_ways(base_url: str) -> None:
    """A 1 MiB request body, sent in chunks, comes back as the response body (the echo guest copies
    stdin to stdout as it reads it), over one keep-alive connection, three times."""
    payload = bytes(range(256)) * 4096

    def chunks() -> Iterator[bytes]:
        yield b"Content-Type: application/octet-stream\r\n\r\n"
        for i in range(0, len(payload), 65536):
            yield payload[i : i + 65536]

    with httpx.Client(base_url=base_url, timeout=20) as client:
        for _ in range(3):
            r = client.post("/echo/", content=chunks())
            assert r.status_code == 200 and r.content == payload


def test_failures_and_limits(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        cases = [
            (b"trap", 500),
            (b"exit", 502),
            (b"not a cgi response", 502),
            (b"spin", 504),
            (b"x" * 2_000_001, 413),
        ]
        for body, status in cases:
            r = client.post("/echo/", content=body)
            assert r.status_code == status, (body[:20], r.text)
            assert r.text.startswith(str(status))
        r = client.post("/echo/", content=b"Status: 404 Gone\r\nContent-Length: 3\r\n\r\nabcdef")
        assert (r.status_code, r.content) == (404, b"abc")  # bytes past the guest's Content-Length dropped
        assert client.get("/").text == "python route"  # the server goes on


def test_concurrent_requests(base_url: str) -> None:
    import concurrent.futures

    def one(i: int) -> str:
        r = httpx.get(f"{base_url}/cgi/client/{i}", timeout=20)
        assert r.status_code == 200
        return environ_of(r.text)["PATH_INFO"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(one, range(16))) == sorted(f"/client/{i}" for i in range(16))


def test_the_app_alone_with_an_in_process_transport(tmp_path: Path) -> None:
    """Without a server: httpx's ASGI transport calls the app directly (the app needs no server)."""
    import anyio

    from asyncwasm.serve.asgi import WasmApp

    app = WasmApp(guest_file(tmp_path, CGI, "cgi.wasm"))

    async def main() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.get("/p?q")

    r = anyio.run(main)
    assert r.status_code == 200 and environ_of(r.text)["PATH_INFO"] == "/p"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_plugin_service_example(backend: str) -> None:
    """examples/plugin_service.py, built on WasmApp(cgi=False), passes its own selftest on uvicorn
    (asyncio) and hypercorn (trio): plugins, an upload, a runaway beside quick requests, limits."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "plugin_service.py"), "--selftest", "--backend", backend],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert done.returncode == 0 and "selftest passed" in done.stdout, done.stdout + done.stderr
