"""wasi_async: WASI preview 1 (wasi_snapshot_preview1) for asyncwasm, over anyio async I/O.

cfg = WasiConfig(args=["app.wasm"], preopens=[Preopen(host="/tmp/d", guest="/sandbox")])
with WasiContext(cfg) as ctx:
    ctx.add_to_linker(linker)
    ...
"""

from .command import (
    CAPTURE,
    DISCARD,
    INHERIT,
    CommandFailed,
    CommandResult,
    NotACommand,
    run_command,
    wasi_instance,
)
from .config import Clock, Preopen, ProcessStdio, SystemClock, WasiConfig
from .context import WasiContext
from .errno import Errno, WasiError
from .proc import WasiExit

__all__ = [
    "CAPTURE",
    "DISCARD",
    "INHERIT",
    "CommandFailed",
    "CommandResult",
    "NotACommand",
    "run_command",
    "wasi_instance",
    "Clock",
    "Errno",
    "Preopen",
    "ProcessStdio",
    "SystemClock",
    "WasiConfig",
    "WasiContext",
    "WasiError",
    "WasiExit",
]
