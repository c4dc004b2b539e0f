"""Test helpers over wabt: WebAssembly text to binary with ``wat2wasm`` (cached per text), and the code
offsets of instructions as ``wasm-objdump`` disassembles them (an oracle for backtrace offsets)."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

WAT2WASM = shutil.which("wat2wasm")


def require_wat2wasm() -> str:
    """The path of ``wat2wasm``; skips the calling test when wabt is not installed."""
    if WAT2WASM is None:
        pytest.skip("wat2wasm (wabt) is not installed: apt-get install wabt")
    return WAT2WASM


@functools.cache
def _compile(text: str, debug_names: bool) -> bytes:
    tool = require_wat2wasm()
    with tempfile.TemporaryDirectory(prefix="asyncwasm-wat-") as tmp:
        src = Path(tmp) / "module.wat"
        out = Path(tmp) / "module.wasm"
        src.write_text(text, encoding="utf-8")
        cmd = [tool, str(src), "-o", str(out)]
        if debug_names:
            cmd.insert(1, "--debug-names")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ValueError(f"wat2wasm failed:\n{proc.stderr}\n--- source ---\n{text}")
        return out.read_bytes()


def wat(text: str, *, names: bool = True) -> bytes:
    """The binary module for ``text``; ``names=True`` keeps a name section (function names, ``$f``)."""
    return _compile(text, names)


@functools.cache
def _disassemble(wasm: bytes) -> dict[str, list[tuple[int, str]]]:
    tool = shutil.which("wasm-objdump")
    if tool is None:
        pytest.skip("wasm-objdump (wabt) is not installed: apt-get install wabt")
    with tempfile.TemporaryDirectory(prefix="asyncwasm-wat-") as tmp:
        path = Path(tmp) / "module.wasm"
        path.write_bytes(wasm)
        proc = subprocess.run([tool, "-d", str(path)], capture_output=True, text=True, check=True)
    funcs: dict[str, list[tuple[int, str]]] = {}
    current: list[tuple[int, str]] = []
    for line in proc.stdout.splitlines():
        head = re.match(r"^[0-9a-f]+ func\[(\d+)\](?: <(.*)>)?:$", line)
        if head:
            current = funcs.setdefault(head.group(2) or head.group(1), [])
            continue
        instr = re.match(r"^ ([0-9a-f]+):[^|]*\| (\S+)", line)
        if instr:
            current.append((int(instr.group(1), 16), instr.group(2)))
    return funcs


def instr_offset(wasm: bytes, func: str, mnemonic: str, nth: int = 0) -> int:
    """Code offset of the ``nth`` ``mnemonic`` instruction in function ``func`` (per wasm-objdump)."""
    hits = [off for off, op in _disassemble(wasm)[func] if op == mnemonic]
    return hits[nth]
