"""Files and directories through a preopen: the fd and path functions on real temp dirs."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from wasi_async import Errno, Preopen, WasiConfig, WasiContext
from wasi_async.flags import DIR_RIGHTS, Fdflags, Filetype, Fstflags, Oflags, Rights, Whence
from wasi_async.layout import FILESTAT
from wasi_async.testing import FakeGuest

pytestmark = pytest.mark.anyio
ROOT = 3


@pytest.fixture
def g(tmp_path: Path) -> FakeGuest:
    (tmp_path / "hello.txt").write_bytes(b"hello world")
    (tmp_path / "dir").mkdir()
    return FakeGuest(WasiContext(WasiConfig(preopens=[Preopen(host=tmp_path, guest="/data")])))


async def test_prestat(g: FakeGuest) -> None:
    out = g.alloc(8)
    assert await g.call("fd_prestat_get", ROOT, out) == 0
    assert struct.unpack("<BxxxI", g.memory.read(out, 8)) == (0, 5)
    name = g.alloc(8)
    assert await g.call("fd_prestat_dir_name", ROOT, name, 4) == Errno.NAMETOOLONG
    assert await g.call("fd_prestat_dir_name", ROOT, name, 8) == 0
    assert g.memory.read(name, 5) == b"/data"
    assert await g.call("fd_prestat_get", 0, out) == Errno.BADF
    assert await g.call("fd_prestat_get", 4, out) == Errno.BADF


async def test_fdstat_of_stdio_and_preopen(g: FakeGuest) -> None:
    err, (ftype, flags, base, inheriting) = await g.fdstat(0)
    assert err == 0 and base & Rights.FD_READ and not base & Rights.FD_WRITE
    err, (ftype, flags, base, inheriting) = await g.fdstat(ROOT)
    assert ftype == Filetype.DIRECTORY and base == DIR_RIGHTS
    assert inheriting & Rights.FD_WRITE and not base & Rights.FD_FILESTAT_SET_SIZE


async def test_create_write_seek_read(g: FakeGuest, tmp_path: Path) -> None:
    rw = Rights.FD_READ | Rights.FD_WRITE | Rights.FD_SEEK | Rights.FD_TELL | Rights.FD_FILESTAT_GET
    err, fd = await g.path_open(ROOT, "new.txt", Oflags.CREAT | Oflags.EXCL, rights=rw)
    assert err == 0 and fd == 4
    assert await g.fd_write(fd, b"0123456789") == (0, 10)
    out = g.alloc(8)
    assert await g.call("fd_tell", fd, out) == 0 and g.u64(out) == 10
    assert await g.call("fd_seek", fd, -4, Whence.END, out) == 0 and g.u64(out) == 6
    assert await g.fd_read(fd, 100) == (0, b"6789")
    assert await g.call("fd_seek", fd, -100, Whence.CUR, out) == Errno.INVAL
    assert await g.call("fd_seek", fd, 0, 7, out) == Errno.INVAL
    assert await g.call("fd_seek", 0, 0, Whence.SET, out) == Errno.SPIPE
    assert await g.call("fd_seek", ROOT, 0, Whence.SET, out) == Errno.BADF
    assert (await g.path_open(ROOT, "new.txt", Oflags.CREAT | Oflags.EXCL))[0] == Errno.EXIST
    assert (tmp_path / "new.txt").read_bytes() == b"0123456789"
    # pread/pwrite leave the offset alone.
    buf = g.alloc(4)
    iov = g.alloc(8)
    g.memory.write(iov, struct.pack("<II", buf, 4))
    assert await g.call("fd_pread", fd, iov, 1, 2, out) == 0 and g.memory.read(buf, 4) == b"2345"
    p, n = g.put(b"AB")
    g.memory.write(iov, struct.pack("<II", p, n))
    assert await g.call("fd_pwrite", fd, iov, 1, 0, out) == 0 and g.u32(out) == 2
    assert await g.call("fd_tell", fd, out) == 0 and g.u64(out) == 10
    assert (tmp_path / "new.txt").read_bytes() == b"AB23456789"
    assert await g.call("fd_pread", 0, iov, 1, 0, out) == Errno.SPIPE
    assert await g.call("fd_close", fd) == 0
    assert await g.call("fd_close", fd) == Errno.BADF


async def test_directories_are_not_files(g: FakeGuest) -> None:
    out = g.alloc(8)
    assert (await g.fd_read(ROOT, 10))[0] == Errno.ISDIR
    assert (await g.fd_write(ROOT, b"x"))[0] == Errno.ISDIR
    assert await g.call("fd_filestat_set_size", ROOT, 0) == Errno.ISDIR
    assert await g.call("fd_tell", ROOT, out) == Errno.BADF
    assert await g.call("fd_allocate", ROOT, 0, 1) == Errno.BADF
    err, fd = await g.path_open(ROOT, "hello.txt")
    assert (await g.readdir(fd))[0] == Errno.NOTDIR
    assert (await g.path_open(ROOT, ".", Oflags.DIRECTORY, rights=Rights.FD_READ | Rights.FD_WRITE))[
        0
    ] == Errno.ISDIR


async def test_append_flag(g: FakeGuest, tmp_path: Path) -> None:
    rights = Rights.FD_WRITE | Rights.FD_SEEK | Rights.FD_FDSTAT_SET_FLAGS
    err, fd = await g.path_open(ROOT, "hello.txt", rights=rights, fdflags=Fdflags.APPEND)
    assert err == 0
    assert (await g.fdstat(fd))[1][1] == Fdflags.APPEND
    assert await g.call("fd_seek", fd, 0, Whence.SET, g.alloc(8)) == 0
    assert await g.fd_write(fd, b"!") == (0, 1)
    assert (tmp_path / "hello.txt").read_bytes() == b"hello world!"
    assert await g.call("fd_fdstat_set_flags", fd, 0) == 0
    assert await g.call("fd_seek", fd, 0, Whence.SET, g.alloc(8)) == 0
    assert await g.fd_write(fd, b"J") == (0, 1)
    assert (tmp_path / "hello.txt").read_bytes() == b"Jello world!"
    assert await g.call("fd_fdstat_set_flags", fd, Fdflags.SYNC) == Errno.INVAL


async def test_truncate_allocate_advise_sync(g: FakeGuest, tmp_path: Path) -> None:
    rights = (
        Rights.FD_WRITE
        | Rights.FD_FILESTAT_SET_SIZE
        | Rights.FD_ALLOCATE
        | Rights.FD_ADVISE
        | Rights.FD_SYNC
        | Rights.FD_DATASYNC
        | Rights.FD_FILESTAT_GET
    )
    err, fd = await g.path_open(ROOT, "hello.txt", rights=rights)
    assert await g.call("fd_filestat_set_size", fd, 5) == 0
    assert (tmp_path / "hello.txt").read_bytes() == b"hello"
    assert await g.call("fd_allocate", fd, 0, 100) == 0
    assert (tmp_path / "hello.txt").stat().st_size == 100
    assert await g.call("fd_advise", fd, 0, 0, 1) == 0
    assert await g.call("fd_advise", fd, 0, 0, 9) == Errno.INVAL
    assert await g.call("fd_sync", fd) == 0 and await g.call("fd_datasync", fd) == 0
    out = g.alloc(64)
    assert await g.call("fd_filestat_get", fd, out) == 0
    assert FILESTAT.unpack(g.memory.read(out, 64))[4] == 100
    err, ro = await g.path_open(ROOT, "hello.txt", rights=Rights.FD_READ)
    assert await g.call("fd_filestat_set_size", ro, 0) == Errno.NOTCAPABLE
    assert await g.call("fd_allocate", ro, 0, 1) == Errno.NOTCAPABLE


async def test_truncate_on_open_needs_the_directory_right(g: FakeGuest, tmp_path: Path) -> None:
    err, fd = await g.path_open(ROOT, "dir", Oflags.DIRECTORY, rights=DIR_RIGHTS)
    (tmp_path / "dir" / "f").write_bytes(b"data")
    assert (await g.path_open(fd, "f", Oflags.TRUNC, rights=0))[0] == 0
    assert (tmp_path / "dir" / "f").read_bytes() == b""
    assert await g.call("fd_fdstat_set_rights", fd, DIR_RIGHTS & ~Rights.PATH_FILESTAT_SET_SIZE, 0) == 0
    assert (await g.path_open(fd, "f", Oflags.TRUNC))[0] == Errno.NOTCAPABLE


async def test_filestat_and_times(g: FakeGuest, tmp_path: Path) -> None:
    err, st = await g.filestat(ROOT, "hello.txt")
    host = (tmp_path / "hello.txt").stat()
    assert err == 0 and st == (
        host.st_dev,
        host.st_ino,
        Filetype.REGULAR_FILE,
        1,
        11,
        host.st_atime_ns,
        host.st_mtime_ns,
        host.st_ctime_ns,
    )
    assert (await g.filestat(ROOT, "dir"))[1][2] == Filetype.DIRECTORY
    assert (await g.filestat(ROOT, "hello.txt/"))[0] == Errno.NOTDIR
    assert (await g.filestat(ROOT, "missing"))[0] == Errno.NOENT
    p, n = g.put(b"hello.txt")
    assert (
        await g.call(
            "path_filestat_set_times",
            ROOT,
            0,
            p,
            n,
            5_000_000_000,
            7_000_000_000,
            Fstflags.ATIM | Fstflags.MTIM,
        )
        == 0
    )
    host = (tmp_path / "hello.txt").stat()
    assert (host.st_atime_ns, host.st_mtime_ns) == (5_000_000_000, 7_000_000_000)
    assert await g.call("path_filestat_set_times", ROOT, 0, p, n, 0, 9_000_000_000, Fstflags.MTIM) == 0
    host = (tmp_path / "hello.txt").stat()
    assert (host.st_atime_ns, host.st_mtime_ns) == (5_000_000_000, 9_000_000_000)
    assert (
        await g.call("path_filestat_set_times", ROOT, 0, p, n, 0, 0, Fstflags.ATIM | Fstflags.ATIM_NOW)
        == Errno.INVAL
    )
    assert await g.call("path_filestat_set_times", ROOT, 0, p, n, 0, 0, 0x10) == Errno.INVAL
    err, fd = await g.path_open(ROOT, "hello.txt", rights=Rights.FD_FILESTAT_SET_TIMES)
    assert await g.call("fd_filestat_set_times", fd, 1_000_000_000, 0, Fstflags.ATIM | Fstflags.MTIM_NOW) == 0
    host = (tmp_path / "hello.txt").stat()
    assert host.st_atime_ns == 1_000_000_000 and host.st_mtime_ns > 9_000_000_000


async def test_readdir_with_cookies(g: FakeGuest, tmp_path: Path) -> None:
    for i in range(30):
        (tmp_path / "dir" / f"file{i:02}").write_bytes(b"")
    os.symlink("file00", tmp_path / "dir" / "link")
    err, fd = await g.path_open(ROOT, "dir", Oflags.DIRECTORY, rights=DIR_RIGHTS)
    err, entries = await g.readdir(fd)
    assert err == 0 and [e[0] for e in entries[:2]] == [".", ".."]
    assert [e[1] for e in entries] == list(range(1, 34))
    types = {name: t for name, _, t in entries}
    assert types["link"] == Filetype.SYMBOLIC_LINK and types["file03"] == Filetype.REGULAR_FILE
    # A small buffer: read in pieces, resuming at the last complete entry's d_next.
    names: list[str] = []
    cookie = 0
    while True:
        err, part = await g.readdir(fd, cookie, size=100)
        names += [p[0] for p in part]
        if not part:
            break
        cookie = part[-1][1]
    assert names == [e[0] for e in entries]
    assert (await g.readdir(fd, 1000))[1] == []


async def test_links_renames_and_removal(g: FakeGuest, tmp_path: Path) -> None:
    a, an = g.put(b"hello.txt")
    b, bn = g.put(b"dir/hard")
    assert await g.call("path_link", ROOT, 0, a, an, ROOT, b, bn) == 0
    assert (tmp_path / "dir" / "hard").read_bytes() == b"hello world"
    assert await g.call("path_link", ROOT, 0, a, an, ROOT, b, bn) == Errno.EXIST
    t, tn = g.put(b"../hello.txt")
    s, sn = g.put(b"dir/soft")
    assert await g.call("path_symlink", t, tn, ROOT, s, sn) == 0
    buf, used = g.alloc(32), g.alloc(4)
    assert await g.call("path_readlink", ROOT, s, sn, buf, 32, used) == 0
    assert g.memory.read(buf, g.u32(used)) == b"../hello.txt"
    assert await g.call("path_readlink", ROOT, s, sn, buf, 4, used) == 0 and g.u32(used) == 4
    assert await g.call("path_readlink", ROOT, a, an, buf, 32, used) == Errno.INVAL
    err, fd = await g.path_open(ROOT, "dir/soft", follow=True)
    assert err == 0 and await g.fd_read(fd, 5) == (0, b"hello")
    r, rn = g.put(b"renamed")
    assert await g.call("path_rename", ROOT, a, an, ROOT, r, rn) == 0
    assert (tmp_path / "renamed").exists() and not (tmp_path / "hello.txt").exists()
    assert await g.path("path_unlink_file", ROOT, "dir") == Errno.ISDIR
    assert await g.path("path_unlink_file", ROOT, "renamed/") == Errno.NOTDIR
    assert await g.path("path_remove_directory", ROOT, "dir") == Errno.NOTEMPTY
    assert await g.path("path_unlink_file", ROOT, "dir/hard") == 0
    assert await g.path("path_unlink_file", ROOT, "dir/soft") == 0
    assert await g.path("path_remove_directory", ROOT, "dir/") == 0
    assert await g.path("path_remove_directory", ROOT, ".") == Errno.INVAL
    assert await g.path("path_create_directory", ROOT, "made/") == 0
    assert await g.path("path_create_directory", ROOT, "made") == Errno.EXIST
    assert sorted(p.name for p in tmp_path.iterdir()) == ["made", "renamed"]


async def test_renumber_and_close_preopen(g: FakeGuest) -> None:
    err, a = await g.path_open(ROOT, "hello.txt", rights=Rights.FD_READ)
    err, b = await g.path_open(ROOT, "dir", Oflags.DIRECTORY, rights=DIR_RIGHTS)
    assert await g.call("fd_renumber", a, b) == 0
    assert (await g.fdstat(b))[1][0] == Filetype.REGULAR_FILE
    assert (await g.fdstat(a))[0] == Errno.BADF
    assert await g.call("fd_renumber", b, a) == Errno.BADF
    assert await g.call("fd_renumber", 0, b) == 0  # stdin moves onto b
    assert (await g.fdstat(0))[0] == Errno.BADF
    assert await g.call("fd_close", ROOT) == 0
    assert (await g.path_open(ROOT, "hello.txt"))[0] == Errno.BADF
    err, fd = await g.path_open(b, "x")
    assert err == Errno.NOTDIR  # b is a stream now, not a directory


async def test_close_releases_host_fds(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    ctx = WasiContext(WasiConfig(preopens=[Preopen(host=tmp_path, guest="/")]))
    g = FakeGuest(ctx)
    (tmp_path / "f").write_bytes(b"")
    for _ in range(5):
        assert (await g.path_open(ROOT, "f"))[0] == 0
    assert len(os.listdir("/proc/self/fd")) == before + 6
    ctx.close()
    assert len(os.listdir("/proc/self/fd")) == before
    with pytest.raises(FileNotFoundError):
        WasiContext(
            WasiConfig(
                preopens=[Preopen(host=tmp_path, guest="/"), Preopen(host=tmp_path / "no", guest="/x")]
            )
        )
    assert len(os.listdir("/proc/self/fd")) == before
