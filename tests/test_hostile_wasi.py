"""Hostile guests against the WASI layer: host calls that would make the host copy, hold or create far
more than the guest could honestly need, or links that would lead host software out of a preopen.
Each test runs a real module (WebAssembly text), bounded in time, on asyncio and trio.

The guests report what they saw as little-endian u32 values written to stdout (``$emit``, then
``$flush`` at the end of ``_start``).
"""

from __future__ import annotations

import os
import struct
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.abc
import pytest
from wat import wat

import asyncwasm
from wasi_async import CommandResult, Errno, WasiConfig, WasiContext, run_command
from wasi_async.fdtable import FdTable, FileEntry
from wasi_async.limits import DEFAULT_MAX_OPEN_FILES, DEFAULT_MAX_OUTPUT, MAX_PATH, MAX_SUBSCRIPTIONS
from wasi_async.testing import CollectStream

pytestmark = pytest.mark.anyio

MiB = 1 << 20
PAGE = 0x10000
ROOT = 3  # the first preopen (or the first socket)
WASI = '(import "wasi_snapshot_preview1"'
IMPORTS = f"""
  {WASI} "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  {WASI} "fd_pwrite" (func $fd_pwrite (param i32 i32 i32 i64 i32) (result i32)))
  {WASI} "fd_close" (func $fd_close (param i32) (result i32)))
  {WASI} "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  {WASI} "path_filestat_get" (func $path_filestat_get (param i32 i32 i32 i32 i32) (result i32)))
  {WASI} "path_symlink" (func $path_symlink (param i32 i32 i32 i32 i32) (result i32)))
  {WASI} "path_rename" (func $path_rename (param i32 i32 i32 i32 i32 i32) (result i32)))
  {WASI} "path_link" (func $path_link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  {WASI} "sock_send" (func $sock_send (param i32 i32 i32 i32 i32) (result i32)))
  {WASI} "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  {WASI} "proc_exit" (func $exit (param i32)))
  (import "env" "probe" (func $probe))
"""


def no_probe() -> None:
    return None


class Guest:
    """One guest's memory plan: results at ``base`` (1024 values), 256 bytes of scratch after them
    (``scratch(k)`` is its k-th u32 slot), then the strings, as data segments."""

    def __init__(self, base: int = 0) -> None:
        self.out = base + 0x100
        self.scratch_at = base + 0x1100
        self.next = base + 0x1200
        self.segments: list[str] = []
        self.seen: dict[bytes, tuple[int, int]] = {}

    def scratch(self, k: int) -> int:
        return self.scratch_at + 4 * k

    def ptr(self, text: str) -> int:
        """Where the string is stored (once)."""
        raw = text.encode()
        if raw not in self.seen:
            self.seen[raw] = (self.next, len(raw))
            escaped = "".join(f"\\{b:02x}" for b in raw)
            self.segments.append(f'(data (i32.const {self.next}) "{escaped}")')
            self.next += len(raw) + 1
        return self.seen[raw][0]

    def s(self, text: str) -> str:
        """``(i32.const ptr) (i32.const len)`` of the string, as a path argument."""
        return f"(i32.const {self.ptr(text)}) (i32.const {len(text.encode())})"

    def module(self, body: str, *, memory: str = "1") -> bytes:
        """A WASI command whose ``_start`` runs ``body``, then writes what it emitted to stdout."""
        out, scratch = self.out, self.scratch_at
        return wat(f"""
(module
  {IMPORTS}
  (memory (export "memory") {memory})
  {" ".join(self.segments)}
  (global $out (mut i32) (i32.const {out}))
  (func $emit (param $v i32)
    (i32.store (global.get $out) (local.get $v))
    (global.set $out (i32.add (global.get $out) (i32.const 4))))
  (func $flush
    (i32.store (i32.const {scratch + 8}) (i32.const {out}))
    (i32.store (i32.const {scratch + 12}) (i32.sub (global.get $out) (i32.const {out})))
    (drop (call $fd_write (i32.const 1) (i32.const {scratch + 8}) (i32.const 1) (i32.const {scratch + 16}))))
  ;; path_open asking for every right: the new fd, or -1 once the errno is emitted
  (func $open (param $dir i32) (param $p i32) (param $n i32) (param $oflags i32) (result i32) (local $err i32)
    (local.set $err (call $path_open (local.get $dir) (i32.const 0) (local.get $p) (local.get $n)
                     (local.get $oflags) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const {scratch})))
    (if (result i32) (local.get $err)
      (then (call $emit (local.get $err)) (i32.const -1))
      (else (i32.load (i32.const {scratch})))))
  (func (export "_start") (local $i i32) (local $fd i32) (local $err i32) (local $n i32)
    {body}
    (call $flush)))
""")


def probing(fn: Callable[[], object] = no_probe) -> asyncwasm.Linker:
    linker = asyncwasm.Linker()
    linker.define_func("env", "probe", asyncwasm.FuncType((), ()), lambda: (fn(), None)[1])
    return linker


def emitted(result: CommandResult, skip: int = 0) -> list[int]:
    out = result.stdout
    assert out is not None, result
    out = out[skip:]
    return list(struct.unpack(f"<{len(out) // 4}I", out))


def traced() -> Callable[[], int]:
    """Start tracing host allocations; the function returned stops and gives the peak in bytes."""
    tracemalloc.start()
    tracemalloc.reset_peak()

    def stop() -> int:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    return stop


# -- host calls copy no more than the guest could hold --------------------------------------------------

IOVECS = 8191  # 8191 iovecs of 8 bytes fill the first page; each names the whole second page
MEMORY = 3 * PAGE  # the most this guest may ever have (its memory is "3 3"); the third page is for results
UNBOUNDED = IOVECS * PAGE  # 512 MiB: what the host used to join


def amplifier(call: str, *, opens: bool = False) -> bytes:
    """One ``call`` over 8191 iovecs that all point at the same 64 KiB; emits its errno and count."""
    g = Guest(base=2 * PAGE)
    setup = f"(local.set $fd (call $open (i32.const {ROOT}) {g.s('out.bin')} (i32.const 9)))" if opens else ""
    body = f"""
    (memory.fill (i32.const {PAGE}) (i32.const 0x78) (i32.const {PAGE}))
    (i32.store (i32.const {PAGE}) (i32.const 0x44414548))  ;; each copy of the buffer starts with "HEAD"
    (loop $fill
      (i32.store (i32.mul (local.get $i) (i32.const 8)) (i32.const {PAGE}))
      (i32.store offset=4 (i32.mul (local.get $i) (i32.const 8)) (i32.const {PAGE}))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const {IOVECS}))))
    {setup}
    (call $emit {call.replace("$NW", str(g.scratch(8)))})
    (call $emit (i32.load (i32.const {g.scratch(8)})))
    """
    return g.module(body, memory="3 3")


FD_WRITE = f"(call $fd_write (i32.const 1) (i32.const 0) (i32.const {IOVECS}) (i32.const $NW))"
FD_PWRITE = (
    f"(call $fd_pwrite (local.get $fd) (i32.const 0) (i32.const {IOVECS}) (i64.const 0) (i32.const $NW))"
)
SOCK_SEND = (
    f"(call $sock_send (i32.const {ROOT}) (i32.const 0) (i32.const {IOVECS}) (i32.const 0) (i32.const $NW))"
)


def copies(n: int) -> bytes:
    one = b"HEAD" + b"x" * (PAGE - 4)
    return (one * (n // PAGE + 1))[:n]


async def test_fd_write_of_one_buffer_8191_times_is_short_and_small() -> None:
    module = asyncwasm.Module(amplifier(FD_WRITE))
    stop = traced()
    start = time.perf_counter()
    with anyio.fail_after(30):
        result = await run_command(module, store=asyncwasm.Store(timeout=20), linker=probing())
    elapsed, peak = time.perf_counter() - start, stop()
    assert result.stdout is not None and result.trap is None
    assert emitted(result, skip=MEMORY) == [0, MEMORY]  # a short write: what the guest could hold
    assert result.stdout[:MEMORY] == copies(MEMORY)
    assert peak < 16 * MiB and MEMORY < UNBOUNDED, f"host peak {peak / MiB:.1f} MiB"
    assert elapsed < 10


async def test_fd_pwrite_of_one_buffer_8191_times_is_short_and_small(tmp_path: Path) -> None:
    module = asyncwasm.Module(amplifier(FD_PWRITE, opens=True))
    stop = traced()
    with anyio.fail_after(30):
        result = await run_command(
            module, preopens=[(tmp_path, "/")], store=asyncwasm.Store(timeout=20), linker=probing()
        )
    peak = stop()
    assert emitted(result) == [0, MEMORY]
    assert (tmp_path / "out.bin").read_bytes() == copies(MEMORY)
    assert peak < 16 * MiB, f"host peak {peak / MiB:.1f} MiB"


class CountingSocket(anyio.abc.ByteStream):
    """A connected stream that counts what it is sent and keeps the first bytes."""

    def __init__(self) -> None:
        self.sent = 0
        self.largest = 0
        self.head = bytearray()

    async def send(self, item: bytes) -> None:
        self.sent += len(item)
        self.largest = max(self.largest, len(item))
        self.head += item[: max(0, 8 - len(self.head))]

    async def receive(self, max_bytes: int = 65536) -> bytes:
        raise anyio.EndOfStream

    async def send_eof(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def test_sock_send_of_one_buffer_8191_times_is_short_and_small() -> None:
    module = asyncwasm.Module(amplifier(SOCK_SEND))
    sock, out = CountingSocket(), CollectStream()
    stop = traced()
    with anyio.fail_after(30):
        async with WasiContext(WasiConfig(sockets=[sock], stdout=out)) as ctx:
            linker = probing()
            ctx.add_to_linker(linker)
            instance = await linker.instantiate(module, asyncwasm.Store(timeout=20))
            await instance.call("_start")
    peak = stop()
    assert struct.unpack("<II", out.data) == (0, MEMORY)
    assert sock.sent == MEMORY and sock.head == b"HEADxxxx"
    assert sock.largest <= 1 * MiB  # sent in bounded chunks, never joined
    assert peak < 16 * MiB, f"host peak {peak / MiB:.1f} MiB"


async def test_a_64_mib_path_of_dot_slash_is_enametoolong_at_once(tmp_path: Path) -> None:
    size = 64 * MiB
    g = Guest()
    # "./" doubled with memory.copy until it fills 64 MiB from the second page on, then used as a path.
    body = f"""
    (i32.store16 (i32.const {PAGE}) (i32.const 0x2f2e))
    (local.set $n (i32.const 2))
    (loop $double
      (memory.copy (i32.add (i32.const {PAGE}) (local.get $n)) (i32.const {PAGE}) (local.get $n))
      (local.set $n (i32.shl (local.get $n) (i32.const 1)))
      (br_if $double (i32.lt_u (local.get $n) (i32.const {size}))))
    (call $probe)  ;; the host's peak is measured from here: memory.copy's own copies do not count
    (call $emit (call $path_open (i32.const {ROOT}) (i32.const 0) (i32.const {PAGE}) (i32.const {size})
                 (i32.const 1) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const {g.scratch(0)})))
    (call $emit (call $path_filestat_get (i32.const {ROOT}) (i32.const 1) (i32.const {PAGE}) (i32.const {size})
                 (i32.const {g.scratch(2)})))
    (call $emit (call $path_symlink (i32.const {PAGE}) (i32.const {size}) (i32.const {ROOT}) {g.s("l")}))
    (call $emit (call $path_filestat_get (i32.const {ROOT}) (i32.const 1) (i32.const {PAGE})
                 (i32.const {MAX_PATH + 1}) (i32.const {g.scratch(2)})))
    (call $emit (call $path_filestat_get (i32.const {ROOT}) (i32.const 1) (i32.const {PAGE})
                 (i32.const {MAX_PATH}) (i32.const {g.scratch(2)})))
    """
    module = asyncwasm.Module(g.module(body, memory=str(size // PAGE + 2)))
    marks: list[float] = []

    def probe() -> None:
        tracemalloc.reset_peak()
        marks.append(time.perf_counter())

    stop = traced()
    with anyio.fail_after(30):
        result = await run_command(
            module, preopens=[(tmp_path, "/")], store=asyncwasm.Store(timeout=20), linker=probing(probe)
        )
    elapsed, peak = time.perf_counter() - marks[0], stop()
    # past MAX_PATH: ENAMETOOLONG before anything is copied; 4096 bytes of "./" still name the directory
    assert emitted(result) == [Errno.NAMETOOLONG] * 4 + [0]
    assert list(tmp_path.iterdir()) == []
    assert elapsed < 5 and peak < 16 * MiB, (elapsed, peak)


async def test_poll_oneoff_with_too_many_subscriptions_is_einval() -> None:
    g = Guest()
    # zeroed subscriptions are clock subscriptions on the realtime clock that are due at once
    calls = "".join(
        f"""
    (call $emit (call $poll_oneoff (i32.const {PAGE}) (i32.const {5 * PAGE}) (i32.const {n}) (i32.const {g.scratch(0)})))
    (call $emit (i32.load (i32.const {g.scratch(0)})))"""
        for n in (MAX_SUBSCRIPTIONS + 1, 0xFFFFFFFF, MAX_SUBSCRIPTIONS)
    )
    with anyio.fail_after(30):
        result = await run_command(
            g.module(calls, memory="8"), linker=probing(), store=asyncwasm.Store(timeout=20)
        )
    assert emitted(result) == [Errno.INVAL, 0, Errno.INVAL, 0, 0, MAX_SUBSCRIPTIONS]


# -- descriptors: a per-instance limit, lowest-free numbers without a scan ------------------------------


def opener(limit: int) -> bytes:
    """Opens "f" (created) until an error or ``limit`` opens; emits [errno,] the count, fd_close's result
    on the first fd it got, the fd of one more open, that first fd, and another open's [errno,] fd.
    Calls env.probe before, every 1000 opens and after the loop."""
    g = Guest()
    f = g.s("f")
    body = f"""
    (local.set $i (i32.const -1))
    (call $probe)
    (block $done
      (loop $more
        (local.set $fd (call $open (i32.const {ROOT}) {f} (i32.const 1)))
        (br_if $done (i32.eq (local.get $fd) (i32.const -1)))
        (if (i32.eqz (local.get $n)) (then (local.set $i (local.get $fd))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (if (i32.eqz (i32.rem_u (local.get $n) (i32.const 1000))) (then (call $probe)))
        (br_if $more (i32.lt_u (local.get $n) (i32.const {limit})))))
    (call $probe)
    (call $emit (local.get $n))
    (call $emit (call $fd_close (local.get $i)))
    (call $emit (call $open (i32.const {ROOT}) {f} (i32.const 0)))
    (call $emit (local.get $i))
    (call $emit (call $open (i32.const {ROOT}) {f} (i32.const 0)))
    """
    return g.module(body)


FAILED = 0xFFFFFFFF  # what $open returns once it has emitted the errno


def host_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_opening_in_a_loop_is_emfile_at_the_guests_limit(tmp_path: Path) -> None:
    counts: list[int] = []
    before = host_fds()
    with anyio.fail_after(60):
        result = await run_command(
            opener(100_000),
            preopens=[(tmp_path, "/")],
            linker=probing(lambda: counts.append(host_fds())),
            store=asyncwasm.Store(timeout=50),
        )
    errno_, n, closed, reopened, first, again, failed = emitted(result)
    assert errno_ == Errno.MFILE and n == DEFAULT_MAX_OPEN_FILES
    assert closed == 0 and reopened == first  # closing one frees its number, the lowest, for the next open
    assert (again, failed) == (Errno.MFILE, FAILED)  # and the guest is at its limit again
    assert max(counts) - before <= DEFAULT_MAX_OPEN_FILES + 8 and max(counts) < 2000, (before, max(counts))
    assert host_fds() <= before + 2  # all of them closed with the context


async def test_a_small_limit_no_limit_and_zero(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        small = await run_command(
            opener(10_000), preopens=[(tmp_path, "/")], linker=probing(), max_open_files=7
        )
        unlimited = await run_command(
            opener(1500), preopens=[(tmp_path, "/")], linker=probing(), max_open_files=None
        )
        zero = await run_command(opener(10), preopens=[(tmp_path, "/")], linker=probing(), max_open_files=0)
    errno_, n, closed, reopened, first, again, failed = emitted(small)
    assert (errno_, n, closed, reopened, again, failed) == (Errno.MFILE, 7, 0, first, Errno.MFILE, FAILED)
    n, closed, reopened, first, again = emitted(unlimited)  # no error: the loop stopped at its own count
    assert (n, closed, reopened) == (1500, 0, first) and again == first + 1500
    assert emitted(zero)[:2] == [Errno.MFILE, 0]


async def test_opening_many_descriptors_is_not_quadratic(tmp_path: Path) -> None:
    marks: list[float] = []
    with anyio.fail_after(60):
        result = await run_command(
            opener(3000),
            preopens=[(tmp_path, "/")],
            max_open_files=4000,
            linker=probing(lambda: marks.append(time.perf_counter())),
            store=asyncwasm.Store(timeout=50),
        )
    assert emitted(result)[0] == 3000
    first, _second, third = (marks[i + 1] - marks[i] for i in range(3))
    # the 1000 opens made while 2000 are held cost about what the first 1000 did
    assert third < 3 * first + 0.5, (first, third)


def test_the_fd_table_allocates_without_scanning() -> None:
    table = FdTable(max_opened=None)
    entry = FileEntry(0, 0, host_fd=-1)
    start = time.perf_counter()
    held = [table.add(FileEntry(0, 0, host_fd=-1)) for _ in range(100_000)]
    assert held == list(range(100_000))
    for _ in range(100_000):  # open and close above 100,000 held: a scan would take minutes
        fd = table.add(entry)
        assert fd == 100_000
        table.pop(fd)
    table.pop(500)
    table.pop(7)
    assert [table.add(entry) for _ in range(3)] == [7, 500, 100_000]
    table.renumber(100_000, 3)
    assert table.add(entry) == 100_000
    assert time.perf_counter() - start < 5


# -- captured output is bounded -------------------------------------------------------------------------


def chatter() -> bytes:
    """Writes "first\\n" to stdout and to stderr, then 64 KiB of "x" to stdout for ever, calling
    env.probe every 16 writes."""
    g = Guest()
    iov, nw = g.scratch(6), g.scratch(4)
    ptr = g.ptr("first\n")
    body = f"""
    (i32.store (i32.const {iov}) (i32.const {ptr}))
    (i32.store (i32.const {iov + 4}) (i32.const 6))
    (drop (call $fd_write (i32.const 1) (i32.const {iov}) (i32.const 1) (i32.const {nw})))
    (drop (call $fd_write (i32.const 2) (i32.const {iov}) (i32.const 1) (i32.const {nw})))
    (memory.fill (i32.const {PAGE}) (i32.const 0x78) (i32.const {PAGE}))
    (i32.store (i32.const {iov}) (i32.const {PAGE}))
    (i32.store (i32.const {iov + 4}) (i32.const {PAGE}))
    (loop $forever
      (local.set $err (call $fd_write (i32.const 1) (i32.const {iov}) (i32.const 1) (i32.const {nw})))
      (if (local.get $err) (then (call $exit (local.get $err))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (if (i32.eqz (i32.rem_u (local.get $n) (i32.const 16))) (then (call $probe)))
      (br $forever))
    """
    return g.module(body, memory="2 2")


async def test_a_guest_writing_forever_holds_at_most_max_output() -> None:
    held: list[int] = []
    module = asyncwasm.Module(chatter())
    stop = traced()
    with anyio.fail_after(60):
        result = await run_command(
            module,
            store=asyncwasm.Store(timeout=3),
            linker=probing(lambda: held.append(tracemalloc.get_traced_memory()[0])),
        )
    peak = stop()
    assert isinstance(result.trap, asyncwasm.Interrupted)  # it was still writing when its time ran out
    assert result.stdout is not None and len(result.stdout) == DEFAULT_MAX_OUTPUT
    assert result.stdout_truncated and not result.stderr_truncated
    assert result.stdout.startswith(b"first\nxxxx") and result.stderr == b"first\n"
    assert len(held) * 16 * PAGE > 2 * DEFAULT_MAX_OUTPUT  # it did write much more than was kept
    assert max(held) - held[0] < DEFAULT_MAX_OUTPUT + 4 * MiB, max(held) / MiB
    assert peak < DEFAULT_MAX_OUTPUT + 8 * MiB, peak / MiB  # the result's bytes are not a second copy


async def test_a_small_max_output_keeps_exactly_the_first_bytes() -> None:
    with anyio.fail_after(30):
        result = await run_command(
            chatter(), store=asyncwasm.Store(timeout=0.5), linker=probing(), max_output=1000
        )
        tiny = await run_command(
            chatter(), store=asyncwasm.Store(timeout=0.2), linker=probing(), max_output=3
        )
    assert result.stdout == b"first\n" + b"x" * 994 and result.stdout_truncated
    assert result.stderr == b"first\n" and not result.stderr_truncated
    assert tiny.stdout == tiny.stderr == b"fir" and tiny.stdout_truncated and tiny.stderr_truncated


# -- symbolic links never lead out of the preopen -------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "sub").mkdir()
    (root / "b").write_bytes(b"b")
    return root, outside


LINKS = [  # (target, new link, errno)
    ("../outside", "outdir", Errno.NOTCAPABLE),
    ("..", "up", Errno.NOTCAPABLE),
    ("sub/../..", "sneaky", Errno.NOTCAPABLE),
    ("/etc", "abs", Errno.NOTCAPABLE),
    ("a/../b", "inner1", 0),
    ("sub/x", "inner2", 0),
    ("..", "sub/up", 0),  # sub/.. is the preopen itself
    (".", "self", 0),
    ("self/..", "via_self", Errno.NOTCAPABLE),  # self is the preopen: its ".." is above
    ("sub/up/../outside", "via_up", Errno.NOTCAPABLE),
    ("sub/up/b", "via_up_inside", 0),
    ("missing/../../outside", "via_missing", Errno.NOTCAPABLE),
    ("sub/../sub/../b", "zigzag", 0),
]


async def test_symlinks_that_would_escape_are_refused_and_not_created(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    g = Guest()
    calls = [
        f"(call $emit (call $path_symlink {g.s(target)} (i32.const {ROOT}) {g.s(link)}))"
        for target, link, _ in LINKS
    ]
    # an inner link given a name from where it would lead out: refused for rename and for link
    calls += [
        f"(call $emit (call $path_rename (i32.const {ROOT}) {g.s('sub/up')} (i32.const {ROOT}) {g.s('up')}))",
        f"(call $emit (call $path_link (i32.const {ROOT}) (i32.const 0) {g.s('sub/up')} (i32.const {ROOT}) {g.s('up2')}))",
        f"(call $emit (call $path_rename (i32.const {ROOT}) {g.s('inner2')} (i32.const {ROOT}) {g.s('sub/inner2')}))",
        f"(call $emit (call $path_link (i32.const {ROOT}) (i32.const 0) {g.s('inner1')} (i32.const {ROOT}) {g.s('sub/inner1')}))",
        f"(call $emit (call $path_rename (i32.const {ROOT}) {g.s('self')} (i32.const {ROOT}) {g.s('sub/self')}))",
    ]
    with anyio.fail_after(30):
        result = await run_command(
            g.module("\n".join(calls)),
            preopens=[(root, "/")],
            linker=probing(),
            store=asyncwasm.Store(timeout=20),
        )
    errnos = emitted(result)
    assert errnos[: len(LINKS)] == [e for _, _, e in LINKS]
    assert errnos[len(LINKS) :] == [Errno.NOTCAPABLE, Errno.NOTCAPABLE, 0, 0, 0]
    assert list(outside.iterdir()) == []
    for _target, link, errno_ in LINKS:
        if errno_:
            assert not os.path.lexists(root / link), link
    assert not os.path.lexists(root / "up") and not os.path.lexists(root / "up2")
    assert os.readlink(root / "sub" / "up") == ".."
    assert os.readlink(root / "inner1") == "a/../b" and os.readlink(root / "sub" / "inner1") == "a/../b"
    assert os.readlink(root / "sub" / "inner2") == "sub/x" and not os.path.lexists(root / "inner2")
    assert os.readlink(root / "sub" / "self") == "."
    assert os.readlink(root / "via_up_inside") == "sub/up/b"
    assert (root / "via_up_inside").read_bytes() == b"b"  # the host's kernel follows it inside
