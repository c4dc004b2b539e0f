"""random_get: bytes from the configured source (os.urandom by default), in bounded chunks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .hostfunc import wasi
from .layout import GuestMemory, check_range

if TYPE_CHECKING:
    from .context import WasiContext

CHUNK = 1 << 16  # the buffer is filled a chunk at a time: never a host copy of the whole of it


@wasi("random_get", "i32 i32")
def random_get(ctx: WasiContext, mem: GuestMemory, buf: int, buf_len: int) -> None:
    check_range(mem, buf, buf_len)  # a buffer past the memory traps before any random byte is made
    for off in range(0, buf_len, CHUNK):
        mem.write(buf + off, ctx.random(min(CHUNK, buf_len - off)))
