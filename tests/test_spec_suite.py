"""The WebAssembly core spec suite, run through the real `asyncwasm wast` command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from asyncwasm.features import Features
from asyncwasm.wast import DEFAULT_KNOWN_FAILURES, ScriptRunner, failure_key, load_known_failures

_SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) skipped$", re.M)


def test_core_spec_suite_passes(shared: Path) -> None:
    scripts = sorted((shared / "spec" / "json").glob("*/*.json"))
    assert len(scripts) == 90
    proc = subprocess.run(
        [sys.executable, "-m", "asyncwasm", "wast", "--features", "2.0", *map(str, scripts)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    m = _SUMMARY.search(proc.stdout)
    assert m, proc.stdout[-2000:] + proc.stderr[-2000:]
    passed, failed, skipped = map(int, m.groups())
    print(f"core spec suite: {passed} passed, {failed} failed, {skipped} skipped")
    assert proc.returncode == 0, [line for line in proc.stdout.splitlines() if line.startswith("FAIL")][:50]
    assert (passed, failed, skipped) == (28018, 0, 0)  # every command of the 90 scripts, text modules too


def _wast(features: str, scripts: list[Path]) -> tuple[int, int, int, subprocess.CompletedProcess[str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "asyncwasm", "wast", "--features", features, *map(str, scripts)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    m = _SUMMARY.search(proc.stdout)
    assert m, proc.stdout[-2000:] + proc.stderr[-2000:]
    passed, failed, skipped = map(int, m.groups())
    return passed, failed, skipped, proc


def test_core_spec_suite_text_form_runs_every_command(shared: Path) -> None:
    """The .wast scripts themselves: every command, text modules included, under the 2.0 rules."""
    scripts = sorted((shared / "spec" / "core").glob("*.wast"))
    assert len(scripts) == 90
    passed, failed, skipped, proc = _wast("2.0", scripts)
    print(f"core spec suite (.wast): {passed} passed, {failed} failed, {skipped} skipped")
    assert proc.returncode == 0, [line for line in proc.stdout.splitlines() if line.startswith("FAIL")][:50]
    assert (passed, failed, skipped) == (28018, 0, 0)


def test_simd_spec_suite_passes_under_2_0_with_simd(shared: Path) -> None:
    """../shared/spec/simd, JSON and text forms, under the 2.0 preset with SIMD enabled."""
    json_scripts = sorted((shared / "spec" / "simd" / "json").glob("*/*.json"))
    passed, failed, skipped, proc = _wast("2.0,+simd", json_scripts)
    assert proc.returncode == 0 and (passed, failed, skipped) == (25988, 0, 0), proc.stdout[-2000:]
    text_scripts = sorted((shared / "spec" / "simd" / "wast").glob("*.wast"))
    passed, failed, skipped, proc = _wast("2.0,+simd", text_scripts)
    print(f"SIMD spec suite (.wast): {passed} passed, {failed} failed, {skipped} skipped")
    assert proc.returncode == 0 and (passed, failed, skipped) == (25988, 0, 0), proc.stdout[-2000:]


SUITES = {
    "spec": (("spec",), Features.wasm2()),
    "simd": (("spec", "simd"), Features.parse("2.0,+simd")),
    "spec3": (("spec3",), Features.wasm3()),
}


def _script_for(shared: Path, key: str) -> tuple[Path, Features]:
    """The script and feature set a known-failures key (``SUITE/NAME:LINE``) names."""
    suite, _, name = key.rpartition(":")[0].partition("/")
    parts, features = SUITES[suite]
    root = shared.joinpath(*parts)
    json = root / "json" / name / f"{name}.json"  # a script in a subfolder (legacy/) exists only as text
    return (json if "/" not in name and json.exists() else root / "wast" / f"{name}.wast"), features


def test_known_failures_still_fail(shared: Path) -> None:
    """The known-failures list only shrinks: an entry that passes now must be removed."""
    known = load_known_failures(DEFAULT_KNOWN_FAILURES)
    scripts = {_script_for(shared, key) for key in known}
    failing: set[str] = set()
    for path, features in scripts:
        assert path.exists(), f"a known failure names a script that does not exist: {path}"
        failing |= {failure_key(path, where) for where, _msg in ScriptRunner(path, features).run().failures}
    assert set(known) <= failing, f"now passing, remove from the list: {sorted(set(known) - failing)}"


def test_failure_keys_name_the_suite_and_cover_both_forms(shared: Path) -> None:
    assert failure_key(shared / "spec3" / "json" / "i32" / "i32.json", "i32.json:12") == "spec3/i32:12"
    assert failure_key(shared / "spec3" / "wast" / "i32.wast", "i32.wast:12") == "spec3/i32:12"
    assert (
        failure_key(shared / "spec" / "simd" / "json" / "simd_lane" / "simd_lane.json", "x:7")
        == "simd/simd_lane:7"
    )
    assert (
        failure_key(shared / "spec3" / "wast" / "legacy" / "rethrow.wast", "rethrow.wast:3")
        == "spec3/legacy/rethrow:3"
    )


def test_failures_are_reported_with_file_and_line(tmp_path: Path, shared: Path) -> None:
    """A wrong expectation is reported as a failure naming the script and line, and the exit is 1."""
    src = shared / "spec" / "json" / "i32"
    for f in src.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    script = tmp_path / "i32.json"
    text = script.read_text()
    text = text.replace(
        '"expected":[{"type":"i32","value":"2"}]', '"expected":[{"type":"i32","value":"3"}]', 1
    )
    script.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "asyncwasm", "wast", "--known-failures", "/dev/null", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert re.search(r"^FAIL: i32\.json:\d+: expected \['3'\]", proc.stdout, re.M), proc.stdout
    assert _SUMMARY.search(proc.stdout).group(2) == "1"  # type: ignore[union-attr]
