"""Typed function references: call_ref, ref.as_non_null, br_on_null/br_on_non_null, typed ref.func,
tables with an initializer, and the initialisation rules of non-nullable locals."""

from __future__ import annotations

import pytest
from wat import wat

import asyncwasm
from asyncwasm.binary.types import GLOBAL, parse_ref, ref_type

CALLS = """
(module
  (type $binop (func (param i32 i32) (result i32)))
  (elem declare func $add $sub)
  (func $add (type $binop) (i32.add (local.get 0) (local.get 1)))
  (func $sub (type $binop) (i32.sub (local.get 0) (local.get 1)))
  (func (export "pick") (param i32) (result (ref $binop))
    (if (result (ref $binop)) (local.get 0) (then (ref.func $add)) (else (ref.func $sub))))
  (func (export "apply") (param (ref null $binop) i32 i32) (result i32)
    (call_ref $binop (local.get 1) (local.get 2) (local.get 0)))
  (func (export "force") (param (ref null $binop)) (result (ref $binop))
    (ref.as_non_null (local.get 0)))
  (func (export "or_default") (param (ref null $binop)) (result i32)
    (block $null
      (return (call_ref $binop (i32.const 10) (i32.const 3) (br_on_null $null (local.get 0)))))
    (i32.const -1))
  (func (export "non_null") (param (ref null $binop)) (result i32)
    (drop (block $some (result (ref $binop))
      (br_on_non_null $some (local.get 0))
      (return (i32.const 0))))
    (i32.const 1))
)
"""


def _instance(text: str) -> asyncwasm.Instance:
    return asyncwasm.Linker().instantiate_sync(asyncwasm.Module(wat(text)))


def _call(inst: asyncwasm.Instance, name: str, *args: object) -> object:
    return inst.call_raw_sync(inst.get_func(name), list(args))


def test_call_ref_and_null_handling() -> None:
    inst = _instance(CALLS)
    add, sub = _call(inst, "pick", 1), _call(inst, "pick", 0)
    assert isinstance(add, asyncwasm.Func)
    assert _call(inst, "apply", add, 2, 3) == 5
    assert _call(inst, "apply", sub, 2, 3) == 0xFFFFFFFF
    with pytest.raises(asyncwasm.Trap, match="null function reference"):
        _call(inst, "apply", None, 2, 3)
    assert _call(inst, "force", add) is add
    with pytest.raises(asyncwasm.Trap, match="null reference"):
        _call(inst, "force", None)
    assert _call(inst, "or_default", sub) == 7
    assert _call(inst, "or_default", None) == 0xFFFFFFFF
    assert _call(inst, "non_null", add) == 1
    assert _call(inst, "non_null", None) == 0


def test_a_function_reference_from_python_is_called() -> None:
    inst = _instance(CALLS)
    other = _instance("""(module (type $binop (func (param i32 i32) (result i32)))
                           (func (export "mul") (type $binop) (i32.mul (local.get 0) (local.get 1))))""")
    assert _call(inst, "apply", other.get_func("mul"), 6, 7) == 42


def test_ref_func_has_its_function_type() -> None:
    # ref.func is (ref $t): it flows into a non-nullable typed local and a table of (ref $t)
    inst = _instance("""
      (module
        (type $t (func (result i32)))
        (func $f (type $t) (i32.const 9))
        (table $tab 2 (ref $t) (ref.func $f))
        (func (export "run") (result i32)
          (local $r (ref $t))
          (local.set $r (table.get $tab (i32.const 1)))
          (call_ref $t (local.get $r))))""")
    assert _call(inst, "run") == 9
    with pytest.raises(asyncwasm.InvalidModule):  # a table of non-nullable refs needs an initializer
        asyncwasm.Module(wat("(module (type $t (func)) (table 1 (ref $t)))"))


@pytest.mark.parametrize(
    "body, ok",
    [
        ("(local.set $r (ref.func $f)) (drop (local.get $r))", True),
        ("(drop (local.get $r))", False),  # read before any set
        ("(block (local.set $r (ref.func $f))) (drop (local.get $r))", False),  # the set ends with its block
        ("(block (local.set $r (ref.func $f)) (drop (local.get $r)))", True),
        ("(local.tee $r (ref.func $f)) (drop) (drop (local.get $r))", True),
        ("(if (i32.const 1) (then (local.set $r (ref.func $f))) (else (drop (local.get $r))))", False),
    ],
)
def test_non_nullable_locals_must_be_set_first(body: str, ok: bool) -> None:
    text = f"""(module (type $t (func)) (elem declare func $f) (func $f)
                 (func (local $r (ref $t)) {body}))"""
    if ok:
        asyncwasm.Module(wat(text))
    else:
        with pytest.raises(asyncwasm.InvalidModule, match="uninitialized local"):
            asyncwasm.Module(wat(text))


def test_reference_type_strings_and_matching() -> None:
    assert parse_ref("funcref") == (True, "func")
    assert parse_ref("(ref 3)") == (False, 3)
    assert parse_ref("(ref null eq)") == (True, "eq")
    assert parse_ref("i32") is None
    assert ref_type(True, "func") == "funcref" and ref_type(False, "any") == "(ref any)"
    assert ref_type(True, 2) == "(ref null 2)"
    assert GLOBAL.sub("(ref i31)", "eqref") and GLOBAL.sub("nullref", "(ref null struct)")
    assert GLOBAL.sub("(ref func)", "funcref") and not GLOBAL.sub("funcref", "(ref func)")
    assert not GLOBAL.sub("externref", "anyref") and not GLOBAL.sub("nullfuncref", "anyref")


def test_typed_references_need_the_feature() -> None:
    with pytest.raises(asyncwasm.UnsupportedFeature, match="function-references"):
        asyncwasm.Module(wat(CALLS), features=asyncwasm.Features.wasm2())


def test_a_host_function_returning_a_non_function_as_funcref_is_refused() -> None:
    linker = asyncwasm.Linker()
    linker.define_func("env", "get", asyncwasm.FuncType((), ("funcref",)), lambda: "not a function")
    linker.define_func("env", "none", asyncwasm.FuncType((), ("funcref",)), lambda: None)
    module = asyncwasm.Module(
        wat("""
      (module (import "env" "get" (func $get (result funcref))) (import "env" "none" (func $none (result funcref)))
        (func (export "bad") (result i32) (ref.is_null (call $get)))
        (func (export "null") (result i32) (ref.is_null (call $none))))""")
    )
    inst = linker.instantiate_sync(module)
    assert _call(inst, "null") == 1
    with pytest.raises(TypeError, match="funcref"):
        _call(inst, "bad")
