"""WASI on the asyncwasm engine: compiled C programs that wait (sleep, read a quiet stdin) share one
event loop, and a cancel scope stops them in the middle of a blocking WASI call."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import asyncwasm
from wasi_async import WasiConfig, WasiContext, WasiExit
from wasi_async._compat import cancel
from wasi_async.testing import CollectStream

pytestmark = pytest.mark.anyio


@pytest.fixture
def corpus(shared: Path) -> Path:
    return shared / "corpus" / "wasm"


async def run_command(module: asyncwasm.Module, config: WasiConfig) -> int:
    async with WasiContext(config) as ctx:
        linker = asyncwasm.Linker()
        ctx.add_to_linker(linker)
        instance = await linker.instantiate(module)
        try:
            await instance.call("_start")
        except WasiExit as exc:
            return exc.code
    return 0


async def test_sleeping_instances_share_the_loop(corpus: Path) -> None:
    """Ten programs each sleeping 100 ms (poll_oneoff) take about 100 ms together, not a second."""
    module = asyncwasm.Module.from_file(corpus / "sleep.wasm")
    outputs = [CollectStream() for _ in range(10)]
    await run_command(
        module, WasiConfig(args=["sleep.wasm", "1"], stdout=CollectStream())
    )  # warm the compile cache
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for out in outputs:
            tg.start_soon(run_command, module, WasiConfig(args=["sleep.wasm", "100", "4"], stdout=out))
    elapsed = anyio.current_time() - start
    assert all(out.data == b"slept 100 ms in 4 steps: ok\n" for out in outputs)
    assert elapsed < 0.6, f"ten 100 ms sleeps took {elapsed:.2f}s: the sleeps did not overlap"


async def test_quiet_stdin_lets_other_tasks_run(corpus: Path) -> None:
    module = asyncwasm.Module.from_file(corpus / "cat.wasm")
    send, receive = anyio.create_memory_object_stream[bytes](10)
    out = CollectStream()
    ticks = 0
    codes: list[int] = []
    async with anyio.create_task_group() as tg:

        async def tick() -> None:
            nonlocal ticks
            while True:
                await anyio.sleep(0.002)
                ticks += 1

        async def guest() -> None:
            codes.append(await run_command(module, WasiConfig(args=["cat.wasm"], stdin=receive, stdout=out)))
            cancel(tg.cancel_scope)

        tg.start_soon(tick)
        tg.start_soon(guest)
        await anyio.sleep(0.1)
        assert ticks >= 10 and not out.data  # cat is blocked in fd_read; the loop is not
        await send.send(b"first line\n")
        await anyio.sleep(0.05)
        assert out.data == b"first line\n"
        await send.send(b"second\n")
        send.close()
    assert codes == [0] and out.data == b"first line\nsecond\n"


async def test_cancel_scope_aborts_a_blocking_read(corpus: Path) -> None:
    module = asyncwasm.Module.from_file(corpus / "cat.wasm")
    _send, receive = anyio.create_memory_object_stream[bytes](10)
    start = anyio.current_time()
    with anyio.move_on_after(0.1) as scope:
        await run_command(module, WasiConfig(args=["cat.wasm"], stdin=receive, stdout=CollectStream()))
    assert scope.cancelled_caught and anyio.current_time() - start < 2
