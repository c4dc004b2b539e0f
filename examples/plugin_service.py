"""An HTTP service that runs user-supplied WebAssembly plugins, one sandbox per request, with limits.

A plugin is a WASI command: the request body is its stdin, its stdout is the response body, and
the request's method and path are in its environment (``REQUEST_METHOD``, ``PATH_INFO``), the way
CGI passes them. Each plugin is compiled once, when it is loaded or uploaded; each request gets a
fresh instance with its own fuel, wall-clock and memory limits, so a runaway or greedy plugin fails
its own request with a clear error while every other request is served on time.

    python examples/plugin_service.py                 # serve on 127.0.0.1:8080
    curl -X POST --data 'hello' localhost:8080/run/upper
    curl -X PUT --data-binary @examples/echo.wasm localhost:8080/plugins/echo
    curl localhost:8080/stats
    python examples/plugin_service.py --selftest      # start, send requests, print results, exit

Routes: ``GET /plugins``, ``PUT /plugins/NAME`` (body: a .wasm), ``POST /run/NAME`` (body: the
input), ``GET /stats`` (what the scheduler measured per plugin). A trap answers 500 with the Wasm
backtrace, the time limit 504, a non-zero exit status 502 with the plugin's stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

import asyncwasm
from wasi_async import CommandResult, run_command

HERE = Path(__file__).resolve().parent
MAX_HEAD = 16 * 1024
MAX_BODY = 4 * 1024 * 1024
REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           411: "Length Required", 413: "Content Too Large", 500: "Internal Server Error", 502: "Bad Gateway",
           504: "Gateway Timeout"}


@dataclass
class Limits:
    """What one request's sandbox may use."""

    fuel: int = 50_000_000
    timeout: float = 2.0
    max_memory_pages: int = 160  # 10 MiB
    max_depth: int = 10_000

    def store(self) -> asyncwasm.Store:
        return asyncwasm.Store(fuel=self.fuel, timeout=self.timeout, max_memory_pages=self.max_memory_pages,
                               max_depth=self.max_depth)


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


class Response:
    def __init__(self, status: int, body: bytes | str = b"", headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.headers = headers or {}

    def encode(self) -> bytes:
        head = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}",
                f"Content-Length: {len(self.body)}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + self.body


class PluginService:
    """The plugins (compiled modules by name), their limits and their statistics."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.plugins: dict[str, asyncwasm.Module] = {}
        self.stats: dict[str, PluginStats] = {}

    def load_dir(self, directory: Path) -> None:
        """Load every ``plugin_NAME.wasm`` (or ``NAME.wasm``) in a directory."""
        for path in sorted(directory.glob("*.wasm")):
            name = path.stem.removeprefix("plugin_")
            if directory == HERE and not path.stem.startswith("plugin_"):
                continue  # examples/ holds other modules too
            self.plugins[name] = asyncwasm.Module.from_file(path)

    async def upload(self, name: str, wasm: bytes) -> Response:
        try:  # compiling is CPU work: keep it off the event loop
            module = await anyio.to_thread.run_sync(lambda: asyncwasm.Module(wasm, name=name))
        except asyncwasm.WasmError as exc:
            return Response(400, f"{exc}\n")
        if not any(n == "_start" for n, kind in module.exports if kind == "func"):
            return Response(400, "a plugin must be a WASI command: it exports no _start\n")
        self.plugins[name] = module
        return Response(201, f"plugin {name} loaded\n")

    async def run(self, name: str, method: str, path: str, body: bytes) -> Response:
        module = self.plugins.get(name)
        if module is None:
            return Response(404, f"no plugin named {name!r}\n")
        result = await run_command(module, [name, path], env={"REQUEST_METHOD": method, "PATH_INFO": path},
                                   stdin=body, store=self.limits.store())
        self.stats.setdefault(name, PluginStats()).add(result)
        headers = {"X-Plugin-Fuel": str(result.fuel_used), "X-Plugin-Slices": str(result.stats.slices),
                   "X-Plugin-Run-Ms": f"{result.stats.run_time * 1e3:.2f}",
                   "X-Plugin-Wait-Ms": f"{result.stats.wait_time * 1e3:.2f}"}
        if isinstance(result.trap, asyncwasm.Interrupted):
            return Response(504, f"{result.trap}\n", headers)
        if result.trap is not None:
            return Response(500, f"plugin trapped: {result.trap}\n", headers)
        if result.exit_code != 0:
            return Response(502, f"plugin exited with status {result.exit_code}\n".encode() + (result.stderr or b""),
                            headers)
        return Response(200, result.stdout or b"", headers)

    async def route(self, method: str, path: str, body: bytes) -> Response:
        parts = [p for p in path.split("?")[0].split("/") if p]
        if parts == ["plugins"] and method == "GET":
            return Response(200, json.dumps(sorted(self.plugins)) + "\n", {"Content-Type": "application/json"})
        if len(parts) == 2 and parts[0] == "plugins" and method == "PUT":
            return await self.upload(parts[1], body)
        if len(parts) >= 2 and parts[0] == "run" and method in ("GET", "POST"):
            return await self.run(parts[1], method, "/" + "/".join(parts[2:]), body)
        if parts == ["stats"] and method == "GET":
            stats = {name: asdict(s) for name, s in sorted(self.stats.items())}
            return Response(200, json.dumps(stats, indent=1) + "\n", {"Content-Type": "application/json"})
        if not parts:
            return Response(200, (__doc__ or "").split("\n\n")[0] + "\n")
        return Response(404, "not found\n")

    async def handle(self, client: anyio.abc.ByteStream) -> None:
        """Serve one HTTP/1.1 request on a connection, then close it."""
        async with client:
            try:
                with anyio.fail_after(10):
                    response = await self._read_and_route(client)
            except TimeoutError:
                response = Response(400, "request not received in time\n")
            except (anyio.IncompleteRead, anyio.DelimiterNotFound, ValueError) as exc:
                response = Response(400, f"bad request: {exc}\n")
            try:
                await client.send(response.encode())
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    async def _read_and_route(self, client: anyio.abc.ByteStream) -> Response:
        reader = BufferedByteReceiveStream(client)
        head = (await reader.receive_until(b"\r\n\r\n", MAX_HEAD)).decode("latin-1")
        request_line, *header_lines = head.split("\r\n")
        method, path, _version = request_line.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        length = int(headers.get("content-length", "0"))
        if length > MAX_BODY:
            return Response(413, f"the body may be at most {MAX_BODY} bytes\n")
        body = await reader.receive_exactly(length) if length else b""
        return await self.route(method, path, body)


async def serve(service: PluginService, host: str, port: int,
                task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
    """Accept connections until cancelled; reports the port it listens on through ``task_status``."""
    async with await anyio.create_tcp_listener(local_host=host, local_port=port) as listener:
        task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))
        await listener.serve(service.handle)


# ---- --selftest: a client ---------------------------------------------------------------------------


async def request(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One HTTP request to 127.0.0.1:port; returns (status, headers, body)."""
    async with await anyio.connect_tcp("127.0.0.1", port) as s:
        await s.send(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
                     "Connection: close\r\n\r\n".encode() + body)
        data = b""
        while True:
            try:
                data += await s.receive()
            except anyio.EndOfStream:
                break
    head, _, content = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
    return int(status_line.split()[1]), headers, content


async def selftest(service: PluginService) -> int:
    """Start the service, send a few requests (one to a runaway plugin), print what came back."""
    failures = 0

    def check(what: str, ok: bool, detail: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}: {detail}")

    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, service, "127.0.0.1", 0)
        print(f"serving on 127.0.0.1:{port} (fuel {service.limits.fuel:,}, timeout {service.limits.timeout:g}s, "
              f"memory {service.limits.max_memory_pages} pages)")

        status, _, body = await request(port, "GET", "/plugins")
        check("GET /plugins", status == 200 and b"upper" in body, body.decode().strip())

        status, h, body = await request(port, "POST", "/run/upper", b"hello, plugins")
        check("POST /run/upper", status == 200 and body == b"HELLO, PLUGINS",
              f"{status} {body!r}, fuel {h.get('X-Plugin-Fuel')}")

        # The runaway burns its fuel (or time) while other requests are answered as usual.
        runaway: list[tuple[int, bytes, float]] = []

        async def run_away() -> None:
            t0 = time.perf_counter()
            status, _, body = await request(port, "POST", "/run/runaway", b"")
            runaway.append((status, body, time.perf_counter() - t0))

        tg.start_soon(run_away)
        await anyio.sleep(0.2)
        latencies = []
        for i in range(5):
            t0 = time.perf_counter()
            status, _, body = await request(port, "POST", "/run/upper", b"request %d" % i)
            latencies.append(time.perf_counter() - t0)
            if status != 200 or body != b"REQUEST %d" % i:
                check("upper beside the runaway", False, f"{status} {body!r}")
        check("5 requests while the runaway spins", max(latencies) < 0.5,
              "answered in " + ", ".join(f"{x * 1e3:.1f}" for x in latencies) + " ms")
        with anyio.fail_after(service.limits.timeout + 10):
            while not runaway:
                await anyio.sleep(0.05)
        status, body, took = runaway[0]
        check("POST /run/runaway", status in (500, 504) and (b"fuel" in body or b"interrupt" in body),
              f"{status} after {took:.2f}s: {body.decode().strip()}")

        status, _, body = await request(port, "POST", "/run/hog")
        check("POST /run/hog", status == 200 and b"refused" in body, f"{status} {body.decode().strip()}")

        status, _, body = await request(port, "PUT", "/plugins/echo", (HERE / "echo.wasm").read_bytes())
        check("PUT /plugins/echo (a user-supplied module)", status == 201, f"{status} {body.decode().strip()}")
        status, _, body = await request(port, "POST", "/run/echo", b"echo this")
        check("POST /run/echo", status == 200 and body == b"echo this", f"{status} {body!r}")

        status, _, body = await request(port, "PUT", "/plugins/bad", b"\0asm not really")
        check("PUT /plugins/bad (not Wasm)", status == 400, f"{status} {body.decode().strip()}")
        status, _, body = await request(port, "POST", "/run/missing")
        check("POST /run/missing", status == 404, f"{status} {body.decode().strip()}")

        status, _, body = await request(port, "GET", "/stats")
        stats = json.loads(body)
        check("GET /stats", status == 200 and stats["upper"]["runs"] == 6, f"{len(stats)} plugins")
        print("plugin       runs  ok traps      fuel  slices  run ms  waiting ms")
        for name, s in stats.items():
            print(f"{name:<10} {s['runs']:>6} {s['ok']:>3} {s['traps']:>5} {s['fuel']:>9,} {s['slices']:>7} "
                  f"{s['run_seconds'] * 1e3:>7.1f} {s['wait_seconds'] * 1e3:>11.1f}")
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
    parser.add_argument("--max-memory-pages", type=int, default=Limits.max_memory_pages,
                        help="largest linear memory, in 64 KiB pages")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--selftest", action="store_true", help="start, send a few requests, print, exit")
    opts = parser.parse_args(argv)
    service = PluginService(Limits(fuel=opts.fuel, timeout=opts.timeout, max_memory_pages=opts.max_memory_pages))
    service.load_dir(opts.plugins)
    if opts.selftest:
        sys.exit(anyio.run(selftest, service, backend=opts.backend))
    print(f"serving {', '.join(sorted(service.plugins))} on http://{opts.host}:{opts.port}/", flush=True)
    try:
        anyio.run(serve, service, opts.host, opts.port, backend=opts.backend)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
