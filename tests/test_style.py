"""The code is ruff-clean, ruff-formatted and mypy-clean (the configuration is pyproject.toml's)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATHS = ["asyncwasm", "wasi_async", "tests", "benchmarks", "examples"]


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert exe is not None, "ruff is a test extra: pip install -e '.[test]'"
    return subprocess.run([exe, *args, *PATHS], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_check_passes() -> None:
    done = _ruff("check")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_ruff_format_leaves_every_file_as_it_is() -> None:
    done = _ruff("format", "--check")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_mypy_reports_nothing() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "asyncwasm", "wasi_async"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
