"""The generated host-call wrappers: every value convention of define_func, for each shape."""

from __future__ import annotations

import anyio
import pytest
from wat import wat

import asyncwasm
from asyncwasm import FuncType

pytestmark = pytest.mark.anyio


async def _call(params: tuple[str, ...], results: tuple[str, ...], fn, *args):
    sig = " ".join(f"(param {p})" for p in params) + " " + " ".join(f"(result {r})" for r in results)
    gets = " ".join(f"(local.get {k})" for k in range(len(params)))
    module = asyncwasm.Module(
        wat(f'(module (import "env" "h" (func $h {sig})) (func (export "run") {sig} (call $h {gets})))')
    )
    linker = asyncwasm.Linker()
    linker.define_func("env", "h", FuncType(params, results), fn)
    inst = await linker.instantiate(module)
    return await inst.call("run", *args)


async def test_integers_arrive_signed_and_go_back_wrapped() -> None:
    seen = []

    def h(a: int, b: int) -> int:
        seen.append((a, b))
        return a + b

    assert await _call(("i32", "i64"), ("i64",), h, -1, -(2**63)) == -(2**63) - 1 + 2**64
    assert seen == [(-1, -(2**63))]
    assert await _call(("i32",), ("i32",), lambda a: a * 3, 2**30) == -(2**30)  # 3 * 2^30 wraps


async def test_floats_and_several_results() -> None:
    r = await _call(("f32", "f64"), ("f64", "f32", "i32"), lambda a, b: (b, a + 0.1, 7), 1.5, 2.25)
    assert r == (2.25, pytest.approx(1.6, rel=1e-6), 7)
    assert isinstance(r[1], float)


async def test_a_single_result_given_as_a_tuple_and_a_bool() -> None:
    assert await _call((), ("i32",), lambda: (5,)) == 5
    assert await _call((), ("i32",), lambda: True) == 1


async def test_async_functions_and_plain_functions_returning_awaitables() -> None:
    async def slow(a: int) -> int:
        await anyio.sleep(0.001)
        return a + 1

    assert await _call(("i32",), ("i32",), slow, 41) == 42
    assert await _call(("i32",), ("i32",), lambda a: slow(a), 1) == 2  # a coroutine from a plain function


async def test_no_result_and_errors_from_the_host_propagate() -> None:
    got = []
    assert await _call(("i32",), (), got.append, 9) is None and got == [9]

    def boom() -> int:
        raise KeyError("host failure")

    with pytest.raises(KeyError, match="host failure"):
        await _call((), ("i32",), boom)


async def test_the_wrapper_is_shared_by_shape() -> None:
    from asyncwasm.runtime import host_call

    assert await _call(("i32", "i32"), ("i32",), lambda a, b: a, 1, 2) == 1
    n = len(host_call._factories)  # noqa: SLF001
    assert await _call(("i32", "i32"), ("i32",), lambda a, b: b, 1, 2) == 2
    assert len(host_call._factories) == n  # noqa: SLF001


_TRAMPOLINE_GUEST = """(module
  (import "env" "invoke_iii" (func $invoke (param i32 i32 i32) (result i32)))
  (table (export "table") 4 funcref)
  (elem (i32.const 1) $sub $boom)
  (func $sub (param i32 i32) (result i32) (i32.sub (local.get 0) (local.get 1)))
  (func $boom (param i32 i32) (result i32) unreachable)
  (func (export "run") (param i32 i32 i32) (result i32)
    (call $invoke (local.get 0) (local.get 1) (local.get 2))))"""


async def _trampoline_instance(calls: list[object]) -> asyncwasm.Instance:
    """A guest that calls its table through the host, as emscripten's invoke_* trampolines do."""
    module = asyncwasm.Module(wat(_TRAMPOLINE_GUEST))
    linker = asyncwasm.Linker()
    box: dict[str, asyncwasm.Instance] = {}

    def invoke(index: int, a: int, b: int) -> int:
        table = box["instance"].exports["table"]
        try:
            result = table.call(index, a, b)
        except asyncwasm.Trap as trap:
            calls.append(str(trap).splitlines()[0])
            return -99
        calls.append(result)
        return result

    linker.define_func("env", "invoke_iii", FuncType(("i32", "i32", "i32"), ("i32",)), invoke)
    box["instance"] = await linker.instantiate(module)
    return box["instance"]


async def test_a_host_function_calls_a_table_entry_with_export_conventions() -> None:
    calls: list[object] = []
    inst = await _trampoline_instance(calls)
    assert await inst.call("run", 1, 5, 7) == -2
    assert await inst.call("run", 1, -(2**31), 1) == 2**31 - 1  # wraps, and comes back signed
    assert calls == [-2, 2**31 - 1]


async def test_table_call_traps_as_call_indirect_does() -> None:
    calls: list[object] = []
    inst = await _trampoline_instance(calls)
    assert await inst.call("run", 0, 1, 1) == -99  # a null entry
    assert await inst.call("run", 4, 1, 1) == -99  # past the table's size
    assert await inst.call("run", 2, 1, 1) == -99  # the callee traps: the host sees the Trap
    assert calls == ["uninitialized element", "undefined element", "wasm `unreachable` instruction executed"]


async def test_table_call_refuses_wrong_arguments_and_runs_only_inside_a_host_function() -> None:
    inst = await _trampoline_instance([])
    table = inst.exports["table"]
    with pytest.raises(RuntimeError, match="inside a host function"):
        table.call(1, 2, 3)

    module = asyncwasm.Module(wat(_TRAMPOLINE_GUEST))
    linker = asyncwasm.Linker()
    box: dict[str, asyncwasm.Instance] = {}
    linker.define_func(
        "env",
        "invoke_iii",
        FuncType(("i32", "i32", "i32"), ("i32",)),
        lambda index, a, b: box["instance"].exports["table"].call(index, "x", b),
    )
    box["instance"] = await linker.instantiate(module)
    with pytest.raises(TypeError, match=r"argument 1 must be i32"):
        await box["instance"].call("run", 1, 2, 3)


async def test_table_call_on_a_table_of_non_functions_is_a_type_error() -> None:
    """An externref table holds whatever the host put there: Table.call refuses it by name."""
    module = asyncwasm.Module(
        wat("""(module
          (import "env" "poke" (func $poke))
          (table (export "refs") 2 externref)
          (func (export "set") (param externref) (table.set 0 (i32.const 0) (local.get 0)))
          (func (export "run") (call $poke)))""")
    )
    linker = asyncwasm.Linker()
    box: dict[str, asyncwasm.Instance] = {}
    seen: list[str] = []

    def poke() -> None:
        try:
            box["instance"].exports["refs"].call(0)
        except TypeError as exc:
            seen.append(str(exc))

    linker.define_func("env", "poke", FuncType((), ()), poke)
    box["instance"] = inst = await linker.instantiate(module)
    await inst.call("set", object())
    await inst.call("run")
    assert seen == ["Table.call: element 0 of a table of externref is not a function"]
