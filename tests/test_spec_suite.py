"""The WebAssembly core spec suite, run through the real `asyncwasm wast` command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from asyncwasm.features import Features
from asyncwasm.wast import DEFAULT_KNOWN_FAILURES, ScriptRunner, load_known_failures

_SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) skipped$", re.M)


def test_core_spec_suite_passes(shared: Path) -> None:
    scripts = sorted((shared / "spec" / "json").glob("*/*.json"))
    assert len(scripts) == 90
    proc = subprocess.run([sys.executable, "-m", "asyncwasm", "wast", "--features", "2.0", *map(str, scripts)],
                          capture_output=True, text=True, timeout=900)
    m = _SUMMARY.search(proc.stdout)
    assert m, proc.stdout[-2000:] + proc.stderr[-2000:]
    passed, failed, skipped = map(int, m.groups())
    print(f"core spec suite: {passed} passed, {failed} failed, {skipped} skipped (text modules)")
    assert proc.returncode == 0, [line for line in proc.stdout.splitlines() if line.startswith("FAIL")][:50]
    assert passed + failed + skipped == 28018  # every command of the 90 scripts was counted
    assert passed / (passed + failed) >= 0.995


def test_known_failures_still_fail(shared: Path) -> None:
    """The known-failures list only shrinks: an entry that passes now must be removed."""
    known = load_known_failures(DEFAULT_KNOWN_FAILURES)
    files = {key.split(":")[0] for key in known}
    failing: set[str] = set()
    for name in files:
        path = shared / "spec" / "json" / Path(name).stem / name
        failing |= {where for where, _msg in ScriptRunner(path, Features.wasm2()).run().failures}
    assert set(known) <= failing, f"now passing, remove from the list: {sorted(set(known) - failing)}"


def test_failures_are_reported_with_file_and_line(tmp_path: Path, shared: Path) -> None:
    """A wrong expectation is reported as a failure naming the script and line, and the exit is 1."""
    src = shared / "spec" / "json" / "i32"
    for f in src.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    script = tmp_path / "i32.json"
    text = script.read_text()
    text = text.replace('"expected":[{"type":"i32","value":"2"}]', '"expected":[{"type":"i32","value":"3"}]', 1)
    script.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "asyncwasm", "wast", "--known-failures", "/dev/null", str(script)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert re.search(r"^FAIL: i32\.json:\d+: expected \['3'\]", proc.stdout, re.M), proc.stdout
    assert _SUMMARY.search(proc.stdout).group(2) == "1"  # type: ignore[union-attr]
