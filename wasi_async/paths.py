"""Sandboxed path resolution, openat-style, one component at a time.

The walk starts at the directory fd the guest named and opens each intermediate directory with
``O_NOFOLLOW`` relative to the previous one, so the kernel never resolves more than a single name.
Symbolic links are read and expanded here, inside the sandbox: an absolute target, or a ``..``
that would climb above the starting directory, is ENOTCAPABLE; more than ``MAX_SYMLINKS``
expansions is ELOOP. The caller gets the directory fd that holds the final component and that
component's name, and performs its operation with ``dir_fd=`` and without following symlinks,
so a link swapped in after the check cannot redirect it (it fails with ELOOP instead).
No check is ever made on joined path strings.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from types import TracebackType

from .errno import Errno, WasiError
from .limits import MAX_PATH_COMPONENTS

MAX_SYMLINKS = 40  # Linux's limit
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Resolved:
    """The result of a walk: ``name`` inside the directory ``dir_fd`` ("." for that directory itself).

    ``trailing_slash`` records that the guest's path ended in "/" (the target must be a directory).
    Use as a context manager: the intermediate directories stay open until then.
    """

    __slots__ = ("dir_fd", "name", "trailing_slash", "_owned")

    def __init__(self, dir_fd: int, name: str, trailing_slash: bool, owned: list[int]) -> None:
        self.dir_fd = dir_fd
        self.name = name
        self.trailing_slash = trailing_slash
        self._owned = owned

    @property
    def slashed_name(self) -> str:
        """The name with the guest's trailing slash kept, for calls whose kernel checks need it
        (unlinkat, mkdirat, renameat, symlinkat, linkat's new path never follow the final link)."""
        return self.name + "/" if self.trailing_slash and self.name != "." else self.name

    def close(self) -> None:
        while self._owned:
            os.close(self._owned.pop())

    def __enter__(self) -> Resolved:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _components(path: str) -> list[str]:
    """The names along ``path``; a "." is kept (the walk skips it unless it is the final name)."""
    return [c for c in path.split("/") if c]


def _names_a_directory(path: str) -> bool:
    """A trailing "/" or "/." (as in "a/" or "a/.") says the final component must be a directory."""
    return path.endswith("/") or path.endswith("/.")


class _Budget:
    """Counts the components a walk visits, so symbolic links that expand into long paths, one into
    another, cannot make a single call walk without end (ELOOP past MAX_PATH_COMPONENTS)."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_PATH_COMPONENTS

    def step(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise WasiError(Errno.LOOP, f"the path expands to more than {MAX_PATH_COMPONENTS} components")


def resolve(base_fd: int, path: str, *, follow: bool) -> Resolved:
    """Walk ``path`` from ``base_fd``; ``follow`` expands a symlink in the final position too.

    A missing final component is not an error here (the caller may be about to create it);
    a missing or non-directory intermediate component is ENOENT or ENOTDIR.
    """
    if not path:
        raise WasiError(Errno.NOENT, "empty path")
    if path.startswith("/"):
        raise WasiError(Errno.NOTCAPABLE, "absolute paths are not allowed")
    trailing = _names_a_directory(path)
    pending = deque(_components(path))
    stack: list[int] = [base_fd]  # stack[0] is borrowed, the rest are ours
    expansions = 0
    budget = _Budget()

    def result(name: str) -> Resolved:
        return Resolved(stack[-1], name, trailing, stack[1:])

    try:
        while pending:
            comp = pending.popleft()
            budget.step()
            last = not pending
            if comp == "..":
                if len(stack) == 1:
                    raise WasiError(Errno.NOTCAPABLE, "path climbs out of its directory")
                os.close(stack.pop())
                continue
            if comp == ".":
                if last:  # "a/." names "." inside a: rmdir gives EINVAL, mkdir EEXIST, as POSIX says
                    return result(".")
                continue
            if last and not follow:
                return result(comp)
            try:
                st = os.stat(comp, dir_fd=stack[-1], follow_symlinks=False)
            except FileNotFoundError:
                if last:
                    return result(comp)
                raise
            if stat.S_ISLNK(st.st_mode):
                expansions += 1
                if expansions > MAX_SYMLINKS:
                    raise WasiError(Errno.LOOP, "too many levels of symbolic links")
                target = os.readlink(comp, dir_fd=stack[-1])
                if not target:
                    raise WasiError(Errno.NOENT, "empty symbolic link")
                if target.startswith("/"):
                    raise WasiError(Errno.NOTCAPABLE, "symbolic link to an absolute path")
                if last and _names_a_directory(target):
                    trailing = True
                pending.extendleft(reversed(_components(target)))
                continue
            if last:
                return result(comp)
            if not stat.S_ISDIR(st.st_mode):
                raise WasiError(Errno.NOTDIR, f"{comp!r} is not a directory")
            stack.append(os.open(comp, _DIR_FLAGS, dir_fd=stack[-1]))
        return result(".")
    except BaseException:
        for fd in stack[1:]:
            os.close(fd)
        raise


def check_link_target(dir_fd: int, target: str, root: tuple[int, int]) -> None:
    """ENOTCAPABLE if a symbolic link in the directory ``dir_fd`` pointing at ``target`` would lead
    above the directory whose (st_dev, st_ino) is ``root``, when the kernel follows it.

    The target is followed as the kernel would, from the link's own directory: ``..`` moves to the
    real parent (after a symlinked directory too), symbolic links on the way are expanded, and each
    step up checks whether it starts from ``root``. What does not exist yet, or is not a directory,
    is taken by name (``missing/..`` is where it started): that is conservative, since the kernel
    could not follow it at all; so is a target that expands past MAX_PATH_COMPONENTS (ELOOP). A
    target caught in a loop of links (more than MAX_SYMLINKS) is judged by its own names alone, links
    taken as plain names. The check sees the tree as it is now; the walk in ``resolve`` never follows
    a link out of the sandbox whatever happens to the tree later.
    """
    if target.startswith("/"):
        raise WasiError(Errno.NOTCAPABLE, "symbolic links to absolute paths are not allowed")
    for lexical in (False, True):
        walk = _LinkWalk(dir_fd, root, lexical=lexical)
        try:
            walk.run(target)
            return
        except _Unfollowable:
            continue  # a loop: judge the target by its names alone, as for one that does not exist yet
        finally:
            walk.close()


class _Unfollowable(Exception):
    """The target goes through more than MAX_SYMLINKS links: no lookup can follow it to its end."""


class _LinkWalk:
    """The state of ``check_link_target``: the real directory reached (``fd``), and how many names
    below it the target goes through that are not real directories (``virtual``)."""

    def __init__(self, dir_fd: int, root: tuple[int, int], *, lexical: bool) -> None:
        self.lexical = lexical  # take every name as a plain name: symbolic links are not expanded
        self.fd = dir_fd
        self.owned = False  # whether self.fd is ours to close
        self.root = root
        self.virtual = 0
        self.expansions = 0
        self.budget = _Budget()

    def close(self) -> None:
        if self.owned:
            os.close(self.fd)
            self.owned = False

    def _move(self, fd: int) -> None:
        self.close()
        self.fd, self.owned = fd, True

    def run(self, target: str) -> None:
        pending = deque(_components(target))
        while pending:
            comp = pending.popleft()
            self.budget.step()
            if comp == ".":
                continue
            if comp == "..":
                self._up()
            elif self.virtual:
                self.virtual += 1
            else:
                pending.extendleft(reversed(self._down(comp)))

    def _up(self) -> None:
        if self.virtual:
            self.virtual -= 1
            return
        here = os.fstat(self.fd)
        if (here.st_dev, here.st_ino) == self.root:
            raise WasiError(Errno.NOTCAPABLE, "the symbolic link would lead out of its preopened directory")
        parent = os.open("..", _DIR_FLAGS, dir_fd=self.fd)
        above = os.fstat(parent)
        self._move(parent)
        if (above.st_dev, above.st_ino) == (here.st_dev, here.st_ino):  # the host's "/": root was never met
            raise WasiError(Errno.NOTCAPABLE, "the symbolic link's directory is not inside its preopen")

    def _down(self, comp: str) -> list[str]:
        """Enter ``comp``; returns the components a symbolic link there expands into."""
        if self.lexical:
            self.virtual = 1
            return []
        try:
            st = os.stat(comp, dir_fd=self.fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            self.virtual = 1
            return []
        if stat.S_ISLNK(st.st_mode):
            self.expansions += 1
            if self.expansions > MAX_SYMLINKS:
                raise _Unfollowable
            inner = os.readlink(comp, dir_fd=self.fd)
            if inner.startswith("/"):
                raise WasiError(Errno.NOTCAPABLE, "the symbolic link would lead through an absolute link")
            return _components(inner)
        if stat.S_ISDIR(st.st_mode):
            self._move(os.open(comp, _DIR_FLAGS, dir_fd=self.fd))
        else:
            self.virtual = 1
        return []
