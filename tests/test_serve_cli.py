"""`asyncwasm serve-stdin` as a real process: SO_REUSEPORT workers, signals (graceful SIGTERM/SIGINT,
SIGUSR1 summary), a Unix socket, --http, worker restart, and errors on the command line."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from preinit_guests import INIT_CMD, INIT_CMD_LINE
from serve_guests import CGI, ECHO_CMD
from serve_helpers import guest_file

ROOT = Path(__file__).resolve().parent.parent


class Proc:
    def __init__(self, popen: subprocess.Popen[bytes], log: Path, port: int | None) -> None:
        self.popen = popen
        self.log = log
        self.port = port

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.text())
            if m:
                return m
            time.sleep(0.02)
        raise AssertionError(f"{pattern!r} not in the log:\n{self.text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        return self.popen.wait(timeout=timeout)


@contextmanager
def server(tmp_path: Path, *args: str) -> Iterator[Proc]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    log = tmp_path / f"server-{time.monotonic_ns()}.log"
    with log.open("wb") as errf:
        popen = subprocess.Popen(
            [sys.executable, "-m", "asyncwasm", "serve-stdin", *args],
            stdout=subprocess.DEVNULL,
            stderr=errf,
            env=env,
            cwd=tmp_path,
        )
    proc = Proc(popen, log, None)
    try:
        m = proc.wait_for(r"listening on (?:127\.0\.0\.1:(\d+)|unix:)", timeout=30)
        proc.port = int(m.group(1)) if m.group(1) else None
        yield proc
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()


def echo_once(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_workers_share_the_port_and_report(tmp_path: Path) -> None:
    echo = guest_file(tmp_path, ECHO_CMD)
    with server(tmp_path, "--port", "0", "--workers", "2", str(echo)) as proc:
        assert proc.port is not None
        payloads = [f"client {i}\n".encode() for i in range(60)]
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda p: echo_once(proc.port, p), payloads))  # type: ignore[arg-type]
        assert answers == payloads
        assert "(2 workers" in proc.text()
        proc.popen.send_signal(signal.SIGUSR1)
        proc.wait_for(r"summary \(2 workers\): served 60, active 0, failed 0")
        tags = set(re.findall(r"\[(w\d)#\d+ 127\.0\.0\.1:\d+\] exit 0", proc.text()))
        assert tags == {"w0", "w1"}  # SO_REUSEPORT spread the connections over both processes
        assert proc.stop() == 0
    assert re.search(r"summary \(2 workers\): served 60", proc.text())


def test_sigint_is_graceful(tmp_path: Path) -> None:
    echo = guest_file(tmp_path, ECHO_CMD)
    with server(tmp_path, "--port", "0", "--workers", "1", "--grace", "10s", str(echo)) as proc:
        assert proc.port is not None
        s = socket.create_connection(("127.0.0.1", proc.port), timeout=10)
        s.sendall(b"one\n")
        assert s.recv(10) == b"one\n"
        proc.popen.send_signal(signal.SIGINT)
        proc.wait_for("SIGINT: shutting down")
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", proc.port), timeout=2).close()
        s.sendall(b"two\n")  # the running connection is served to its end
        assert s.recv(10) == b"two\n"
        assert proc.popen.poll() is None
        s.shutdown(socket.SHUT_WR)
        assert s.recv(10) == b""
        s.close()
        assert proc.popen.wait(timeout=10) == 0
    assert "summary: served 1, active 0, failed 0" in proc.text()


@pytest.mark.parametrize("tenure", ["--tenure", "--no-tenure"])
def test_the_summary_shows_the_scheduler_and_the_collector(tmp_path: Path, tenure: str) -> None:
    echo = guest_file(tmp_path, ECHO_CMD)
    with server(tmp_path, "--port", "0", "--workers", "1", tenure, str(echo)) as proc:
        assert proc.port is not None
        with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as s:
            s.sendall(b"one\n")
            assert s.recv(10) == b"one\n"
            s.shutdown(socket.SHUT_WR)
            assert s.recv(10) == b""
        proc.popen.send_signal(signal.SIGINT)
        assert proc.popen.wait(timeout=10) == 0
    line = re.search(r"summary: served 1, .*; scheduler: (.*)", proc.text())
    assert line is not None, proc.text()
    found = re.search(
        r"0 running, 0 waiting for the CPU, 0 in host calls, (\d+) turns; .* tenured (\d+)", line[1]
    )
    assert found is not None, line[1]
    assert int(found[1]) >= 2  # the connection's set-up and its guest took turns
    # tenured: the server's own objects (the compiled module, the libraries) went out of sight at start
    assert (int(found[2]) > 10_000) == (tenure == "--tenure")


def test_grace_expires_and_a_second_signal_cancels(tmp_path: Path) -> None:
    echo = guest_file(tmp_path, ECHO_CMD)
    with server(tmp_path, "--port", "0", "--workers", "2", "--grace", "30s", str(echo)) as proc:
        assert proc.port is not None
        spinners = []
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", proc.port), timeout=10)
            s.sendall(b"spin\n")
            spinners.append(s)
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.popen.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert proc.popen.poll() is None  # within the grace period
        proc.popen.send_signal(signal.SIGTERM)  # impatient: cancel them now
        assert proc.popen.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 10
        for s in spinners:
            assert s.recv(10) == b""
            s.close()
    assert proc.text().count("cancelled: shutdown") == 4


def test_unix_socket_and_worker_restart(tmp_path: Path) -> None:
    echo = guest_file(tmp_path, ECHO_CMD)
    path = tmp_path / "serve.sock"
    with server(tmp_path, "--unix", str(path), "--workers", "2", str(echo)) as proc:

        def ask(payload: bytes) -> bytes:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(str(path))
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                out = b""
                while chunk := s.recv(100):
                    out += chunk
                return out

        assert ask(b"over unix\n") == b"over unix\n"
        pid = int(proc.wait_for(r"(\d+) INFO \[w\d#1 ").group(1))
        os.kill(pid, signal.SIGKILL)  # a worker dies: the supervisor starts another
        proc.wait_for("exited unexpectedly")
        for i in range(10):
            assert ask(f"after {i}\n".encode()) == f"after {i}\n".encode()
        assert proc.stop() == 0
    assert not path.exists()


def test_http_mode_from_the_command_line(tmp_path: Path) -> None:
    cgi = guest_file(tmp_path, CGI, "cgi.wasm")
    with server(
        tmp_path, "--port", "0", "--workers", "1", "--http", "--env", "GREETING=hi", str(cgi)
    ) as proc:
        with urllib.request.urlopen(f"http://127.0.0.1:{proc.port}/path?q=1", timeout=10) as resp:
            body = resp.read().decode()
        assert resp.status == 200
        assert "GREETING=hi\n" in body and "PATH_INFO=/path\n" in body and "QUERY_STRING=q=1\n" in body
        assert proc.stop() == 0
    assert "requests 1 (failed 0, last status 200)" in proc.text()


def test_command_line_errors(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = [sys.executable, "-m", "asyncwasm", "serve-stdin", "--port", "0"]
    missing = subprocess.run(
        [*run, str(tmp_path / "nope.wasm")], capture_output=True, text=True, env=env, timeout=30
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr
    needs = tmp_path / "needs.wasm"
    needs.write_bytes(
        guest_file(tmp_path, '(module (import "env" "f" (func)) (func (export "_start")))').read_bytes()
    )
    linked = subprocess.run([*run, str(needs)], capture_output=True, text=True, env=env, timeout=30)
    assert linked.returncode == 2 and "env::f" in linked.stderr
    bad = subprocess.run(
        [*run, "--timeout", "soon", str(needs)], capture_output=True, text=True, env=env, timeout=30
    )
    assert bad.returncode == 2 and "not a duration" in bad.stderr


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    echo = guest_file(tmp_path, ECHO_CMD)
    with server(tmp_path, "--port", "0", "--workers", "2", str(echo)) as proc:
        assert proc.port is not None
        assert echo_once(proc.port, b"up\n") == b"up\n"
        children = Path(f"/proc/{proc.popen.pid}/task/{proc.popen.pid}/children").read_text().split()
        workers = [int(pid) for pid in children]
        assert len(workers) == 2
        proc.popen.kill()  # no signal to forward: the workers must notice by themselves
        proc.popen.wait()
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in workers)
    assert proc.text().count("supervisor is gone: shutting down") == 2


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_init_from_the_command_line(tmp_path: Path) -> None:
    """serve-stdin --init: initialised once before the workers fork, each connection starts there."""
    guest = guest_file(tmp_path, INIT_CMD, "init_cmd.wasm")
    args = ("--port", "0", "--workers", "2", "--env", "X=1", "--init", "wizer.initialize", str(guest))
    with server(tmp_path, *args) as proc:
        assert [echo_once(proc.port or 0, b"") for _ in range(4)] == [INIT_CMD_LINE] * 4
        assert proc.stop() == 0
    log = proc.text()
    assert log.count("stdout: initialising") == 1
    assert re.search(r"initialised with wizer.initialize in [0-9.]+s: 192 KiB of memory", log)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = [sys.executable, "-m", "asyncwasm", "serve-stdin", "--port", "0", "--init"]
    missing = subprocess.run([*run, "nope", str(guest)], capture_output=True, text=True, env=env, timeout=30)
    assert (
        missing.returncode == 2
        and "--init nope" in missing.stderr
        and "exports no such function" in missing.stderr
    )
    typed = guest_file(
        tmp_path, '(module (func (export "_start")) (func (export "i") (param i32)))', "p.wasm"
    )
    wrong = subprocess.run([*run, "i", str(typed)], capture_output=True, text=True, env=env, timeout=30)
    assert (
        wrong.returncode == 2
        and "must take no arguments and return nothing; it is [i32] -> []" in wrong.stderr
    )
    trapping = guest_file(
        tmp_path, '(module (func (export "_start")) (func (export "i") unreachable))', "t.wasm"
    )
    trapped = subprocess.run([*run, "i", str(trapping)], capture_output=True, text=True, env=env, timeout=30)
    assert (
        trapped.returncode == 1 and "--init i: the initialiser trapped: wasm `unreachable`" in trapped.stderr
    ), trapped.stderr
    assert "wasm backtrace" in trapped.stderr and "listening" not in trapped.stderr
