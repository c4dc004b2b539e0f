"""Byte layouts of the preview1 structs in guest memory (little-endian, witx alignment).

Packing happens in Python and lands in guest memory through the ``Memory`` helpers, so a bad
guest pointer traps exactly as it would for a load or store.
"""

from __future__ import annotations

import os
import stat as _stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from .errno import Errno, WasiError
from .flags import Filetype
from .limits import IO_CHUNK, MAX_IO, MAX_IOVECS, MAX_PATH

IOVEC = struct.Struct("<II")  # buf, buf_len
FILESTAT = struct.Struct("<QQB7xQQQQQ")  # dev, ino, filetype, nlink, size, atim, mtim, ctim: 64 bytes
FDSTAT = struct.Struct("<BxHxxxxQQ")  # filetype, flags, rights_base, rights_inheriting: 24 bytes
DIRENT = struct.Struct("<QQIB3x")  # d_next, d_ino, d_namlen, d_type: 24 bytes
PRESTAT = struct.Struct("<BxxxI")  # tag, pr_name_len: 8 bytes
SUBSCRIPTION_SIZE = 48
SUB_HEAD = struct.Struct("<QB")  # userdata, tag (the union starts at offset 16)
SUB_CLOCK = struct.Struct("<IxxxxQQH")  # clock id, timeout, precision, flags (at offset 16)
SUB_FD = struct.Struct("<I")  # file descriptor (at offset 16)
EVENT = struct.Struct("<QHBxxxxxQH6x")  # userdata, error, type, nbytes, flags: 32 bytes

assert FILESTAT.size == 64 and FDSTAT.size == 24 and DIRENT.size == 24 and EVENT.size == 32


class GuestMemory(Protocol):
    """The part of ``asyncwasm.runtime.memory.Memory`` WASI uses (bounds-checked, raising Trap)."""

    def read(self, ptr: int, n: int) -> bytes: ...
    def write(self, ptr: int, value: bytes | bytearray | memoryview) -> None: ...
    def read_u32(self, ptr: int) -> int: ...
    def write_u16(self, ptr: int, value: int) -> None: ...
    def write_u32(self, ptr: int, value: int) -> None: ...
    def write_u64(self, ptr: int, value: int) -> None: ...


def memory_size(mem: GuestMemory) -> int:
    """The size of the guest's memory in bytes: what it could honestly hand the host in one call.
    A memory helper that does not expose its bytes counts as the whole 4 GiB address space."""
    data = getattr(mem, "data", None)
    return len(data) if data is not None else 1 << 32


def io_limit(mem: GuestMemory) -> int:
    """The most one read or write may move: MAX_IO, and never more than the guest's memory, since
    iovecs that repeat the same buffer must not make the host copy the same bytes over and over."""
    return min(MAX_IO, memory_size(mem))


def check_range(mem: GuestMemory, ptr: int, n: int) -> None:
    """Trap unless ``n`` bytes at ``ptr`` lie inside guest memory, without copying them."""
    if n:
        mem.read(ptr + n - 1, 1)


def read_iovecs(mem: GuestMemory, iovs: int, count: int, limit: int) -> list[tuple[int, int]]:
    """The (pointer, length) pairs of an iovec array, clipped to ``limit`` bytes in all.

    The whole array is bounds-checked (a bad pointer traps, as in wasmtime), but only its first
    MAX_IOVECS entries are read, and only until they add up to ``limit``: the rest could only make
    the host copy more than the guest could hold, and a short read or write is legal. Every buffer
    read is bounds-checked before anything moves, so a bad one traps before any byte is written.
    """
    check_range(mem, iovs, IOVEC.size * count)
    raw = mem.read(iovs, IOVEC.size * min(count, MAX_IOVECS))
    spans: list[tuple[int, int]] = []
    room = limit
    for ptr, n in IOVEC.iter_unpack(raw):
        check_range(mem, ptr, n)
        if n and room > 0:
            spans.append((ptr, min(n, room)))
            room -= n
    return spans


def gather_chunks(mem: GuestMemory, spans: list[tuple[int, int]]) -> Iterator[bytes]:
    """What the spans point at, in order, as chunks of at most IO_CHUNK bytes: small buffers are
    joined (one host write for a line and its newline), large ones cut, so no call holds more than
    a chunk of copied guest memory at a time."""
    parts: list[bytes] = []
    size = 0
    for ptr, n in spans:
        off = 0
        while off < n:
            take = min(n - off, IO_CHUNK - size)
            parts.append(mem.read(ptr + off, take))
            size += take
            off += take
            if size == IO_CHUNK:
                yield parts[0] if len(parts) == 1 else b"".join(parts)
                parts, size = [], 0
    if parts:
        yield parts[0] if len(parts) == 1 else b"".join(parts)


def scatter(mem: GuestMemory, spans: list[tuple[int, int]], data: bytes) -> None:
    """Spread ``data`` over the iovec spans in order (data never exceeds their total)."""
    view = memoryview(data)
    off = 0
    for ptr, n in spans:
        if off >= len(view):
            break
        chunk = view[off : off + n]
        mem.write(ptr, chunk)
        off += len(chunk)


def total_len(spans: list[tuple[int, int]]) -> int:
    return sum(n for _, n in spans)


def read_path(mem: GuestMemory, ptr: int, n: int) -> str:
    """A guest path: at most MAX_PATH bytes (ENAMETOOLONG before anything is copied), UTF-8 without
    NUL (a NUL would silently truncate the host path)."""
    if n > MAX_PATH:
        raise WasiError(Errno.NAMETOOLONG, f"path of {n} bytes (at most {MAX_PATH})")
    raw = mem.read(ptr, n)
    if b"\0" in raw:
        raise WasiError(Errno.INVAL, "path contains NUL")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WasiError(Errno.ILSEQ, "path is not UTF-8") from exc


def filetype_of_mode(mode: int) -> Filetype:
    if _stat.S_ISREG(mode):
        return Filetype.REGULAR_FILE
    if _stat.S_ISDIR(mode):
        return Filetype.DIRECTORY
    if _stat.S_ISLNK(mode):
        return Filetype.SYMBOLIC_LINK
    if _stat.S_ISCHR(mode):
        return Filetype.CHARACTER_DEVICE
    if _stat.S_ISBLK(mode):
        return Filetype.BLOCK_DEVICE
    if _stat.S_ISSOCK(mode):
        return Filetype.SOCKET_STREAM
    return Filetype.UNKNOWN


def pack_filestat(st: os.stat_result) -> bytes:
    return FILESTAT.pack(
        st.st_dev & 0xFFFFFFFFFFFFFFFF,
        st.st_ino & 0xFFFFFFFFFFFFFFFF,
        filetype_of_mode(st.st_mode),
        st.st_nlink,
        st.st_size,
        st.st_atime_ns,
        st.st_mtime_ns,
        st.st_ctime_ns,
    )


def pack_empty_filestat(filetype: Filetype) -> bytes:
    """For descriptors without a host inode (in-memory or async streams)."""
    return FILESTAT.pack(0, 0, filetype, 1, 0, 0, 0, 0)


def pack_fdstat(filetype: Filetype, flags: int, base: int, inheriting: int) -> bytes:
    return FDSTAT.pack(filetype, flags, base, inheriting)


@dataclass(frozen=True)
class Subscription:
    userdata: int
    tag: int
    clock_id: int = 0
    timeout: int = 0
    precision: int = 0
    flags: int = 0
    fd: int = 0


def read_subscriptions(mem: GuestMemory, ptr: int, count: int) -> Iterator[Subscription]:
    raw = mem.read(ptr, SUBSCRIPTION_SIZE * count)
    for i in range(count):
        base = i * SUBSCRIPTION_SIZE
        userdata, tag = SUB_HEAD.unpack_from(raw, base)
        if tag == 0:
            clock_id, timeout, precision, flags = SUB_CLOCK.unpack_from(raw, base + 16)
            yield Subscription(userdata, tag, clock_id, timeout, precision, flags)
        else:
            (fd,) = SUB_FD.unpack_from(raw, base + 16)
            yield Subscription(userdata, tag, fd=fd)


def pack_event(userdata: int, error: int, type_: int, nbytes: int = 0, flags: int = 0) -> bytes:
    return EVENT.pack(userdata, error, type_, nbytes, flags)
