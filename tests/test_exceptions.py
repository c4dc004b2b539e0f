"""Exception handling: Wasm exceptions as Python exceptions (asyncwasm.WasmException, asyncwasm.Tag),
caught by try_table and the legacy try/catch by tag identity, crossing into and out of host
functions, never confused with traps; results and fuel as wasmtime gives them, in both shapes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from wat import wat

import asyncwasm
from asyncwasm.compiler import structured

wasmtime = pytest.importorskip("wasmtime")

MODULE = """
(module
  (import "host" "tag" (tag $h (param i32)))
  (import "host" "call" (func $host_call (param i32)))
  (tag $t (export "t") (param i32 i64))
  (tag $empty (export "empty"))
  (func $thrower (export "throw") (param $x i32)
    (if (i32.and (local.get $x) (i32.const 1))
      (then (throw $t (local.get $x) (i64.const -3))))
    (throw $empty))
  ;; catch by tag, with the payload as branch values
  (func (export "catch") (param $x i32) (result i32)
    (block $on_empty
      (block $on_t (result i32 i64)
        (try_table (catch $t $on_t) (catch $empty $on_empty)
          (call $thrower (local.get $x)))
        (return (i32.const -1)))
      (drop)
      (return (i32.add (i32.const 100))))
    (i32.const 7))
  ;; catch_ref then throw_ref: the same exception goes on to the caller
  (func (export "rethrow_ref") (param $x i32)
    (block $h (result exnref)
      (try_table (catch_all_ref $h) (call $thrower (local.get $x)))
      (return))
    (throw_ref))
  ;; a trap is no exception: catch_all does not see it
  (func (export "trap_in_try") (result i32)
    (block $h
      (try_table (catch_all $h) (unreachable)))
    (i32.const 1))
  ;; an exception thrown by a host function, caught here by the host's tag
  (func (export "catch_host") (param $x i32) (result i32)
    (block $h (result i32)
      (try_table (result i32) (catch $h $h)
        (call $host_call (local.get $x))
        (i32.const -1))))
  ;; catch and rethrow a million times: neither time nor memory may grow with the count
  (func (export "spin") (param $n i32) (result i32) (local $caught i32)
    (loop $top
      (block $h (result exnref)
        (try_table (catch_all_ref $h) (throw $empty))
        (unreachable))
      (block $h2 (param exnref)
        (try_table (param exnref) (catch_all $h2) (throw_ref))
        (unreachable))
      (local.set $caught (i32.add (local.get $caught) (i32.const 1)))
      (br_if $top (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
    (local.get $caught))
  ;; a tail call leaves the frame: its handler does not catch the callee's exception
  (func (export "tail_from_try") (param $x i32) (result i32)
    (block $h
      (try_table (catch_all $h) (return_call $tail_target (local.get $x))))
    (i32.const 55))
  (func $tail_target (param $x i32) (result i32) (call $thrower (local.get $x)) (i32.const 0))
)
"""

LEGACY = """
(module
  (tag $a (param i32))
  (tag $b)
  (func $throw (param $x i32)
    (if (local.get $x) (then (throw $a (local.get $x))))
    (throw $b))
  (func (export "legacy") (param $x i32) (result i32)
    (try (result i32)
      (do (call $throw (local.get $x)) (i32.const 0))
      (catch $a (i32.add (i32.const 1000)))
      (catch_all (i32.const 2))))
  ;; rethrow from a nested catch reaches the outer one; delegate skips the inner handler
  (func (export "nested") (param $x i32) (result i32)
    (try (result i32)
      (do
        (try (result i32)
          (do (call $throw (local.get $x)) (i32.const 0))
          (catch $a (drop) (rethrow 0))))
      (catch $a)
      (catch_all (i32.const -1))))
  (func (export "delegate") (param $x i32) (result i32)
    (try $outer (result i32)
      (do
        (try (result i32)
          (do
            (try (result i32) (do (call $throw (local.get $x)) (i32.const 0)) (delegate $outer)))
          (catch_all (i32.const 111))))
      (catch $a (i32.add (i32.const 5000)))
      (catch_all (i32.const 222))))
)
"""


def _too_deep(self: object) -> None:
    raise structured.TooDeep()


@pytest.fixture(params=["structured", "flat"])
def shape(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "flat":
        monkeypatch.setattr(structured.StructuredTranslator, "translate", _too_deep)
    return str(request.param)


class Host:
    """The imports: a tag made by the host, and a function that raises it (or not)."""

    def __init__(self) -> None:
        self.tag = asyncwasm.Tag(asyncwasm.FuncType(("i32",), ()), "host-tag")

    def call(self, x: int) -> None:
        if x:
            raise asyncwasm.WasmException(self.tag, [x * 2])

    def linker(self) -> asyncwasm.Linker:
        linker = asyncwasm.Linker()
        linker.define("host", "tag", self.tag)
        linker.define_func("host", "call", asyncwasm.FuncType(("i32",), ()), self.call)
        return linker


def _run(text: str, export: str, *args: Any, host: Host | None = None) -> Any:
    async def main() -> Any:
        inst = await (host or Host()).linker().instantiate(asyncwasm.Module(wat(text)))
        return await inst.call(export, *args)

    return anyio.run(main)


def test_catch_by_tag_with_payload(shape: str) -> None:
    assert _run(MODULE, "catch", 5) == 105
    assert _run(MODULE, "catch", 4) == 7


def test_an_uncaught_exception_reaches_python_with_its_tag_and_payload(shape: str) -> None:
    async def main() -> tuple[asyncwasm.Instance, asyncwasm.WasmException]:
        inst = await Host().linker().instantiate(asyncwasm.Module(wat(MODULE)))
        with pytest.raises(asyncwasm.WasmException) as info:
            await inst.call("throw", 9)
        return inst, info.value

    inst, exc = anyio.run(main)
    assert exc.tag is inst.exports["t"]
    assert exc.payload == (9, -3)  # public values: the i64 is signed
    assert not isinstance(exc, asyncwasm.Trap)
    assert [f.func_name for f in exc.frames] == ["thrower"]
    assert "uncaught wasm exception" in str(exc) and "[9, -3]" in str(exc)


def test_throw_ref_rethrows_the_same_exception_object(shape: str) -> None:
    async def main() -> None:
        inst = await Host().linker().instantiate(asyncwasm.Module(wat(MODULE)))
        await inst.call("rethrow_ref", 3)

    with pytest.raises(asyncwasm.WasmException) as info:
        anyio.run(main)
    assert info.value.payload == (3, -3)


def test_a_host_function_raises_an_exception_that_wasm_catches(shape: str) -> None:
    host = Host()
    assert _run(MODULE, "catch_host", 21, host=host) == 42
    assert _run(MODULE, "catch_host", 0, host=host) == -1


def test_an_exception_of_another_tag_with_the_same_type_is_not_caught(shape: str) -> None:
    """Tags match by identity, not by type: the host's second tag of the same type passes by."""
    host = Host()
    other = asyncwasm.Tag(host.tag.type, "other")

    def call(x: int) -> None:
        raise asyncwasm.WasmException(other, [x])

    host.call = call  # type: ignore[method-assign]
    with pytest.raises(asyncwasm.WasmException) as info:
        _run(MODULE, "catch_host", 4, host=host)
    assert info.value.tag is other


def test_traps_are_not_caught_by_catch_all(shape: str) -> None:
    with pytest.raises(asyncwasm.Trap, match="unreachable"):
        _run(MODULE, "trap_in_try")


def test_a_tail_call_leaves_its_handlers_behind(shape: str) -> None:
    with pytest.raises(asyncwasm.WasmException):
        _run(MODULE, "tail_from_try", 1)


def test_catching_and_rethrowing_a_million_times_stays_small(shape: str) -> None:
    """The same exception object goes round: its traceback is dropped at each rethrow."""
    assert _run(MODULE, "spin", 1_000_000) == 1_000_000


def test_tags_are_shared_through_imports_and_distinct_per_instance(shape: str) -> None:
    thrower = '(module (tag $t (export "t") (param i32)) (func (export "go") (throw $t (i32.const 1))))'
    catcher = """
      (module (import "m" "t" (tag $t (param i32))) (import "m" "go" (func $go))
        (func (export "catch") (result i32)
          (block $h (result i32) (try_table (catch $t $h) (call $go)) (i32.const -1))))"""

    async def main() -> tuple[Any, Any, bool]:
        t0 = await asyncwasm.Linker().instantiate(asyncwasm.Module(thrower))
        t1 = await asyncwasm.Linker().instantiate(asyncwasm.Module(thrower))
        outcomes = []
        for tag_from in (t0, t1):  # t0's go throws t0's tag: only the catcher importing it catches
            linker = asyncwasm.Linker()
            linker.define("m", "t", tag_from.exports["t"])
            linker.define("m", "go", t0.exports["go"])
            inst = await linker.instantiate(asyncwasm.Module(catcher))
            try:
                outcomes.append(await inst.call("catch"))
            except asyncwasm.WasmException as exc:
                outcomes.append(exc.tag is t0.exports["t"])
        return outcomes[0], outcomes[1], t0.exports["t"] is not t1.exports["t"]

    assert anyio.run(main) == (1, True, True)


def test_a_tag_import_of_the_wrong_type_does_not_link() -> None:
    host = Host()
    linker = host.linker()
    linker.define("host", "tag", asyncwasm.Tag(asyncwasm.FuncType(("i64",), ())))
    with pytest.raises(asyncwasm.LinkError):
        anyio.run(linker.instantiate, asyncwasm.Module(wat(MODULE)))


@pytest.mark.parametrize(
    ("export", "arg", "want"),
    [
        ("legacy", 3, 1003),
        ("legacy", 0, 2),
        ("nested", 8, 8),
        ("nested", 0, -1),
        ("delegate", 6, 5006),
        ("delegate", 0, 222),
    ],
)
def test_legacy_try_catch_rethrow_delegate(export: str, arg: int, want: int, shape: str) -> None:
    assert _run(LEGACY, export, arg) == want


def _wasmtime_run(wasm: bytes, export: str, args: tuple[int, ...]) -> tuple[Any, int]:
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    cfg.wasm_exceptions = True
    cfg.wasm_tail_call = True
    cfg.wasm_function_references = True
    cfg.wasm_gc = True
    engine = wasmtime.Engine(cfg)
    store = wasmtime.Store(engine)
    store.set_fuel(10**12)
    linker = wasmtime.Linker(engine)
    tag = wasmtime.Tag(store, wasmtime.TagType(wasmtime.FuncType([wasmtime.ValType.i32()], [])))
    linker.define(store, "host", "tag", tag)
    linker.define_func("host", "call", wasmtime.FuncType([wasmtime.ValType.i32()], []), lambda x: None)
    inst = linker.instantiate(store, wasmtime.Module(engine, wasm))
    try:
        result: Any = inst.exports(store)[export](store, *args)
    except wasmtime.Trap as exc:  # wasmtime-py reports an uncaught exception as a Trap, by its cause
        result = ("exception",) if "thrown Wasm exception" in str(exc) else ("trap", str(exc).splitlines()[0])
    return result, 10**12 - store.get_fuel()


@pytest.mark.parametrize(
    ("export", "args"),
    [("catch", (5,)), ("catch", (4,)), ("spin", (50,)), ("catch_host", (0,)), ("tail_from_try", (0,))],
)
def test_results_and_fuel_match_wasmtime(export: str, args: tuple[int, ...], shape: str) -> None:
    wasm = wat(MODULE)
    try:
        want, want_fuel = _wasmtime_run(wasm, export, args)
    except (AttributeError, TypeError) as exc:  # a wasmtime-py without tag support in its API
        pytest.fail(f"wasmtime-py cannot define tags: {exc}")

    async def main() -> tuple[Any, int]:
        store = asyncwasm.Store()
        inst = await Host().linker().instantiate(asyncwasm.Module(wasm), store)
        try:
            got: Any = await inst.call(export, *args)
        except asyncwasm.WasmException:
            got = ("exception",)
        return got, store.fuel_used

    got, fuel = anyio.run(main)
    assert got == want
    assert fuel == want_fuel


def test_exceptions_are_refused_without_the_feature() -> None:
    with pytest.raises(asyncwasm.UnsupportedFeature, match="exceptions"):
        asyncwasm.Module(wat(MODULE), features=asyncwasm.Features.wasm2())
    with pytest.raises(asyncwasm.UnsupportedFeature, match="legacy-exceptions"):
        asyncwasm.Module(wat(LEGACY), features=asyncwasm.Features.parse("-legacy-exceptions"))


def test_run_reports_an_uncaught_exception_from_start(tmp_path: Path) -> None:
    path = tmp_path / "throws.wat"
    path.write_text("""(module (tag $oops (export "oops") (param i32))
      (func $inner (throw $oops (i32.const 7)))
      (func (export "_start") (call $inner)))""")
    done = subprocess.run(
        [sys.executable, "-m", "asyncwasm", "run", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 134
    assert "uncaught wasm exception (oops) with payload [7]" in done.stderr
    assert "throws!inner" in done.stderr


@pytest.mark.parametrize(
    "name",
    ["throw", "throw_ref", "try_table", "tag", "return_call", "return_call_indirect", "return_call_ref"],
)
def test_the_spec_scripts_pass_in_the_flat_shape_too(
    name: str, shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncwasm.wast import ScriptRunner

    monkeypatch.setattr(structured.StructuredTranslator, "translate", _too_deep)
    res = ScriptRunner(shared / "spec3" / "json" / name / f"{name}.json").run()
    assert res.failed == 0, res.failures[:5]
    assert res.passed >= 10


@pytest.mark.parametrize("name", ["rethrow", "throw", "try_catch", "try_delegate"])
@pytest.mark.parametrize("flat", [False, True])
def test_the_legacy_scripts_pass(
    name: str, flat: bool, shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncwasm.wast import ScriptRunner

    if flat:
        monkeypatch.setattr(structured.StructuredTranslator, "translate", _too_deep)
    res = ScriptRunner(shared / "spec3" / "wast" / "legacy" / f"{name}.wast").run()
    assert res.failed == 0, res.failures[:5]
    assert res.passed > 10


@pytest.mark.anyio
async def test_an_async_host_function_raises_into_wasm_and_the_host_rethrows_a_caught_one() -> None:
    """The host catches a guest's exception, inspects it and raises the very same object from a
    host function (async, so it crosses a suspension of the guest); the guest catches it by its tag
    with catch_ref, rethrows it with throw_ref, and the host gets the same object back. The
    instance stays usable after an exception left it (an exception is no trap)."""
    host = Host()
    held: list[asyncwasm.WasmException] = []

    async def call(x: int) -> None:
        await anyio.sleep(0)
        if held:
            raise held[0]

    host.call = call  # type: ignore[assignment,method-assign]
    text = MODULE.replace(
        '(func (export "catch_host")',
        """(func (export "relay") (param $x i32)
    (block $h (result i32 i64 exnref)
      (try_table (catch_ref $t $h) (call $host_call (local.get $x)))
      (return))
    (throw_ref) (drop) (drop))
  (func (export "catch_host")""",
    )
    inst = await host.linker().instantiate(asyncwasm.Module(wat(text)))
    with pytest.raises(asyncwasm.WasmException) as first:
        await inst.call("throw", 1)
    assert first.value.payload == (1, -3)
    held.append(first.value)
    with pytest.raises(asyncwasm.WasmException) as again:
        await inst.call("relay", 0)
    assert again.value is first.value
    assert await inst.call("catch", 5) == 105  # still usable


def _outcome(wasm: bytes, x: int) -> tuple[Any, int]:
    async def main() -> tuple[Any, int]:
        store = asyncwasm.Store()
        inst = await asyncwasm.Linker().instantiate(asyncwasm.Module(wasm), store)
        try:
            got: Any = await inst.call("run", x)
        except asyncwasm.WasmException:
            got = "exception"
        return got, store.fuel_used

    return anyio.run(main)


def _wasmtime_outcome(wasm: bytes, x: int) -> tuple[Any, int]:
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    cfg.wasm_exceptions = True
    cfg.wasm_tail_call = True
    engine = wasmtime.Engine(cfg)
    store = wasmtime.Store(engine)
    store.set_fuel(10**12)
    inst = wasmtime.Instance(store, wasmtime.Module(engine, wasm), [])
    try:
        got: Any = inst.exports(store)["run"](store, x)
    except wasmtime.Trap as exc:
        got = "exception" if "thrown Wasm exception" in str(exc) else "trap"
    return got, 10**12 - store.get_fuel()


@pytest.mark.parametrize("seed", range(40))
def test_random_handler_programs_agree_with_wasmtime(seed: int, shape: str) -> None:
    """Random nests of try_table (every kind of catch clause, throw_ref), blocks, loops, branches
    out of handlers, throwing calls and tail calls: results, uncaught exceptions and fuel as
    wasmtime's, in both shapes."""
    from exc_programs import program

    wasm = wat(program(seed))
    for x in (0, 1, 5, 13):
        assert _outcome(wasm, x) == _wasmtime_outcome(wasm, x), (seed, x)


@pytest.mark.parametrize("seed", range(40))
def test_random_legacy_programs_agree_between_shapes(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same for the legacy try/catch/catch_all/rethrow/delegate (which wasmtime does not run):
    the structured shape (Python try/except) and the flat one (handler regions) agree."""
    from exc_programs import program

    wasm = wat(program(seed, legacy=True))
    structured_results = [_outcome(wasm, x) for x in (0, 1, 5, 13)]
    monkeypatch.setattr(structured.StructuredTranslator, "translate", _too_deep)
    assert [_outcome(wasm, x) for x in (0, 1, 5, 13)] == structured_results


@pytest.mark.anyio
async def test_serve_stdin_reports_an_uncaught_exception_without_an_internal_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from serve_helpers import guest_file, serving

    caplog.set_level(logging.INFO, "asyncwasm.serve")
    path = guest_file(
        tmp_path,
        '(module (tag $boom (export "boom") (param i32)) (memory (export "memory") 1)'
        ' (func (export "_start") (throw $boom (i32.const 3))))',
        "thrower.wasm",
    )
    async with serving(path) as run:
        with anyio.fail_after(10):
            assert await run.exchange(b"hi\n") == b""
        await run.wait_idle()
        assert run.server.stats.get("failed") == 1
    assert "uncaught wasm exception (boom) with payload [3]" in caplog.text
    assert "internal error" not in caplog.text


def test_legacy_fuel_follows_wasmtimes_operator_table(shape: str) -> None:
    """wasmtime does not run the legacy instructions; asyncwasm charges them from wasmtime's table
    (one unit each): a try/catch_all costs one unit more than the try_table doing the same (the
    try_table's own unit is checked against wasmtime), the catch_all's."""
    new = wat(
        '(module (tag $b) (func (export "f") (result i32) '
        "(block $h (try_table (catch_all $h) (throw $b))) (i32.const 2)))"
    )
    old = wat(
        '(module (tag $b) (func (export "f") (result i32) '
        "(try (result i32) (do (throw $b)) (catch_all (i32.const 2)))))"
    )
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    cfg.wasm_exceptions = True
    engine = wasmtime.Engine(cfg)
    store = wasmtime.Store(engine)
    store.set_fuel(1_000)
    inst = wasmtime.Instance(store, wasmtime.Module(engine, new), [])
    assert inst.exports(store)["f"](store) == 2
    want = 1_000 - store.get_fuel()

    async def fuel(wasm: bytes) -> tuple[int, int]:
        s = asyncwasm.Store()
        got = await (await asyncwasm.Linker().instantiate(asyncwasm.Module(wasm), s)).call("f")
        return got, s.fuel_used

    assert anyio.run(fuel, new) == (2, want)
    assert anyio.run(fuel, old) == (2, want + 1)


@pytest.mark.parametrize("depth", [6, 20, 36, 120])
def test_handlers_nested_with_loops_past_pythons_block_limit(depth: int) -> None:
    """try_tables and branched-to loops nested in turn: CPython compiles at most 20 nested blocks
    (loops and try/except alike), so deep nests must take the flat shape and still catch."""
    inner = "(call $thr (local.get 0))"
    for k in range(depth):
        inner = (
            f"(loop $l{k} {inner} (br_if $l{k} (i32.const 0)))"
            if k % 2
            else f"(block $d{k} (block $h{k} (try_table (catch $t $h{k}) {inner}) (br $d{k}))"
            f" (local.set 1 (i32.add (local.get 1) (i32.const 1))))"
        )
    text = f"""(module (tag $t) (func $thr (param i32) (if (local.get 0) (then (throw $t))))
      (func (export "f") (param i32) (result i32) (local i32) (block {inner}) (local.get 1)))"""
    assert _run(text, "f", 1) == 1  # the innermost handler catches; the outer ones are left by br
    assert _run(text, "f", 0) == 0
