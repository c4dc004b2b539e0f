"""The command line a wasmtime user knows, run as the real CLI in a subprocess: ``asyncwasm app.wasm``
as ``run``, the ``-W`` and ``-S`` option groups beside the long options, ``--argv0``, ``--tcplisten``,
and a timeout's trap with its backtrace."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import shared_dir
from serve_guests import CGI
from wat import wat

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def corpus() -> Path:
    shared = shared_dir()
    assert shared is not None, "the shared data (../shared) is missing"
    return shared / "corpus" / "wasm"


def cli(
    *args: str, stdin: str = "", env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "asyncwasm", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def module(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_bytes(wat(text))
    return str(path)


def usage_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_a_module_without_run_is_run() -> None:
    hello = str(EXAMPLES / "hello.wasm")
    plain, explicit = cli(hello), cli("run", hello)
    assert plain.returncode == explicit.returncode == 0
    assert plain.stdout == explicit.stdout == "Hello from asyncwasm!\n"
    invoked = cli("--invoke", "run", str(EXAMPLES / "trap.wasm"), "20")  # options first start `run` too
    assert invoked.returncode == 134 and "wasm backtrace" in invoked.stderr
    assert "run" in cli("--help").stdout and cli("--version").returncode == 0


def test_w_limits_are_the_long_options(tmp_path: Path) -> None:
    spin = module(tmp_path, "spin.wasm", '(module (func (export "_start") (loop $l (br $l))))')
    by_fuel = cli("-W", "fuel=10000", spin)
    assert by_fuel.returncode == 134 and "fuel" in by_fuel.stderr
    assert cli("run", "--fuel", "10000", spin).stderr == by_fuel.stderr  # the same report
    big = module(tmp_path, "big.wasm", '(module (memory 4) (func (export "_start")))')
    refused = cli("run", "-W", "max-memory-size=128KiB", big)
    assert refused.returncode == 1 and "more than --max-memory allows (2 pages)" in refused.stderr
    assert cli("run", "-W", "max-memory-size=1MiB", big).returncode == 0
    deep = module(tmp_path, "deep.wasm", '(module (func $f (export "_start") (call $f)))')
    shallow = cli("run", "-W", "max-wasm-stack=50", deep)
    assert shallow.returncode == 134 and "call stack exhausted" in shallow.stderr
    assert shallow.stderr.count("deep!") >= 40  # the backtrace: frames of the recursion
    usage_error(cli("run", "--fuel", "5", "-W", "fuel=6", spin), "-W", "contradicts")
    usage_error(cli("run", "-W", "fuel", spin), "fuel needs a value")
    usage_error(cli("run", "-W", "bogus=1", spin), "unknown option 'bogus'", "max-wasm-stack", "simd")
    usage_error(cli("run", "-W", "fuel=lots", spin), "not a whole number")


def test_w_features_turn_a_proposal_off(tmp_path: Path) -> None:
    """-W NAME=y|n builds the asyncwasm.Features the module is compiled under: a module using a
    feature turned off fails to load (status 1), naming it."""
    from asyncwasm import Features
    from asyncwasm.cli.options import RunCommon, apply_groups

    common = apply_groups(RunCommon(), [[("simd", "n"), ("gc", None)], [("tail-call", "no")]], [])
    assert common.features == Features(simd=False, tail_call=False)
    assert apply_groups(RunCommon(), [], []).features is None  # the default: all of Wasm 3.0
    simd = module(
        tmp_path, "simd.wasm", '(module (func (export "_start") (drop (i32x4.splat (i32.const 1)))))'
    )
    assert cli("run", simd).returncode == 0
    off = cli("run", "-W", "simd=n", simd)
    assert off.returncode == 1 and "simd" in off.stderr and "not enabled" in off.stderr, off.stderr
    assert cli("run", "-W", "simd=y,gc=n", simd).returncode == 0
    usage_error(cli("run", "-W", "simd=maybe", simd), "expected y or n")


def test_timeout_trap_prints_its_backtrace() -> None:
    loop = str(corpus() / "loop.wasm")
    for option in (["--timeout", "300ms"], ["-W", "timeout=300ms"]):
        done = cli("run", *option, loop)
        assert done.returncode == 134, done.stderr
        assert "error while executing at wasm backtrace:" in done.stderr, done.stderr
        assert "loop!main" in done.stderr and "loop!_start" in done.stderr
        assert "ran longer than the 0.3s timeout" in done.stderr


def test_s_inherit_env_and_stdin_and_argv0(tmp_path: Path) -> None:
    cgi = module(tmp_path, "env.wasm", CGI)  # prints a header, its environment, "--", then its stdin
    alone = cli("run", "--env", "A=1", cgi, stdin="input", env={"FROM_HOST": "yes"})
    assert "A=1" in alone.stdout and "FROM_HOST" not in alone.stdout and alone.stdout.endswith("--\ninput")
    inherited = cli("run", "-S", "inherit-env", "--env", "A=1", cgi, stdin="input", env={"FROM_HOST": "yes"})
    assert "FROM_HOST=yes" in inherited.stdout and "A=1" in inherited.stdout
    assert cli("run", "-S", "inherit-env=n", cgi, env={"FROM_HOST": "yes"}).stdout.count("FROM_HOST") == 0
    closed = cli("run", "-S", "inherit-stdin=n", cgi, stdin="input")
    assert closed.returncode == 0 and closed.stdout.endswith("--\n")
    args = str(corpus() / "args.wasm")
    named = cli("--argv0", "tool", args, "x")
    assert "argv[0]=[tool]" in named.stdout and "argv[1]=[x]" in named.stdout
    assert "argv[0]=[args.wasm]" in cli(args).stdout
    usage_error(cli("run", "-S", "nothing", args), "unknown option 'nothing'", "tcplisten")


ACCEPT = r"""
(module
  (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "hello from a preopened socket\n")
  (func (export "_start") (local $err i32)
    ;; fd 3 is the --tcplisten socket (no --dir): wait for a client, greet it, exit
    (local.set $err (call $accept (i32.const 3) (i32.const 0) (i32.const 16)))
    (if (local.get $err) (then (call $exit (i32.add (i32.const 10) (local.get $err)))))
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 30))
    (drop (call $write (i32.load (i32.const 16)) (i32.const 0) (i32.const 1) (i32.const 32)))))
"""


@pytest.mark.parametrize("spelling", ["--tcplisten", "-S"])
def test_tcplisten_preopens_a_listening_socket(tmp_path: Path, spelling: str) -> None:
    guest = module(tmp_path, "accept.wasm", ACCEPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    value = f"127.0.0.1:{port}" if spelling == "--tcplisten" else f"tcplisten=127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "asyncwasm", "run", spelling, value, guest],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.05)
        with conn:
            data = b""
            while chunk := conn.recv(100):
                data += chunk
        assert data == b"hello from a preopened socket\n"
        assert proc.wait(30) == 0, proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    usage_error(cli("run", "--tcplisten", "nowhere", guest), "HOST:PORT")


def test_help_teaches_with_examples() -> None:
    text = cli("run", "--help").stdout
    for option in ("-W", "-S", "--argv0", "--tcplisten", "max-wasm-stack", "inherit-env", "simd"):
        assert option in text, option
    examples = text.split("Examples:", 1)[1]
    assert "-W fuel=" in examples and "-S inherit-env" in examples and "asyncwasm hello.wasm" in examples
    assert "docs/cli.md" in text
    assert "-W" in cli("serve-stdin", "--help").stdout  # the shared options, composed in
