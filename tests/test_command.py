"""run_command: a WASI command's exit code, captured or streamed output, traps and limits, on
asyncio and trio."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from wat import wat

import asyncwasm
from wasi_async import (
    CAPTURE,
    DISCARD,
    INHERIT,
    CommandFailed,
    CommandResult,
    NotACommand,
    Preopen,
    run_command,
)

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def corpus(shared: Path) -> Path:
    return shared / "corpus"


WASI = '(import "wasi_snapshot_preview1"'

EXIT = f"""
(module
  {WASI} "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 3))))
"""

# Writes its whole environment block ("K=V\\0K=V\\0") to stdout, and "err" to stderr.
ENV = f"""
(module
  {WASI} "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
  {WASI} "environ_get" (func $get (param i32 i32) (result i32)))
  {WASI} "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "err")
  (func (export "_start")
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (drop (call $get (i32.const 1024) (i32.const 4096)))
    (i32.store (i32.const 16) (i32.const 4096))
    (i32.store (i32.const 20) (i32.load (i32.const 4)))
    (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
    (i32.store (i32.const 16) (i32.const 64))
    (i32.store (i32.const 20) (i32.const 3))
    (drop (call $write (i32.const 2) (i32.const 16) (i32.const 1) (i32.const 24)))))
"""

# Calls the host's env.report(n) with its argument count, then spins forever.
SPIN = f"""
(module
  {WASI} "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "env" "report" (func $report (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (call $report (i32.load (i32.const 0)))
    (loop $l (br $l))))
"""

REACTOR = '(module (memory (export "memory") 1) (func (export "_initialize")))'


async def test_hello_captures_stdout_and_exit_code() -> None:
    module = asyncwasm.Module.from_file(EXAMPLES / "hello.wasm")
    result = await run_command(module)
    assert isinstance(result, CommandResult)
    assert result.exit_code == 0 and result.ok and result.trap is None
    assert result.stdout == b"Hello from asyncwasm!\n" and result.stderr == b""
    assert result.fuel_used > 0 and result.stats.calls == 1
    assert result.check() is result


async def test_module_from_bytes_or_path_and_instantiated_many_times() -> None:
    path = EXAMPLES / "hello.wasm"
    assert (await run_command(path)).stdout == b"Hello from asyncwasm!\n"
    assert (await run_command(str(path))).stdout == b"Hello from asyncwasm!\n"
    assert (await run_command(path.read_bytes())).stdout == b"Hello from asyncwasm!\n"
    module = asyncwasm.Module.from_file(path)
    results = [await run_command(module) for _ in range(20)]
    assert all(r.stdout == b"Hello from asyncwasm!\n" for r in results)


async def test_proc_exit_code() -> None:
    result = await run_command(wat(EXIT))
    assert result.exit_code == 3 and not result.ok and result.trap is None
    with pytest.raises(CommandFailed) as info:
        result.check()
    assert info.value.result is result


async def test_env_and_stderr_captured_separately() -> None:
    result = await run_command(wat(ENV), env={"A": "1", "LANG": "C"})
    assert result.stdout == b"A=1\0LANG=C\0"
    assert result.stderr == b"err"


async def test_discard_gives_none() -> None:
    result = await run_command(wat(ENV), env={"A": "1"}, stdout=DISCARD, stderr=CAPTURE)
    assert result.stdout is None and result.stderr == b"err"
    result = await run_command(wat(ENV), env={"A": "1"}, stdout=None, stderr=None)  # None: as in WasiConfig
    assert result.stdout is None and result.stderr is None and result.ok


async def test_inherit_writes_to_the_process_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    result = await run_command(EXAMPLES / "hello.wasm", stdout=INHERIT)
    assert result.stdout is None
    assert "Hello from asyncwasm!" in capfd.readouterr().out


async def test_stream_stdout_while_the_guest_runs(corpus: Path) -> None:
    """cat's output reaches the stream for each line of input, before the command ends."""
    module = asyncwasm.Module.from_file(corpus / "wasm" / "cat.wasm")
    to_guest, stdin = anyio.create_memory_object_stream[bytes](10)
    stdout, from_guest = anyio.create_memory_object_stream[bytes](10)
    results: list[CommandResult] = []
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            results.append(await run_command(module, ["cat.wasm"], stdin=stdin, stdout=stdout))

        tg.start_soon(run)
        for line in (b"one\n", b"two\n"):
            await to_guest.send(line)
            with anyio.fail_after(5):
                assert await from_guest.receive() == line
        assert not results  # still running, waiting for more input
        to_guest.close()
    assert results[0].exit_code == 0 and results[0].stdout is None


async def test_stdin_bytes_and_args(corpus: Path) -> None:
    cat = await run_command(corpus / "wasm" / "cat.wasm", ["cat.wasm"], stdin=b"some input\x00\xff")
    assert cat.stdout == b"some input\x00\xff" and cat.exit_code == 0
    args = await run_command(corpus / "wasm" / "args.wasm", ["args.wasm", "one", "two words"])
    assert args.stdout == b"argc=3\nargv[0]=[args.wasm]\nargv[1]=[one]\nargv[2]=[two words]\n"


async def test_default_argv0_is_the_module_name(corpus: Path) -> None:
    result = await run_command(corpus / "wasm" / "args.wasm")
    assert result.stdout == b"argc=1\nargv[0]=[args]\n"


async def test_preopens_as_pairs_or_preopen(corpus: Path) -> None:
    module = asyncwasm.Module.from_file(corpus / "wasm" / "fsread.wasm")
    argv = ["fsread.wasm", "/sandbox/input.txt", "/sandbox/nested/note.txt"]
    for grant in (
        (corpus / "data" / "sandbox", "/sandbox"),
        Preopen(corpus / "data" / "sandbox", "/sandbox"),
    ):
        result = await run_command(module, argv, preopens=[grant])
        assert result.stdout == b"sandbox input file\nnested file\n" and result.exit_code == 0
    denied = await run_command(module, argv)
    assert denied.exit_code == 1 and denied.stderr.startswith(b"/sandbox/input.txt: cannot open\n")


async def test_trap_is_returned_with_its_backtrace(corpus: Path) -> None:
    result = await run_command(corpus / "wasm" / "trap.wasm", ["trap.wasm"])
    assert result.exit_code is None and not result.ok
    assert isinstance(result.trap, asyncwasm.Trap)
    assert "unreachable" in result.trap.message
    assert [f.func_name for f in result.trap.frames][-1].startswith("_start")
    assert result.stdout == b"before unreachable\n"
    with pytest.raises(asyncwasm.Trap):
        result.check()


async def test_fuel_limit_and_timeout_end_in_a_trap() -> None:
    linker = asyncwasm.Linker()
    linker.define_func("env", "report", asyncwasm.FuncType(("i32",), ()), lambda n: None)
    fuel = await run_command(wat(SPIN), store=asyncwasm.Store(fuel=100_000), linker=linker)
    assert isinstance(fuel.trap, asyncwasm.FuelExhausted) and fuel.fuel_used == 100_000
    start = anyio.current_time()
    timed = await run_command(wat(SPIN), store=asyncwasm.Store(timeout=0.2), linker=linker)
    assert isinstance(timed.trap, asyncwasm.Interrupted)
    assert anyio.current_time() - start < 3
    assert timed.stats.run_time > 0.05 and timed.stats.slices >= 2


async def test_extra_host_functions_and_the_linker_is_not_modified() -> None:
    seen: list[int] = []

    async def report(n: int) -> None:
        seen.append(n)
        await anyio.sleep(0)

    linker = asyncwasm.Linker()
    linker.define_func("env", "report", asyncwasm.FuncType(("i32",), ()), report)
    result = await run_command(
        wat(SPIN), ["spin", "a", "b"], store=asyncwasm.Store(fuel=10_000), linker=linker
    )
    assert seen == [3] and isinstance(result.trap, asyncwasm.FuelExhausted)
    assert linker.get("wasi_snapshot_preview1", "args_sizes_get") is None


async def test_cancel_scope_stops_a_command_blocked_on_stdin(corpus: Path) -> None:
    _send, stdin = anyio.create_memory_object_stream[bytes](1)
    start = anyio.current_time()
    with anyio.move_on_after(0.1) as scope:
        await run_command(corpus / "wasm" / "cat.wasm", stdin=stdin)
    assert scope.cancelled_caught and anyio.current_time() - start < 2


async def test_not_a_command() -> None:
    with pytest.raises(NotACommand, match="_start") as exc:
        await run_command(wat(REACTOR))
    assert isinstance(exc.value, asyncwasm.WasmError)
    with pytest.raises(ValueError, match="stdin"):
        await run_command(EXAMPLES / "hello.wasm", stdin=CAPTURE)
