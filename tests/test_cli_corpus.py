"""Every run of shared/corpus/manifest.json through the real command line: ``python -m asyncwasm run``
in a subprocess, with the manifest's arguments, environment, stdin and preopened directories.

Ordinary runs must print the expected stdout (and stderr) and exit with the expected status; trap
runs must exit 134 with a wasmtime-style backtrace and wasmtime's trap message; the program that
never ends is stopped once by fuel and once by --timeout. Of the benchmark-sized runs only ``fib``
runs here (the others take minutes on a pure-Python engine); every ``*_small`` run does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import shared_dir

REPO = Path(__file__).resolve().parents[1]
SHARED = shared_dir()
CORPUS = SHARED / "corpus" if SHARED is not None else None
BIG_BENCH_RUN = "fib"  # the one benchmark-sized run worth its time here
FRAME = re.compile(r"^\s*(\d+): 0x[0-9a-f]+ - (\S+)!(.+)$")
TRAP_HEADER = "error while executing at wasm backtrace:"


def load_runs() -> list[dict[str, Any]]:
    """The manifest's runs that this file executes (none when the shared data is missing)."""
    if CORPUS is None or not (CORPUS / "manifest.json").exists():
        return []
    runs = json.loads((CORPUS / "manifest.json").read_text())
    return [
        r
        for r in runs
        if r["kind"] in ("wasi", "trap", "forever")
        or r["kind"] == "bench"
        and (r["name"].endswith("_small") or r["name"] == BIG_BENCH_RUN)
    ]


RUNS = load_runs()
FOREVER = [r for r in RUNS if r["kind"] == "forever"]


def cli(
    args: list[str], cwd: Path, stdin: Any = subprocess.DEVNULL, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    """``python -m asyncwasm run ARGS`` from this checkout."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, "-m", "asyncwasm", "run", *args],
        stdin=stdin,
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def command_line(entry: dict[str, Any], scratch: Path) -> list[str]:
    """The options the manifest asks for, the module, then the guest's arguments after argv[0]."""
    assert CORPUS is not None
    wasm = CORPUS / entry["wasm"]
    assert entry["args"][0] == wasm.name, "argv[0] is the module's file name, as `asyncwasm run` passes it"
    argv: list[str] = []
    for name, value in entry.get("env", {}).items():
        argv += ["--env", f"{name}={value}"]
    for spec in entry.get("preopens", []):
        host, guest = spec.split("::")
        source = CORPUS / host
        if entry.get("copy_preopens"):  # the run writes: a fresh copy, never the shared original
            target = scratch / "preopens" / host
            shutil.copytree(source, target, symlinks=True)
            source = target
        argv += ["--dir", f"{source}::{guest}"]
    return [*argv, str(wasm), *entry["args"][1:]]


def run_entry(entry: dict[str, Any], scratch: Path, *options: str) -> subprocess.CompletedProcess[bytes]:
    assert CORPUS is not None
    args = [*options, *command_line(entry, scratch)]
    if entry.get("stdin"):
        with open(CORPUS / entry["stdin"], "rb") as stdin:
            return cli(args, scratch, stdin)
    return cli(args, scratch)


def check_stdout(entry: dict[str, Any], done: subprocess.CompletedProcess[bytes]) -> None:
    detail = f"stderr:\n{done.stderr.decode(errors='replace')}"
    if entry.get("expected_stdout") is not None:
        assert done.stdout.decode(errors="replace") == entry["expected_stdout"], detail
    else:
        assert len(done.stdout) == entry["expected_stdout_len"], detail
        assert hashlib.sha256(done.stdout).hexdigest() == entry["expected_stdout_sha256"], detail


def check_trap_report(stderr: str, module: str, message: str) -> None:
    """wasmtime's shape: the header, frames numbered 0, 1, 2... as ``N: 0xOFFSET - module!function``,
    then the trap message."""
    assert TRAP_HEADER in stderr, stderr
    assert "Traceback" not in stderr, stderr
    frames = [m for m in map(FRAME.match, stderr.split(TRAP_HEADER, 1)[1].splitlines()) if m]
    depths = [int(m.group(1)) for m in frames]
    gap = re.search(r"^\s*\.\.\. (\d+) frames omitted \.\.\.$", stderr, re.M)
    if gap:  # a deep stack: the innermost and outermost frames, with the count left out between
        k = next(i for i in range(1, len(depths)) if depths[i] != depths[i - 1] + 1)
        assert depths[:k] == list(range(k)) and depths[k] == k + int(gap.group(1)), stderr
        assert depths[k:] == list(range(depths[k], depths[k] + len(depths) - k)), stderr
    else:
        assert depths == list(range(len(frames))) and frames, stderr
    assert {m.group(2) for m in frames} == {module}, stderr
    assert frames[-1].group(3).startswith("_start"), stderr
    assert message in stderr, stderr
    assert stderr.index(message) > stderr.index(TRAP_HEADER)


def test_the_corpus_is_all_there(shared: Path) -> None:
    assert len(RUNS) > 25, f"expected the corpus manifest under {shared / 'corpus'}"
    assert FOREVER, "expected a run that never ends"


@pytest.mark.parametrize("entry", RUNS, ids=[r["name"] for r in RUNS])
def test_corpus_run(entry: dict[str, Any], tmp_path: Path, shared: Path) -> None:
    if entry["kind"] == "forever":
        done = run_entry(entry, tmp_path, "--fuel", str(entry["fuel"]))
    else:
        done = run_entry(entry, tmp_path)
    stderr = done.stderr.decode(errors="replace")
    check_stdout(entry, done)
    if entry.get("expect_trap"):
        assert done.returncode == 134, stderr
        check_trap_report(
            stderr, Path(entry["wasm"]).stem, entry["wasmtime_trap_message"].split("wasm trap: ", 1)[1]
        )
    else:
        assert done.returncode == entry["expected_exit_code"], stderr
        assert stderr == entry.get("expected_stderr", stderr)


@pytest.mark.parametrize("entry", FOREVER, ids=[r["name"] for r in FOREVER])
def test_forever_run_stops_at_timeout(entry: dict[str, Any], tmp_path: Path, shared: Path) -> None:
    """No fuel: a wall-clock --timeout ends it promptly, as a trap (status 134) that says why."""
    started = time.monotonic()
    done = run_entry(entry, tmp_path, "--timeout", "300ms")
    elapsed = time.monotonic() - started
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 134, stderr
    assert elapsed < min(entry["timeout_s"], 10), f"took {elapsed:.1f}s"
    assert "wasm trap:" in stderr and "timeout" in stderr, stderr
    assert "Traceback" not in stderr, stderr
    check_stdout(entry, done)
