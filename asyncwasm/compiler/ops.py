"""Python expression templates for the stack-machine operators that read operands and push one value.

``PURE`` operators cannot trap and read no mutable state, so the translator may fold them into the
expressions that use them. ``TRAPPING`` ones are evaluated at once, in program order, into a stack slot.
Helper names refer to ``numeric`` functions placed in every instance's globals.
"""

from __future__ import annotations

from ..binary.opcodes import NAMES

_M32 = "0xFFFFFFFF"
_M64 = "0xFFFFFFFFFFFFFFFF"


def _int_ops(w: str, mask: str, sign: str, bits: int) -> dict[str, str]:
    sh = bits - 1
    return {
        f"{w}.eqz": "({a} == 0)",
        f"{w}.eq": "({a} == {b})",
        f"{w}.ne": "({a} != {b})",
        f"{w}.lt_u": "({a} < {b})",
        f"{w}.gt_u": "({a} > {b})",
        f"{w}.le_u": "({a} <= {b})",
        f"{w}.ge_u": "({a} >= {b})",
        f"{w}.lt_s": f"(({{a}} ^ {sign}) < ({{b}} ^ {sign}))",
        f"{w}.gt_s": f"(({{a}} ^ {sign}) > ({{b}} ^ {sign}))",
        f"{w}.le_s": f"(({{a}} ^ {sign}) <= ({{b}} ^ {sign}))",
        f"{w}.ge_s": f"(({{a}} ^ {sign}) >= ({{b}} ^ {sign}))",
        f"{w}.clz": f"({bits} - ({{a}}).bit_length())",
        f"{w}.ctz": f"{w}_ctz({{a}})",
        f"{w}.popcnt": "({a}).bit_count()",
        f"{w}.add": f"(({{a}} + {{b}}) & {mask})",
        f"{w}.sub": f"(({{a}} - {{b}}) & {mask})",
        f"{w}.mul": f"(({{a}} * {{b}}) & {mask})",
        f"{w}.and": "({a} & {b})",
        f"{w}.or": "({a} | {b})",
        f"{w}.xor": "({a} ^ {b})",
        f"{w}.shl": f"(({{a}} << ({{b}} & {sh})) & {mask})",
        f"{w}.shr_u": f"({{a}} >> ({{b}} & {sh}))",
        f"{w}.shr_s": f"(((({{a}} ^ {sign}) - {sign}) >> ({{b}} & {sh})) & {mask})",
        f"{w}.rotl": f"{w}_rotl({{a}}, {{b}})",
        f"{w}.rotr": f"{w}_rotr({{a}}, {{b}})",
        f"{w}.extend8_s": f"(((({{a}} & 0xFF) ^ 0x80) - 0x80) & {mask})",
        f"{w}.extend16_s": f"(((({{a}} & 0xFFFF) ^ 0x8000) - 0x8000) & {mask})",
    }


def _float_ops(w: str, rnd: str) -> dict[str, str]:
    def r(e: str) -> str:
        return f"{rnd}({e})" if rnd else e

    return {
        f"{w}.eq": "({a} == {b})",
        f"{w}.ne": "({a} != {b})",
        f"{w}.lt": "({a} < {b})",
        f"{w}.gt": "({a} > {b})",
        f"{w}.le": "({a} <= {b})",
        f"{w}.ge": "({a} >= {b})",
        f"{w}.abs": "abs({a})",
        f"{w}.neg": "(-{a})",
        f"{w}.ceil": "fceil({a})",
        f"{w}.floor": "ffloor({a})",
        f"{w}.trunc": "ftrunc({a})",
        f"{w}.nearest": "fnearest({a})",
        f"{w}.sqrt": r("fsqrt({a})"),
        f"{w}.add": r("({a} + {b})"),
        f"{w}.sub": r("({a} - {b})"),
        f"{w}.mul": r("({a} * {b})"),
        f"{w}.div": r("fdiv({a}, {b})"),
        f"{w}.min": "fmin({a}, {b})",
        f"{w}.max": "fmax({a}, {b})",
        f"{w}.copysign": "copysign({a}, {b})",
    }


_PURE_BY_NAME: dict[str, str] = {
    **_int_ops("i32", _M32, "0x80000000", 32),
    **_int_ops("i64", _M64, "0x8000000000000000", 64),
    **_float_ops("f32", "fround"),
    **_float_ops("f64", ""),
    "i64.extend32_s": f"(((({{a}} & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000) & {_M64})",
    "i32.wrap_i64": f"({{a}} & {_M32})",
    "i64.extend_i32_s": f"((({{a}} ^ 0x80000000) - 0x80000000) & {_M64})",
    "i64.extend_i32_u": "{a}",
    "f32.convert_i32_s": "f32_convert_s32({a})",
    "f32.convert_i32_u": "f32_convert_u({a})",
    "f32.convert_i64_s": "f32_convert_s64({a})",
    "f32.convert_i64_u": "f32_convert_u({a})",
    "f64.convert_i32_s": "float(({a} ^ 0x80000000) - 0x80000000)",
    "f64.convert_i32_u": "float({a})",
    "f64.convert_i64_s": "f64_convert_s64({a})",
    "f64.convert_i64_u": "float({a})",
    "f32.demote_f64": "f32_demote({a})",
    "f64.promote_f32": "f64_promote({a})",
    "i32.reinterpret_f32": "f32_to_bits({a})",
    "i64.reinterpret_f64": "f64_to_bits({a})",
    "f32.reinterpret_i32": "f32_from_bits({a})",
    "f64.reinterpret_i64": "f64_from_bits({a})",
    "i32.trunc_sat_f32_s": "i32_trunc_sat_s({a})",
    "i32.trunc_sat_f32_u": "i32_trunc_sat_u({a})",
    "i32.trunc_sat_f64_s": "i32_trunc_sat_s({a})",
    "i32.trunc_sat_f64_u": "i32_trunc_sat_u({a})",
    "i64.trunc_sat_f32_s": "i64_trunc_sat_s({a})",
    "i64.trunc_sat_f32_u": "i64_trunc_sat_u({a})",
    "i64.trunc_sat_f64_s": "i64_trunc_sat_s({a})",
    "i64.trunc_sat_f64_u": "i64_trunc_sat_u({a})",
}

_TRAPPING_BY_NAME: dict[str, str] = {
    "i32.div_s": "i32_div_s({a}, {b})",
    "i32.div_u": "({a} // {b})",
    "i32.rem_s": "i32_rem_s({a}, {b})",
    "i32.rem_u": "({a} % {b})",
    "i64.div_s": "i64_div_s({a}, {b})",
    "i64.div_u": "({a} // {b})",
    "i64.rem_s": "i64_rem_s({a}, {b})",
    "i64.rem_u": "({a} % {b})",
    "i32.trunc_f32_s": "i32_trunc_s({a})",
    "i32.trunc_f32_u": "i32_trunc_u({a})",
    "i32.trunc_f64_s": "i32_trunc_s({a})",
    "i32.trunc_f64_u": "i32_trunc_u({a})",
    "i64.trunc_f32_s": "i64_trunc_s({a})",
    "i64.trunc_f32_u": "i64_trunc_u({a})",
    "i64.trunc_f64_s": "i64_trunc_s({a})",
    "i64.trunc_f64_u": "i64_trunc_u({a})",
}


def _arity(template: str) -> int:
    return 2 if "{b}" in template else 1


# op -> (template, number of operands, pure)
OPERATORS: dict[int, tuple[str, int, bool]] = {}
for _name, _t in _PURE_BY_NAME.items():
    OPERATORS[NAMES[_name]] = (_t, _arity(_t), True)
for _name, _t in _TRAPPING_BY_NAME.items():
    OPERATORS[NAMES[_name]] = (_t, _arity(_t), False)

# Loads: op -> (expression template over the effective address {ea}).
LOADS: dict[int, str] = {
    NAMES["i32.load"]: "_lu32(M, {ea})[0]",
    NAMES["i64.load"]: "_lu64(M, {ea})[0]",
    NAMES["f32.load"]: "f32_from_bits(_lu32(M, {ea})[0])",
    NAMES["f64.load"]: "_lf64(M, {ea})[0]",
    NAMES["i32.load8_s"]: "_S8[M[{ea}]]",  # a byte's index into its sign-extended values
    NAMES["i32.load8_u"]: "M[{ea}]",
    NAMES["i32.load16_s"]: f"(_ls16(M, {{ea}})[0] & {_M32})",
    NAMES["i32.load16_u"]: "_lu16(M, {ea})[0]",
    NAMES["i64.load8_s"]: "_S8_64[M[{ea}]]",
    NAMES["i64.load8_u"]: "M[{ea}]",
    NAMES["i64.load16_s"]: f"(_ls16(M, {{ea}})[0] & {_M64})",
    NAMES["i64.load16_u"]: "_lu16(M, {ea})[0]",
    NAMES["i64.load32_s"]: f"(_ls32(M, {{ea}})[0] & {_M64})",
    NAMES["i64.load32_u"]: "_lu32(M, {ea})[0]",
}

# Stores: op -> statement template over {ea} and the value {v}.
STORES: dict[int, str] = {
    NAMES["i32.store"]: "_su32(M, {ea}, {v})",
    NAMES["i64.store"]: "_su64(M, {ea}, {v})",
    NAMES["f32.store"]: "_su32(M, {ea}, f32_to_bits({v}))",
    NAMES["f64.store"]: "_sf64(M, {ea}, {v})",
    NAMES["i32.store8"]: "M[{ea}] = {v} & 0xFF",
    NAMES["i32.store16"]: "_su16(M, {ea}, {v} & 0xFFFF)",
    NAMES["i64.store8"]: "M[{ea}] = {v} & 0xFF",
    NAMES["i64.store16"]: "_su16(M, {ea}, {v} & 0xFFFF)",
    NAMES["i64.store32"]: f"_su32(M, {{ea}}, {{v}} & {_M32})",
}

# Fuel follows wasmtime: these cost nothing, every other instruction costs one unit.
FREE_OPS = frozenset({0x01, 0x1A, 0x02, 0x03, 0x0B, 0x05, 0x0F, 0x00})
