"""random_get: bytes from the configured source (os.urandom by default), in bounded chunks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .hostfunc import wasi
from .layout import GuestMemory

if TYPE_CHECKING:
    from .context import WasiContext

CHUNK = 1 << 16  # a guest asking for 4 GiB traps at the first chunk past its memory, not after allocating it


@wasi("random_get", "i32 i32")
def random_get(ctx: WasiContext, mem: GuestMemory, buf: int, buf_len: int) -> None:
    for off in range(0, buf_len, CHUNK):
        mem.write(buf + off, ctx.random(min(CHUNK, buf_len - off)))
