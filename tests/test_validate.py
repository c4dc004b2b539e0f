"""The validator against the spec test suite (valid modules and assert_invalid texts) and hand-built cases."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from asyncwasm.binary.module import (
    EXTERNREF,
    FUNCREF,
    I32,
    I64,
    Code,
    Elem,
    Export,
    FuncType,
    Global,
    GlobalType,
    Import,
    Instr,
    Limits,
    MemoryType,
    Module,
    Names,
    TableType,
)
from asyncwasm.binary.opcodes import NAMES
from asyncwasm.binary.reader import decode_module
from asyncwasm.errors import InvalidModule
from asyncwasm.features import WASM2, WASM3, Features
from asyncwasm.validate import validate_module

# Commands whose module must be valid: unlinkable and uninstantiable modules fail only later.
VALID_KINDS = ("module", "assert_unlinkable", "assert_uninstantiable")
SELECT_T = 0x1C  # select with a type immediate (NAMES maps "select" to the untyped 0x1B)


def _spec_files(shared: Path) -> list[Path]:
    files = sorted((shared / "spec" / "json").glob("*/*.json"))
    if not files:
        pytest.fail(f"no spec JSON under {shared / 'spec' / 'json'}: the shared data is incomplete")
    return files


def _binary(path: Path, cmd: dict) -> Path | None:
    """The binary file of a command's module (a text module may carry a binary twin)."""
    if "binary_filename" in cmd:
        return path.parent / cmd["binary_filename"]
    if cmd.get("module_type") == "binary":
        return path.parent / cmd["filename"]
    return None


# --- spec suite ----------------------------------------------------------------------------------


def test_spec_valid_modules(shared: Path) -> None:
    failures = []
    count = 0
    for path in _spec_files(shared):
        for cmd in json.loads(path.read_text())["commands"]:
            wasm = _binary(path, cmd) if cmd["type"] in VALID_KINDS else None
            if wasm is None:
                continue
            count += 1
            try:
                validate_module(decode_module(wasm.read_bytes(), WASM2), WASM2)
            except InvalidModule as e:
                failures.append(f"{wasm.name} (line {cmd['line']}, {cmd['type']}): {e}")
    assert count > 1200
    assert not failures, "\n".join(failures)


def test_spec_assert_invalid(shared: Path) -> None:
    failures = []
    count = 0
    for path in _spec_files(shared):
        for cmd in json.loads(path.read_text())["commands"]:
            if cmd["type"] != "assert_invalid":
                continue
            wasm = _binary(path, cmd)
            assert wasm is not None, f"{path.name} line {cmd['line']}: not a binary module"
            count += 1
            where = f"{wasm.name} (line {cmd['line']}, expected {cmd['text']!r})"
            module = decode_module(wasm.read_bytes(), WASM2)  # assert_invalid modules are well-formed
            try:
                validate_module(module, WASM2)  # the 2.0 suite's rules: 3.0 accepts some of these
            except InvalidModule as e:
                if cmd["text"] not in e.message:
                    failures.append(f"{where}: wrong message {e.message!r}")
            else:
                failures.append(f"{where}: accepted")
    assert count == 1477
    assert not failures, "\n".join(failures)


# --- hand-built modules --------------------------------------------------------------------------


def _body(*ops: tuple[str | int, object], start: int = 100) -> list[Instr]:
    """Instructions (by name or opcode) at consecutive made-up offsets, closed by the final end."""
    body = [(NAMES[op] if isinstance(op, str) else op, imm, start + i) for i, (op, imm) in enumerate(ops)]
    return body + [(NAMES["end"], None, start + len(ops))]


def _module(
    body: list[Instr],
    params: tuple[str, ...] = (),
    results: tuple[str, ...] = (),
    locals_: tuple[str, ...] = (),
    **fields: object,
) -> Module:
    """One imported function (index 0) and one defined function (index 1) with ``body``."""
    types = [FuncType((), ()), FuncType(params, results)]
    module = Module(
        types=types,
        imports=[Import("env", "f", "func", 0)],
        funcs=[1],
        codes=[Code(locals_, body, 90)],
        names=Names(funcs={1: "victim"}),
    )
    for name, value in fields.items():
        setattr(module, name, value)
    return module


def _invalid(module: Module, features: Features = WASM3) -> InvalidModule:
    with pytest.raises(InvalidModule) as info:
        validate_module(module, features)
    return info.value


def test_error_names_function_and_offset() -> None:
    body = _body(("i32.const", 1), ("i64.const", 2), ("i32.add", None), ("drop", None))
    err = _invalid(_module(body))
    assert "type mismatch" in err.message
    assert (err.func, err.offset, err.func_name) == (1, 102, "victim")
    assert "in function victim at byte offset 0x66" in str(err)


def test_error_offset_from_decoded_binary() -> None:
    # (func (drop (i32.add (i32.const 1) (i64.const 2)))): the body's bytes are found in the file.
    code = bytes([0x00, 0x41, 0x01, 0x42, 0x02, 0x6A, 0x1A, 0x0B])
    wasm = (
        b"\x00asm\x01\x00\x00\x00"
        + b"\x01\x04\x01\x60\x00\x00"  # type 0: [] -> []
        + b"\x03\x02\x01\x00"  # one function of type 0
        + b"\x0a"
        + bytes([len(code) + 2, 1, len(code)])
        + code
    )
    err = _invalid(decode_module(wasm))
    assert err.func == 0 and err.func_name is None
    assert err.offset == wasm.index(code) + 5  # the i32.add byte


def test_unknown_local_and_label() -> None:
    assert (
        "unknown local 3"
        in _invalid(_module(_body(("local.get", 3), ("drop", None)), locals_=(I32,))).message
    )
    err = _invalid(_module(_body(("block", None), ("br", 2), ("end", None))))
    assert "unknown label" in err.message and err.offset == 101


def test_unreachable_code_is_polymorphic() -> None:
    # After unreachable the stack yields unknown values: i32.add and the i64 result both check.
    validate_module(_module(_body(("unreachable", None), ("i32.add", None), ("drop", None)), results=(I64,)))
    validate_module(_module(_body(("unreachable", None), ("select", None)), results=(I32,)))
    # ... but a value pushed there still has its own type.
    err = _invalid(_module(_body(("unreachable", None), ("i64.const", 0), ("i32.add", None)), results=(I32,)))
    assert "type mismatch" in err.message and err.offset == 102


def test_select_and_br_table_rules() -> None:
    refs = _body(
        ("ref.null", FUNCREF), ("ref.null", FUNCREF), ("i32.const", 0), ("select", None), ("drop", None)
    )
    assert "type mismatch" in _invalid(_module(refs)).message
    typed = _body(
        ("ref.null", FUNCREF), ("ref.null", FUNCREF), ("i32.const", 0), (SELECT_T, (FUNCREF,)), ("drop", None)
    )
    validate_module(_module(typed))
    two = _body(("i32.const", 0), ("i32.const", 0), ("i32.const", 0), (SELECT_T, (I32, I32)), ("drop", None))
    assert "invalid result arity" in _invalid(_module(two)).message
    arity = _body(
        ("block", None),
        ("block", I32),
        ("i32.const", 0),
        ("i32.const", 0),
        ("br_table", ((0,), 1)),
        ("end", None),
        ("drop", None),
        ("end", None),
    )
    assert "type mismatch" in _invalid(_module(arity)).message


def test_ref_func_needs_declaration() -> None:
    body = _body(("ref.func", 0), ("drop", None))
    assert "undeclared function reference" in _invalid(_module(body)).message
    validate_module(_module(body, exports=[Export("f", "func", 0)]))
    validate_module(_module(body, elems=[Elem("declarative", FUNCREF, [[(0xD2, 0, 0)]])]))


def test_module_level_rules() -> None:
    empty = _body()
    two = [MemoryType(Limits(1)), MemoryType(Limits(1))]
    assert "multiple memories" in _invalid(_module(empty, memories=two), WASM2).message
    validate_module(_module(empty, memories=two))  # 3.0: multi-memory
    assert (
        "size minimum must not be greater than maximum"
        in _invalid(_module(empty, memories=[MemoryType(Limits(2, 1))])).message
    )
    assert (
        "memory size must be at most 65536 pages (4GiB)"
        in _invalid(_module(empty, memories=[MemoryType(Limits(65537))])).message
    )
    dup = [Export("x", "func", 0), Export("x", "func", 1)]
    assert "duplicate export name" in _invalid(_module(empty, exports=dup)).message
    err = _invalid(_module(empty, results=(I32,), start=1))
    assert "type mismatch" in err.message  # the body itself is checked before the start function
    assert "start function" in _invalid(_module(_body(("i32.const", 0)), results=(I32,), start=1)).message
    tables = [TableType(EXTERNREF, Limits(1))]
    seg = Elem("active", FUNCREF, [], 0, [(0x41, 0, 0)])
    assert "type mismatch" in _invalid(_module(empty, tables=tables, elems=[seg])).message


def test_constant_expressions() -> None:
    own = [Global(GlobalType(I32, False), [(0x41, 0, 0)]), Global(GlobalType(I32, False), [(0x23, 0, 5)])]
    err = _invalid(_module(_body(), globals=own), WASM2)
    assert "unknown global" in err.message and err.offset == 5
    validate_module(_module(_body(), globals=own))  # 3.0 reads a global defined before
    later = [Global(GlobalType(I32, False), [(0x23, 1, 5)]), Global(GlobalType(I32, False), [(0x41, 0, 0)])]
    assert "unknown global" in _invalid(_module(_body(), globals=later)).message
    mut = _module(
        _body(),
        imports=[Import("env", "g", "global", GlobalType(I32, True))],
        globals=[Global(GlobalType(I32, False), [(0x23, 0, 0)])],
    )
    assert "constant expression required" in _invalid(mut).message
    ok = _module(
        _body(),
        imports=[Import("env", "f", "func", 0), Import("env", "g", "global", GlobalType(I32, False))],
        globals=[Global(GlobalType(I32, False), [(0x23, 0, 0)])],
    )
    validate_module(ok)


def test_big_body_is_fast() -> None:
    # About 300k instructions with deep nesting and a wide br_table: guards against quadratic work.
    depth = 2000
    ops: list[tuple[str | int, object]] = [("block", None)] * depth
    ops += [("local.get", 0), ("br_table", (tuple(range(depth)) * 5, 0))]
    ops += [("end", None)] * depth
    ops += [("local.get", 0), ("local.get", 0), ("i32.add", None), ("local.set", 0)] * 70_000
    module = _module(_body(*ops), params=(I32,))
    started = time.perf_counter()
    validate_module(module)
    assert time.perf_counter() - started < 3.0
