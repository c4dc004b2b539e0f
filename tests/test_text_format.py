"""asyncwasm.text, the WebAssembly text-format reader: differential against wasm-tools, and unit tests.

The differential part encodes every module of the spec suites' ``.wast`` scripts and compares the
bytes, custom sections stripped (the name section differs on purpose: asyncwasm writes only module,
function and local names), with what wasm-tools 1.262 produced for the same module: the ``.wasm``
files of the suites' JSON form, which ``wasm-tools json-from-wast`` (that is, ``wasm-tools parse``
per module) wrote. A sample is also re-encoded with the installed ``wasm-tools parse`` to show that
the stored files are what the live tool produces. Every difference must be listed, with its reason,
in ``KNOWN_DIFFERENCES``; the test fails on any other, and on any listed one that no longer differs.
``benchmarks/text_format.py`` runs the same comparison against a fresh ``wasm-tools`` and times the
parser.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import asyncwasm
from asyncwasm.binary.reader import decode_module
from asyncwasm.errors import MalformedModule
from asyncwasm.features import WASM2, WASM3, Features
from asyncwasm.text import TextError, is_text, wat_to_wasm
from asyncwasm.text.literals import F32_FORMAT, F64_FORMAT, LiteralError, parse_float, parse_int
from asyncwasm.text.script import Script, parse_script

WASM_TOOLS = shutil.which("wasm-tools") or shutil.which("wasm-tools", path=str(Path(sys.executable).parent))

# suite name -> (glob of .wast scripts under the shared folder, folder of their JSON form)
SUITES = {
    "spec-core": ("spec/core/*.wast", "spec/json"),
    "spec-simd": ("spec/simd/wast/*.wast", "spec/simd/json"),
    "spec3": ("spec3/wast/*.wast", "spec3/json"),
}

# the rules each suite is judged by: the 2.0 suites under the 2.0 preset, spec3 under 3.0
SUITE_FEATURES = {"spec-core": WASM2, "spec-simd": Features.parse("2.0,+simd"), "spec3": WASM3}

# "suite/file.wast:line" -> why asyncwasm's bytes differ from wasm-tools' (none today)
KNOWN_DIFFERENCES: dict[str, str] = {}

# assert_malformed text modules that the text reader accepts, and why that is right; each must still be
# rejected by the binary decoder, so the command as a whole still sees a malformed module.
_U64_RULES = (
    "Wasm 3.0 text rules (memory64): limits and offsets are u64 in the text format and the "
    "2.0 binary decoder rejects the u32 overflow instead"
)
TEXT_ACCEPTS_MALFORMED: dict[str, str] = {
    "spec-core/address.wast:214": _U64_RULES,
    "spec-core/memory.wast:80": _U64_RULES,
    "spec-core/memory.wast:84": _U64_RULES,
    "spec-core/memory.wast:88": _U64_RULES,
    "spec-core/table.wast:28": _U64_RULES,
    "spec-core/table.wast:32": _U64_RULES,
    "spec-core/table.wast:36": _U64_RULES,
    "spec-simd/simd_address.wast:144": _U64_RULES,
    "spec-simd/simd_address.wast:152": _U64_RULES,
}

# The legacy exception scripts have no JSON form: wasm-tools 1.262 cannot parse the folded
# "(try ... (do ...) (catch ...))" syntax. Those modules are checked by a round trip instead: our bytes,
# printed by wasm-tools (flat syntax, which it parses), must parse back to the same bytes.
LEGACY_NOT_PARSED_BY_WASM_TOOLS = (
    "folded legacy try/do/catch/delegate syntax, unsupported by wasm-tools 1.262"
)


def strip_custom_sections(wasm: bytes) -> bytes:
    """The module without its custom sections (id 0); malformed bytes come back unchanged."""
    out = bytearray(wasm[:8])
    i = 8
    try:
        while i < len(wasm):
            sid = wasm[i]
            j = i + 1
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


@dataclass
class Comparison:
    identical: int = 0
    differing: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)  # we failed on text wasm-tools encoded
    quoted: int = 0  # (module quote ...) text: wasm-tools keeps it as text, nothing to compare
    binary: int = 0  # (module binary ...): bytes given in the script


@functools.cache
def _script(path: Path) -> Script:
    return parse_script(path.read_text(), str(path))


def compare_suite(root: Path, suite: str) -> Comparison:
    pattern, json_dir = SUITES[suite]
    res = Comparison()
    for wast in sorted(root.glob(pattern)):
        script = _script(wast)
        jfile = root / json_dir / wast.stem / f"{wast.stem}.json"
        ref: dict[int, list[dict]] = {}
        for c in json.loads(jfile.read_text())["commands"]:
            if "filename" in c:
                ref.setdefault(c["line"], []).append(c)
        for cmd in script.commands:
            if "filename" not in cmd:
                continue
            where = f"{suite}/{wast.name}:{cmd['line']}"
            mod = script.modules[cmd["filename"]]
            theirs = ref.get(cmd["line"], [])
            assert theirs, f"{where}: no module on this line in the JSON form"
            rc = theirs.pop(0)
            if mod.kind == "quote" or rc["module_type"] == "text":
                assert mod.kind == "quote" and rc["module_type"] == "text", where
                res.quoted += 1
                continue
            expected = (jfile.parent / rc["filename"]).read_bytes()
            if mod.error is not None:
                res.unsupported.append(f"{where}: {str(mod.error).splitlines()[0]}")
                continue
            if mod.kind == "binary":
                res.binary += 1
            if strip_custom_sections(mod.binary()) == strip_custom_sections(expected):
                res.identical += 1
            else:
                res.differing.append(where)
    return res


@pytest.mark.parametrize("suite", list(SUITES))
def test_every_spec_module_encodes_like_wasm_tools(shared: Path, suite: str) -> None:
    res = compare_suite(shared, suite)
    print(
        f"{suite}: {res.identical} identical ({res.binary} of them module binary), "
        f"{len(res.differing)} differing, {len(res.unsupported)} unsupported, {res.quoted} quoted text"
    )
    assert res.unsupported == []
    unexpected = [w for w in res.differing if w not in KNOWN_DIFFERENCES]
    assert unexpected == [], unexpected
    fixed = [w for w in KNOWN_DIFFERENCES if w.startswith(suite + "/") and w not in res.differing]
    assert fixed == [], f"no longer differ, remove from KNOWN_DIFFERENCES: {fixed}"
    assert res.identical > {"spec-core": 3000, "spec-simd": 1000, "spec3": 5000}[suite]


def _quoted_modules(root: Path, suite: str) -> list[tuple[str, dict, Script]]:
    out = []
    for wast in sorted(root.glob(SUITES[suite][0])):
        script = _script(wast)
        for cmd in script.commands:
            if "filename" in cmd and script.modules[cmd["filename"]].kind == "quote":
                out.append((f"{suite}/{wast.name}:{cmd['line']}", cmd, script))
    return out


@pytest.mark.parametrize("suite", list(SUITES))
def test_quoted_modules_are_rejected_exactly_when_malformed(shared: Path, suite: str) -> None:
    """``(module quote ...)``: assert_malformed ones fail to parse, every other one parses."""
    accepted_malformed, wrong = [], []
    n = 0
    for where, cmd, script in _quoted_modules(shared, suite):
        n += 1
        mod = script.modules[cmd["filename"]]
        try:
            wasm = mod.binary()
        except TextError as exc:
            if cmd["type"] != "assert_malformed":
                wrong.append(f"{where}: rejected: {exc}")
            continue
        if cmd["type"] == "assert_malformed":
            accepted_malformed.append(where)
            with pytest.raises(MalformedModule):
                decode_module(wasm, SUITE_FEATURES[suite])
    print(f"{suite}: {n} quoted modules, {len(accepted_malformed)} malformed ones left to the binary decoder")
    assert wrong == []
    assert sorted(accepted_malformed) == sorted(
        w for w in TEXT_ACCEPTS_MALFORMED if w.startswith(suite + "/")
    )


def _wasm_tools(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    assert WASM_TOOLS is not None
    return subprocess.run([WASM_TOOLS, *args], input=data, capture_output=True, timeout=60, check=False)


def test_stored_references_are_what_the_installed_wasm_tools_writes(shared: Path) -> None:
    """A sample of modules (every 40th) encoded by the live ``wasm-tools parse`` gives our bytes too."""
    if WASM_TOOLS is None:
        pytest.fail("wasm-tools is not installed: it is a test extra (pip install -e '.[test]')")
    checked = 0
    k = 0
    for wast in sorted(shared.glob("spec3/wast/*.wast")):
        script = _script(wast)
        for mod in script.modules.values():
            if mod.kind != "text" or mod.error is not None or "definition" in mod.source.split(None, 2)[:2]:
                continue
            k += 1
            if k % 40:
                continue
            proc = _wasm_tools("parse", "-", "-o", "/dev/stdout", data=mod.source.encode())
            assert proc.returncode == 0, proc.stderr.decode()
            assert strip_custom_sections(proc.stdout) == strip_custom_sections(mod.binary()), (
                f"{wast.name}:{mod.line}"
            )
            checked += 1
    assert checked > 100


def test_quoted_valid_modules_encode_like_the_installed_wasm_tools(shared: Path) -> None:
    """Quoted modules are kept as text in the JSON form: the valid ones are compared with the live tool."""
    if WASM_TOOLS is None:
        pytest.fail("wasm-tools is not installed: it is a test extra (pip install -e '.[test]')")
    checked = 0
    for suite in SUITES:
        for where, cmd, script in _quoted_modules(shared, suite):
            if cmd["type"] == "assert_malformed":
                continue
            mod = script.modules[cmd["filename"]]
            proc = _wasm_tools(
                "parse", "-", "-o", "/dev/stdout", data=mod.source.encode("utf-8", "surrogateescape")
            )
            assert proc.returncode == 0, f"{where}: {proc.stderr.decode()}"
            assert strip_custom_sections(proc.stdout) == strip_custom_sections(mod.binary()), where
            checked += 1
    assert checked == 14


def test_names_reach_the_decoder_and_backtraces() -> None:
    src = '(module $demo (import "m" "f" (func $imp)) (func $boom (export "boom") (param $p i32) (local $l i64) unreachable))'
    names = decode_module(wat_to_wasm(src)).names
    assert (names.module, names.funcs, names.locals) == ("demo", {0: "imp", 1: "boom"}, {1: {0: "p", 1: "l"}})
    inst = asyncwasm.Linker().instantiate_sync(
        asyncwasm.Module('(module $demo (func $boom (export "boom") unreachable))'), asyncwasm.Store()
    )
    with pytest.raises(asyncwasm.Trap) as info:
        inst.call_raw_sync(inst.get_func("boom"), [])
    assert info.value.frames[0].describe().endswith("demo!boom")


def test_legacy_exception_scripts(shared: Path) -> None:
    if WASM_TOOLS is None:
        pytest.fail("wasm-tools is not installed: it is a test extra (pip install -e '.[test]')")
    identical = round_trip = 0
    for wast in sorted(shared.glob("spec3/wast/legacy/*.wast")):
        script = _script(wast)
        for mod in script.modules.values():
            if mod.kind != "text":
                continue
            ours = strip_custom_sections(mod.binary())
            proc = _wasm_tools("parse", "-", "-o", "/dev/stdout", data=mod.source.encode())
            if proc.returncode == 0:
                assert strip_custom_sections(proc.stdout) == ours, f"{wast.name}:{mod.line}"
                identical += 1
                continue
            assert b"unknown operator or unexpected token" in proc.stderr  # LEGACY_NOT_PARSED_BY_WASM_TOOLS
            printed = _wasm_tools("print", "-", data=ours)
            assert printed.returncode == 0, printed.stderr.decode()
            again = _wasm_tools("parse", "-", "-o", "/dev/stdout", data=printed.stdout)
            assert again.returncode == 0, again.stderr.decode()
            assert strip_custom_sections(again.stdout) == ours, f"{wast.name}:{mod.line}"
            round_trip += 1
    print(f"legacy exceptions: {identical} identical to wasm-tools, {round_trip} checked by round trip")
    assert identical >= 6 and round_trip >= 12


# --- unit tests --------------------------------------------------------------------------------------


def code_section(wasm: bytes) -> bytes:
    i = 8
    while i < len(wasm):
        sid = wasm[i]
        j = i + 1
        size = shift = 0
        while True:
            b = wasm[j]
            j += 1
            size |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if sid == 10:
            return wasm[j : j + size]
        i = j + size
    raise AssertionError("no code section")


@pytest.mark.parametrize(
    ("tok", "bits", "value"),
    [
        ("0", 32, 0),
        ("-1", 32, 0xFFFFFFFF),
        ("0xffff_ffff", 32, 0xFFFFFFFF),
        ("-0x8000_0000", 32, 0x80000000),
        ("+42", 32, 42),
        ("1_000_000", 32, 1000000),
        ("0x7fff_ffff_ffff_ffff", 64, 0x7FFFFFFFFFFFFFFF),
        ("-9223372036854775808", 64, 1 << 63),
    ],
)
def test_integer_literals(tok: str, bits: int, value: int) -> None:
    assert parse_int(tok, bits) == value


@pytest.mark.parametrize(
    "tok", ["0x1_0000_0000", "-0x8000_0001", "4294967296", "1__0", "_1", "1_", "0x", "0x_1", "1.0"]
)
def test_bad_i32_literals(tok: str) -> None:
    with pytest.raises(LiteralError):
        parse_int(tok, 32)


def _f32(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


@pytest.mark.parametrize(
    ("tok", "bits"),
    [
        ("0", 0),
        ("-0", 0x80000000),
        ("1.5", 0x3FC00000),
        ("0x1p-149", 1),
        ("0x1.fffffep127", 0x7F7FFFFF),
        ("inf", 0x7F800000),
        ("-inf", 0xFF800000),
        ("nan", 0x7FC00000),
        ("-nan", 0xFFC00000),
        ("nan:0x1", 0x7F800001),
        ("+nan:0x7f_ffff", 0x7FFFFFFF),
        ("1e-45", 1),
        ("0x1.8p1", 0x40400000),
        ("1_000.000_1", _f32(1000.0001)),
        ("0x1.000001p0", 0x3F800000),  # a tie, to even
        ("1.000000059604644775390625", 0x3F800000),
        ("1.0000000596046447753906250001", 0x3F800001),
        ("3.4028235677973366e38", 0x7F7FFFFF),
    ],
)
def test_f32_literals(tok: str, bits: int) -> None:
    assert parse_float(tok, F32_FORMAT) == bits


@pytest.mark.parametrize(
    ("tok", "bits"),
    [
        ("0x1p-1074", 1),
        ("0x1.fffffffffffffp1023", 0x7FEFFFFFFFFFFFFF),
        ("nan:0x8_0000_0000_0000", 0x7FF8000000000000),
        ("-0x0.0p0", 1 << 63),
        ("123456789e-5", struct.unpack("<Q", struct.pack("<d", 1234.56789))[0]),
        ("0x1.00000000000008p0", 0x3FF0000000000000),
        ("0x1.000000000000081p0", 0x3FF0000000000001),
    ],
)
def test_f64_literals(tok: str, bits: int) -> None:
    assert parse_float(tok, F64_FORMAT) == bits


@pytest.mark.parametrize(
    "tok", ["0x1p128", "3.5e38", "nan:0x0", "nan:0x80_0000", "1.e", ".5", "0x.1", "1e_5", "infinity"]
)
def test_bad_f32_literals(tok: str) -> None:
    with pytest.raises(LiteralError):
        parse_float(tok, F32_FORMAT)


def test_strings_escapes_and_utf8() -> None:
    wasm = wat_to_wasm(r'(module (memory 1) (data (i32.const 0) "a\t\n\r\"\'\\\00\ff" "\u{1F600}é"))')
    m = decode_module(wasm)
    assert m.datas[0].init == b"a\t\n\r\"'\\\x00\xff" + "\U0001f600é".encode()
    with pytest.raises(TextError, match="malformed UTF-8"):
        wat_to_wasm(r'(module (func (export "\ff")))')
    with pytest.raises(TextError, match="illegal escape"):
        wat_to_wasm(r'(module (data "\q"))')
    with pytest.raises(TextError, match="unclosed string"):
        wat_to_wasm('(module (data "abc))')


def test_identifiers_comments_and_annotations() -> None:
    plain = wat_to_wasm("(module (func $f (result i32) (call $f)))")
    fancy = wat_to_wasm("""
        ;; line comment
        (module (; block (; nested ;) comment ;)
          (@custom "x" "y") (@a (nested (@b)) "str" ) ;; annotations are skipped
          (func $"f" (result i32) (call $f)))""")
    assert strip_custom_sections(fancy) == strip_custom_sections(plain)
    with pytest.raises(TextError, match="unclosed block comment"):
        wat_to_wasm("(module (; never closed")
    with pytest.raises(TextError, match="empty identifier"):
        wat_to_wasm("(module (func $ ))")


@pytest.mark.parametrize(
    ("short", "long"),
    [
        # inline exports and imports
        ('(func (export "f") (export "g"))', '(func $x) (export "f" (func $x)) (export "g" (func $x))'),
        ('(func (import "m" "f") (param i32))', '(type (func (param i32))) (import "m" "f" (func (type 0)))'),
        ('(global (import "m" "g") (mut i64))', '(import "m" "g" (global (mut i64)))'),
        (
            '(memory (export "m") (import "a" "b") 1 2)',
            '(import "a" "b" (memory $m 1 2)) (export "m" (memory $m))',
        ),
        # type uses: implicit types are reused, and appended after the explicit ones
        (
            "(func (param i32) (result i32) local.get 0)",
            "(type (func (param i32) (result i32))) (func (type 0) local.get 0)",
        ),
        ("(func (param i32)) (type (func))", "(type (func)) (type (func (param i32))) (func (type 1))"),
        ("(type $t (func (param i32))) (func (param i32))", "(type $t (func (param i32))) (func (type $t))"),
        # inline data and elements
        ('(memory (data "ab" "c"))', '(memory 1 1) (data (i32.const 0) "abc")'),
        (
            "(table funcref (elem $f $f)) (func $f)",
            "(table $t 2 2 funcref) (elem (table $t) (i32.const 0) func $f $f) (func $f)",
        ),
        # element and data shorthands, offset and item
        (
            "(table 1 funcref) (elem (i32.const 0) $f) (func $f)",
            "(table 1 funcref) (elem (offset (i32.const 0)) func $f) (func $f)",
        ),
        (
            "(table 1 funcref) (elem (i32.const 0) funcref (ref.func $f)) (func $f)",
            "(table 1 funcref) (elem (offset i32.const 0) funcref (item ref.func $f)) (func $f)",
        ),
        (
            '(memory 1) (data (i32.const 1) "x")',
            '(memory $m 1) (data (memory $m) (offset (i32.const 1)) "x")',
        ),
        # folded and flat instructions, labels by name and number
        ("(func (block $b (br $b)))", "(func block $b br 0 end)"),
        (
            "(func (result i32) (if (result i32) (i32.const 1) (then (i32.const 2)) (else (i32.const 3))))",
            "(func (result i32) i32.const 1 if (result i32) i32.const 2 else i32.const 3 end)",
        ),
        ("(func (i32.add (i32.const 1) (i32.const 2)) drop)", "(func i32.const 1 i32.const 2 i32.add drop)"),
        (
            "(memory 1) (func (drop (i32.load offset=4 align=4 (i32.const 0))))",
            "(memory 1) (func i32.const 0 i32.load offset=4 drop)",
        ),
        (
            "(func (local $a i32) (local $b i64) (local.set $b (i64.const 0)))",
            "(func (local i32 i64) i64.const 0 local.set 1)",
        ),
    ],
)
def test_abbreviations_encode_like_their_expansion(short: str, long: str) -> None:
    a = strip_custom_sections(wat_to_wasm(f"(module {short})"))
    b = strip_custom_sections(wat_to_wasm(f"(module {long})"))
    assert a == b


def test_a_module_is_its_fields_alone() -> None:
    assert wat_to_wasm('(func (export "f"))') == wat_to_wasm('(module (func (export "f")))')


def test_error_names_line_and_column_with_a_caret() -> None:
    src = "(module\n  (func $f\n    (i32.add (i32.const 1) (i32.frob))))\n"
    with pytest.raises(TextError) as info:
        wat_to_wasm(src, filename="app.wat")
    exc = info.value
    assert (exc.line, exc.col) == (3, 29)
    lines = str(exc).splitlines()
    assert lines[0] == "app.wat:3:29: unknown operator i32.frob"
    assert lines[1] == "      (i32.add (i32.const 1) (i32.frob))))"
    assert lines[2] == "  " + " " * 28 + "^"
    assert isinstance(exc, MalformedModule)


@pytest.mark.parametrize(
    ("src", "message"),
    [
        ("(module (func (br $nowhere)))", "unknown label"),
        ("(module (func (call $g)))", "unknown func"),
        ("(module (func (local.get $x)))", "unknown local"),
        ("(module (func $f) (func $f))", "duplicate func"),
        ('(module (func) (import "m" "f" (func)))', "import after function"),
        ("(module (func block $a end $b))", "mismatching label"),
        ("(module (func (i32.const 0x1_0000_0000) drop))", "constant out of range"),
        ("(module (memory 1) (func (drop (i32.load align=3 (i32.const 0)))))", "power of two"),
        ("(module (type (func (param i32))) (func (type 0) (param i64)))", "inline function type"),
        ("(module (start 0) (start 0) (func))", "multiple start"),
        ("(module (func)", "1:1: unclosed '('"),
        ("(module (func $f (param i32) (result i32)", "1:9: unclosed '('"),
        ("(module (func) ))", "unexpected token ')'"),
        ("(module (func (result i32) i32.const 1 i32.const 2 i32.add i32.const))", "expected an i32 literal"),
    ],
)
def test_error_messages(src: str, message: str) -> None:
    with pytest.raises(TextError, match=re.escape(message)):
        wat_to_wasm(src)


def test_proposal_instructions_encode() -> None:
    """A few 3.0 instructions next to their known binary encoding."""
    cases = {
        "(func (return_call 0))": b"\x12\x00",
        "(func (result v128) (v128.const i32x4 1 2 3 4))": b"\xfd\x0c" + struct.pack("<4I", 1, 2, 3, 4),
        "(func (param v128) (result i32) (i8x16.extract_lane_u 15 (local.get 0)))": b"\x20\x00\xfd\x16\x0f",
        "(tag $e) (func (throw $e))": b"\x08\x00",
        "(type $s (struct (field $x i32))) (func (param (ref $s)) (result i32) (struct.get $s $x (local.get 0)))": b"\x20\x00\xfb\x02\x00\x00",
        "(memory 1) (memory $m i64 1) (func (drop (i32.load $m offset=8 (i64.const 0))))": b"\x42\x00\x28\x42\x01\x08\x1a",
        "(func (result i32) (ref.is_null (ref.null extern)))": b"\xd0\x6f\xd1",
    }
    for src, code in cases.items():
        cs = code_section(wat_to_wasm(f"(module {src})"))
        assert code in cs, src


def test_try_table_and_legacy_try() -> None:
    new = wat_to_wasm(
        "(module (tag $e (param i32)) (func (result i32) "
        "(block $h (result i32) (try_table (catch $e $h) (throw $e (i32.const 1))) (i32.const 0))))"
    )
    assert b"\x1f\x40\x01\x00\x00\x00" in code_section(new)  # try_table, empty type, one catch: tag 0 label 0
    legacy = wat_to_wasm("(module (tag $e) (func (try (do (throw $e)) (catch $e) (catch_all))))")
    assert b"\x06\x40\x08\x00\x07\x00\x19\x0b" in code_section(legacy)
    flat = wat_to_wasm("(module (tag $e) (func try throw $e catch $e catch_all end))")
    assert code_section(flat) == code_section(legacy)


def test_module_accepts_text_and_runs_it() -> None:
    src = '(module (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))'
    for form in (src, src.encode(), b"  ;; comment\n" + src.encode()):
        assert is_text(form)
        m = asyncwasm.Module(form)
        inst = asyncwasm.Linker().instantiate_sync(m, asyncwasm.Store())
        assert inst.call_raw_sync(inst.get_func("add"), [2, 40]) == 42
    assert not is_text(b"\x00asm\x01\x00\x00\x00")
    with pytest.raises(MalformedModule, match="1:10: unknown module field fun"):
        asyncwasm.Module("(module (fun))")


def test_cli_runs_a_wat_file(tmp_path: Path) -> None:
    app = tmp_path / "app.wat"
    app.write_text("""(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 16) "hello, text\\n")
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 12))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))""")
    proc = subprocess.run(
        [sys.executable, "-m", "asyncwasm", "run", str(app)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (0, "hello, text\n"), proc.stderr
    bad = tmp_path / "bad.wat"
    bad.write_text("(module\n  (func (i32.frob)))\n")
    proc = subprocess.run(
        [sys.executable, "-m", "asyncwasm", "run", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "2:10: unknown operator i32.frob" in proc.stderr and "^" in proc.stderr


def test_wast_scripts_run_straight_from_text(tmp_path: Path, shared: Path) -> None:
    """``asyncwasm wast FILE.wast`` runs every command kind, quoted and binary modules included."""
    script = tmp_path / "mini.wast"
    script.write_text(r"""
        (module $M (func (export "inc") (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
                   (global (export "g") i32 (i32.const 7)))
        (register "m" $M)
        (module (import "m" "inc" (func $inc (param i32) (result i32)))
          (func (export "twice") (param i32) (result i32) (call $inc (call $inc (local.get 0))))
          (func (export "boom") unreachable))
        (assert_return (invoke "twice" (i32.const 40)) (i32.const 42))
        (assert_return (get $M "g") (i32.const 7))
        (assert_trap (invoke "boom") "unreachable")
        (assert_malformed (module quote "(func (i32.frob))") "unknown operator")
        (assert_malformed (module binary "\00asm\02\00\00\00") "unknown binary version")
        (assert_invalid (module (func (result i32) (i64.const 0))) "type mismatch")
        (assert_unlinkable (module (import "m" "nope" (func))) "unknown import")
        (module binary "\00asm\01\00\00\00")
        (module quote "(func (export \"q\") (result f32) (f32.const -0x1p-1))")
        (assert_return (invoke "q") (f32.const -0.5))
    """)
    files = [
        str(script),
        str(shared / "spec" / "core" / "comments.wast"),
        str(shared / "spec" / "core" / "elem.wast"),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "asyncwasm", "wast", "--features", "2.0", *files],  # the 2.0 scripts' rules
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    passed, failed, skipped = map(
        int, re.search(r"(\d+) passed, (\d+) failed, (\d+) skipped", proc.stdout).groups()
    )
    assert (failed, skipped) == (0, 0) and passed > 100
    bad = tmp_path / "bad.wast"
    bad.write_text('(module (func))\n(assert_return (invoke "f" (i32.const 1)) (i32.const 2)\n')
    proc = subprocess.run(
        [sys.executable, "-m", "asyncwasm", "wast", "--known-failures", "/dev/null", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "FAIL: bad.wast:2: bad.wast:2:1: unclosed '('" in proc.stdout, proc.stdout


def test_deep_flat_nesting_and_too_deep_folded_nesting() -> None:
    """Flat blocks do not recurse (compilers nest thousands); folded ones report a clear error."""
    deep = wat_to_wasm("(module (func " + "block " * 20000 + "end " * 20000 + "))")
    assert len(decode_module(deep).codes[0].body) == 40001
    with pytest.raises(TextError, match="nested too deeply"):
        wat_to_wasm("(module (func " + "(block " * 5000 + ")" * 5000 + "))")
    with pytest.raises(TextError, match="expected 'end'"):
        wat_to_wasm("(module (func block loop end))")
    with pytest.raises(TextError, match="unexpected else"):
        wat_to_wasm("(module (func block else end))")
