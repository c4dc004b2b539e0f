"""clock_res_get, clock_time_get: the instance's clock object, so a test can pin time.

The CPU-time clocks read the host process and thread (all instances on a loop share them); a custom
clock without ``process_cputime_ns``/``thread_cputime_ns`` answers EINVAL for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .errno import Errno, WasiError
from .flags import Clockid
from .hostfunc import wasi
from .layout import GuestMemory

if TYPE_CHECKING:
    from .context import WasiContext

_READERS = {
    Clockid.REALTIME: "realtime_ns",
    Clockid.MONOTONIC: "monotonic_ns",
    Clockid.PROCESS_CPUTIME_ID: "process_cputime_ns",
    Clockid.THREAD_CPUTIME_ID: "thread_cputime_ns",
}


def clock_reader(ctx: WasiContext, clock_id: int) -> Callable[[], int]:
    """The nanosecond reader for ``clock_id``; EINVAL for ids the clock does not provide."""
    name = _READERS.get(clock_id)  # type: ignore[call-overload]
    reader = getattr(ctx.clock, name, None) if name else None
    if reader is None:
        raise WasiError(Errno.INVAL, f"unsupported clock id {clock_id}")
    return reader  # type: ignore[no-any-return]


@wasi("clock_res_get", "i32 i32")
def clock_res_get(ctx: WasiContext, mem: GuestMemory, clock_id: int, res_ptr: int) -> None:
    clock_reader(ctx, clock_id)
    mem.write_u64(res_ptr, max(1, int(getattr(ctx.clock, "resolution_ns", 1))))


@wasi("clock_time_get", "i32 i64 i32")
def clock_time_get(ctx: WasiContext, mem: GuestMemory, clock_id: int, precision: int, time_ptr: int) -> None:
    mem.write_u64(time_ptr, clock_reader(ctx, clock_id)())
