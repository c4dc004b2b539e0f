"""proc_exit ends the instance (never the host process); proc_raise is not supported."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errno import Errno, WasiError
from .hostfunc import wasi
from .layout import GuestMemory

if TYPE_CHECKING:
    from .context import WasiContext


class WasiExit(Exception):
    """The guest called proc_exit; the engine lets it propagate out of the export call."""

    def __init__(self, code: int) -> None:
        super().__init__(f"guest exited with status {code}")
        self.code = code


@wasi("proc_exit", "i32", results="")
def proc_exit(ctx: WasiContext, mem: GuestMemory, code: int) -> None:
    ctx.exit_code = code
    raise WasiExit(code)


@wasi("proc_raise", "i32")
def proc_raise(ctx: WasiContext, mem: GuestMemory, sig: int) -> None:
    raise WasiError(Errno.NOTSUP, "signals are not supported")
