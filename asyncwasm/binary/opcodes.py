"""Every WebAssembly 2.0 opcode (SIMD aside: ``simd_opcodes``): its text name and the kind of its immediate.

``OPCODES[op] = (name, kind)``; 0xFC-prefixed opcodes are keyed ``0xFC00 | sub``.
Immediate kinds: none, block, label, br_table, func, call_indirect, local, global, table,
memarg, memory (a reserved 0x00 memory index), i32, i64, f32, f64, reftype, select_t,
memory_init, data, memory_copy, table_init, elem, table_copy.
"""

from __future__ import annotations

from .simd_opcodes import SIMD_OPCODES

_LOADS_STORES = [
    (0x28, "i32.load"),
    (0x29, "i64.load"),
    (0x2A, "f32.load"),
    (0x2B, "f64.load"),
    (0x2C, "i32.load8_s"),
    (0x2D, "i32.load8_u"),
    (0x2E, "i32.load16_s"),
    (0x2F, "i32.load16_u"),
    (0x30, "i64.load8_s"),
    (0x31, "i64.load8_u"),
    (0x32, "i64.load16_s"),
    (0x33, "i64.load16_u"),
    (0x34, "i64.load32_s"),
    (0x35, "i64.load32_u"),
    (0x36, "i32.store"),
    (0x37, "i64.store"),
    (0x38, "f32.store"),
    (0x39, "f64.store"),
    (0x3A, "i32.store8"),
    (0x3B, "i32.store16"),
    (0x3C, "i64.store8"),
    (0x3D, "i64.store16"),
    (0x3E, "i64.store32"),
]

_NUMERIC = """
45 i32.eqz|46 i32.eq|47 i32.ne|48 i32.lt_s|49 i32.lt_u|4a i32.gt_s|4b i32.gt_u|4c i32.le_s|4d i32.le_u|4e i32.ge_s|4f i32.ge_u
50 i64.eqz|51 i64.eq|52 i64.ne|53 i64.lt_s|54 i64.lt_u|55 i64.gt_s|56 i64.gt_u|57 i64.le_s|58 i64.le_u|59 i64.ge_s|5a i64.ge_u
5b f32.eq|5c f32.ne|5d f32.lt|5e f32.gt|5f f32.le|60 f32.ge
61 f64.eq|62 f64.ne|63 f64.lt|64 f64.gt|65 f64.le|66 f64.ge
67 i32.clz|68 i32.ctz|69 i32.popcnt|6a i32.add|6b i32.sub|6c i32.mul|6d i32.div_s|6e i32.div_u|6f i32.rem_s
70 i32.rem_u|71 i32.and|72 i32.or|73 i32.xor|74 i32.shl|75 i32.shr_s|76 i32.shr_u|77 i32.rotl|78 i32.rotr
79 i64.clz|7a i64.ctz|7b i64.popcnt|7c i64.add|7d i64.sub|7e i64.mul|7f i64.div_s|80 i64.div_u|81 i64.rem_s
82 i64.rem_u|83 i64.and|84 i64.or|85 i64.xor|86 i64.shl|87 i64.shr_s|88 i64.shr_u|89 i64.rotl|8a i64.rotr
8b f32.abs|8c f32.neg|8d f32.ceil|8e f32.floor|8f f32.trunc|90 f32.nearest|91 f32.sqrt|92 f32.add|93 f32.sub
94 f32.mul|95 f32.div|96 f32.min|97 f32.max|98 f32.copysign
99 f64.abs|9a f64.neg|9b f64.ceil|9c f64.floor|9d f64.trunc|9e f64.nearest|9f f64.sqrt|a0 f64.add|a1 f64.sub
a2 f64.mul|a3 f64.div|a4 f64.min|a5 f64.max|a6 f64.copysign
a7 i32.wrap_i64|a8 i32.trunc_f32_s|a9 i32.trunc_f32_u|aa i32.trunc_f64_s|ab i32.trunc_f64_u|ac i64.extend_i32_s
ad i64.extend_i32_u|ae i64.trunc_f32_s|af i64.trunc_f32_u|b0 i64.trunc_f64_s|b1 i64.trunc_f64_u
b2 f32.convert_i32_s|b3 f32.convert_i32_u|b4 f32.convert_i64_s|b5 f32.convert_i64_u|b6 f32.demote_f64
b7 f64.convert_i32_s|b8 f64.convert_i32_u|b9 f64.convert_i64_s|ba f64.convert_i64_u|bb f64.promote_f32
bc i32.reinterpret_f32|bd i64.reinterpret_f64|be f32.reinterpret_i32|bf f64.reinterpret_i64
c0 i32.extend8_s|c1 i32.extend16_s|c2 i64.extend8_s|c3 i64.extend16_s|c4 i64.extend32_s
fc00 i32.trunc_sat_f32_s|fc01 i32.trunc_sat_f32_u|fc02 i32.trunc_sat_f64_s|fc03 i32.trunc_sat_f64_u
fc04 i64.trunc_sat_f32_s|fc05 i64.trunc_sat_f32_u|fc06 i64.trunc_sat_f64_s|fc07 i64.trunc_sat_f64_u
"""

OPCODES: dict[int, tuple[str, str]] = {
    0x00: ("unreachable", "none"),
    0x01: ("nop", "none"),
    0x02: ("block", "block"),
    0x03: ("loop", "block"),
    0x04: ("if", "block"),
    0x05: ("else", "none"),
    0x0B: ("end", "none"),
    0x0C: ("br", "label"),
    0x0D: ("br_if", "label"),
    0x0E: ("br_table", "br_table"),
    0x0F: ("return", "none"),
    0x10: ("call", "func"),
    0x11: ("call_indirect", "call_indirect"),
    0x1A: ("drop", "none"),
    0x1B: ("select", "none"),
    0x1C: ("select", "select_t"),
    0x20: ("local.get", "local"),
    0x21: ("local.set", "local"),
    0x22: ("local.tee", "local"),
    0x23: ("global.get", "global"),
    0x24: ("global.set", "global"),
    0x25: ("table.get", "table"),
    0x26: ("table.set", "table"),
    0x3F: ("memory.size", "memory"),
    0x40: ("memory.grow", "memory"),
    0x41: ("i32.const", "i32"),
    0x42: ("i64.const", "i64"),
    0x43: ("f32.const", "f32"),
    0x44: ("f64.const", "f64"),
    0xD0: ("ref.null", "reftype"),
    0xD1: ("ref.is_null", "none"),
    0xD2: ("ref.func", "func"),
    # typed function references
    0x14: ("call_ref", "type"),
    0xD3: ("ref.eq", "none"),
    0xD4: ("ref.as_non_null", "none"),
    0xD5: ("br_on_null", "label"),
    0xD6: ("br_on_non_null", "label"),
    0xFC08: ("memory.init", "memory_init"),
    0xFC09: ("data.drop", "data"),
    0xFC0A: ("memory.copy", "memory_copy"),
    0xFC0B: ("memory.fill", "memory"),
    0xFC0C: ("table.init", "table_init"),
    0xFC0D: ("elem.drop", "elem"),
    0xFC0E: ("table.copy", "table_copy"),
    0xFC0F: ("table.grow", "table"),
    0xFC10: ("table.size", "table"),
    0xFC11: ("table.fill", "table"),
}
# Tail calls and exception handling (Wasm 3.0), legacy exceptions included; decoded by their own
# branches of the reader (``exceptions.py`` and ``tailcall.py`` of the compiler translate them).
OPCODES.update(
    {
        0x06: ("try", "block"),
        0x07: ("catch", "tag"),
        0x08: ("throw", "tag"),
        0x09: ("rethrow", "label"),
        0x0A: ("throw_ref", "none"),
        0x18: ("delegate", "label"),
        0x19: ("catch_all", "none"),
        0x1F: ("try_table", "try_table"),
        0x12: ("return_call", "func"),
        0x13: ("return_call_indirect", "call_indirect"),
        0x15: ("return_call_ref", "type"),
    }
)
for _op, _name in _LOADS_STORES:
    OPCODES[_op] = (_name, "memarg")
for _entry in _NUMERIC.replace("\n", "|").split("|"):
    if _entry.strip():
        _hex, _name = _entry.split()
        OPCODES[int(_hex, 16)] = (_name, "none")

NAMES: dict[str, int] = {name: op for op, (name, _kind) in OPCODES.items() if op != 0x1C}

# Natural alignment (log2 of the access width in bytes) of each memory access.
NATURAL_ALIGN: dict[int, int] = {
    0x28: 2,
    0x29: 3,
    0x2A: 2,
    0x2B: 3,
    0x2C: 0,
    0x2D: 0,
    0x2E: 1,
    0x2F: 1,
    0x30: 0,
    0x31: 0,
    0x32: 1,
    0x33: 1,
    0x34: 2,
    0x35: 2,
    0x36: 2,
    0x37: 3,
    0x38: 2,
    0x39: 3,
    0x3A: 0,
    0x3B: 1,
    0x3C: 0,
    0x3D: 1,
    0x3E: 2,
}

END, ELSE, BLOCK, LOOP, IF = 0x0B, 0x05, 0x02, 0x03, 0x04
TRY, CATCH, THROW, RETHROW, THROW_REF, DELEGATE, CATCH_ALL, TRY_TABLE = (
    0x06,
    0x07,
    0x08,
    0x09,
    0x0A,
    0x18,
    0x19,
    0x1F,
)
RETURN_CALL, RETURN_CALL_INDIRECT, RETURN_CALL_REF = 0x12, 0x13, 0x15


def name_of(op: int) -> str:
    if op in OPCODES:
        return OPCODES[op][0]
    if op in SIMD_OPCODES:
        return SIMD_OPCODES[op][0]
    if op >> 16 == 1:  # the validator's renamed local.get/set/tee of a non-defaultable local
        return name_of(op & 0xFFFF)
    if op >> 8 == 0xFB:
        from .gc_reader import GC_NAMES

        return GC_NAMES.get(op, f"<opcode {op:#x}>")
    return f"<opcode {op:#x}>"
