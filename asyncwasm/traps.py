"""Turn the Python exceptions compiled code raises into Wasm traps, with Wasm backtraces read
from the Python traceback (generated functions are named ``f<index>``; a per-function line table
gives each line's Wasm byte offset)."""

from __future__ import annotations

import struct
import weakref
from typing import Any

from .errors import MEMORY_OOB, Frame, Trap, WasmError

_OOB_MEMORY = MEMORY_OOB

# generated filename -> CompiledModule, for backtraces; weak, so a dropped module is freed
_registry: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def register_code(filename: str, compiled: Any) -> None:
    _registry[filename] = compiled


def wasm_frames(tb: Any) -> tuple[list[Frame], int]:
    """The Wasm frames of a traceback, innermost first, and how many were left out in the middle
    (a backtrace of 200,000 recursive frames keeps the innermost 40 and the outermost 10)."""
    frames: list[Frame] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        cm = _registry.get(code.co_filename)
        if cm is not None and code.co_name[:1] in ("f", "t"):  # not a trampoline (w): compiler/tailcall.py
            idx = int(code.co_name[1:])
            frames.append(Frame(idx, cm.func_name(idx), cm.name, cm.compiled.offset_of(code, tb.tb_lineno)))
        tb = tb.tb_next
    frames.reverse()
    keep_inner, keep_outer = Trap.KEEP_INNER, 10
    if len(frames) <= keep_inner + keep_outer:
        return frames, 0
    return frames[:keep_inner] + frames[-keep_outer:], len(frames) - keep_inner - keep_outer


def suspended_frames(frame: Any) -> tuple[list[Frame], int]:
    """The Wasm frames of a suspended guest's stack from its innermost Python frame (a greenlet's
    ``gr_frame``), trimmed as ``wasm_frames`` trims: where a guest was when it was stopped."""
    frames: list[Frame] = []
    while frame is not None:
        code = frame.f_code
        cm = _registry.get(code.co_filename)
        if cm is not None and code.co_name.startswith("f"):
            idx = int(code.co_name[1:])
            frames.append(Frame(idx, cm.func_name(idx), cm.name, cm.compiled.offset_of(code, frame.f_lineno)))
        frame = frame.f_back
    keep_inner, keep_outer = Trap.KEEP_INNER, 10
    if len(frames) <= keep_inner + keep_outer:
        return frames, 0
    return frames[:keep_inner] + frames[-keep_outer:], len(frames) - keep_inner - keep_outer


def _trap(message: str, tb: Any) -> Trap:
    trap = Trap(message)
    trap.frames, trap.omitted = wasm_frames(tb)
    return trap


def _raised_in_wasm(tb: Any) -> bool:
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    return last is not None and last.tb_frame.f_code.co_filename in _registry


def as_trap(exc: BaseException) -> BaseException:
    """Map an exception from guest execution to the Trap it stands for (others pass unchanged)."""
    tb = exc.__traceback__
    if isinstance(exc, Trap):
        if not exc.frames:
            exc.frames, exc.omitted = wasm_frames(tb)
        return exc
    if isinstance(exc, WasmError) and hasattr(exc, "tag"):  # a Wasm exception: never a trap
        if not getattr(exc, "frames", True):
            exc.frames = wasm_frames(tb)[0]  # type: ignore[attr-defined]
        return exc
    if isinstance(exc, RecursionError):
        return _trap("call stack exhausted", tb)
    # OverflowError: a 64-bit memory's address past 2^63, which struct cannot even take
    if isinstance(exc, (struct.error, IndexError, OverflowError)) and _raised_in_wasm(tb):
        return _trap(_OOB_MEMORY, tb)
    if isinstance(exc, ZeroDivisionError) and _raised_in_wasm(tb):
        return _trap("integer divide by zero", tb)
    return exc
