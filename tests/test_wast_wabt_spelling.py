"""`asyncwasm wast` also reads wabt's wast2json output: `$`-prefixed module names, integers
written unsigned, `expected` on traps. Converted here from the spec's .wast sources."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = ["i32", "i64", "names", "linking", "imports", "exports", "call_indirect", "float_exprs"]


# wabt is no longer needed by anything else (the project reads text itself), so CI does not install
# it; this test is for the JSON dialect of an outside tool and runs wherever that tool is installed.
@pytest.mark.skipif(
    shutil.which("wast2json") is None,
    reason="wabt's wast2json is not installed: this test checks reading its JSON dialect",
)
def test_wabt_json_runs_clean(tmp_path: Path, shared: Path) -> None:
    for name in SCRIPTS:
        subprocess.run(
            [
                "wast2json",
                str(shared / "spec" / "core" / f"{name}.wast"),
                "-o",
                str(tmp_path / f"{name}.json"),
            ],
            check=True,
            capture_output=True,
        )
    text = (tmp_path / "linking.json").read_text()
    assert '"$Mf"' in text or '"name": "$' in text  # wabt's spelling really is under test
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "asyncwasm",
            "wast",
            "--known-failures",
            "/dev/null",
            *sorted(map(str, tmp_path.glob("*.json"))),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = re.search(r"^(\d+) passed, (\d+) failed, (\d+) skipped$", proc.stdout, re.M)
    assert summary, proc.stdout[-2000:]
    assert proc.returncode == 0 and summary.group(2) == "0", proc.stdout[-3000:]
    assert int(summary.group(1)) > 2500
