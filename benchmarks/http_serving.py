"""HTTP serving benchmark: one CGI module under ``serve-stdin --http``, uvicorn and hypercorn.

The same module (examples/hello_cgi.wat: it reads its request body and answers ``hello`` plus the
body's length) is served
by ``asyncwasm serve-stdin --http`` (one worker, asyncio), by ``asyncwasm.serve.asgi.WasmApp`` under
uvicorn (asyncio) and under hypercorn (trio), each a subprocess on a 127.0.0.1 port. A client of
``--connections`` keep-alive connections sends requests back to back for ``--seconds`` and checks
every answer; the table shows requests per second and latency percentiles.

    python benchmarks/http_serving.py                      # all three, 5 s each, 16 connections
    python benchmarks/http_serving.py --servers serve-stdin --seconds 3 --repeat 3
    python benchmarks/http_serving.py --servers serve-stdin,serve-stdin@../old-checkout --repeat 3

``serve-stdin@DIR`` runs serve-stdin from another source tree (an older revision, to compare). The
servers take turns, round after round, so a change in the machine's load falls on all of them.

uvicorn and hypercorn come with the test extra (pip install -e '.[test]').
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asyncwasm.text import wat_to_wasm  # noqa: E402

# A CGI program: read stdin to its end (counting bytes), then write a header block and "hello N\n".
CGI_WAT = r"""
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "Content-Type: text/plain\r\n\r\nhello ")
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16))))
  (func (export "_start") (local $total i32) (local $n i32) (local $p i32)
    (block $eof (loop $read
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (i32.const 4096))
      (br_if $eof (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
      (local.set $n (i32.load (i32.const 16)))
      (br_if $eof (i32.eqz (local.get $n)))
      (local.set $total (i32.add (local.get $total) (local.get $n)))
      (br $read)))
    (call $write (i32.const 256) (i32.const 34))
    ;; the decimal digits of $total, backwards from 600
    (local.set $p (i32.const 600))
    (i32.store8 (local.get $p) (i32.const 10))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $total) (i32.const 10))))
      (local.set $total (i32.div_u (local.get $total) (i32.const 10)))
      (br_if $digit (local.get $total)))
    (call $write (local.get $p) (i32.sub (i32.const 601) (local.get $p))))
)
"""

APP = """from asyncwasm.serve.asgi import WasmApp
app = WasmApp({path!r})
"""

BODY = b"x" * 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(server: str, wasm: Path, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start one server; return it and its port once it accepts connections."""
    port = free_port()
    server, _, tree = server.partition("@")
    root = Path(tree).resolve() if tree else ROOT
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(root), str(work), os.environ.get("PYTHONPATH", "")])
    )
    if server == "serve-stdin":
        cmd = [
            sys.executable,
            "-m",
            "asyncwasm",
            "serve-stdin",
            "--http",
            "--workers",
            "1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            str(wasm),
        ]
    elif server == "uvicorn":
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "bench_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--loop",
            "asyncio",
            "--http",
            "h11",
        ]
    elif server == "hypercorn":
        cmd = [
            sys.executable,
            "-m",
            "hypercorn",
            "bench_app:app",
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            "trio",
            "--log-level",
            "warning",
        ]
    else:
        raise SystemExit(f"unknown server {server!r}")
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{server} exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{server} did not start")


_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.I)


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One response's body (Content-Length or chunked framing)."""
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer {head[:60]!r}")
    m = _LENGTH.search(head)
    if m:
        return await reader.readexactly(int(m.group(1)))
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return body
        body += chunk[:-2]


async def client(port: int, until: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        b"POST /bench HTTP/1.1\r\nHost: bench\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
    )
    try:
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            writer.write(request)
            body = await read_response(reader)
            latencies.append(time.perf_counter() - t0)
            if body != b"hello %d\n" % len(BODY):
                raise RuntimeError(f"wrong body {body!r}")
    finally:
        writer.close()


async def load(port: int, connections: int, seconds: float) -> tuple[float, list[float]]:
    latencies: list[float] = []
    # warm up: compile caches, first instances
    await asyncio.gather(*(client(port, time.perf_counter() + 0.5, []) for _ in range(2)))
    t0 = time.perf_counter()
    until = t0 + seconds
    await asyncio.gather(*(client(port, until, latencies) for _ in range(connections)))
    return len(latencies) / (time.perf_counter() - t0), latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--servers", default="serve-stdin,uvicorn,hypercorn")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per server; the median is shown")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        wasm = work / "hello_cgi.wasm"
        wasm.write_bytes(wat_to_wasm(CGI_WAT))
        (work / "bench_app.py").write_text(APP.format(path=str(wasm)))
        print(
            f"{opts.connections} keep-alive connections, {opts.seconds:g}s per run, median of {opts.repeat}"
        )
        print(f"{'server':<28} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}   runs (req/s)")
        servers = opts.servers.split(",")
        results: dict[str, list[tuple[float, float, float]]] = {server: [] for server in servers}
        for _ in range(opts.repeat):
            for server in servers:
                proc, port = start(server, wasm, work)
                try:
                    rps, latencies = asyncio.run(load(port, opts.connections, opts.seconds))
                finally:
                    proc.terminate()
                    proc.wait(10)
                results[server].append((rps, percentile(latencies, 0.5), percentile(latencies, 0.99)))
        for server, runs in results.items():
            rps = statistics.median(r[0] for r in runs)
            mid = min(runs, key=lambda r: abs(r[0] - rps))
            name, _, tree = server.partition("@")
            label = {
                "serve-stdin": "serve-stdin --http (asyncio)",
                "uvicorn": "WasmApp on uvicorn (asyncio)",
                "hypercorn": "WasmApp on hypercorn (trio)",
            }[name] + (f" from {tree}" if tree else "")
            print(
                f"{label:<28} {rps:>8.0f} {mid[1] * 1e3:>8.1f} {mid[2] * 1e3:>8.1f}   "
                + ", ".join(f"{r[0]:.0f}" for r in runs),
                flush=True,
            )


if __name__ == "__main__":
    main()
