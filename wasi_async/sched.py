"""sched_yield: let the other tasks on the event loop run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio.lowlevel

from .hostfunc import wasi
from .layout import GuestMemory

if TYPE_CHECKING:
    from .context import WasiContext


@wasi("sched_yield")
async def sched_yield(ctx: WasiContext, mem: GuestMemory) -> None:
    await anyio.lowlevel.checkpoint()
