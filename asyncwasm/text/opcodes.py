"""Every instruction the text reader knows: its binary opcode and the shape of its immediates.

``INSTRUCTIONS[name] = (opcode_bytes, kind)``. Prefixed opcodes (0xFB GC, 0xFC bulk and saturating,
0xFD SIMD) carry their sub-opcode as a LEB128 ``u32``, already encoded here. ``kind`` tells the parser
which immediates follow; ``memargN`` / ``lanememN`` carry the natural alignment N in bytes.
This covers Wasm 3.0: SIMD and relaxed SIMD, tail calls, exceptions (``try_table`` and the legacy
``try``/``catch``/``delegate``/``rethrow``), typed function references, GC, multi-memory, memory64.
"""

from __future__ import annotations

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

# SIMD: "first-opcode name name ..." runs of consecutive opcodes; "-" skips an opcode
_FD = """
0 v128.load:memarg16 v128.load8x8_s:memarg8 v128.load8x8_u:memarg8 v128.load16x4_s:memarg8
  v128.load16x4_u:memarg8 v128.load32x2_s:memarg8 v128.load32x2_u:memarg8 v128.load8_splat:memarg1
  v128.load16_splat:memarg2 v128.load32_splat:memarg4 v128.load64_splat:memarg8 v128.store:memarg16
  v128.const:v128 i8x16.shuffle:shuffle i8x16.swizzle i8x16.splat i16x8.splat i32x4.splat i64x2.splat
  f32x4.splat f64x2.splat i8x16.extract_lane_s:lane i8x16.extract_lane_u:lane i8x16.replace_lane:lane
  i16x8.extract_lane_s:lane i16x8.extract_lane_u:lane i16x8.replace_lane:lane i32x4.extract_lane:lane
  i32x4.replace_lane:lane i64x2.extract_lane:lane i64x2.replace_lane:lane f32x4.extract_lane:lane
  f32x4.replace_lane:lane f64x2.extract_lane:lane f64x2.replace_lane:lane
  i8x16.eq i8x16.ne i8x16.lt_s i8x16.lt_u i8x16.gt_s i8x16.gt_u i8x16.le_s i8x16.le_u i8x16.ge_s i8x16.ge_u
  i16x8.eq i16x8.ne i16x8.lt_s i16x8.lt_u i16x8.gt_s i16x8.gt_u i16x8.le_s i16x8.le_u i16x8.ge_s i16x8.ge_u
  i32x4.eq i32x4.ne i32x4.lt_s i32x4.lt_u i32x4.gt_s i32x4.gt_u i32x4.le_s i32x4.le_u i32x4.ge_s i32x4.ge_u
  f32x4.eq f32x4.ne f32x4.lt f32x4.gt f32x4.le f32x4.ge f64x2.eq f64x2.ne f64x2.lt f64x2.gt f64x2.le f64x2.ge
  v128.not v128.and v128.andnot v128.or v128.xor v128.bitselect v128.any_true
  v128.load8_lane:lanemem1 v128.load16_lane:lanemem2 v128.load32_lane:lanemem4 v128.load64_lane:lanemem8
  v128.store8_lane:lanemem1 v128.store16_lane:lanemem2 v128.store32_lane:lanemem4 v128.store64_lane:lanemem8
  v128.load32_zero:memarg4 v128.load64_zero:memarg8 f32x4.demote_f64x2_zero f64x2.promote_low_f32x4
  i8x16.abs i8x16.neg i8x16.popcnt i8x16.all_true i8x16.bitmask i8x16.narrow_i16x8_s i8x16.narrow_i16x8_u
  f32x4.ceil f32x4.floor f32x4.trunc f32x4.nearest i8x16.shl i8x16.shr_s i8x16.shr_u i8x16.add
  i8x16.add_sat_s i8x16.add_sat_u i8x16.sub i8x16.sub_sat_s i8x16.sub_sat_u f64x2.ceil f64x2.floor
  i8x16.min_s i8x16.min_u i8x16.max_s i8x16.max_u f64x2.trunc i8x16.avgr_u
  i16x8.extadd_pairwise_i8x16_s i16x8.extadd_pairwise_i8x16_u i32x4.extadd_pairwise_i16x8_s
  i32x4.extadd_pairwise_i16x8_u i16x8.abs i16x8.neg i16x8.q15mulr_sat_s i16x8.all_true i16x8.bitmask
  i16x8.narrow_i32x4_s i16x8.narrow_i32x4_u i16x8.extend_low_i8x16_s i16x8.extend_high_i8x16_s
  i16x8.extend_low_i8x16_u i16x8.extend_high_i8x16_u i16x8.shl i16x8.shr_s i16x8.shr_u i16x8.add
  i16x8.add_sat_s i16x8.add_sat_u i16x8.sub i16x8.sub_sat_s i16x8.sub_sat_u f64x2.nearest i16x8.mul
  i16x8.min_s i16x8.min_u i16x8.max_s i16x8.max_u - i16x8.avgr_u i16x8.extmul_low_i8x16_s
  i16x8.extmul_high_i8x16_s i16x8.extmul_low_i8x16_u i16x8.extmul_high_i8x16_u
  i32x4.abs i32x4.neg - i32x4.all_true i32x4.bitmask - - i32x4.extend_low_i16x8_s i32x4.extend_high_i16x8_s
  i32x4.extend_low_i16x8_u i32x4.extend_high_i16x8_u i32x4.shl i32x4.shr_s i32x4.shr_u i32x4.add - -
  i32x4.sub - - - i32x4.mul i32x4.min_s i32x4.min_u i32x4.max_s i32x4.max_u i32x4.dot_i16x8_s -
  i32x4.extmul_low_i16x8_s i32x4.extmul_high_i16x8_s i32x4.extmul_low_i16x8_u i32x4.extmul_high_i16x8_u
  i64x2.abs i64x2.neg - i64x2.all_true i64x2.bitmask - - i64x2.extend_low_i32x4_s i64x2.extend_high_i32x4_s
  i64x2.extend_low_i32x4_u i64x2.extend_high_i32x4_u i64x2.shl i64x2.shr_s i64x2.shr_u i64x2.add - -
  i64x2.sub - - - i64x2.mul i64x2.eq i64x2.ne i64x2.lt_s i64x2.gt_s i64x2.le_s i64x2.ge_s
  i64x2.extmul_low_i32x4_s i64x2.extmul_high_i32x4_s i64x2.extmul_low_i32x4_u i64x2.extmul_high_i32x4_u
  f32x4.abs f32x4.neg - f32x4.sqrt f32x4.add f32x4.sub f32x4.mul f32x4.div f32x4.min f32x4.max
  f32x4.pmin f32x4.pmax f64x2.abs f64x2.neg - f64x2.sqrt f64x2.add f64x2.sub f64x2.mul f64x2.div
  f64x2.min f64x2.max f64x2.pmin f64x2.pmax i32x4.trunc_sat_f32x4_s i32x4.trunc_sat_f32x4_u
  f32x4.convert_i32x4_s f32x4.convert_i32x4_u i32x4.trunc_sat_f64x2_s_zero i32x4.trunc_sat_f64x2_u_zero
  f64x2.convert_low_i32x4_s f64x2.convert_low_i32x4_u
  i8x16.relaxed_swizzle i32x4.relaxed_trunc_f32x4_s i32x4.relaxed_trunc_f32x4_u
  i32x4.relaxed_trunc_f64x2_s_zero i32x4.relaxed_trunc_f64x2_u_zero f32x4.relaxed_madd f32x4.relaxed_nmadd
  f64x2.relaxed_madd f64x2.relaxed_nmadd i8x16.relaxed_laneselect i16x8.relaxed_laneselect
  i32x4.relaxed_laneselect i64x2.relaxed_laneselect f32x4.relaxed_min f32x4.relaxed_max f64x2.relaxed_min
  f64x2.relaxed_max i16x8.relaxed_q15mulr_s i16x8.relaxed_dot_i8x16_i7x16_s
  i32x4.relaxed_dot_i8x16_i7x16_add_s
"""


def uleb(n: int) -> bytes:
    """Unsigned LEB128."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def sleb(n: int) -> bytes:
    """Signed LEB128."""
    if -64 <= n < 64:
        return bytes((n & 0x7F,))
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if (n == 0 and not b & 0x40) or (n == -1 and b & 0x40):
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


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
    for sub, word in enumerate(_FD.split()[1:]):
        if word != "-":
            name, _, simd_kind = word.partition(":")
            table[name] = (b"\xfd" + uleb(sub), simd_kind or "none")
    return table


INSTRUCTIONS: dict[str, tuple[bytes, str]] = _build()

# instructions whose presence makes wasm-tools (and the spec) emit a data count section
NEEDS_DATA_COUNT = frozenset({"memory.init", "data.drop", "array.new_data", "array.init_data"})
