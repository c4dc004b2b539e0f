"""`asyncwasm compile` and the run command's cache options, through the real command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from wat import wat

N = 50


def _big(tmp_path: Path) -> Path:
    funcs = [
        f'(func $f{k} (export "f{k}") (param $x i32) (result i32) '
        + " ".join(["(local.set $x (i32.add (local.get $x) (i32.const 1)))"] * 25)
        + " (local.get $x))"
        for k in range(N)
    ]
    path = tmp_path / "big.wasm"
    path.write_bytes(wat("(module " + " ".join(funcs) + ")"))
    return path


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncwasm", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_compile_fills_the_cache_and_run_uses_it(tmp_path: Path) -> None:
    module, cache = _big(tmp_path), tmp_path / "cache"
    done = _cli("compile", "--cache-dir", str(cache), str(module))
    assert done.returncode == 0, done.stderr
    assert f"{N} of {N} functions translated (0 were cached)" in done.stderr
    (entry,) = [p for p in cache.iterdir() if p.is_dir()]
    assert len([p for p in entry.iterdir() if p.name.startswith("f")]) == N
    again = _cli("compile", "--cache-dir", str(cache), "--progress", str(module))
    assert again.returncode == 0 and f"0 of {N} functions translated ({N} were cached)" in again.stderr
    ran = _cli("run", "--cache-dir", str(cache), "--invoke", "f7", str(module), "1")
    assert ran.returncode == 0 and ran.stdout.strip() == "26", ran.stderr


def test_no_cache_writes_nothing(tmp_path: Path) -> None:
    module, cache = _big(tmp_path), tmp_path / "cache"
    ran = _cli("run", "--cache-dir", str(cache), "--no-cache", "--invoke", "f0", str(module), "0")
    assert ran.returncode == 0 and ran.stdout.strip() == "25", ran.stderr
    assert not cache.exists() or not any(cache.iterdir())


def test_compile_says_when_a_module_is_too_small_to_cache(tmp_path: Path) -> None:
    small = tmp_path / "small.wat"
    small.write_text('(module (func (export "f")))')
    done = _cli("compile", "--cache-dir", str(tmp_path / "cache"), str(small))
    assert done.returncode == 0 and "not cached" in done.stderr


def test_a_v128_result_prints_as_hex(tmp_path: Path) -> None:
    path = tmp_path / "v.wat"
    path.write_text('(module (func (export "f") (result v128) v128.const i32x4 1 2 3 4))')
    done = _cli("run", "--invoke", "f", str(path))
    assert done.returncode == 0 and done.stdout.strip() == "0x00000004000000030000000200000001", done.stderr


def test_compile_into_a_cache_others_can_write_is_an_error(tmp_path: Path) -> None:
    module, cache = _big(tmp_path), tmp_path / "open"
    cache.mkdir()
    cache.chmod(0o777)
    done = _cli("compile", "--cache-dir", str(cache), str(module))
    assert (
        done.returncode == 1 and "cannot be used" in done.stderr and "writable by other users" in done.stderr
    )
    assert not any(cache.iterdir())
