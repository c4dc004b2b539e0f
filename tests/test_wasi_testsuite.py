"""Conformance of wasi_async on real programs: the 72 tests of the upstream wasi-testsuite and the
corpus of WASI programs with known answers (shared/corpus).

Each program runs on two Wasm engines with wasi_async providing every WASI import: asyncwasm (the
product) and, as a reference, wasmtime-py driven from a greenlet the way asyncwasm drives its own
instances. A failure on both engines is a WASI bug; on asyncwasm only, an engine bug.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import anyio.abc
import pytest

from asyncwasm.errors import Trap
from wasi_async import Preopen, WasiConfig, WasiContext, WasiExit
from wasi_async.testing import CollectStream

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ASYNCWASM_SHARED") or REPO.parent / "shared")
TESTSUITE = SHARED / "wasi-testsuite" / "tests"
CORPUS = SHARED / "corpus"


@dataclass
class Outcome:
    exit_code: int | None  # None: the run ended in a trap
    trap: str | None = None
    stdout: bytes = b""
    stderr: bytes = b""


@dataclass
class Run:
    """What a program is given: the WASI config fields, relative to a scratch directory."""

    wasm: Path
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    preopens: list[Preopen] = field(default_factory=list)
    stdin: bytes = b""


# --- engines -----------------------------------------------------------------------------------


class _WasmtimeMemory:
    """The asyncwasm Memory helper API over a wasmtime-py memory, with the same Trap on bad pointers."""

    def __init__(self, caller: Any, memory: Any) -> None:
        self._caller = caller
        self._memory = memory

    def _check(self, ptr: int, n: int) -> None:
        if ptr < 0 or n < 0 or ptr + n > self._memory.data_len(self._caller):
            raise Trap("out of bounds memory access")

    def read(self, ptr: int, n: int) -> bytes:
        self._check(ptr, n)
        return bytes(self._memory.read(self._caller, ptr, ptr + n)) if n else b""

    def write(self, ptr: int, value: bytes | bytearray | memoryview) -> None:
        self._check(ptr, len(value))
        if len(value):
            self._memory.write(self._caller, bytes(value), ptr)

    def read_u32(self, ptr: int) -> int:
        return struct.unpack("<I", self.read(ptr, 4))[0]  # type: ignore[no-any-return]

    def read_u64(self, ptr: int) -> int:
        return struct.unpack("<Q", self.read(ptr, 8))[0]  # type: ignore[no-any-return]

    def write_u16(self, ptr: int, value: int) -> None:
        self.write(ptr, struct.pack("<H", value & 0xFFFF))

    def write_u32(self, ptr: int, value: int) -> None:
        self.write(ptr, struct.pack("<I", value & 0xFFFFFFFF))

    def write_u64(self, ptr: int, value: int) -> None:
        self.write(ptr, struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF))


async def run_on_wasmtime(wasm: Path, ctx: WasiContext) -> None:
    """Run ``_start`` on wasmtime-py; async WASI calls are awaited by this coroutine while the
    instance's greenlet is suspended inside the host call."""
    wasmtime = pytest.importorskip("wasmtime")
    greenlet = pytest.importorskip("greenlet")
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    valtype = {"i32": wasmtime.ValType.i32(), "i64": wasmtime.ValType.i64()}

    def host(fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(caller: Any, *args: int) -> Any:
            memory = caller.get("memory")
            result = fn(
                SimpleNamespace(memory=None if memory is None else _WasmtimeMemory(caller, memory)), *args
            )
            if inspect.isawaitable(result):
                result = greenlet.getcurrent().parent.switch(result)
            return result

        return call

    for name, (ftype, fn) in ctx.functions.items():
        wt = wasmtime.FuncType([valtype[p] for p in ftype.params], [valtype[r] for r in ftype.results])
        linker.define_func("wasi_snapshot_preview1", name, wt, host(fn), access_caller=True)
    instance = linker.instantiate(store, wasmtime.Module.from_file(engine, str(wasm)))
    start = instance.exports(store)["_start"]
    child = greenlet.greenlet(lambda: start(store))
    request = child.switch()
    while not child.dead:
        try:
            value = await request
        except BaseException as exc:  # noqa: BLE001 - thrown into the guest's host call
            request = child.throw(exc)
        else:
            request = child.switch(value)


async def run_on_asyncwasm(wasm: Path, ctx: WasiContext) -> None:
    import asyncwasm

    module = asyncwasm.Module.from_file(wasm)
    linker = asyncwasm.Linker()
    ctx.add_to_linker(linker)
    instance = await linker.instantiate(module)
    await instance.call("_start")


ENGINES: dict[str, Callable[[Path, WasiContext], Awaitable[None]]] = {
    "asyncwasm": run_on_asyncwasm,
    "wasmtime": run_on_wasmtime,
}
# asyncwasm on both event loops; the wasmtime cross-check of the WASI layer on one is enough.
ENGINE_LOOPS = pytest.mark.parametrize(
    ("engine", "anyio_backend"), [("asyncwasm", "asyncio"), ("asyncwasm", "trio"), ("wasmtime", "asyncio")]
)


async def execute(engine: str, run: Run, timeout: float = 120) -> Outcome:
    out, err = CollectStream(), CollectStream()
    config = WasiConfig(
        args=run.args, env=run.env, preopens=run.preopens, stdin=run.stdin, stdout=out, stderr=err
    )
    async with WasiContext(config) as ctx:
        outcome = Outcome(0)
        try:
            with anyio.fail_after(timeout):
                await ENGINES[engine](run.wasm, ctx)
        except WasiExit as exc:
            outcome = Outcome(exc.code)
        except Trap as exc:
            outcome = Outcome(None, trap=str(exc))
        except Exception as exc:
            if engine != "wasmtime" or type(exc).__module__.split(".")[0] != "wasmtime":
                raise
            outcome = Outcome(None, trap=str(exc))  # wasmtime's own trap types
    outcome.stdout, outcome.stderr = bytes(out.data), bytes(err.data)
    return outcome


# --- the wasi-testsuite --------------------------------------------------------------------------


@dataclass
class SuiteCase:
    suite: str
    wasm: Path
    spec: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.suite}/{self.wasm.stem}"


def load_testsuite_cases() -> list[SuiteCase]:
    cases = []
    for suite in ("assemblyscript", "c", "rust"):
        folder = TESTSUITE / suite / "testsuite" / "wasm32-wasip1"
        for wasm in sorted(folder.glob("*.wasm")):
            spec_file = wasm.with_suffix(".json")
            spec = json.loads(spec_file.read_text()) if spec_file.exists() else {}
            cases.append(SuiteCase(suite, wasm, spec))
    return cases


def fresh_copy(source: Path, scratch: Path) -> Path:
    """A private copy of a fixture dir (shared/ is read-only and tests may run in parallel)."""
    target = scratch / source.name
    shutil.copytree(source, target, symlinks=True)
    for leftover in target.rglob("*.cleanup"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    return target


SUITE_CASES = load_testsuite_cases()


@pytest.mark.slow
@ENGINE_LOOPS
@pytest.mark.parametrize("case", SUITE_CASES, ids=[c.id for c in SUITE_CASES])
async def test_wasi_testsuite(case: SuiteCase, engine: str, tmp_path: Path) -> None:
    spec = case.spec
    preopens = []
    if spec.get("root"):
        preopens.append(Preopen(host=fresh_copy(case.wasm.parent / spec["root"], tmp_path), guest="/"))
    run = Run(case.wasm, [case.wasm.name, *spec.get("args", [])], dict(spec.get("env", {})), preopens)
    outcome = await execute(engine, run)
    detail = f"stderr: {outcome.stderr.decode(errors='replace')}\ntrap: {outcome.trap}"
    assert outcome.exit_code == spec.get("exit_code", 0), detail
    if "stdout" in spec:
        assert outcome.stdout.startswith(spec["stdout"].encode()), detail


# --- the corpus ----------------------------------------------------------------------------------


def load_corpus_runs() -> list[dict[str, Any]]:
    manifest = CORPUS / "manifest.json"
    if not manifest.exists():
        return []  # no shared data: test_the_testsuite_is_all_there says so
    runs = json.loads(manifest.read_text())
    return [r for r in runs if r["kind"] in ("wasi", "trap") or r["name"].endswith("_small")]


CORPUS_RUNS = load_corpus_runs()


def test_the_testsuite_is_all_there(shared: Path) -> None:
    assert shared.resolve() == SHARED.resolve()
    assert len(SUITE_CASES) == 72, f"expected the 72 Preview 1 tests under {TESTSUITE}"
    assert len(CORPUS_RUNS) > 20, f"expected the corpus manifest under {CORPUS}"


@pytest.mark.slow
@ENGINE_LOOPS
@pytest.mark.parametrize("entry", CORPUS_RUNS, ids=[r["name"] for r in CORPUS_RUNS])
async def test_corpus(entry: dict[str, Any], engine: str, tmp_path: Path) -> None:
    preopens = []
    for spec in entry.get("preopens", []):
        host, guest = spec.split("::")
        source = CORPUS / host
        preopens.append(
            Preopen(
                host=fresh_copy(source, tmp_path) if entry.get("copy_preopens") else source,
                guest=guest,
                readonly=not entry.get("copy_preopens"),
            )
        )
    stdin = (CORPUS / entry["stdin"]).read_bytes() if entry.get("stdin") else b""
    run = Run(CORPUS / entry["wasm"], entry["args"], entry.get("env", {}), preopens, stdin)
    outcome = await execute(engine, run)
    detail = f"stderr: {outcome.stderr.decode(errors='replace')}\ntrap: {outcome.trap}"
    if entry.get("expect_trap"):
        assert outcome.exit_code is None, detail
    else:
        assert outcome.exit_code == entry["expected_exit_code"], detail
    if entry.get("expected_stdout") is not None:
        assert outcome.stdout.decode(errors="replace") == entry["expected_stdout"], detail
    elif entry.get("expected_stdout_sha256"):
        import hashlib

        assert hashlib.sha256(outcome.stdout).hexdigest() == entry["expected_stdout_sha256"], detail


# --- the upstream runner's adapter, through the CLI -----------------------------------------------

# Tests that fail through the adapter, with the reason: none at present. A listed test must fail
# (strict xfail), so the list cannot go stale.
ADAPTER_KNOWN_FAILURES: dict[str, str] = {}


def load_adapter() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "wasi_testsuite_adapter", REPO / "tests" / "wasi_testsuite_adapter.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_adapter_protocol() -> None:
    import subprocess
    import sys

    adapter = load_adapter()
    assert adapter.get_name() == "asyncwasm" and adapter.get_wasi_versions() == ["wasm32-wasip1"]
    assert adapter.get_wasi_worlds() == ["wasi:cli/command"] and adapter.get_timeout_seconds() >= 5
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "wasi_testsuite_adapter.py"), "--version"],
        capture_output=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    argv = adapter.compute_argv(
        "/t/x.wasm",
        (["a", "b c"], {"K": "V", "E": "x=y"}, Path("/r")),
        [],
        "wasi:cli/command",
        "wasm32-wasip1",
    )
    assert argv[argv.index("run") :] == [
        "run",
        "--env",
        "K=V",
        "--env",
        "E=x=y",
        "--dir",
        "/r::/",
        "/t/x.wasm",
        "a",
        "b c",
    ]


def _adapter_params() -> list[Any]:
    return [
        pytest.param(
            c,
            id=c.id,
            marks=[pytest.mark.xfail(reason=ADAPTER_KNOWN_FAILURES[c.id], strict=True)]
            if c.id in ADAPTER_KNOWN_FAILURES
            else [],
        )
        for c in SUITE_CASES
    ]


@pytest.mark.slow
@pytest.mark.parametrize("case", _adapter_params())
def test_wasi_testsuite_through_adapter(case: SuiteCase, tmp_path: Path, shared: Path) -> None:
    """What the upstream runner does for each of the 72 tests: the adapter's command line (the
    ``asyncwasm run`` CLI in a subprocess), stdio on pipes, then the exit status and the expected
    stdout/stderr prefixes."""
    import subprocess

    spec = case.spec
    root = fresh_copy(case.wasm.parent / spec["root"], tmp_path) if spec.get("root") else None
    adapter = load_adapter()
    argv = adapter.compute_argv(
        str(case.wasm),
        (spec.get("args", []), spec.get("env", {}), root),
        [],
        "wasi:cli/command",
        "wasm32-wasip1",
    )
    done = subprocess.run(
        argv, stdin=subprocess.PIPE, capture_output=True, cwd=tmp_path, timeout=adapter.get_timeout_seconds()
    )
    detail = done.stderr.decode(errors="replace")
    assert "Traceback" not in detail, detail
    assert done.returncode == spec.get("exit_code", 0), detail
    assert done.stdout.startswith(spec.get("stdout", "").encode()), detail
    assert done.stderr.startswith(spec.get("stderr", "").encode()), detail


# --- POSIX corners the upstream suite leaves out ----------------------------------------------------


async def test_a_final_dot_names_the_directory_itself(tmp_path: Path) -> None:
    """ "a/." is "." inside a, not a: rmdir gives EINVAL and rename EBUSY (the directory stays),
    mkdir EEXIST (and creates nothing under a missing parent), unlink EISDIR; ".." last is ENOTEMPTY."""
    from wasi_async import Errno
    from wasi_async.flags import DIR_RIGHTS
    from wasi_async.testing import FakeGuest

    (tmp_path / "a").mkdir()
    (tmp_path / "file").write_bytes(b"x")
    g = FakeGuest(WasiContext(WasiConfig(preopens=[Preopen(host=tmp_path, guest="/")])))
    root = 3
    for path, errno in [
        ("a/.", Errno.INVAL),
        ("a/./", Errno.INVAL),
        ("a//.", Errno.INVAL),
        (".", Errno.INVAL),
        ("a/..", Errno.NOTEMPTY),
        ("missing/.", Errno.NOENT),
        ("file/.", Errno.NOTDIR),
    ]:
        assert await g.path("path_remove_directory", root, path) == errno, path
    for path, errno in [("a/.", Errno.EXIST), ("new/.", Errno.NOENT), ("file/.", Errno.NOTDIR)]:
        assert await g.path("path_create_directory", root, path) == errno, path
    assert await g.path("path_unlink_file", root, "a/.") == Errno.ISDIR
    old, old_len = g.put(b"a/.")
    new, new_len = g.put(b"b")
    assert await g.call("path_rename", root, old, old_len, root, new, new_len) == Errno.BUSY
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "file"]
    err, fd = await g.path_open(root, "a/.", rights=DIR_RIGHTS)
    assert err == 0 and (await g.fdstat(fd))[1][0] == 3  # a directory
    assert (await g.filestat(root, "a/."))[1][1] == (tmp_path / "a").stat().st_ino
    assert await g.path("path_remove_directory", root, "a") == 0
    g.ctx.close()


async def test_close_ends_accepted_connections() -> None:
    """The synchronous ``close()`` ends the connections the guest accepted: the peer sees end of stream
    at once, and the running loop then releases the socket."""
    from wasi_async.testing import FakeGuest

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    try:
        g = FakeGuest(WasiContext(WasiConfig(sockets=[listener])))
        async with await anyio.connect_tcp("127.0.0.1", port) as client:
            out = g.alloc(4)
            assert await g.call("sock_accept", 3, 0, out) == 0
            accepted = g.ctx.fds.get(g.u32(out))
            stream = accepted.input.stream  # type: ignore[attr-defined]
            g.ctx.close()
            with anyio.fail_after(5):
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await client.receive()
                while True:  # the loop's turn to run the stream's aclose
                    try:
                        await stream.send(b"x")
                    except anyio.ClosedResourceError:
                        break
                    except anyio.BrokenResourceError:
                        pass
                    await anyio.sleep(0.01)
    finally:
        await listener.aclose()
