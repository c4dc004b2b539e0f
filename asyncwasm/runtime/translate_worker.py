"""The translating worker process: ``python -m asyncwasm.runtime.translate_worker``.

It reads jobs (the arguments of ``compiler.codegen.translate_alone``, as ``offload.encode_job``
writes them) from stdin and writes answers to stdout, each a pickle behind an 8-byte length, until stdin closes. Answers are
``("ok", Translated)``, ``("memory", None)`` when the job passed the worker's memory cap, or
``("error", text)``. The cap is set once, when the worker starts.
"""

from __future__ import annotations

import pickle
import resource
import sys
from typing import Any

from ..compiler.codegen import Translated, translate_alone
from .offload import LENGTH, WORKER_MEMORY, decode_job


def serve() -> None:
    """The worker's loop: read a job, answer it, until stdin closes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft > WORKER_MEMORY:
        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY, hard))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        parts = []
        for _ in range(2):
            frame = stdin.read(LENGTH.size)
            if len(frame) < LENGTH.size:
                return
            (size,) = LENGTH.unpack(frame)
            parts.append(stdin.read(size))
        job = decode_job(*parts)
        answer: tuple[str, Any]
        try:
            done: Translated = translate_alone(*job)
            answer = ("ok", done)
        except MemoryError:
            answer = ("memory", None)
        except Exception as exc:  # reported to the guest's call as an error, with its text
            answer = ("error", f"{type(exc).__name__}: {exc}")
        payload = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(LENGTH.pack(len(payload)) + payload)
        stdout.flush()


if __name__ == "__main__":
    serve()
