"""WASI errno values and the exception host functions raise to return one.

Every WASI function answers with an errno; raising ``WasiError`` from deep inside a helper is
simpler than threading return codes through, and the registry turns it into the result.
"""

from __future__ import annotations

import errno as _os_errno
from enum import IntEnum


class Errno(IntEnum):
    """``$errno`` of wasi_snapshot_preview1, in witx order (the value is the index)."""

    SUCCESS = 0
    TOOBIG = 1  # E2BIG
    ACCES = 2
    ADDRINUSE = 3
    ADDRNOTAVAIL = 4
    AFNOSUPPORT = 5
    AGAIN = 6
    ALREADY = 7
    BADF = 8
    BADMSG = 9
    BUSY = 10
    CANCELED = 11
    CHILD = 12
    CONNABORTED = 13
    CONNREFUSED = 14
    CONNRESET = 15
    DEADLK = 16
    DESTADDRREQ = 17
    DOM = 18
    DQUOT = 19
    EXIST = 20
    FAULT = 21
    FBIG = 22
    HOSTUNREACH = 23
    IDRM = 24
    ILSEQ = 25
    INPROGRESS = 26
    INTR = 27
    INVAL = 28
    IO = 29
    ISCONN = 30
    ISDIR = 31
    LOOP = 32
    MFILE = 33
    MLINK = 34
    MSGSIZE = 35
    MULTIHOP = 36
    NAMETOOLONG = 37
    NETDOWN = 38
    NETRESET = 39
    NETUNREACH = 40
    NFILE = 41
    NOBUFS = 42
    NODEV = 43
    NOENT = 44
    NOEXEC = 45
    NOLCK = 46
    NOLINK = 47
    NOMEM = 48
    NOMSG = 49
    NOPROTOOPT = 50
    NOSPC = 51
    NOSYS = 52
    NOTCONN = 53
    NOTDIR = 54
    NOTEMPTY = 55
    NOTRECOVERABLE = 56
    NOTSOCK = 57
    NOTSUP = 58
    NOTTY = 59
    NXIO = 60
    OVERFLOW = 61
    OWNERDEAD = 62
    PERM = 63
    PIPE = 64
    PROTO = 65
    PROTONOSUPPORT = 66
    PROTOTYPE = 67
    RANGE = 68
    ROFS = 69
    SPIPE = 70
    SRCH = 71
    STALE = 72
    TIMEDOUT = 73
    TXTBSY = 74
    XDEV = 75
    NOTCAPABLE = 76


class WasiError(Exception):
    """Raised by WASI implementations; the registry returns ``errno`` to the guest."""

    def __init__(self, errno: Errno | int, message: str = "") -> None:
        self.errno = Errno(errno)
        super().__init__(message or self.errno.name)


def _build_host_map() -> dict[int, Errno]:
    table: dict[int, Errno] = {}
    for member in Errno:
        host = getattr(_os_errno, "E" + member.name, None)
        if host is not None:
            table[host] = member
    table[_os_errno.E2BIG] = Errno.TOOBIG
    table[_os_errno.EWOULDBLOCK] = Errno.AGAIN
    table[_os_errno.EOPNOTSUPP] = Errno.NOTSUP
    return table


_HOST_TO_WASI = _build_host_map()


def from_oserror(exc: OSError) -> Errno:
    """The WASI errno for a host ``OSError``; EIO when the host code has no WASI equivalent."""
    if exc.errno is None:
        return Errno.IO
    return _HOST_TO_WASI.get(exc.errno, Errno.IO)
