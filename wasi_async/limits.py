"""The bounds that keep one guest's host calls from costing the host more than the guest could honestly
need: every length a guest passes is checked against these before the host copies, allocates or walks.

A short read or write is legal WASI (and POSIX) behaviour, so I/O is clipped rather than refused; a path
or a subscription list past its bound is an error, since a partial one would mean something else.
"""

from __future__ import annotations

MAX_IO = 1 << 24
"""One fd_read/fd_write/fd_pread/fd_pwrite/sock_recv/sock_send moves at most 16 MiB (and never more than
the guest's memory size): the rest is a short read or write."""

IO_CHUNK = 1 << 20
"""Writes copy guest memory in chunks of at most 1 MiB, so a call never joins more than that at once."""

MAX_IOVECS = 1 << 14
"""Only the first 16384 entries of an iovec array are looked at (the rest would make a short read or
write anyway); the whole array is still bounds-checked, so a bad pointer traps as before."""

MAX_PATH = 4096
"""A path argument longer than this (Linux's PATH_MAX) is ENAMETOOLONG, before any of it is copied."""

MAX_PATH_COMPONENTS = 4096
"""A walk visits at most this many components, counting those that symbolic links expand into (a path
within MAX_PATH has at most 2048): past it the walk stops with ELOOP, like too many links."""

MAX_SUBSCRIPTIONS = 4096
"""poll_oneoff with more subscriptions than this is EINVAL (as poll(2) with more fds than RLIMIT_NOFILE):
enough for a read and a write subscription on every descriptor of the default limit."""

DEFAULT_MAX_OPEN_FILES = 1024
"""``WasiConfig.max_open_files``: descriptors the guest itself may hold open (path_open, sock_accept)."""

DEFAULT_MAX_OUTPUT = 1 << 24
"""``run_command(max_output=)``: bytes of stdout and of stderr kept when captured (16 MiB each)."""
