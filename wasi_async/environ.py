"""environ_get, environ_sizes_get: exactly the variables the config grants, as KEY=VALUE."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._strings import write_sizes, write_string_table
from .hostfunc import wasi
from .layout import GuestMemory

if TYPE_CHECKING:
    from .context import WasiContext


@wasi("environ_get", "i32 i32")
def environ_get(ctx: WasiContext, mem: GuestMemory, environ: int, environ_buf: int) -> None:
    write_string_table(mem, ctx.environ, environ, environ_buf)


@wasi("environ_sizes_get", "i32 i32")
def environ_sizes_get(ctx: WasiContext, mem: GuestMemory, count_ptr: int, size_ptr: int) -> None:
    write_sizes(mem, ctx.environ, count_ptr, size_ptr)
