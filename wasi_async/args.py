"""args_get, args_sizes_get: the guest's argv (argv[0] is the program name the embedder chose)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._strings import write_sizes, write_string_table
from .hostfunc import wasi
from .layout import GuestMemory

if TYPE_CHECKING:
    from .context import WasiContext


@wasi("args_get", "i32 i32")
def args_get(ctx: WasiContext, mem: GuestMemory, argv: int, argv_buf: int) -> None:
    write_string_table(mem, ctx.args, argv, argv_buf)


@wasi("args_sizes_get", "i32 i32")
def args_sizes_get(ctx: WasiContext, mem: GuestMemory, argc_ptr: int, size_ptr: int) -> None:
    write_sizes(mem, ctx.args, argc_ptr, size_ptr)
