"""The binary decoder against the spec test suite, fuzzing, and a few hand-built modules."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncwasm.binary.module import FuncType, Module
from asyncwasm.binary.reader import decode_module
from asyncwasm.errors import MalformedModule, UnsupportedFeature
from asyncwasm.features import WASM2, Features

HEADER = b"\x00asm\x01\x00\x00\x00"


# --- spec suite ----------------------------------------------------------------------------------


def _commands(shared: Path) -> list[tuple[Path, dict]]:
    found = []
    for path in sorted((shared / "spec" / "json").glob("*/*.json")):
        for cmd in json.loads(path.read_text())["commands"]:
            if cmd.get("module_type") == "binary":
                found.append((path.parent / cmd["filename"], cmd))
    return found


@pytest.fixture(scope="session")
def spec_commands(shared: Path) -> list[tuple[Path, dict]]:
    commands = _commands(shared)
    if not commands:
        pytest.fail(f"no spec JSON under {shared / 'spec' / 'json'}: the shared data is incomplete")
    return commands


@pytest.fixture(scope="session")
def spec_modules(spec_commands: list[tuple[Path, dict]]) -> list[bytes]:
    return [path.read_bytes() for path, cmd in spec_commands if cmd["type"] == "module"]


def test_spec_modules_decode(spec_commands: list[tuple[Path, dict]]) -> None:
    # assert_invalid / unlinkable / uninstantiable modules are well-formed too: they must decode.
    kinds = ("module", "assert_invalid", "assert_unlinkable", "assert_uninstantiable")
    failures = []
    count = 0
    for path, cmd in spec_commands:
        if cmd["type"] not in kinds:
            continue
        count += 1
        try:
            decode_module(path.read_bytes(), WASM2)
        except MalformedModule as e:
            failures.append(f"{path.name} (line {cmd['line']}, {cmd['type']}): {e}")
    assert count > 1000
    assert not failures, "\n".join(failures)


def test_spec_malformed(spec_commands: list[tuple[Path, dict]]) -> None:
    failures = []
    count = 0
    for path, cmd in spec_commands:
        if cmd["type"] != "assert_malformed":
            continue
        count += 1
        where = f"{path.name} (line {cmd['line']})"
        try:
            decode_module(path.read_bytes(), WASM2)  # the 2.0 suite's rules: 3.0 reads some of these
        except MalformedModule as e:
            if cmd["text"] not in e.message:
                failures.append(f"{where}: expected {cmd['text']!r}, got {e.message!r}")
        else:
            failures.append(f"{where}: decoded, expected {cmd['text']!r}")
    assert count > 700
    assert not failures, "\n".join(failures)


def test_simd_suite_decoded_or_refused_by_feature(shared: Path) -> None:
    """The SIMD suite's modules decode with SIMD on; under the 2.0 preset a module using SIMD is refused
    as unsupported (naming the feature), never as malformed, and the rest decode."""
    refused = decoded = 0
    for path in sorted((shared / "spec" / "simd" / "json").glob("*/*.json")):
        for cmd in json.loads(path.read_text())["commands"]:
            if cmd["type"] == "module" and cmd.get("module_type") == "binary":
                data = (path.parent / cmd["filename"]).read_bytes()
                decode_module(data)
                decoded += 1
                try:
                    decode_module(data, Features.wasm2())
                except UnsupportedFeature as e:
                    assert e.feature.startswith("simd")
                    refused += 1
    assert decoded > 100, "no SIMD spec module found: is ../shared/spec/simd there?"
    assert refused > 100


# --- fuzzing -------------------------------------------------------------------------------------


def _decode_or_malformed(data: bytes) -> None:
    try:
        decode_module(data)
    except MalformedModule as e:
        assert e.message
        if e.offset is not None:
            assert 0 <= e.offset <= len(data)


FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    _decode_or_malformed(data)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_after_header(data: bytes) -> None:
    _decode_or_malformed(HEADER + data)


@FUZZ
@given(st.data())
def test_fuzz_truncated_spec_modules(spec_modules: list[bytes], data: st.DataObject) -> None:
    module = data.draw(st.sampled_from(spec_modules))
    cut = data.draw(st.integers(0, max(0, len(module) - 1)))
    _decode_or_malformed(module[:cut])


@FUZZ
@given(st.data())
def test_fuzz_mutated_spec_modules(spec_modules: list[bytes], data: st.DataObject) -> None:
    module = bytearray(data.draw(st.sampled_from(spec_modules)))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(module) - 1))
        module[at] = data.draw(st.integers(0, 255))
    _decode_or_malformed(bytes(module))


# --- hand-built modules ----------------------------------------------------------------------------


def uleb(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def vec(items: list[bytes]) -> bytes:
    return uleb(len(items)) + b"".join(items)


def name(s: str) -> bytes:
    raw = s.encode()
    return uleb(len(raw)) + raw


def section(sid: int, payload: bytes) -> bytes:
    return bytes([sid]) + uleb(len(payload)) + payload


def one_func(body: bytes, locals_: bytes = b"\x00", extra: bytes = b"") -> bytes:
    """A module with one `() -> ()` function whose body (after locals) is `body`."""
    code = locals_ + body
    return (
        HEADER
        + section(1, vec([b"\x60\x00\x00"]))
        + section(3, vec([b"\x00"]))
        + extra
        + section(10, vec([uleb(len(code)) + code]))
    )


def test_minimal_function_and_offsets() -> None:
    wasm = one_func(b"\x41\x7f\x42\x80\x7f\x1a\x1a\x43\x00\x00\xc0\x7f\x1a\x0b")
    m = decode_module(wasm)
    assert isinstance(m, Module)
    assert m.types == [FuncType((), ())]
    assert m.funcs == [0]
    code = m.codes[0]
    size_at = wasm.rindex(b"\x0f\x00\x41")  # body size 15: locals byte + 14 instruction bytes
    assert code.offset == size_at
    first = size_at + 2
    assert code.body[0] == (0x41, 0xFFFFFFFF, first)
    assert code.body[1] == (0x42, (-128) & 0xFFFFFFFFFFFFFFFF, first + 2)
    assert code.body[4] == (0x43, 0x7FC00000, first + 7)
    assert code.body[-1] == (0x0B, None, len(wasm) - 1)


def test_locals_and_block_types() -> None:
    body = b"\x02\x40\x0b\x03\x7f\x41\x00\x0b\x1a\x04\x00\x05\x0b\x0b"
    m = decode_module(one_func(body, locals_=b"\x02\x02\x7f\x01\x7e"))
    assert m.codes[0].locals == ("i32", "i32", "i64")
    assert [(op, imm) for op, imm, _ in m.codes[0].body if op in (2, 3, 4)] == [(2, None), (3, "i32"), (4, 0)]


def test_illegal_opcode_offset() -> None:
    wasm = one_func(b"\x01\x17\x0b")
    with pytest.raises(MalformedModule, match="illegal opcode") as info:
        decode_module(wasm)
    assert info.value.offset == len(wasm) - 2
    # 0x06 is the legacy ``try`` of exception handling: illegal in Wasm 2.0, and the error says why
    wasm = one_func(b"\x01\x06\x40\x0b\x0b")
    with pytest.raises(
        UnsupportedFeature, match="legacy-exceptions is not enabled .illegal opcode 0x06"
    ) as err:
        decode_module(wasm, WASM2)
    assert err.value.offset == len(wasm) - 4


def test_simd_instruction_refused_without_the_feature() -> None:
    wasm = one_func(b"\xfd\x0c" + bytes(16) + b"\x1a\x0b")
    with pytest.raises(UnsupportedFeature) as info:
        decode_module(wasm, Features.wasm2())
    assert info.value.feature.startswith("simd")
    assert info.value.offset == wasm.index(b"\xfd\x0c")
    body = decode_module(wasm).codes[0].body
    assert body[0][1] == 0 and body[1][0] == 0x1A


def test_relaxed_simd_refused_without_its_feature() -> None:
    wasm = one_func(b"\xfd\x0c" + bytes(16) + b"\xfd\x0c" + bytes(16) + b"\xfd\x80\x02\x1a\x0b")
    with pytest.raises(UnsupportedFeature) as info:
        decode_module(wasm, Features.parse("2.0,+simd"))
    assert info.value.feature.startswith("relaxed-simd")
    decode_module(wasm, Features.parse("2.0,+simd,+relaxed-simd"))


def test_simd_immediates() -> None:
    """memarg, lane memarg, lane index, shuffle lanes and the 16 bytes of v128.const."""
    const = bytes(range(16))
    wasm = one_func(
        b"\x41\x00\xfd\x00\x04\x10"  # v128.load align=16 offset=16
        + b"\x41\x00\xfd\x0c"
        + const
        + b"\xfd\x55\x01\x02\x07"  # v128.load16_lane lane 7
        + b"\xfd\x0d"
        + bytes(range(0, 32, 2))
        + b"\xfd\x15\x0f\x1a\x0b"
    )
    ops = [(op, imm) for op, imm, _off in decode_module(wasm).codes[0].body]
    assert ops[1] == (0xFD000, (4, 16))
    assert ops[3] == (0xFD00C, int.from_bytes(const, "little"))
    assert ops[4] == (0xFD055, ((1, 2), 7))
    assert ops[5] == (0xFD00D, tuple(range(0, 32, 2)))
    assert ops[6] == (0xFD015, 15)


def test_simd_memarg_of_another_memory_and_a_64_bit_offset() -> None:
    """SIMD memargs read as scalar ones do: bit 6 of the flags brings a memory index (multi-memory),
    the offset is a u64 under memory64 and a u32 without."""
    wasm = one_func(b"\x41\x00\xfd\x00\x44\x01\x80\x80\x80\x80\x10\x1a\x0b")  # memory 1, offset 2^32
    assert decode_module(wasm).codes[0].body[1][1] == (4, 1 << 32, 1)
    with pytest.raises(MalformedModule, match="malformed memop flags"):
        decode_module(wasm, Features.parse("2.0,+simd"))
    lane = one_func(b"\x41\x00\x41\x00\xfd\x11\xfd\x58\x40\x02\x00\x03\x0b")  # store8_lane memory 2 lane 3
    assert decode_module(lane).codes[0].body[3][1] == ((0, 0, 2), 3)


def test_v128_type_refused_without_simd() -> None:
    types = HEADER + section(1, vec([b"\x60\x01\x7b\x00"]))
    with pytest.raises(UnsupportedFeature):
        decode_module(types, Features.wasm2())
    assert decode_module(types).types[0] == FuncType(("v128",), ())


def test_name_section() -> None:
    subs = (
        b"\x00"
        + uleb(len(name("mod")))
        + name("mod")
        + b"\x01"
        + uleb(len(vec([b"\x00" + name("f")])))
        + vec([b"\x00" + name("f")])
        + b"\x02"
        + uleb(len(vec([b"\x00" + vec([b"\x00" + name("x")])])))
        + vec([b"\x00" + vec([b"\x00" + name("x")])])
    )
    wasm = one_func(b"\x0b", locals_=b"\x01\x01\x7f") + section(0, name("name") + subs)
    m = decode_module(wasm)
    assert m.names.module == "mod"
    assert m.names.funcs == {0: "f"}
    assert m.func_name(0) == "f"
    assert m.names.locals == {0: {0: "x"}}
    assert m.customs == [("name", subs)]


def test_malformed_name_section_ignored() -> None:
    wasm = one_func(b"\x0b") + section(0, name("name") + b"\x01\x05\x09\xff")
    m = decode_module(wasm)
    assert m.names.funcs == {} and m.names.module is None
    assert [c[0] for c in m.customs] == ["name"]


def test_huge_vector_count_fails_fast() -> None:
    with pytest.raises(MalformedModule, match="length out of bounds"):
        decode_module(HEADER + b"\x01\x05" + uleb(0xFFFFFFFF))


def test_too_many_locals() -> None:
    with pytest.raises(MalformedModule, match="too many locals"):
        decode_module(one_func(b"\x0b", locals_=b"\x01" + uleb(50_001) + b"\x7f"))


def test_elem_funcidx_become_ref_func() -> None:
    elem = section(9, vec([b"\x00\x41\x00\x0b" + vec([b"\x00", b"\x00"])]))
    table = section(4, vec([b"\x70\x00\x02"]))
    wasm = (
        HEADER
        + section(1, vec([b"\x60\x00\x00"]))
        + section(3, vec([b"\x00"]))
        + table
        + elem
        + section(10, vec([b"\x02\x00\x0b"]))
    )
    m = decode_module(wasm)
    seg = m.elems[0]
    # function indices are never null: Wasm 3.0 types the segment (ref func), 2.0 funcref
    assert seg.mode == "active" and seg.type == "(ref func)" and seg.table == 0
    assert decode_module(wasm, Features.wasm2()).elems[0].type == "funcref"
    assert seg.offset == [(0x41, 0, wasm.index(b"\x41\x00\x0b"))]
    at = wasm.index(b"\x41\x00\x0b") + 4
    assert seg.init == [[(0xD2, 0, at)], [(0xD2, 0, at + 1)]]


def test_data_count_required() -> None:
    body = b"\x41\x00\x41\x00\x41\x00\xfc\x08\x00\x00\x0b"
    mem = section(5, vec([b"\x00\x01"]))
    with pytest.raises(MalformedModule, match="data count section required"):
        decode_module(one_func(body, extra=mem))


def test_float_consts_keep_bits() -> None:
    bits = 0x7FF4000000000001  # a signalling NaN: must survive as raw bits
    m = decode_module(one_func(b"\x44" + struct.pack("<Q", bits) + b"\x1a\x0b"))
    assert m.codes[0].body[0][1] == bits
