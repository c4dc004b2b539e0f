"""Traps: each kind raises Trap with the right message and a Wasm backtrace (names, innermost first,
code offsets of the trapping instruction and of each call on the way)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import anyio
import pytest
from wat import instr_offset, wat

import asyncwasm

pytestmark = pytest.mark.anyio


# $outer -> $middle -> $trapper; $trapper's body is the case's instructions with $x the argument.
TEMPLATE = """
(module $traps
  (type $v_i (func (result i32)))
  (type $i_v (func (param i32)))
  (memory (export "memory") 1)
  (table $t 2 funcref)
  (elem (i32.const 0) $ret7)
  (global $touched (mut i32) (i32.const 0))
  (func $ret7 (result i32) i32.const 7)
  (func $trapper (param $x i32) (result i32)
    BODY)
  (func $middle (param i32) (result i32)
    local.get 0
    call $trapper)
  (func $outer (export "run") (param i32) (result i32)
    i32.const 1
    global.set $touched
    local.get 0
    call $middle
    i32.const 1
    i32.add)
  (func (export "touched") (result i32) global.get $touched)
  (func (export "ok") (result i32) i32.const 42)
)
"""


@dataclass(frozen=True)
class Case:
    id: str
    body: str
    arg: int
    message: str  # a regular expression the trap message must match in full
    op: str  # the mnemonic of the instruction that traps


CASES = [
    Case("unreachable", "unreachable", 0, r"(wasm `)?unreachable(` instruction executed)?", "unreachable"),
    Case("i32.div_s by zero", "i32.const 1 local.get $x i32.div_s", 0, "integer divide by zero", "i32.div_s"),
    Case("i32.div_u by zero", "i32.const 1 local.get $x i32.div_u", 0, "integer divide by zero", "i32.div_u"),
    Case("i32.rem_u by zero", "i32.const 1 local.get $x i32.rem_u", 0, "integer divide by zero", "i32.rem_u"),
    Case("i32.rem_s by zero", "i32.const 1 local.get $x i32.rem_s", 0, "integer divide by zero", "i32.rem_s"),
    Case(
        "i64.div_u by zero",
        "i64.const 1 local.get $x i64.extend_i32_u i64.div_u i32.wrap_i64",
        0,
        "integer divide by zero",
        "i64.div_u",
    ),
    Case(
        "i64.rem_s by zero",
        "i64.const 1 local.get $x i64.extend_i32_u i64.rem_s i32.wrap_i64",
        0,
        "integer divide by zero",
        "i64.rem_s",
    ),
    Case(
        "i32.div_s overflow",
        "i32.const 0x80000000 local.get $x i32.div_s",
        -1,
        "integer overflow",
        "i32.div_s",
    ),
    Case(
        "i64.div_s overflow",
        "i64.const 0x8000000000000000 local.get $x i64.extend_i32_s i64.div_s i32.wrap_i64",
        -1,
        "integer overflow",
        "i64.div_s",
    ),
    Case(
        "i32.trunc_f64_s overflow",
        "f64.const 3e9 local.get $x f64.convert_i32_s f64.add i32.trunc_f64_s",
        0,
        "integer overflow",
        "i32.trunc_f64_s",
    ),
    Case(
        "i64.trunc_f32_u negative",
        "f32.const -1 local.get $x f32.convert_i32_s f32.add i64.trunc_f32_u i32.wrap_i64",
        0,
        "integer overflow",
        "i64.trunc_f32_u",
    ),
    Case(
        "i32.trunc_f32_s nan",
        "f32.const nan local.get $x f32.convert_i32_s f32.add i32.trunc_f32_s",
        0,
        "invalid conversion to integer",
        "i32.trunc_f32_s",
    ),
    Case(
        "i64.trunc_f64_u nan",
        "f64.const -nan local.get $x f64.convert_i32_s f64.add i64.trunc_f64_u i32.wrap_i64",
        0,
        "invalid conversion to integer",
        "i64.trunc_f64_u",
    ),
    Case("i32.load past the end", "local.get $x i32.load", 65533, "out of bounds memory access", "i32.load"),
    Case(
        "i64.load straddling the end",
        "local.get $x i64.load i32.wrap_i64",
        65532,
        "out of bounds memory access",
        "i64.load",
    ),
    Case(
        "i32.load8_u at the size",
        "local.get $x i32.load8_u",
        65536,
        "out of bounds memory access",
        "i32.load8_u",
    ),
    Case(
        "i32.load16_s huge offset",
        "local.get $x i32.load16_s offset=0xffffffff",
        1,
        "out of bounds memory access",
        "i32.load16_s",
    ),
    Case(
        "f64.load address -8",
        "local.get $x f64.load i32.trunc_f64_s",
        -8,
        "out of bounds memory access",
        "f64.load",
    ),
    Case(
        "i32.store past the end",
        "local.get $x i32.const 1 i32.store i32.const 0",
        65534,
        "out of bounds memory access",
        "i32.store",
    ),
    Case(
        "i32.store8 at the size",
        "local.get $x i32.const 1 i32.store8 i32.const 0",
        65536,
        "out of bounds memory access",
        "i32.store8",
    ),
    Case(
        "i64.store32 with offset",
        "local.get $x i64.const 1 i64.store32 offset=65533 i32.const 0",
        0,
        "out of bounds memory access",
        "i64.store32",
    ),
    Case(
        "memory.fill past the end",
        "local.get $x i32.const 0 i32.const 2 memory.fill i32.const 0",
        65535,
        "out of bounds memory access",
        "memory.fill",
    ),
    Case(
        "memory.copy past the end",
        "i32.const 0 local.get $x i32.const 16 memory.copy i32.const 0",
        65530,
        "out of bounds memory access",
        "memory.copy",
    ),
    Case(
        "table.get past the end",
        "local.get $x table.get $t ref.is_null",
        2,
        "out of bounds table access",
        "table.get",
    ),
    Case(
        "table.set past the end",
        "local.get $x ref.null func table.set $t i32.const 0",
        2,
        "out of bounds table access",
        "table.set",
    ),
    Case(
        "table.fill past the end",
        "local.get $x ref.null func i32.const 2 table.fill $t i32.const 0",
        1,
        "out of bounds table access",
        "table.fill",
    ),
    Case(
        "call_indirect past the end",
        "local.get $x call_indirect (type $v_i)",
        2,
        r"undefined element(: out of bounds table access)?",
        "call_indirect",
    ),
    Case(
        "call_indirect type mismatch",
        "i32.const 5 local.get $x call_indirect (type $i_v) i32.const 0",
        0,
        "indirect call type mismatch",
        "call_indirect",
    ),
    Case(
        "call_indirect null",
        "local.get $x call_indirect (type $v_i)",
        1,
        "uninitialized element",
        "call_indirect",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_trap_message_and_backtrace(case: Case) -> None:
    wasm = wat(TEMPLATE.replace("BODY", case.body))
    inst = await asyncwasm.Linker().instantiate(asyncwasm.Module(wasm), asyncwasm.Store())
    with pytest.raises(asyncwasm.Trap) as info:
        await inst.call("run", case.arg)
    trap = info.value
    assert type(trap) is asyncwasm.Trap
    assert re.fullmatch(case.message, trap.message), trap.message
    assert [f.func_name for f in trap.frames] == ["trapper", "middle", "outer"]
    assert [f.func_index for f in trap.frames] == [1, 2, 3]
    assert [f.offset for f in trap.frames] == [
        instr_offset(wasm, "trapper", case.op),
        instr_offset(wasm, "middle", "call"),
        instr_offset(wasm, "outer", "call"),
    ]
    assert {f.module_name for f in trap.frames} == {"traps"}
    text = str(trap)
    assert text.startswith(trap.message + "\n")
    lines = text.splitlines()[2:]
    assert len(lines) == 3
    for line, name, off in zip(
        lines, ["trapper", "middle", "outer"], [f.offset for f in trap.frames], strict=True
    ):
        assert line.endswith(f"{off:#x} - traps!{name}")
    # what ran before the trap stays done, and the instance is still usable
    assert await inst.call("touched") == 1
    assert await inst.call("ok") == 42


async def test_memory_is_not_grown_or_changed_by_a_failed_store() -> None:
    src = """
    (module
      (memory (export "memory") 1)
      (func (export "store64") (param i32 i64) local.get 0 local.get 1 i64.store)
      (func (export "store8") (param i32 i32) local.get 0 local.get 1 i32.store8)
      (func (export "size") (result i32) memory.size))
    """
    inst = await asyncwasm.Linker().instantiate(asyncwasm.Module(wat(src)), asyncwasm.Store())
    mem = inst.exports["memory"]
    assert isinstance(mem, asyncwasm.Memory)
    for addr in (65529, 65535, 65536, 0xFFFFFFFF):
        with pytest.raises(asyncwasm.Trap, match="out of bounds memory access"):
            await inst.call("store64", addr, -1)
    with pytest.raises(asyncwasm.Trap, match="out of bounds memory access"):
        await inst.call("store8", 65536, 0xAB)
    assert await inst.call("size") == 1
    assert len(mem.data) == 65536
    assert mem.data[65520:] == bytes(16)
    await inst.call("store64", 65528, -1)
    assert mem.data[65528:] == b"\xff" * 8


async def test_trap_without_a_name_section_shows_function_indices() -> None:
    src = """
    (module
      (func $a (param i32) (result i32) i32.const 1 local.get 0 i32.div_u)
      (func $b (export "run") (param i32) (result i32) local.get 0 call $a))
    """
    wasm = wat(src, names=False)
    inst = await asyncwasm.Linker().instantiate(asyncwasm.Module(wasm), asyncwasm.Store())
    with pytest.raises(asyncwasm.Trap) as info:
        await inst.call("run", 0)
    trap = info.value
    assert trap.message == "integer divide by zero"
    assert [(f.func_index, f.func_name) for f in trap.frames] == [(0, None), (1, None)]
    text = str(trap)
    assert "<wasm function 0>" in text
    assert "<wasm function 1>" in text
    assert text.index("<wasm function 0>") < text.index("<wasm function 1>")
    assert f"{instr_offset(wasm, '0', 'i32.div_u'):#x} - " in text


async def test_trap_in_start_function_fails_instantiation() -> None:
    src = """
    (module
      (func $boot unreachable)
      (start $boot))
    """
    module = asyncwasm.Module(wat(src))
    with pytest.raises(asyncwasm.Trap, match="unreachable") as info:
        await asyncwasm.Linker().instantiate(module, asyncwasm.Store())
    assert [f.func_name for f in info.value.frames] == ["boot"]


async def test_trap_through_host_function_keeps_wasm_frames() -> None:
    """A Trap raised by a host function carries the Wasm frames that called it."""
    src = """
    (module
      (import "env" "fail" (func $fail))
      (func $inner call $fail)
      (func $outer (export "run") call $inner))
    """
    wasm = wat(src)

    def fail() -> None:
        raise asyncwasm.Trap("host says no")

    linker = asyncwasm.Linker()
    linker.define_func("env", "fail", asyncwasm.FuncType((), ()), fail)
    inst = await linker.instantiate(asyncwasm.Module(wasm), asyncwasm.Store())
    with pytest.raises(asyncwasm.Trap, match="host says no") as info:
        await inst.call("run")
    assert [f.func_name for f in info.value.frames] == ["inner", "outer"]
    assert info.value.frames[0].offset == instr_offset(wasm, "inner", "call")


async def test_call_stack_exhausted_names_the_recursing_functions() -> None:
    src = """
    (module
      (func $ping (export "run") (param i32) (result i32)
        local.get 0 i32.const 1 i32.add call $pong)
      (func $pong (param i32) (result i32)
        local.get 0 i32.const 1 i32.add call $ping)
      (func (export "ok") (result i32) i32.const 7))
    """
    wasm = wat(src)
    inst = await asyncwasm.Linker().instantiate(asyncwasm.Module(wasm), asyncwasm.Store(max_depth=20_000))
    with pytest.raises(asyncwasm.Trap) as info:
        await inst.call("run", 0)
    trap = info.value
    assert type(trap) is asyncwasm.Trap
    assert trap.message == "call stack exhausted"
    names = [f.func_name for f in trap.frames]
    assert names
    assert set(names) <= {"ping", "pong"}
    # innermost first: the frames alternate between the two functions; a deep backtrace keeps the
    # innermost and outermost frames and says how many it left out between them
    assert trap.omitted > 10_000
    for part in (names[: trap.KEEP_INNER], names[trap.KEEP_INNER :]):
        assert all(a != b for a, b in zip(part, part[1:], strict=False))
    assert "frames omitted" in str(trap)
    assert {f.offset for f in trap.frames} <= {
        instr_offset(wasm, "ping", "call"),
        instr_offset(wasm, "pong", "call"),
    }
    assert "ping" in str(trap)
    assert await inst.call("ok") == 7
    await anyio.sleep(0)


async def test_trap_after_a_suspension_has_the_same_backtrace() -> None:
    src = """
    (module $resumed
      (import "env" "pause" (func $pause (param i32) (result i32)))
      (func $inner (param i32) (result i32)
        i32.const 1
        local.get 0 call $pause
        i32.div_u)
      (func $outer (export "run") (param i32) (result i32) local.get 0 call $inner))
    """
    wasm = wat(src)

    async def pause(x: int) -> int:
        await anyio.sleep(0.001)
        return x

    linker = asyncwasm.Linker()
    linker.define_func("env", "pause", asyncwasm.FuncType(("i32",), ("i32",)), pause)
    inst = await linker.instantiate(asyncwasm.Module(wasm), asyncwasm.Store())
    assert await inst.call("run", 1) == 1
    with pytest.raises(asyncwasm.Trap) as info:
        await inst.call("run", 0)
    trap = info.value
    assert trap.message == "integer divide by zero"
    assert [(f.func_name, f.offset) for f in trap.frames] == [
        ("inner", instr_offset(wasm, "inner", "i32.div_u")),
        ("outer", instr_offset(wasm, "outer", "call")),
    ]
