"""Every 0xFD-prefixed opcode (SIMD and relaxed SIMD): its text name and the kind of its immediate.

An instruction's opcode is ``SIMD_BASE + sub`` (``sub`` up to 0x113 does not fit in the byte that
``0xFC00 | sub`` leaves, so the prefix sits one hex digit higher). Immediate kinds:

* ``none``; ``lane`` (one lane-index byte); ``shuffle`` (16 lane-index bytes); ``v128`` (16 bytes,
  held as one unsigned 128-bit int, little-endian);
* ``memarg`` (``(align_log2, offset)`` as for scalar loads, ``(align_log2, offset, memidx)`` for a
  memory other than 0); ``lanemem`` (``(memarg, lane)``).

``SIMD_ACCESS[op]`` is the number of bytes a memory instruction touches, whose log2 is its natural
alignment; ``LANES[op]`` the lane count a lane index must stay below.
"""

from __future__ import annotations

SIMD_BASE = 0xFD000
RELAXED_FIRST = 0x100  # sub-opcodes from here on are relaxed SIMD

# runs of consecutive sub-opcodes from 0; "-" is an unassigned one; name:kind[width]
_TABLE = """
v128.load:memarg16 v128.load8x8_s:memarg8 v128.load8x8_u:memarg8 v128.load16x4_s:memarg8
v128.load16x4_u:memarg8 v128.load32x2_s:memarg8 v128.load32x2_u:memarg8 v128.load8_splat:memarg1
v128.load16_splat:memarg2 v128.load32_splat:memarg4 v128.load64_splat:memarg8 v128.store:memarg16
v128.const:v128 i8x16.shuffle:shuffle i8x16.swizzle i8x16.splat i16x8.splat i32x4.splat i64x2.splat
f32x4.splat f64x2.splat i8x16.extract_lane_s:lane16 i8x16.extract_lane_u:lane16 i8x16.replace_lane:lane16
i16x8.extract_lane_s:lane8 i16x8.extract_lane_u:lane8 i16x8.replace_lane:lane8 i32x4.extract_lane:lane4
i32x4.replace_lane:lane4 i64x2.extract_lane:lane2 i64x2.replace_lane:lane2 f32x4.extract_lane:lane4
f32x4.replace_lane:lane4 f64x2.extract_lane:lane2 f64x2.replace_lane:lane2
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

SIMD_OPCODES: dict[int, tuple[str, str]] = {}  # op -> (name, kind)
SIMD_ACCESS: dict[int, int] = {}  # memory instructions: bytes accessed
LANES: dict[int, int] = {}  # lane instructions: number of lanes
SUB_KINDS: dict[int, str] = {}  # sub-opcode -> kind, for the decoder

for _sub, _word in enumerate(_TABLE.split()):
    if _word == "-":
        continue
    _name, _, _kind = _word.partition(":")
    _op = SIMD_BASE + _sub
    _base = _kind.rstrip("0123456789") if _kind.startswith(("memarg", "lanemem", "lane")) else _kind
    _width = int(_kind[len(_base) :]) if _base != _kind else 0
    if _base in ("memarg", "lanemem"):
        SIMD_ACCESS[_op] = _width
        if _base == "lanemem":
            LANES[_op] = 16 // _width
    elif _base == "lane":
        LANES[_op] = _width
    SIMD_OPCODES[_op] = (_name, _base or "none")
    SUB_KINDS[_sub] = _base or "none"

SIMD_NAMES: dict[str, int] = {name: op for op, (name, _k) in SIMD_OPCODES.items()}
