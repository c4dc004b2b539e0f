"""An HTTP service that runs user-supplied WebAssembly plugins, one sandbox per request, with limits.

An ASGI application, served by uvicorn (asyncio) or hypercorn (trio). A plugin is a WASI command:
the request body is its stdin, its stdout is the response body, and the request's method and path
are in its environment (``REQUEST_METHOD``, ``PATH_INFO``), the way CGI passes them. Each plugin is
compiled once, when it is loaded or uploaded, and wrapped in an ``asyncwasm.serve.asgi.WasmApp``
(``cgi=False``: any command, its whole output the body); each request gets a fresh instance with
its own fuel, wall-clock and memory limits, so a runaway or greedy plugin fails its own request
with a clear error while every other request is served on time.

    pip install uvicorn                                # or hypercorn, for trio
    python examples/plugin_service.py                  # serve on 127.0.0.1:8080 (uvicorn)
    python examples/plugin_service.py --backend trio   # the same on hypercorn and trio
    curl -X POST --data 'hello' localhost:8080/run/upper
    curl -X PUT --data-binary @examples/echo.wasm localhost:8080/plugins/echo
    curl localhost:8080/stats
    python examples/plugin_service.py --selftest       # start, send requests, print results, exit

Routes: ``GET /plugins``, ``PUT /plugins/NAME`` (body: a .wasm), ``POST /run/NAME[/PATH]`` (body:
the input), ``GET /stats`` (what the scheduler measured per plugin). A trap answers 500 with its
message, the time limit 504, a non-zero exit status 502.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio

import asyncwasm
from asyncwasm.serve.asgi import Receive, Scope, Send, WasmApp
from wasi_async import CommandResult

HERE = Path(__file__).resolve().parent
MAX_UPLOAD = 4 * 1024 * 1024


@dataclass
class Limits:
    """What one request's sandbox may use."""

    fuel: int = 50_000_000
    timeout: float = 2.0
    max_memory: int = 10 << 20  # bytes of linear memory
    max_body: int = 4 << 20


@dataclass
class PluginStats:
    """Totals of what the scheduler measured over one plugin's requests."""

    runs: int = 0
    ok: int = 0
    traps: int = 0
    fuel: int = 0
    slices: int = 0
    run_seconds: float = 0.0
    wait_seconds: float = 0.0

    def add(self, r: CommandResult) -> None:
        self.runs += 1
        self.ok += r.exit_code == 0
        self.traps += r.trap is not None
        self.fuel += r.fuel_used
        self.slices += r.stats.slices
        self.run_seconds += r.stats.run_time
        self.wait_seconds += r.stats.wait_time


async def respond(send: Send, status: int, body: bytes | str, content_type: str = "text/plain") -> None:
    data = body.encode() if isinstance(body, str) else body
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None when it is larger than ``limit``."""
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)


class PluginService:
    """The ASGI application: the plugins (a WasmApp each, by name), their limits and statistics."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.plugins: dict[str, WasmApp] = {}
        self.stats: dict[str, PluginStats] = {}

    def add(self, name: str, module: asyncwasm.Module) -> None:
        stats = self.stats.setdefault(name, PluginStats())
        self.plugins[name] = WasmApp(
            module,
            cgi=False,
            fuel=self.limits.fuel,
            timeout=self.limits.timeout,
            max_memory=self.limits.max_memory,
            max_body=self.limits.max_body,
            on_result=stats.add,
        )

    def load_dir(self, directory: Path) -> None:
        """Load every ``plugin_NAME.wasm`` (or ``NAME.wasm``) in a directory."""
        for path in sorted(directory.glob("*.wasm")):
            if directory == HERE and not path.stem.startswith("plugin_"):
                continue  # examples/ holds other modules too
            self.add(path.stem.removeprefix("plugin_"), asyncwasm.Module.from_file(path))

    async def upload(self, name: str, receive: Receive, send: Send) -> None:
        wasm = await read_body(receive, MAX_UPLOAD)
        if wasm is None:
            await respond(send, 413, f"a plugin may be at most {MAX_UPLOAD} bytes\n")
            return
        try:  # compiling is CPU work: keep it off the event loop
            module = await anyio.to_thread.run_sync(lambda: asyncwasm.Module(wasm, name=name))
        except asyncwasm.WasmError as exc:
            await respond(send, 400, f"{exc}\n")
            return
        if not any(e.name == "_start" and e.kind == "func" for e in module.exports):
            await respond(send, 400, "a plugin must be a WASI command: it exports no _start\n")
            return
        self.add(name, module)
        await respond(send, 201, f"plugin {name} loaded\n")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await WasmApp._lifespan(receive, send)
            return
        method, path = scope["method"], scope["path"]
        parts = [p for p in path.split("/") if p]
        if parts == ["plugins"] and method == "GET":
            await respond(send, 200, json.dumps(sorted(self.plugins)) + "\n", "application/json")
        elif len(parts) == 2 and parts[0] == "plugins" and method == "PUT":
            await self.upload(parts[1], receive, send)
        elif len(parts) >= 2 and parts[0] == "run" and method in ("GET", "POST"):
            plugin = self.plugins.get(parts[1])
            if plugin is None:
                await respond(send, 404, f"no plugin named {parts[1]!r}\n")
            else:  # the plugin sees the rest of the path as PATH_INFO, /run/NAME as SCRIPT_NAME
                await plugin(dict(scope, root_path=f"/run/{parts[1]}"), receive, send)
        elif parts == ["stats"] and method == "GET":
            stats = {name: asdict(s) for name, s in sorted(self.stats.items()) if s.runs}
            await respond(send, 200, json.dumps(stats, indent=1) + "\n", "application/json")
        elif not parts:
            await respond(send, 200, (__doc__ or "").split("\n\n")[0] + "\n")
        else:
            await respond(send, 404, "not found\n")


async def serve(service: PluginService, host: str, port: int, backend: str) -> None:
    """Serve until cancelled: uvicorn on asyncio, hypercorn on trio."""
    if backend == "asyncio":
        import uvicorn

        server = uvicorn.Server(
            uvicorn.Config(service, host=host, port=port, log_level="warning", lifespan="off")
        )
        await server.serve()
    else:
        from hypercorn.config import Config
        from hypercorn.trio import serve as hypercorn_serve

        config = Config()
        config.bind = [f"{host}:{port}"]
        config.loglevel = "WARNING"
        await hypercorn_serve(service, config)  # type: ignore[arg-type]


# ---- --selftest: a real server and a client -------------------------------------------------------


async def selftest(service: PluginService, backend: str) -> int:
    """Serve on a free port, send a few requests (one to a runaway plugin), print what came back."""
    import socket

    import httpx

    failures = 0

    def check(what: str, ok: bool, detail: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}: {detail}")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve, service, "127.0.0.1", port, backend)
        limits = service.limits
        print(
            f"serving on 127.0.0.1:{port} ({'uvicorn' if backend == 'asyncio' else 'hypercorn'}, {backend}; "
            f"fuel {limits.fuel:,}, timeout {limits.timeout:g}s, memory {limits.max_memory >> 20} MiB)"
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            with anyio.fail_after(30):
                while True:
                    try:
                        await client.get("/")
                        break
                    except httpx.TransportError:
                        await anyio.sleep(0.05)
            r = await client.get("/plugins")
            check("GET /plugins", r.status_code == 200 and "upper" in r.json(), r.text.strip())

            r = await client.post("/run/upper", content=b"hello, plugins")
            check(
                "POST /run/upper",
                r.status_code == 200 and r.content == b"HELLO, PLUGINS",
                f"{r.status_code} {r.content!r}",
            )

            # The runaway burns its fuel (or time) while other requests are answered as usual.
            runaway: list[tuple[int, str, float]] = []

            async def run_away() -> None:
                t0 = time.perf_counter()
                r = await client.post("/run/runaway")
                runaway.append((r.status_code, r.text, time.perf_counter() - t0))

            tg.start_soon(run_away)
            await anyio.sleep(0.2)
            latencies = []
            for i in range(5):
                t0 = time.perf_counter()
                r = await client.post("/run/upper", content=b"request %d" % i)
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200 or r.content != b"REQUEST %d" % i:
                    check("upper beside the runaway", False, f"{r.status_code} {r.content!r}")
            check(
                "5 requests while the runaway spins",
                max(latencies) < 0.5,
                "answered in " + ", ".join(f"{x * 1e3:.1f}" for x in latencies) + " ms",
            )
            with anyio.fail_after(limits.timeout + 10):
                while not runaway:
                    await anyio.sleep(0.05)
            status, text, took = runaway[0]
            check(
                "POST /run/runaway",
                status in (500, 504) and ("fuel" in text or "time" in text),
                f"{status} after {took:.2f}s: {text.strip()}",
            )

            r = await client.post("/run/hog")
            check(
                "POST /run/hog",
                r.status_code == 200 and "refused" in r.text,
                f"{r.status_code} {r.text.strip()}",
            )

            r = await client.put("/plugins/echo", content=(HERE / "echo.wasm").read_bytes())
            check(
                "PUT /plugins/echo (a user-supplied module)",
                r.status_code == 201,
                f"{r.status_code} {r.text.strip()}",
            )
            r = await client.post("/run/echo", content=b"echo this")
            check(
                "POST /run/echo",
                r.status_code == 200 and r.content == b"echo this",
                f"{r.status_code} {r.content!r}",
            )

            r = await client.put("/plugins/bad", content=b"\0asm not really")
            check("PUT /plugins/bad (not Wasm)", r.status_code == 400, f"{r.status_code} {r.text.strip()}")
            r = await client.post("/run/missing")
            check("POST /run/missing", r.status_code == 404, f"{r.status_code} {r.text.strip()}")

            r = await client.get("/stats")
            stats: dict[str, Any] = r.json()
            check("GET /stats", r.status_code == 200 and stats["upper"]["runs"] == 6, f"{len(stats)} plugins")
        print("plugin       runs  ok traps      fuel  slices  run ms  waiting ms")
        for name, st in stats.items():
            print(
                f"{name:<10} {st['runs']:>6} {st['ok']:>3} {st['traps']:>5} {st['fuel']:>9,} {st['slices']:>7} "
                f"{st['run_seconds'] * 1e3:>7.1f} {st['wait_seconds'] * 1e3:>11.1f}"
            )
        tg.cancel_scope.cancel()
    print("selftest passed" if not failures else f"selftest: {failures} check(s) failed")
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--plugins", type=Path, default=HERE, help="a directory of plugin .wasm files")
    parser.add_argument("--fuel", type=int, default=Limits.fuel, help="fuel per request")
    parser.add_argument("--timeout", type=float, default=Limits.timeout, help="seconds per request")
    parser.add_argument(
        "--max-memory-mib",
        type=int,
        default=Limits.max_memory >> 20,
        help="largest linear memory per request, in MiB",
    )
    parser.add_argument(
        "--backend", choices=["asyncio", "trio"], default="asyncio", help="asyncio: uvicorn; trio: hypercorn"
    )
    parser.add_argument("--selftest", action="store_true", help="start, send a few requests, print, exit")
    opts = parser.parse_args(argv)
    service = PluginService(
        Limits(fuel=opts.fuel, timeout=opts.timeout, max_memory=opts.max_memory_mib << 20)
    )
    service.load_dir(opts.plugins)
    if opts.selftest:
        sys.exit(anyio.run(selftest, service, opts.backend, backend=opts.backend))
    print(f"serving {', '.join(sorted(service.plugins))} on http://{opts.host}:{opts.port}/", flush=True)
    try:
        anyio.run(serve, service, opts.host, opts.port, opts.backend, backend=opts.backend)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
