"""The embedding API of exports and imports: ``Module.imports``/``.exports`` as typed descriptions
(checked against wasmtime-py's), ``instance.exports`` as a mapping of callable functions and the
instance's own memories, tables, globals and tags, and the TypeErrors for arguments that are not of
their parameter's type."""

from __future__ import annotations

from typing import Any

import pytest
import wasmtime
from wat import wat

import asyncwasm
from asyncwasm.runtime.instance import host_global, host_memory, host_table

pytestmark = pytest.mark.anyio

FT = asyncwasm.FuncType

EVERY_KIND = """
(module
  (import "env" "log" (func $log (param i32 i64) (result f64)))
  (import "env" "mem" (memory 1 4))
  (import "env" "base" (global $base i32))
  (import "env" "counter" (global $counter (mut i64)))
  (import "env" "funcs" (table 2 10 funcref))
  (import "env" "oops" (tag $oops (param i32)))
  (memory (export "wide") i64 2)
  (table (export "refs") 3 externref)
  (global (export "scale") (mut f32) (f32.const 1.5))
  (tag (export "fail") (param i64 f64))
  (export "log_again" (func $log))
  (export "base_again" (global $base))
  (func (export "sum") (param i32 i64 f32 f64) (result f64)
    (f64.add
      (f64.add (f64.convert_i32_s (local.get 0)) (f64.convert_i64_s (local.get 1)))
      (f64.add (f64.promote_f32 (local.get 2)) (local.get 3))))
  (func (export "calls_log") (result f64) (call $log (global.get $base) (i64.const 2)))
  (func (export "nothing")))
"""

ARITH = """
(module
  (memory (export "memory") 1)
  (global $count (export "count") (mut i32) (i32.const 0))
  (table (export "table") 2 funcref)
  (elem (i32.const 0) $add)
  (type $bin (func (param i32 i32) (result i32)))
  (func $add (export "add") (param i32 i32) (result i32)
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (i32.add (local.get 0) (local.get 1)))
  (func (export "id64") (param i64) (result i64) (local.get 0))
  (func (export "idv") (param v128) (result v128) (local.get 0))
  (func (export "f32") (param f32) (result f32) (local.get 0))
  (func (export "swap") (param i32 i64) (result i64 i32) (local.get 1) (local.get 0))
  (func (export "load") (param i32) (result i32) (i32.load8_u (local.get 0)))
  (func (export "is_null") (param funcref) (result i32) (ref.is_null (local.get 0)))
  (func (export "apply") (param funcref i32 i32) (result i32)
    (table.set (i32.const 1) (local.get 0))
    (call_indirect (type $bin) (local.get 1) (local.get 2) (i32.const 1)))
  (func (export "spin") (loop $l (br $l))))
"""


async def arith() -> asyncwasm.Instance:
    return await asyncwasm.Linker().instantiate(asyncwasm.Module(wat(ARITH)))


# ---- Module.imports and Module.exports ----------------------------------------------------------


def _wt_valtype(v: wasmtime.ValType) -> str:
    """A wasmtime-py value type in asyncwasm's spelling (its str() calls externref "anyref")."""
    for name in ("i32", "i64", "f32", "f64", "funcref", "externref"):
        if v == getattr(wasmtime.ValType, name)():
            return name
    raise AssertionError(f"unexpected value type {v}")


def _wt_described(t: Any) -> tuple[Any, ...]:
    """What wasmtime-py says an import or export is, in the shape ``_aw_described`` gives."""
    if isinstance(t, wasmtime.FuncType):
        return ("func", tuple(map(_wt_valtype, t.params)), tuple(map(_wt_valtype, t.results)))
    if isinstance(t, wasmtime.TagType):
        ft = t.functype
        return ("tag", tuple(map(_wt_valtype, ft.params)), tuple(map(_wt_valtype, ft.results)))
    if isinstance(t, wasmtime.MemoryType):
        return ("memory", t.limits.min, t.limits.max, "i64" if t.is_64 else "i32")
    if isinstance(t, wasmtime.TableType):
        return ("table", _wt_valtype(t.element), t.limits.min, t.limits.max)
    assert isinstance(t, wasmtime.GlobalType)
    return ("global", _wt_valtype(t.content), t.mutable)


def _aw_described(kind: str, t: Any) -> tuple[Any, ...]:
    if kind in ("func", "tag"):
        assert isinstance(t, asyncwasm.FuncType)
        return (kind, t.params, t.results)
    if kind == "memory":
        assert isinstance(t, asyncwasm.MemoryType)
        return ("memory", t.limits.min, t.limits.max, t.address)
    if kind == "table":
        assert isinstance(t, asyncwasm.TableType)
        return ("table", t.elem, t.limits.min, t.limits.max)
    assert kind == "global" and isinstance(t, asyncwasm.GlobalType)
    return ("global", t.valtype, t.mutable)


def test_imports_and_exports_are_typed_as_wasmtime_py_types_them() -> None:
    wasm = wat(EVERY_KIND)
    ours = asyncwasm.Module(wasm)
    config = wasmtime.Config()
    config.wasm_exceptions = True
    theirs = wasmtime.Module(wasmtime.Engine(config), wasm)

    assert all(isinstance(i, asyncwasm.ImportType) for i in ours.imports)
    assert [(i.module, i.name, _aw_described(i.kind, i.type)) for i in ours.imports] == [
        (i.module, i.name, _wt_described(i.type)) for i in theirs.imports
    ]
    assert all(isinstance(e, asyncwasm.ExportType) for e in ours.exports)
    assert [(e.name, _aw_described(e.kind, e.type)) for e in ours.exports] == [
        (e.name, _wt_described(e.type)) for e in theirs.exports
    ]
    # spelled out once, so that the comparison above cannot pass on two empty lists
    assert [i.kind for i in ours.imports] == ["func", "memory", "global", "global", "table", "tag"]
    assert ours.imports[0] == asyncwasm.ImportType("env", "log", "func", FT(("i32", "i64"), ("f64",)))
    by_name = {e.name: e for e in ours.exports}
    assert by_name["log_again"].type == FT(("i32", "i64"), ("f64",))  # a re-exported import
    assert by_name["base_again"].type == asyncwasm.GlobalType("i32", False)
    assert by_name["fail"].kind == "tag" and by_name["fail"].type == FT(("i64", "f64"), ())


def test_import_and_export_types_are_immutable_records_not_tuples() -> None:
    export = asyncwasm.Module(wat(ARITH)).exports[0]
    with pytest.raises(AttributeError):
        export.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        name, kind = export  # type: ignore[misc]


async def test_a_host_defines_a_stub_for_every_import_by_its_type() -> None:
    """The use ``.type`` is for: satisfy any module's imports without knowing them in advance."""
    module = asyncwasm.Module(wat(EVERY_KIND))
    linker = asyncwasm.Linker()
    calls: list[tuple[str, tuple[Any, ...]]] = []
    for imp in module.imports:
        t = imp.type
        if imp.kind == "func":
            assert isinstance(t, asyncwasm.FuncType)

            def stub(*args: Any, _name: str = imp.name, _t: asyncwasm.FuncType = t) -> Any:
                calls.append((_name, args))
                zeros = tuple(0.0 if r in ("f32", "f64") else 0 for r in _t.results)
                return zeros[0] + 42 if len(zeros) == 1 else zeros or None

            linker.define_func(imp.module, imp.name, t, stub)
        elif imp.kind == "memory":
            assert isinstance(t, asyncwasm.MemoryType)
            linker.define(imp.module, imp.name, host_memory(t.limits.min, t.limits.max, t.address))
        elif imp.kind == "table":
            assert isinstance(t, asyncwasm.TableType)
            linker.define(imp.module, imp.name, host_table(t.elem, t.limits.min, t.limits.max, t.address))
        elif imp.kind == "global":
            assert isinstance(t, asyncwasm.GlobalType)
            linker.define(imp.module, imp.name, host_global(t.valtype, 7, t.mutable))
        else:
            assert imp.kind == "tag" and isinstance(t, asyncwasm.FuncType)
            linker.define(imp.module, imp.name, asyncwasm.Tag(t, imp.name))
    instance = await linker.instantiate(module)
    assert await instance.exports["calls_log"]() == 42.0
    assert calls == [("log", (7, 2))]
    assert instance.exports["base_again"].value == 7  # type: ignore[union-attr]


# ---- instance.exports ---------------------------------------------------------------------------


async def test_exports_is_a_mapping_in_the_modules_order() -> None:
    instance = await arith()
    names = [e.name for e in instance.module.exports]
    assert list(instance.exports) == names and len(instance.exports) == len(names)
    assert "add" in instance.exports and "nope" not in instance.exports
    assert instance.exports.get("nope") is None
    with pytest.raises(KeyError):
        instance.exports["nope"]
    kinds = {name: type(item).__name__ for name, item in instance.exports.items()}
    assert kinds["add"] == "ExportedFunc" and kinds["memory"] == "Memory"
    assert kinds["count"] == "Global" and kinds["table"] == "Table"
    assert isinstance(instance.exports, asyncwasm.InstanceExports)


async def test_an_exported_function_is_awaitable_and_typed() -> None:
    instance = await arith()
    add = instance.exports["add"]
    assert isinstance(add, asyncwasm.ExportedFunc)
    assert add.name == "add" and add.type == FT(("i32", "i32"), ("i32",))
    assert add.func is instance.get_func("add") and add.func.type is add.type
    assert instance.exports["add"] is add  # one object per export, made on first look-up
    assert await add(2, 40) == 42
    assert await add(-1, 0) == -1  # results are signed
    assert await instance.exports["swap"](3, -4) == (-4, 3)
    assert add.instance is instance
    assert await instance.exports["f32"](0.1) == pytest.approx(0.1, rel=1e-7)
    assert await instance.exports["id64"](2**64 - 1) == -1
    count = instance.exports["count"]
    assert isinstance(count, asyncwasm.Global) and count.value == 2  # the guest's own global, live
    assert await instance.call("add", 1, 1) == 2 and count.value == 3


async def test_memories_tables_and_globals_are_the_instances_own_objects() -> None:
    instance = await arith()
    memory = instance.exports["memory"]
    assert isinstance(memory, asyncwasm.Memory)
    memory.write(5, b"\x7f")
    assert await instance.exports["load"](5) == 0x7F
    table = instance.exports["table"]
    assert isinstance(table, asyncwasm.Table)
    assert table.elems[0] is instance.get_func("add")  # tables hold the raw Func, as compiled code wants


async def test_call_is_the_exported_functions_call() -> None:
    instance = await arith()
    assert await instance.call("add", 20, 22) == await instance.exports["add"](20, 22) == 42
    with pytest.raises(KeyError, match="no exported function named 'memory'"):
        await instance.call("memory")
    with pytest.raises(KeyError, match="no exported function named 'nope'"):
        await instance.call("nope")


async def test_an_exported_function_runs_within_the_stores_timeout() -> None:
    instance = await asyncwasm.Linker().instantiate(
        asyncwasm.Module(wat(ARITH)), asyncwasm.Store(timeout=0.1)
    )
    with pytest.raises(asyncwasm.Interrupted):
        await instance.exports["spin"]()
    assert instance.dead is not None
    with pytest.raises(asyncwasm.InstanceDead):
        await instance.exports["add"](1, 2)


async def test_exported_functions_are_function_references_for_other_calls_and_linkers() -> None:
    provider = await arith()
    add = provider.exports["add"]
    user = await arith()
    assert await user.exports["apply"](add, 6, 7) == 13  # unwrapped to its Func for the table
    assert await user.exports["is_null"](add) == 0 and await user.exports["is_null"](None) == 1
    linker = asyncwasm.Linker()
    linker.define("p", "add", add)  # what wasmtime-py's linker.define(store, ..., func) does
    importer = await linker.instantiate(
        asyncwasm.Module(
            wat("""(module (import "p" "add" (func $add (param i32 i32) (result i32)))
                 (func (export "twice") (param i32) (result i32) (call $add (local.get 0) (local.get 0))))""")
        )
    )
    assert await importer.exports["twice"](21) == 42


async def test_a_caller_sees_the_exports_as_instance_exports_does() -> None:
    seen: dict[str, Any] = {}

    def host(caller: asyncwasm.Caller) -> None:
        seen["add"] = caller.get_export("add")
        seen["memory"] = caller.get_export("memory")
        seen["none"] = caller.get_export("nope")

    linker = asyncwasm.Linker()
    linker.define_func("env", "host", FT((), ()), host, access_caller=True)
    instance = await linker.instantiate(
        asyncwasm.Module(
            wat("""(module (import "env" "host" (func $h)) (memory (export "memory") 1)
                 (func (export "add") (param i32 i32) (result i32) (local.get 0))
                 (func (export "run") (call $h)))""")
        )
    )
    await instance.exports["run"]()
    assert seen == {"add": instance.exports["add"], "memory": instance.exports["memory"], "none": None}


async def test_a_lazily_translated_export_is_called_through_its_exported_function() -> None:
    """Big modules are translated per function on first call; the export's object sees the result."""
    body = " ".join(["(local.set 1 (i32.add (local.get 1) (local.get 0)))"] * 60)
    funcs = "\n".join(
        f'(func (export "f{k}") (param i32) (result i32) (local i32) {body} (local.get 1))' for k in range(80)
    )
    module = asyncwasm.Module(wat(f"(module {funcs})"), cache=False)
    assert module.compiled.lazy
    instance = await asyncwasm.Linker().instantiate(module)
    f = instance.exports["f3"]
    assert await f(2) == 120 and await f(3) == 180
    assert f.func.fn is instance.g["f3"]  # the translated function, not the stub


# ---- wrong arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("export", "args", "message"),
    [
        ("add", (1, "x"), "add() argument 2 must be i32 (an int in [-2**31, 2**32)), got str 'x'"),
        ("add", (1.5, 2), "add() argument 1 must be i32 (an int in [-2**31, 2**32)), got float 1.5"),
        ("add", (None, 2), "add() argument 1 must be i32 (an int in [-2**31, 2**32)), got NoneType None"),
        ("add", (2**32, 0), "add() argument 1 must be i32 (an int in [-2**31, 2**32)), got int 4294967296"),
        (
            "add",
            (0, -(2**31) - 1),
            "add() argument 2 must be i32 (an int in [-2**31, 2**32)), got int -2147483649",
        ),
        (
            "id64",
            (2**64,),
            "id64() argument 1 must be i64 (an int in [-2**63, 2**64)), got int 18446744073709551616",
        ),
        ("id64", ("1",), "id64() argument 1 must be i64 (an int in [-2**63, 2**64)), got str '1'"),
        ("f32", ("1.5",), "f32() argument 1 must be f32 (a float or an int), got str '1.5'"),
        ("f32", ([],), "f32() argument 1 must be f32 (a float or an int), got list []"),
        ("idv", (2**128,), "idv() argument 1 must be v128 (an int in [-2**127, 2**128)), got int"),
        (
            "is_null",
            (5,),
            "is_null() argument 1 must be funcref (a Func, an exported function or None), got int 5",
        ),
        ("add", (1,), "add() takes 2 arguments ([i32 i32] -> [i32]), got 1"),
        ("add", (1, 2, 3), "add() takes 2 arguments ([i32 i32] -> [i32]), got 3"),
        ("spin", (1,), "spin() takes 0 arguments ([] -> []), got 1"),
    ],
)
async def test_a_wrong_argument_is_a_type_error_naming_the_function_and_parameter(
    export: str, args: tuple[Any, ...], message: str
) -> None:
    instance = await arith()
    with pytest.raises(TypeError) as info:
        await instance.exports[export](*args)
    assert str(info.value).startswith(message)
    with pytest.raises(TypeError) as again:  # the same through call()
        await instance.call(export, *args)
    assert str(again.value) == str(info.value)
    assert instance.dead is None and await instance.call("add", 1, 2) == 3  # nothing ran


async def test_ints_at_both_ends_of_each_range_are_taken() -> None:
    instance = await arith()
    add, id64, idv = instance.exports["add"], instance.exports["id64"], instance.exports["idv"]
    assert await add(-(2**31), 0) == -(2**31)
    assert await add(2**32 - 1, 0) == -1  # the unsigned reading of the same bits
    assert await id64(-(2**63)) == -(2**63) and await id64(2**64 - 1) == -1
    assert await idv(-1) == 2**128 - 1 and await idv(2**128 - 1) == 2**128 - 1
    assert await idv(-(2**127)) == 2**127
    assert await add(True, 1) == 2  # what has __index__ is an int
    assert await instance.exports["f32"](3) == 3.0  # an int is a fine float


async def test_a_reference_of_the_wrong_gc_type_names_the_parameter() -> None:
    instance = await asyncwasm.Linker().instantiate(
        asyncwasm.Module(
            wat("""(module (type $p (struct (field i32))) (type $q (array i8))
                 (func (export "make") (result (ref $q)) (array.new_default $q (i32.const 2)))
                 (func (export "x") (param (ref null $p)) (result i32) (i32.const 1)))""")
        )
    )
    arr = await instance.exports["make"]()
    with pytest.raises(TypeError, match=r"^x\(\) argument 1 must be \(ref null 0\), got Array "):
        await instance.exports["x"](arr)
    assert await instance.exports["x"](None) == 1
