"""Every instruction the text reader knows: its binary opcode and the shape of its immediates.

``INSTRUCTIONS[name] = (opcode_bytes, kind)``. Prefixed opcodes (0xFB GC, 0xFC bulk and saturating,
0xFD SIMD) carry their sub-opcode as a LEB128 ``u32``, already encoded here. ``kind`` tells the parser
which immediates follow; ``memargN`` / ``lanememN`` carry the natural alignment N in bytes.
This covers Wasm 3.0: SIMD and relaxed SIMD, tail calls, exceptions (``try_table`` and the legacy
``try``/``catch``/``delegate``/``rethrow``), typed function references, GC, multi-memory, memory64.
"""

from __future__ import annotations

from ..binary.encode import uleb
from ..binary.simd_opcodes import SIMD_ACCESS, SIMD_BASE, SIMD_OPCODES

# opcode: name kind (numbers are hexadecimal; no kind means no immediate)
_PLAIN = """
00 unreachable|01 nop|02 block block|03 loop block|04 if block|05 else else|06 try block|07 catch tag
08 throw tag|09 rethrow label|0a throw_ref|0b end end|0c br label|0d br_if label|0e br_table br_table
0f return|10 call func|11 call_indirect call_indirect|12 return_call func
13 return_call_indirect call_indirect|14 call_ref type|15 return_call_ref type|18 delegate label
19 catch_all|1a drop|1b select select|1f try_table try_table|20 local.get local|21 local.set local
22 local.tee local|23 global.get global|24 global.set global|25 table.get table|26 table.set table
3f memory.size memory|40 memory.grow memory|41 i32.const i32|42 i64.const i64|43 f32.const f32
44 f64.const f64|d0 ref.null heaptype|d1 ref.is_null|d2 ref.func func|d3 ref.eq|d4 ref.as_non_null
d5 br_on_null label|d6 br_on_non_null label
"""

_MEMORY = """
28 i32.load 4|29 i64.load 8|2a f32.load 4|2b f64.load 8|2c i32.load8_s 1|2d i32.load8_u 1
2e i32.load16_s 2|2f i32.load16_u 2|30 i64.load8_s 1|31 i64.load8_u 1|32 i64.load16_s 2
33 i64.load16_u 2|34 i64.load32_s 4|35 i64.load32_u 4|36 i32.store 4|37 i64.store 8|38 f32.store 4
39 f64.store 8|3a i32.store8 1|3b i32.store16 2|3c i64.store8 1|3d i64.store16 2|3e i64.store32 4
"""

# no-immediate numeric instructions from 0x45 on, in opcode order
_NUMERIC = """
i32.eqz i32.eq i32.ne i32.lt_s i32.lt_u i32.gt_s i32.gt_u i32.le_s i32.le_u i32.ge_s i32.ge_u
i64.eqz i64.eq i64.ne i64.lt_s i64.lt_u i64.gt_s i64.gt_u i64.le_s i64.le_u i64.ge_s i64.ge_u
f32.eq f32.ne f32.lt f32.gt f32.le f32.ge f64.eq f64.ne f64.lt f64.gt f64.le f64.ge
i32.clz i32.ctz i32.popcnt i32.add i32.sub i32.mul i32.div_s i32.div_u i32.rem_s i32.rem_u i32.and
i32.or i32.xor i32.shl i32.shr_s i32.shr_u i32.rotl i32.rotr
i64.clz i64.ctz i64.popcnt i64.add i64.sub i64.mul i64.div_s i64.div_u i64.rem_s i64.rem_u i64.and
i64.or i64.xor i64.shl i64.shr_s i64.shr_u i64.rotl i64.rotr
f32.abs f32.neg f32.ceil f32.floor f32.trunc f32.nearest f32.sqrt f32.add f32.sub f32.mul f32.div
f32.min f32.max f32.copysign
f64.abs f64.neg f64.ceil f64.floor f64.trunc f64.nearest f64.sqrt f64.add f64.sub f64.mul f64.div
f64.min f64.max f64.copysign
i32.wrap_i64 i32.trunc_f32_s i32.trunc_f32_u i32.trunc_f64_s i32.trunc_f64_u i64.extend_i32_s
i64.extend_i32_u i64.trunc_f32_s i64.trunc_f32_u i64.trunc_f64_s i64.trunc_f64_u f32.convert_i32_s
f32.convert_i32_u f32.convert_i64_s f32.convert_i64_u f32.demote_f64 f64.convert_i32_s
f64.convert_i32_u f64.convert_i64_s f64.convert_i64_u f64.promote_f32 i32.reinterpret_f32
i64.reinterpret_f64 f32.reinterpret_i32 f64.reinterpret_i64
i32.extend8_s i32.extend16_s i64.extend8_s i64.extend16_s i64.extend32_s
"""

_FC = """
0 i32.trunc_sat_f32_s|1 i32.trunc_sat_f32_u|2 i32.trunc_sat_f64_s|3 i32.trunc_sat_f64_u
4 i64.trunc_sat_f32_s|5 i64.trunc_sat_f32_u|6 i64.trunc_sat_f64_s|7 i64.trunc_sat_f64_u
8 memory.init memory_init|9 data.drop data|a memory.copy memory_copy|b memory.fill memory
c table.init table_init|d elem.drop elem|e table.copy table_copy|f table.grow table|10 table.size table
11 table.fill table
"""

_FB = """
0 struct.new type|1 struct.new_default type|2 struct.get field|3 struct.get_s field|4 struct.get_u field
5 struct.set field|6 array.new type|7 array.new_default type|8 array.new_fixed array_fixed
9 array.new_data type_data|a array.new_elem type_elem|b array.get type|c array.get_s type
d array.get_u type|e array.set type|f array.len|10 array.fill type|11 array.copy type_type
12 array.init_data type_data|13 array.init_elem type_elem|14 ref.test reftest|16 ref.cast reftest
18 br_on_cast br_on_cast|19 br_on_cast_fail br_on_cast|1a any.convert_extern|1b extern.convert_any
1c ref.i31|1d i31.get_s|1e i31.get_u
"""


def _build() -> dict[str, tuple[bytes, str]]:
    table: dict[str, tuple[bytes, str]] = {}
    for entry in _PLAIN.replace("\n", "|").split("|"):
        if entry.strip():
            code, name, *kind = entry.split()
            table[name] = (bytes((int(code, 16),)), kind[0] if kind else "none")
    for entry in _MEMORY.replace("\n", "|").split("|"):
        if entry.strip():
            code, name, align = entry.split()
            table[name] = (bytes((int(code, 16),)), "memarg" + align)
    for i, name in enumerate(_NUMERIC.split()):
        table[name] = (bytes((0x45 + i,)), "none")
    for prefix, text in ((0xFC, _FC), (0xFB, _FB)):
        for entry in text.replace("\n", "|").split("|"):
            if entry.strip():
                code, name, *kind = entry.split()
                table[name] = (bytes((prefix,)) + uleb(int(code, 16)), kind[0] if kind else "none")
    for op, (name, simd_kind) in SIMD_OPCODES.items():  # the binary decoder's table, the one list of them
        if simd_kind in ("memarg", "lanemem"):
            simd_kind += str(SIMD_ACCESS[op])  # the text reader wants the natural alignment
        table[name] = (b"\xfd" + uleb(op - SIMD_BASE), simd_kind)
    return table


INSTRUCTIONS: dict[str, tuple[bytes, str]] = _build()

# instructions whose presence makes wasm-tools (and the spec) emit a data count section
NEEDS_DATA_COUNT = frozenset({"memory.init", "data.drop", "array.new_data", "array.init_data"})
