"""Load benchmark for ``asyncwasm serve-stdin``: many concurrent clients against real sockets.

Starts the server as a subprocess (``--workers`` processes sharing the port), then runs
``--total`` connections, ``--concurrency`` at a time, against an echo module and a word-count
module. Every connection sends its own payload and checks its own answer, so a lost or mixed-up
connection is counted, not hidden. Then an echo connection's latency is measured while
``--spinners`` other connections run CPU-bound instances.

    python benchmarks/serve_load.py                      # 500 clients, 20,000 connections per module
    python benchmarks/serve_load.py --total 2000 --concurrency 100 --workers 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ASYNCWASM_SHARED", ROOT.parent / "shared"))
CORPUS = SHARED / "corpus" / "wasm"

# Echo each chunk read from stdin; a chunk starting with "spin" makes it spin forever instead
# (CPU-bound, no WASI calls): one module serves both the interactive and the CPU-bound clients.
ECHO_SPIN_WAT = r"""
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $spin (local $x i32)
    (loop $l (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1664525)) (i32.const 1013904223)))
      (br $l)))
  (func (export "_start") (local $n i32)
    (loop $again
      ;; iovec at 0: buf 64, len 4096; nread at 16
      (i32.store (i32.const 0) (i32.const 64))
      (i32.store (i32.const 4) (i32.const 4096))
      (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)) (then (return)))
      (local.set $n (i32.load (i32.const 16)))
      (if (i32.eqz (local.get $n)) (then (return)))
      (if (i32.eq (i32.load (i32.const 64)) (i32.const 0x6e697073)) (then (call $spin)))
      (i32.store (i32.const 4) (local.get $n))
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
      (br $again)))
)
"""


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    wrong: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class _Client(asyncio.Protocol):
    """One connection: send the payload, half-close, collect everything until the server closes."""

    def __init__(self, payload: bytes, done: asyncio.Future[bytes]) -> None:
        self.payload = payload
        self.done = done
        self.chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self.payload)
        transport.write_eof()

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if exc is not None:
            self.done.set_exception(exc)
        else:
            self.done.set_result(b"".join(self.chunks))


def payload_for(i: int) -> bytes:
    """A payload unique to connection ``i`` (so an answer delivered to the wrong client shows)."""
    words = " ".join(f"w{i}x{k}" for k in range(i % 7 + 1))
    return f"connection {i}: {words}\nsecond line of {i}\n".encode()


def expect_echo(p: bytes) -> bytes:
    return p


def expect_wc(p: bytes) -> bytes:
    lines = p.count(b"\n")
    return f"{lines} {len(p.split())} {len(p)}\n".encode()


async def run_load(
    port: int, total: int, concurrency: int, expect: object, timeout: float
) -> tuple[Result, float]:
    loop = asyncio.get_running_loop()
    res = Result()
    next_id = iter(range(total))

    async def one(i: int) -> None:
        p = payload_for(i)
        done: asyncio.Future[bytes] = loop.create_future()
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(lambda: _Client(p, done), "127.0.0.1", port)
                answer = await done
        except (OSError, TimeoutError) as exc:
            res.failed += 1
            key = type(exc).__name__
            res.errors[key] = res.errors.get(key, 0) + 1
            return
        res.latencies.append(time.perf_counter() - t0)
        if answer == expect(p):  # type: ignore[operator]
            res.ok += 1
        else:
            res.wrong += 1

    async def worker() -> None:
        for i in next_id:
            await one(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return res, time.perf_counter() - t0


async def echo_under_load(port: int, spinners: int, probes: int) -> tuple[list[float], int]:
    """Latency of one echo line (on an open connection) while ``spinners`` connections spin."""
    spin = []
    for _ in range(spinners):
        _r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"spin\n")
        spin.append(w)
    await asyncio.sleep(1.0)  # let them all get going
    lat: list[float] = []
    bad = 0
    for k in range(probes):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        line = f"probe {k}\n".encode()
        w.write(line)
        await r.readexactly(len(line))  # the first answer includes instantiation; not counted
        for j in range(5):
            line = f"probe {k}.{j}\n".encode()
            t0 = time.perf_counter()
            w.write(line)
            got = await r.readexactly(len(line))
            lat.append(time.perf_counter() - t0)
            bad += got != line
        w.close()
        await asyncio.sleep(0.02)
    for w in spin:
        w.close()
    return lat, bad


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def start_server(
    module: Path, workers: int, extra: list[str], log: Path
) -> tuple[subprocess.Popen[bytes], int]:
    cmd = [
        sys.executable,
        "-m",
        "asyncwasm",
        "serve-stdin",
        "--port",
        "0",
        "--workers",
        str(workers),
        *extra,
        str(module),
    ]
    errf = log.open("wb")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = re.search(r"listening on \S+:(\d+)", log.read_text(errors="replace"))
        if m:
            time.sleep(0.3)  # the workers bind before the line; give their loops a moment
            return proc, int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"server did not start:\n{log.read_text(errors='replace')}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--total", type=int, default=20_000, help="connections per module")
    ap.add_argument("--concurrency", type=int, default=500)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--spinners", type=int, default=50)
    ap.add_argument("--probes", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=60.0, help="per-connection client timeout, seconds")
    ap.add_argument("--server-arg", action="append", default=[], help="extra serve-stdin flag (repeatable)")
    args = ap.parse_args()
    if not CORPUS.is_dir():
        raise SystemExit(f"corpus not found at {CORPUS} (set ASYNCWASM_SHARED)")
    wat2wasm = shutil.which("wat2wasm")
    rows = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        log = Path(tmp) / "server.log"
        for name, module, expect in (
            ("echo (cat.wasm)", CORPUS / "cat.wasm", expect_echo),
            ("word count (wc.wasm)", CORPUS / "wc.wasm", expect_wc),
        ):
            proc, port = start_server(module, args.workers, args.server_arg, log)
            try:
                asyncio.run(run_load(port, min(200, args.total), 50, expect, args.timeout))  # warm up
                res, took = asyncio.run(run_load(port, args.total, args.concurrency, expect, args.timeout))
            finally:
                stop_server(proc)
            lines = sum(1 for ln in log.read_text(errors="replace").splitlines() if "] exit " in ln)
            lost = args.total - res.ok - res.wrong
            ok &= lost == 0 and res.wrong == 0
            rows.append((name, args.total, res.ok, lost, res.wrong, args.total / took, res, lines))
        probe_lat: list[float] = []
        bad = -1
        if wat2wasm:
            src = Path(tmp) / "echo_spin.wat"
            wasm = Path(tmp) / "echo_spin.wasm"
            src.write_text(ECHO_SPIN_WAT)
            subprocess.run([wat2wasm, str(src), "-o", str(wasm)], check=True)
            proc, port = start_server(wasm, args.workers, [*args.server_arg, "--grace", "0s"], log)
            try:
                probe_lat, bad = asyncio.run(echo_under_load(port, args.spinners, args.probes))
            finally:
                stop_server(proc)

    print(
        f"\nserve-stdin load: {args.workers} workers, {args.concurrency} concurrent clients, "
        f"{args.total} connections per module, {os.cpu_count()} cores\n"
    )
    print("| module | connections | ok | lost | mixed up | conn/s | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, total, nok, lost, wrong, rate, res, _lines in rows:
        lat = res.latencies
        print(
            f"| {name} | {total} | {nok} | {lost} | {wrong} | {rate:.0f} | {pct(lat, 50) * 1e3:.1f} | "
            f"{pct(lat, 90) * 1e3:.1f} | {pct(lat, 99) * 1e3:.1f} | {max(lat, default=0) * 1e3:.1f} |"
        )
        if res.errors:
            print(f"|   client errors: {res.errors} | | | | | | | | | |")
    if probe_lat:
        print(
            f"\necho line latency with {args.spinners} CPU-bound connections running "
            f"({len(probe_lat)} lines, {bad} wrong): p50 {statistics.median(probe_lat) * 1e3:.1f} ms, "
            f"p90 {pct(probe_lat, 90) * 1e3:.1f} ms, p99 {pct(probe_lat, 99) * 1e3:.1f} ms, "
            f"max {max(probe_lat) * 1e3:.1f} ms"
        )
    elif not wat2wasm:
        print("\n(wat2wasm not found: the latency-under-load part was skipped)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
