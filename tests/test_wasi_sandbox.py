"""The sandbox: nothing outside a preopened directory is reachable, whatever path or link the guest uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wasi_async import Errno, Preopen, WasiConfig, WasiContext
from wasi_async.flags import DIR_RIGHTS, Oflags, Rights
from wasi_async.testing import FakeGuest

pytestmark = pytest.mark.anyio
ROOT = 3  # the first preopen


def snapshot(path: Path) -> dict[str, tuple[int, int, bytes | str]]:
    """Every entry below ``path`` with its mode, mtime and content (or link target)."""
    out: dict[str, tuple[int, int, bytes | str]] = {}
    for p in sorted(path.rglob("*")):
        st = p.lstat()
        body: bytes | str = os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else b""
        out[str(p.relative_to(path))] = (st.st_mode, st.st_mtime_ns, body)
    return out


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """root/ (the preopen) and outside/ (must stay untouched), with links from one to the other."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(b"top secret")
    (outside / "dir").mkdir()
    (root / "file").write_bytes(b"inside")
    (root / "sub").mkdir()
    (root / "sub" / "inner").write_bytes(b"inner")
    os.symlink(outside / "secret", root / "abs_link")
    os.symlink(outside, root / "abs_dir_link")
    os.symlink("../outside/secret", root / "rel_link")
    os.symlink("../outside", root / "rel_dir_link")
    os.symlink("sub/../../outside", root / "sneaky_link")
    os.symlink("loop", root / "loop")
    os.symlink("loop_b", root / "loop_a")
    os.symlink("loop_a", root / "loop_b")
    os.symlink("sub", root / "dir_link")
    os.symlink("sub/inner", root / "inner_link")
    os.symlink("missing", root / "dangling")
    return root, outside


def guest_for(root: Path, readonly: bool = False) -> FakeGuest:
    return FakeGuest(
        WasiContext(WasiConfig(preopens=[Preopen(host=root, guest="/sandbox", readonly=readonly)]))
    )


@pytest.mark.parametrize(
    "path",
    [
        "..",
        "../outside/secret",
        "sub/../../outside/secret",
        "sub/../..",
        "./../root/file",
        "dir_link/../../outside/secret",
    ],
)
async def test_dotdot_cannot_climb_out(tree: tuple[Path, Path], path: str) -> None:
    root, outside = tree
    g = guest_for(root)
    assert await g.path_open(ROOT, path, follow=True) == (Errno.NOTCAPABLE, -1)


async def test_dotdot_inside_is_fine(tree: tuple[Path, Path]) -> None:
    g = guest_for(tree[0])
    err, fd = await g.path_open(ROOT, "sub/../sub/./inner")
    assert err == 0
    assert await g.fd_read(fd, 100) == (0, b"inner")
    err, fd = await g.path_open(ROOT, "sub/..", Oflags.DIRECTORY, rights=DIR_RIGHTS)
    assert err == 0


@pytest.mark.parametrize("path", ["/", "/sandbox/file", "/etc/passwd", "//file"])
async def test_absolute_paths_refused(tree: tuple[Path, Path], path: str) -> None:
    g = guest_for(tree[0])
    assert (await g.path_open(ROOT, path, follow=True))[0] == Errno.NOTCAPABLE


@pytest.mark.parametrize(
    "path",
    [
        "abs_link",
        "abs_dir_link/secret",
        "rel_link",
        "rel_dir_link/secret",
        "sneaky_link/secret",
    ],
)
async def test_links_leading_out_refused(tree: tuple[Path, Path], path: str) -> None:
    g = guest_for(tree[0])
    assert (await g.path_open(ROOT, path, follow=True))[0] == Errno.NOTCAPABLE
    assert (await g.filestat(ROOT, path, follow=True))[0] == Errno.NOTCAPABLE


async def test_intermediate_links_are_followed_inside_only(tree: tuple[Path, Path]) -> None:
    g = guest_for(tree[0])
    err, fd = await g.path_open(ROOT, "dir_link/inner")  # no follow flag: only the final link is kept
    assert err == 0 and await g.fd_read(fd, 10) == (0, b"inner")
    # Without the follow flag the final link is the link itself, so opening it fails.
    assert (await g.path_open(ROOT, "inner_link"))[0] == Errno.LOOP
    err, fd = await g.path_open(ROOT, "inner_link", follow=True)
    assert err == 0 and await g.fd_read(fd, 10) == (0, b"inner")
    # An escaping link is refused even without the follow flag when it is an intermediate component.
    assert (await g.path_open(ROOT, "abs_dir_link/secret"))[0] == Errno.NOTCAPABLE


@pytest.mark.parametrize("path", ["loop", "loop_a", "loop_b/x"])
async def test_symlink_loops(tree: tuple[Path, Path], path: str) -> None:
    g = guest_for(tree[0])
    assert (await g.path_open(ROOT, path, follow=True))[0] == Errno.LOOP


async def test_dangling_link(tree: tuple[Path, Path]) -> None:
    g = guest_for(tree[0])
    assert (await g.path_open(ROOT, "dangling"))[0] == Errno.LOOP
    assert (await g.path_open(ROOT, "dangling", follow=True))[0] == Errno.NOENT
    # Creating through a dangling link creates its (in-sandbox) target, as POSIX does.
    err, _ = await g.path_open(ROOT, "dangling", Oflags.CREAT, follow=True)
    assert err == 0 and (tree[0] / "missing").exists()


async def test_mutations_through_escapes_touch_nothing(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    before = snapshot(outside)
    g = guest_for(root)
    attempts = [
        await g.path("path_create_directory", ROOT, "../outside/new"),
        await g.path("path_create_directory", ROOT, "abs_dir_link/new"),
        await g.path("path_create_directory", ROOT, "rel_dir_link/new"),
        await g.path("path_unlink_file", ROOT, "abs_dir_link/secret"),
        await g.path("path_unlink_file", ROOT, "../outside/secret"),
        await g.path("path_remove_directory", ROOT, "rel_dir_link/dir"),
        await g.path("path_remove_directory", ROOT, ".."),
        (await g.path_open(ROOT, "abs_dir_link/secret", Oflags.TRUNC))[0],
        (await g.path_open(ROOT, "rel_dir_link/created", Oflags.CREAT))[0],
        (await g.path_open(ROOT, "abs_link", Oflags.TRUNC, follow=True))[0],
    ]
    a, an = g.put(b"file")
    b, bn = g.put(b"../outside/moved")
    attempts.append(await g.call("path_rename", ROOT, a, an, ROOT, b, bn))
    attempts.append(await g.call("path_link", ROOT, 0, a, an, ROOT, b, bn))
    c, cn = g.put(b"rel_dir_link/secret")
    attempts.append(await g.call("path_rename", ROOT, c, cn, ROOT, a, an))
    attempts.append(await g.call("path_filestat_set_times", ROOT, 1, c, cn, 0, 0, 0b0101))
    t, tn = g.put(b"/etc")
    x, xn = g.put(b"x")
    attempts.append(await g.call("path_symlink", t, tn, ROOT, x, xn))
    assert all(e == Errno.NOTCAPABLE for e in attempts), attempts
    assert snapshot(outside) == before
    assert not (root / "x").exists()


async def test_readonly_preopen(tree: tuple[Path, Path]) -> None:
    root = tree[0]
    before = snapshot(root)
    g = guest_for(root, readonly=True)
    err, (_, _, base, inheriting) = await g.fdstat(ROOT)
    assert err == 0 and not base & Rights.PATH_CREATE_FILE and not inheriting & Rights.FD_WRITE
    assert (await g.path_open(ROOT, "new", Oflags.CREAT))[0] == Errno.NOTCAPABLE
    assert (await g.path_open(ROOT, "file", Oflags.TRUNC))[0] == Errno.NOTCAPABLE
    assert await g.path("path_create_directory", ROOT, "d") == Errno.NOTCAPABLE
    assert await g.path("path_unlink_file", ROOT, "file") == Errno.NOTCAPABLE
    assert await g.path("path_remove_directory", ROOT, "sub") == Errno.NOTCAPABLE
    # Asking for write access yields a descriptor without it: writes are refused, reads work.
    err, fd = await g.path_open(ROOT, "file", rights=Rights.FD_READ | Rights.FD_WRITE)
    assert err == 0
    assert (await g.fd_write(fd, b"overwrite"))[0] == Errno.NOTCAPABLE
    assert await g.fd_read(fd, 100) == (0, b"inside")
    # Subdirectories inherit the restriction.
    err, sub = await g.path_open(ROOT, "sub", Oflags.DIRECTORY, rights=DIR_RIGHTS)
    assert err == 0
    assert (await g.path_open(sub, "new", Oflags.CREAT))[0] == Errno.NOTCAPABLE
    assert snapshot(root) == before


async def test_dropped_rights_stay_dropped(tree: tuple[Path, Path]) -> None:
    g = guest_for(tree[0])
    err, fd = await g.path_open(
        ROOT, "file", rights=Rights.FD_READ | Rights.FD_WRITE | Rights.FD_SEEK, inheriting=0
    )
    assert err == 0
    assert await g.call("fd_fdstat_set_rights", fd, Rights.FD_SEEK, 0) == 0
    assert (await g.fd_write(fd, b"x"))[0] == Errno.NOTCAPABLE
    assert (await g.fd_read(fd, 1))[0] == Errno.NOTCAPABLE
    assert await g.call("fd_fdstat_set_rights", fd, Rights.FD_SEEK | Rights.FD_READ, 0) == Errno.NOTCAPABLE
    assert await g.call("fd_fdstat_set_rights", fd, Rights.FD_SEEK | 1 << 40, 0) == Errno.NOTCAPABLE
    # A directory that lost PATH_OPEN opens nothing; one that lost an inheritable right cannot pass it on.
    err, sub = await g.path_open(ROOT, "sub", Oflags.DIRECTORY, rights=DIR_RIGHTS)
    _, (_, _, base, inheriting) = await g.fdstat(sub)
    assert await g.call("fd_fdstat_set_rights", sub, base, inheriting & ~Rights.FD_WRITE) == 0
    err, child = await g.path_open(sub, "inner", rights=Rights.FD_READ | Rights.FD_WRITE)
    assert err == 0
    assert (await g.fd_write(child, b"x"))[0] == Errno.NOTCAPABLE
    assert await g.call("fd_fdstat_set_rights", sub, base & ~Rights.PATH_OPEN, 0) == 0
    assert (await g.path_open(sub, "inner"))[0] == Errno.NOTCAPABLE
    assert (tree[0] / "file").read_bytes() == b"inside"


async def test_never_granted_and_closed_fds(tmp_path: Path) -> None:
    g = FakeGuest(WasiContext(WasiConfig()))
    prestat = g.alloc(8)
    assert await g.call("fd_prestat_get", 3, prestat) == Errno.BADF
    assert (await g.path_open(3, "etc/passwd"))[0] == Errno.BADF
    assert (await g.fd_read(3, 10))[0] == Errno.BADF
    assert (await g.fd_write(0xFFFFFFFF, b"x"))[0] == Errno.BADF
    assert await g.call("fd_close", -1) == Errno.BADF  # arrives signed, means 0xFFFFFFFF
    assert await g.call("fd_close", 2) == 0
    assert (await g.fd_write(2, b"x"))[0] == Errno.BADF
    assert await g.call("fd_renumber", 1, 7) == Errno.BADF


async def test_path_oddities(tree: tuple[Path, Path]) -> None:
    g = guest_for(tree[0])
    assert (await g.path_open(ROOT, "file/"))[0] == Errno.NOTDIR
    assert (await g.path_open(ROOT, b"file\0"))[0] == Errno.INVAL
    assert (await g.path_open(ROOT, b"\xff"))[0] == Errno.ILSEQ
    assert (await g.path_open(ROOT, ""))[0] == Errno.NOENT
    err, fd = await g.path_open(ROOT, "sub///", 0, rights=DIR_RIGHTS)
    assert err == 0
    assert (await g.path_open(ROOT, "file/."))[0] == Errno.NOTDIR
    assert (await g.path_open(ROOT, "dir_link/.", rights=DIR_RIGHTS))[0] == 0
    err, file_fd = await g.path_open(ROOT, "file")
    assert (await g.path_open(file_fd, "x"))[0] == Errno.NOTDIR
