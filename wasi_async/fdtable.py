"""The per-instance capability table: what each guest fd number refers to, and with which rights.

Numbering: 0-2 stdio, then the preopened directories in order (as wasmtime), then the granted
sockets, then whatever the guest opens (the lowest free number, as POSIX). An fd that was never granted,
or was closed, is EBADF; an fd lacking the right an operation needs is ENOTCAPABLE. Rights can only ever
shrink. The guest may hold at most ``max_opened`` descriptors it opened itself (EMFILE past that); the
embedder's grants (stdio, preopens, sockets) do not count.
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass, field
from typing import TypeVar

import anyio.abc

from .errno import Errno, WasiError
from .flags import Filetype, Rights
from .layout import pack_fdstat
from .streams import InputStream, OutputStream


def identity(fd: int) -> tuple[int, int]:
    """(st_dev, st_ino): what tells two directories apart however they were reached."""
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


@dataclass(eq=False)
class Entry:
    """One open descriptor. Subclasses say what is behind it."""

    rights_base: int
    rights_inheriting: int
    fdflags: int = 0

    def __post_init__(self) -> None:
        # Plain ints: ``~`` on an IntFlag keeps only the defined bits, which would let unknown bits through.
        self.rights_base = int(self.rights_base)
        self.rights_inheriting = int(self.rights_inheriting)
        self.fdflags = int(self.fdflags)

    @property
    def filetype(self) -> Filetype:
        return Filetype.UNKNOWN

    def require(self, rights: int) -> None:
        """ENOTCAPABLE unless every bit of ``rights`` was granted to this descriptor."""
        if self.rights_base & rights != rights:
            missing = Rights(rights & ~self.rights_base)
            raise WasiError(Errno.NOTCAPABLE, f"missing right {missing!r}")

    def fdstat(self) -> bytes:
        return pack_fdstat(self.filetype, self.fdflags, self.rights_base, self.rights_inheriting)

    def close(self) -> None:
        """Release host resources this entry owns (synchronously)."""
        return None

    async def aclose(self) -> None:
        self.close()


@dataclass(eq=False)
class FileEntry(Entry):
    """A regular file opened by the guest: a host fd whose offset the kernel keeps."""

    host_fd: int = -1

    @property
    def filetype(self) -> Filetype:
        return Filetype.REGULAR_FILE

    def close(self) -> None:
        if self.host_fd >= 0:
            fd, self.host_fd = self.host_fd, -1
            os.close(fd)


@dataclass(eq=False)
class DirEntry(Entry):
    """A directory: a preopen (``preopen`` is its guest name) or one the guest opened below one."""

    host_fd: int = -1
    preopen: str | None = None
    # fd_readdir's snapshot of the listing, taken at cookie 0 so later cookies index the same list.
    listing: list[tuple[str, int, Filetype]] | None = field(default=None, repr=False)
    # (st_dev, st_ino) of the preopen this directory was reached from: symlinks the guest creates must
    # not lead above it (None: this directory is its own root).
    root: tuple[int, int] | None = None

    @property
    def filetype(self) -> Filetype:
        return Filetype.DIRECTORY

    def sandbox_root(self) -> tuple[int, int]:
        """The identity of the directory nothing made through this descriptor may point above."""
        return self.root if self.root is not None else identity(self.host_fd)

    def close(self) -> None:
        if self.host_fd >= 0:
            fd, self.host_fd = self.host_fd, -1
            os.close(fd)


@dataclass(eq=False)
class StreamEntry(Entry):
    """stdio, a socket, or a pipe/device the guest opened: async byte streams in one or both directions."""

    input: InputStream | None = None
    output: OutputStream | None = None
    owned_fd: int = -1  # a host fd (FIFO, device) this entry opened and must close
    kind: Filetype = Filetype.UNKNOWN

    @property
    def filetype(self) -> Filetype:
        return self.kind

    @property
    def socket(self) -> bool:
        """Whether the sock_* calls apply."""
        return self.kind == Filetype.SOCKET_STREAM

    def close(self) -> None:
        """Close the host fd this entry opened, and any socket the guest accepted."""
        if self.input is not None:
            self.input.close_now()
        if self.output is not None and self.output is not self.input:
            self.output.close_now()
        if self.owned_fd >= 0:
            fd, self.owned_fd = self.owned_fd, -1
            os.close(fd)

    async def aclose(self) -> None:
        if self.input is not None:
            await self.input.aclose()
        if self.output is not None and self.output is not self.input:
            await self.output.aclose()
        self.close()


@dataclass(eq=False)
class ListenerEntry(Entry):
    """A preopened listening socket: sock_accept turns connections into new socket fds."""

    listener: anyio.abc.Listener | None = None

    @property
    def filetype(self) -> Filetype:
        return Filetype.SOCKET_STREAM


E = TypeVar("E", bound=Entry)


class FdTable:
    """Guest fd number -> Entry, with the lowest free number found in O(log n) and a cap on how many
    descriptors the guest itself opened.

    Numbers below ``_next`` that are free are all in the heap ``_free`` (which may also hold numbers
    taken again since, skipped when met, and numbers at or above ``_next``, which the count reaches
    anyway); ``_next`` only grows, past numbers taken by ``place``. So allocation never scans the table.
    """

    def __init__(self, max_opened: int | None = None) -> None:
        self._entries: dict[int, Entry] = {}
        self._free: list[int] = []
        self._next = 0
        self._opened: set[Entry] = set()  # what path_open and sock_accept added: these count against the cap
        self.max_opened = max_opened

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def opened(self) -> int:
        """How many descriptors the guest opened itself (and still holds, under any number)."""
        return len(self._opened)

    def place(self, fd: int, entry: Entry) -> None:
        """Install at a fixed number (stdio and preopens at start-up)."""
        self._entries[fd] = entry

    def _lowest_free(self) -> int:
        free = self._free
        while free and free[0] in self._entries:  # taken since it was freed: forget it
            heapq.heappop(free)
        while self._next in self._entries:
            self._next += 1
        if free and free[0] < self._next:
            return heapq.heappop(free)
        fd, self._next = self._next, self._next + 1  # a number freed at or above _next is met here later
        return fd

    def add(self, entry: Entry) -> int:
        """Install a grant of the embedder's at the lowest free number, as POSIX open does."""
        fd = self._lowest_free()
        if fd > 0xFFFFFFFF:
            heapq.heappush(self._free, fd)
            raise WasiError(Errno.MFILE)
        self._entries[fd] = entry
        return fd

    def check_room(self) -> None:
        """EMFILE when the guest already holds ``max_opened`` descriptors it opened: checked before the
        host resource is even created."""
        if self.max_opened is not None and len(self._opened) >= self.max_opened:
            raise WasiError(Errno.MFILE, f"the guest already holds {len(self._opened)} open descriptors")

    def add_opened(self, entry: Entry) -> int:
        """Install a descriptor the guest opened: EMFILE past the cap (the caller closes ``entry``)."""
        self.check_room()
        fd = self.add(entry)
        self._opened.add(entry)
        return fd

    def get(self, fd: int, rights: int = 0) -> Entry:
        entry = self._entries.get(fd)
        if entry is None:
            raise WasiError(Errno.BADF, f"fd {fd} is not open")
        if rights:
            entry.require(rights)
        return entry

    def get_as(self, fd: int, kind: type[E], rights: int = 0, *, wrong: Errno = Errno.BADF) -> E:
        """The entry if it is a ``kind`` (else ``wrong``), checked for ``rights``."""
        entry = self.get(fd)
        if not isinstance(entry, kind):
            raise WasiError(wrong, f"fd {fd} is not a {kind.__name__}")
        if rights:
            entry.require(rights)
        return entry

    def _release(self, fd: int) -> Entry:
        entry = self._entries.pop(fd)
        self._opened.discard(entry)
        heapq.heappush(self._free, fd)
        return entry

    def pop(self, fd: int) -> Entry:
        if fd not in self._entries:
            raise WasiError(Errno.BADF, f"fd {fd} is not open")
        return self._release(fd)

    def renumber(self, src: int, dst: int) -> Entry | None:
        """Move ``src`` onto ``dst`` (both must be open); returns the displaced entry for closing."""
        self.get(src)
        self.get(dst)
        if src == dst:
            return None
        displaced = self._entries[dst]
        self._opened.discard(displaced)
        self._entries[dst] = self._entries.pop(src)
        heapq.heappush(self._free, src)
        return displaced

    def clear(self) -> list[Entry]:
        entries = list(self._entries.values())
        self._entries.clear()
        self._opened.clear()
        self._free.clear()
        self._next = 0
        return entries
