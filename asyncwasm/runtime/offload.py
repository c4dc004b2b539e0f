"""Translate a big function in a worker process, so that its first call does not stall the loop.

CPython's ``compile()`` runs to its end without ever letting other threads or the event loop run,
and a guest chooses how big its functions are: 200,000 instructions in one function took 4 s of it.
A worker process (``python -m asyncwasm.runtime.translate_worker``) does the translation and the compile and
sends back the marshalled code object; meanwhile the loop serves everyone else, and a timeout or a
cancel scope around the guest's call kills the worker. The worker's address space is capped, so a
function too big to translate is a trap in the guest that asked for it, not memory of the host's.

Workers are kept and reused (starting one costs about 0.1 s) by every event loop of the process;
at most one per core works at once for each loop.
"""

from __future__ import annotations

import atexit
import marshal
import os
import pickle
import struct
import subprocess
import sys
import threading
from types import CodeType
from typing import Any

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

from ..binary.module import Code
from ..compiler.codegen import CompiledCode
from ..errors import Trap

WORKER_MEMORY = 4 << 30  # bytes of address space a translating worker may use
LENGTH = struct.Struct("<Q")  # frames a pickle on the worker's pipes


def encode_job(job: tuple[Any, ...]) -> bytes:
    """A ``translate_alone`` job as bytes: the function body (most of it) marshalled, which is
    three times faster than pickling it, and the rest pickled, each behind its length."""
    info, index, code, ftype, filename = job
    head = pickle.dumps(
        (info, index, code.locals, code.offset, ftype, filename), protocol=pickle.HIGHEST_PROTOCOL
    )
    body = marshal.dumps(code.body)
    return LENGTH.pack(len(head)) + head + LENGTH.pack(len(body)) + body


def decode_job(head: bytes, body: bytes) -> tuple[Any, ...]:
    info, index, local_types, offset, ftype, filename = pickle.loads(head)
    return info, index, Code(local_types, marshal.loads(body), offset), ftype, filename


class _Worker:
    """One worker process and its pipes; used by one job at a time, from a thread (its pipes block)."""

    def __init__(self) -> None:
        # The worker imports exactly this process's asyncwasm: its sys.path, and -P so that the
        # current directory (whatever a guest's host runs in) is not put in front of it.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "asyncwasm.runtime.translate_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )

    def ask(self, job: bytes) -> tuple[str, Any]:
        """Send one encoded job and wait for its answer (EOFError if the worker died)."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(job)
        stdin.flush()
        head = stdout.read(LENGTH.size)
        if len(head) < LENGTH.size:
            raise EOFError("the translating worker exited")
        (size,) = LENGTH.unpack(head)
        answer: tuple[str, Any] = pickle.loads(stdout.read(size))
        return answer

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.close_pipes()

    def close(self) -> None:
        """Let the worker end by itself: it exits when its stdin closes."""
        self.close_pipes()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()

    def close_pipes(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


class _Pool:
    """Idle workers, shared by every event loop of the process (a worker belongs to no loop)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[_Worker] = []

    def take(self) -> _Worker:
        with self.lock:
            if self.idle:
                return self.idle.pop()
        return _Worker()

    def give_back(self, worker: _Worker) -> None:
        with self.lock:
            if len(self.idle) < _CORES:
                self.idle.append(worker)
                return
        worker.close()

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for worker in idle:
            worker.close()


_CORES = max(1, os.cpu_count() or 1)
_pool = _Pool()
atexit.register(_pool.close)
_busy: RunVar[anyio.CapacityLimiter] = RunVar("asyncwasm_offload_limit")


def _limiter() -> anyio.CapacityLimiter:
    """At most one translating worker per core at once, per event loop."""
    try:
        return _busy.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(_CORES)
        _busy.set(limiter)
        return limiter


async def translate_in_worker(compiled: CompiledCode, index: int) -> CodeType:
    """The code object of function ``index``, translated and compiled in a worker process.

    The job waits in a thread (the pipes block, without the GIL); a cancellation (a timeout) gives
    up on it at once and kills the worker, which ends that thread's wait too.
    """
    job = encode_job(compiled.job(index))
    async with _limiter():
        worker = _pool.take()
        try:
            kind, value = await anyio.to_thread.run_sync(worker.ask, job, abandon_on_cancel=True)
        except BaseException:  # cancelled mid-job, or the worker died: it is not reused
            worker.kill()
            raise
        _pool.give_back(worker)
    if kind == "memory":
        raise Trap(f"function {index} is too big to translate within {WORKER_MEMORY >> 30} GiB")
    if kind == "error":
        raise RuntimeError(f"translating function {index} failed in the worker: {value}")
    return compiled.install(value)
