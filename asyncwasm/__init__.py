"""asyncwasm: a WebAssembly runtime for async Python.

Compile once, instantiate many times, ``await`` calls; instances run as resumable coroutines on
anyio (asyncio or trio) and give the loop back when their fuel slice ends or they wait on a host call.
"""

from .binary.module import FuncType, GlobalType, Limits, MemoryType, TableType
from .cpu import RunStats, SchedulerStats, cpu_turn, scheduler_stats
from .errors import (
    Frame,
    FuelExhausted,
    InstanceDead,
    Interrupted,
    InvalidModule,
    LinkError,
    MalformedModule,
    Trap,
    UnsupportedFeature,
    WasmError,
)
from .features import Features
from .runtime.code_cache import CodeCache
from .runtime.exports import ExportedFunc, ExportType, ImportType, InstanceExports
from .runtime.instance import Caller, CompiledModule, HostFunc, Instance, Linker
from .runtime.memory import Memory
from .runtime.objects import Func, Global, Table, Tag, WasmException
from .runtime.preinit import PreinitError, Preinitialized, preinitialize, write_preinitialized
from .runtime.snapshot import Snapshot, SnapshotError
from .runtime.values import signed32, signed64
from .store import Store

Module = CompiledModule

__all__ = [
    "Caller",
    "CodeCache",
    "CompiledModule",
    "ExportedFunc",
    "ExportType",
    "Features",
    "Frame",
    "FuelExhausted",
    "Func",
    "FuncType",
    "Global",
    "GlobalType",
    "HostFunc",
    "ImportType",
    "Instance",
    "InstanceExports",
    "InstanceDead",
    "Interrupted",
    "RunStats",
    "SchedulerStats",
    "PreinitError",
    "Preinitialized",
    "Snapshot",
    "SnapshotError",
    "cpu_turn",
    "scheduler_stats",
    "InvalidModule",
    "Limits",
    "LinkError",
    "MalformedModule",
    "Memory",
    "MemoryType",
    "Module",
    "Store",
    "Table",
    "TableType",
    "Trap",
    "UnsupportedFeature",
    "WasmError",
    "Linker",
    "preinitialize",
    "write_preinitialized",
    "signed32",
    "signed64",
    "Tag",
    "WasmException",
]
