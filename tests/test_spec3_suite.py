"""The WebAssembly 3.0 core suite (../shared/spec3), run through the real `asyncwasm wast` command in both
of its forms: the JSON scripts (their text modules read from the .wat files beside them) and the .wast
scripts themselves, and the four scripts of the legacy exception proposal that exist only as text."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

_SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) skipped$", re.M)
COMMANDS = 65184  # ../shared/spec3/README.md


def _run(scripts: list[Path]) -> tuple[int, int, int, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "asyncwasm", "wast", *map(str, scripts)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    m = _SUMMARY.search(proc.stdout)
    assert m, proc.stdout[-2000:] + proc.stderr[-2000:]
    passed, failed, skipped = map(int, m.groups())
    unexpected = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert (proc.returncode == 0) == (not unexpected), proc.stderr[-2000:]
    return passed, failed, skipped, unexpected


def test_json_form(shared: Path) -> None:
    scripts = sorted((shared / "spec3" / "json").glob("*/*.json"))
    assert len(scripts) == 257
    passed, failed, skipped, unexpected = _run(scripts)
    print(f"spec3 (JSON): {passed} passed, {failed} failed, {skipped} skipped")
    assert not unexpected, unexpected[:50]  # every failure is in the known-failures file, with its reason
    assert skipped == 0 and passed + failed == COMMANDS
    assert passed / COMMANDS >= 0.995


def test_text_form_counts_every_command(shared: Path) -> None:
    scripts = sorted((shared / "spec3" / "wast").glob("*.wast"))
    assert len(scripts) == 257
    passed, failed, skipped, unexpected = _run(scripts)
    print(f"spec3 (.wast): {passed} passed, {failed} failed, {skipped} skipped")
    assert not unexpected, unexpected[:50]
    assert skipped == 0 and passed + failed == COMMANDS
    assert passed / COMMANDS >= 0.995


def test_legacy_exception_scripts(shared: Path) -> None:
    scripts = sorted((shared / "spec3" / "wast" / "legacy").glob("*.wast"))
    assert len(scripts) == 4
    passed, failed, skipped, unexpected = _run(scripts)
    print(f"spec3 legacy exceptions (.wast): {passed} passed, {failed} failed, {skipped} skipped")
    assert not unexpected, unexpected[:50]
    assert skipped == 0 and passed > 0 and failed == 0
