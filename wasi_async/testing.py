"""Call WASI functions straight from Python, without a Wasm module: a fake caller with its own
linear memory, a bump allocator, and typed wrappers for the calls tests make most.

Embedders can use it to check a WasiConfig (what a guest would see) before any engine runs.
"""

from __future__ import annotations

import inspect
import struct
from types import SimpleNamespace

from asyncwasm.runtime.memory import Memory

from .context import WasiContext
from .flags import ALL_RIGHTS, LOOKUP_SYMLINK_FOLLOW
from .layout import DIRENT, FDSTAT, FILESTAT
from .streams import CollectStream  # noqa: F401  (re-exported: tests collect guest output with it)


class FakeGuest:
    """A stand-in for an instance: ``call(name, *args)`` runs a WASI function on ``ctx`` against ``memory``."""

    def __init__(self, ctx: WasiContext, pages: int = 2) -> None:
        self.ctx = ctx
        self.memory = Memory.new(pages)
        self.caller = SimpleNamespace(memory=self.memory)
        self._top = 64

    def alloc(self, n: int, align: int = 8) -> int:
        """Scratch space; wraps to the start when full (tests never keep old scratch alive)."""
        ptr = (self._top + align - 1) & ~(align - 1)
        if ptr + n > len(self.memory.data):
            ptr = 64
        self._top = ptr + n
        return ptr

    def put(self, data: bytes) -> tuple[int, int]:
        ptr = self.alloc(max(len(data), 1))
        self.memory.write(ptr, data)
        return ptr, len(data)

    def u32(self, ptr: int) -> int:
        return self.memory.read_u32(ptr)

    def u64(self, ptr: int) -> int:
        return self.memory.read_u64(ptr)

    async def call(self, name: str, *args: int) -> int:
        _, fn = self.ctx.functions[name]
        result = fn(self.caller, *args)
        if inspect.isawaitable(result):
            result = await result
        return result  # type: ignore[no-any-return]

    # Typed wrappers: (errno, value) pairs.
    async def path_open(
        self,
        dirfd: int,
        path: str | bytes,
        oflags: int = 0,
        *,
        rights: int = ALL_RIGHTS,
        inheriting: int = ALL_RIGHTS,
        fdflags: int = 0,
        follow: bool = False,
    ) -> tuple[int, int]:
        p, n = self.put(path.encode() if isinstance(path, str) else path)
        out = self.alloc(4)
        err = await self.call(
            "path_open",
            dirfd,
            LOOKUP_SYMLINK_FOLLOW if follow else 0,
            p,
            n,
            oflags,
            rights,
            inheriting,
            fdflags,
            out,
        )
        return err, self.u32(out) if err == 0 else -1

    async def path(self, name: str, dirfd: int, path: str, *rest: int) -> int:
        """Call a path function whose arguments are (fd, path, len, *rest)."""
        p, n = self.put(path.encode())
        return await self.call(name, dirfd, p, n, *rest)

    async def fd_write(self, fd: int, data: bytes) -> tuple[int, int]:
        buf, n = self.put(data)
        iov = self.alloc(8)
        self.memory.write(iov, struct.pack("<II", buf, n))
        out = self.alloc(4)
        err = await self.call("fd_write", fd, iov, 1, out)
        return err, self.u32(out) if err == 0 else 0

    async def fd_read(self, fd: int, n: int) -> tuple[int, bytes]:
        buf = self.alloc(n)
        iov = self.alloc(8)
        self.memory.write(iov, struct.pack("<II", buf, n))
        out = self.alloc(4)
        err = await self.call("fd_read", fd, iov, 1, out)
        return err, self.memory.read(buf, self.u32(out)) if err == 0 else b""

    async def fdstat(self, fd: int) -> tuple[int, tuple[int, int, int, int]]:
        out = self.alloc(FDSTAT.size)
        err = await self.call("fd_fdstat_get", fd, out)
        return err, FDSTAT.unpack(self.memory.read(out, FDSTAT.size))

    async def filestat(self, dirfd: int, path: str, follow: bool = False) -> tuple[int, tuple[int, ...]]:
        p, n = self.put(path.encode())
        out = self.alloc(FILESTAT.size)
        err = await self.call("path_filestat_get", dirfd, int(follow), p, n, out)
        return err, FILESTAT.unpack(self.memory.read(out, FILESTAT.size))

    async def readdir(
        self, fd: int, cookie: int = 0, size: int = 4096
    ) -> tuple[int, list[tuple[str, int, int]]]:
        """(errno, [(name, d_next, d_type)]) of one fd_readdir call."""
        buf = self.alloc(size)
        used = self.alloc(4)
        err = await self.call("fd_readdir", fd, buf, size, cookie, used)
        raw = self.memory.read(buf, self.u32(used)) if err == 0 else b""
        entries, pos = [], 0
        while pos + DIRENT.size <= len(raw):
            d_next, _ino, namlen, dtype = DIRENT.unpack_from(raw, pos)
            name = raw[pos + DIRENT.size : pos + DIRENT.size + namlen]
            if len(name) < namlen:
                break
            entries.append((name.decode(), d_next, dtype))
            pos += DIRENT.size + namlen
        return err, entries
