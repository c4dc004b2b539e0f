"""The fstflags rules shared by fd_filestat_set_times and path_filestat_set_times."""

from __future__ import annotations

import os
import time

from .errno import Errno, WasiError
from .flags import Fstflags

_ALL = int(
    Fstflags.ATIM | Fstflags.ATIM_NOW | Fstflags.MTIM | Fstflags.MTIM_NOW
)  # int: ~IntFlag keeps only known bits


def check_fstflags(fst: int) -> None:
    """EINVAL for unknown bits, or for asking a time to be both a given value and now."""
    if fst & ~_ALL:
        raise WasiError(Errno.INVAL, "unknown fstflags bits")
    if fst & Fstflags.ATIM and fst & Fstflags.ATIM_NOW or fst & Fstflags.MTIM and fst & Fstflags.MTIM_NOW:
        raise WasiError(Errno.INVAL, "a timestamp cannot be both set and now")


def new_times(current: os.stat_result, atim: int, mtim: int, fst: int) -> tuple[int, int]:
    """(atime_ns, mtime_ns) for os.utime: Python has no UTIME_OMIT, so unchanged ones are re-set."""
    now = time.time_ns()
    a = atim if fst & Fstflags.ATIM else now if fst & Fstflags.ATIM_NOW else current.st_atime_ns
    m = mtim if fst & Fstflags.MTIM else now if fst & Fstflags.MTIM_NOW else current.st_mtime_ns
    return a, m
