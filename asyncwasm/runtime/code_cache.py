"""A persistent code cache: a big module's decoded, validated description and the code objects of its
functions, kept on disk so the next process starts without decoding, validating or translating again.

What is kept, per module (one directory named by the key):

- ``module``: the decoded module (``binary.module.Module``), which validated, so a hit skips decoding and
  validation. Function bodies are marshalled (three times faster to load than pickled), the rest pickled.
- ``f<index>``: one translated function (its marshalled code object, line table and float constants),
  written as soon as the function is translated, so the cache grows as a lazily translated guest runs
  and ``asyncwasm compile`` can fill it ahead of time.

The key is the sha256 of the module's bytes, the feature set it was validated under, the translator's
version (a digest of the engine's own source, so any change to the decoder, validator, translator or
runtime starts a new cache) and ``sys.implementation.cache_tag`` (code objects belong to one CPython version).

Several processes may share a cache: every file is written under a temporary name and renamed into place
(atomic on POSIX), so a reader sees a whole file or none; two writers of one function write the same bytes.
The cache is bounded (``max_bytes``, default 1 GiB): when a new module is added, the least recently used
modules (by the time their directory was last opened) are removed until the cache fits.

Nothing read back is trusted blindly. Every file starts with a magic number and the sha256 of its payload:
a truncated, corrupt or foreign file is ignored, removed and rebuilt. Code objects run with the host's
rights, so the cache directory must belong to the current user and be writable by nobody else (as
``~/.cache`` is); otherwise the cache is not used at all, with a warning. Failing to write (a full disk,
a read-only directory) never fails the program: the cache is a speed-up, never a requirement.

Only modules big enough to be translated lazily (``compiler.codegen.LAZY_THRESHOLD``) are cached: a small
module compiles in milliseconds, faster than reading it back.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import pickle
import shutil
import stat
import sys
import threading
import time
import warnings
from pathlib import Path
from types import CodeType
from typing import Any

from ..binary.module import Code, Instr, Module
from ..compiler.codegen import Translated
from ..features import Features

DEFAULT_MAX_BYTES = 1 << 30
MIN_MODULE_BYTES = 4096  # a smaller module cannot hold LAZY_THRESHOLD instructions: not worth a look
ENV_DIR = "ASYNCWASM_CACHE_DIR"
ENV_OFF = "ASYNCWASM_NO_CACHE"  # any non-empty value but "0" turns the default cache off
_MAGIC = b"AWCACHE1"
_DIGEST = 32
# The engine's source decides what a cache entry holds and what cached code may assume of the runtime
# (the helpers it calls, the type ids it compares): all of it is hashed, except the applications on top.
_UNVERSIONED = ("cli", "serve")

_version: str | None = None


def translator_version() -> str:
    """A digest of the engine's source: any edit of the engine starts a new cache."""
    global _version
    if _version is None:
        root = Path(__file__).resolve().parent.parent
        h = hashlib.sha256()
        for f in sorted(root.rglob("*.py")):
            rel = f.relative_to(root)
            if rel.parts[0] in _UNVERSIONED:
                continue
            h.update(rel.as_posix().encode())
            h.update(f.read_bytes())
        _version = h.hexdigest()[:16]
    return _version


def default_cache_dir() -> Path:
    """``$ASYNCWASM_CACHE_DIR``, else the user cache directory (``~/.cache/asyncwasm`` on Linux)."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("asyncwasm", appauthor=False))


def _seal(payload: bytes) -> bytes:
    return _MAGIC + hashlib.sha256(payload).digest() + payload


def _unseal(data: bytes) -> bytes | None:
    """The payload of a sealed file, or None if it is not one of ours or not whole."""
    head = len(_MAGIC) + _DIGEST
    if len(data) < head or not data.startswith(_MAGIC):
        return None
    payload = data[head:]
    if hashlib.sha256(payload).digest() != data[len(_MAGIC) : head]:
        return None
    return payload


class CodeCache:
    """One cache directory. Create it once and pass it to every ``CompiledModule(cache=...)``."""

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        """``path`` defaults to ``default_cache_dir()``; ``max_bytes`` bounds the whole cache."""
        self.path = Path(path) if path is not None else default_cache_dir()
        self.max_bytes = max_bytes
        self._usable: bool | None = None
        self._lock = threading.Lock()

    def usable(self) -> bool:
        """Whether the directory exists (it is created if not), is ours, and is writable by us alone."""
        if self._usable is None:
            self._usable = self._check()
        return self._usable

    def _check(self) -> bool:
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            st = self.path.stat()
        except OSError as e:
            warnings.warn(f"asyncwasm code cache disabled: cannot create {self.path}: {e}", stacklevel=3)
            return False
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            warnings.warn(f"asyncwasm code cache disabled: {self.path} belongs to another user", stacklevel=3)
            return False
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            warnings.warn(
                f"asyncwasm code cache disabled: {self.path} is writable by other users", stacklevel=3
            )
            return False
        return True

    def key(self, wasm: bytes, features: Features) -> str:
        """The name of the entry of ``wasm`` compiled under ``features`` by this engine."""
        h = hashlib.sha256(wasm)
        h.update(f"\0{features}\0{translator_version()}\0{sys.implementation.cache_tag}".encode())
        return h.hexdigest()

    def entry(self, key: str) -> CacheEntry | None:
        """The entry named ``key`` (possibly still empty), or None when the cache is not usable."""
        if not self.usable():
            return None
        return CacheEntry(self, self.path / key)

    def size(self) -> int:
        """The bytes the cache holds now."""
        total = 0
        for entry in self._entries():
            total += _dir_size(entry)
        return total

    def _entries(self) -> list[Path]:
        try:
            return [p for p in self.path.iterdir() if p.is_dir() and len(p.name) == 64]
        except OSError:
            return []

    def evict(self, keep: Path | None = None) -> None:
        """Remove the least recently used entries until the cache holds at most ``max_bytes``."""
        with self._lock:
            sized = []
            for entry in self._entries():
                try:
                    sized.append((entry.stat().st_mtime, _dir_size(entry), entry))
                except OSError:
                    continue
            total = sum(size for _t, size, _e in sized)
            for _mtime, size, entry in sorted(sized, key=lambda s: s[0]):
                if total <= self.max_bytes:
                    break
                if entry == keep:
                    continue
                shutil.rmtree(entry, ignore_errors=True)
                total -= size

    def clear(self) -> None:
        """Remove every entry."""
        for entry in self._entries():
            shutil.rmtree(entry, ignore_errors=True)


def _dir_size(path: Path) -> int:
    total = 0
    try:
        with os.scandir(path) as it:
            for f in it:
                try:
                    total += f.stat(follow_symlinks=False).st_size
                except OSError:
                    pass
    except OSError:
        pass
    return total


class CacheEntry:
    """The cached state of one module: its description and the functions translated so far."""

    def __init__(self, cache: CodeCache, path: Path) -> None:
        self.cache = cache
        self.path = path
        self._known: set[int] = set()  # functions known to be on disk (written or read by this process)
        # what this process got from the entry and gave it (for tests, benchmarks and the curious)
        self.module_hit = False
        self.functions_loaded = 0
        self.functions_stored = 0

    # -- reading --------------------------------------------------------------------------------------

    def _read(self, name: str) -> bytes | None:
        file = self.path / name
        try:
            data = file.read_bytes()
        except OSError:
            return None
        payload = _unseal(data)
        if payload is None:  # corrupt or foreign: drop it, it is rebuilt on the next write
            _unlink(file)
        return payload

    def load_module(self) -> Module | None:
        """The cached module description, or None (missing or unreadable). Marks the entry as used.

        Function bodies stay marshalled until something reads one (``_KeptBody``): with a warm cache
        a guest runs on cached code objects, and its bodies are never needed."""
        payload = self._read("module")
        if payload is None:
            return None
        try:
            head_len = int.from_bytes(payload[:8], "little")
            module: Module = pickle.loads(payload[8 : 8 + head_len])
            blobs, counts = marshal.loads(payload[8 + head_len :])
            if not isinstance(module, Module) or not len(blobs) == len(counts) == len(module.codes):
                raise ValueError("entry does not match its module")
            module.codes = [
                _KeptBody(c.locals, c.offset, blob, n)
                for c, blob, n in zip(module.codes, blobs, counts, strict=True)
            ]
        except Exception:  # noqa: BLE001 - anything unreadable is a miss, and the file goes
            _unlink(self.path / "module")
            return None
        _touch(self.path)
        self.module_hit = True
        return module

    def load_function(self, index: int) -> Translated | None:
        """A translated function, or None if it was not cached (or its file was damaged)."""
        payload = self._read(f"f{index}")
        if payload is None:
            return None
        try:
            code, line_table, consts, tail = pickle.loads(payload)  # tail: compiler/tailcall.py's body
            if not isinstance(code, bytes) or not isinstance(marshal.loads(code), CodeType):
                raise ValueError("not a code object")
        except Exception:  # noqa: BLE001
            _unlink(self.path / f"f{index}")
            return None
        self._known.add(index)
        self.functions_loaded += 1
        return Translated(index, code, line_table, consts, tail)

    # -- writing --------------------------------------------------------------------------------------

    def _write(self, name: str, payload: bytes) -> None:
        try:
            self.path.mkdir(exist_ok=True, mode=0o700)
            tmp = self.path / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
            tmp.write_bytes(_seal(payload))
            os.replace(tmp, self.path / name)
        except OSError:
            pass  # a full or read-only disk costs speed, never correctness

    def store_module(self, module: Module) -> None:
        """Keep a freshly decoded and validated module, then bring the cache back within its size."""
        bodies = [code.body for code in module.codes]
        try:
            for code in module.codes:
                code.body = []
            head = pickle.dumps(module, protocol=pickle.HIGHEST_PROTOCOL)
        finally:
            for code, body in zip(module.codes, bodies, strict=True):
                code.body = body
        blobs = [marshal.dumps(body) for body in bodies]
        counts = [len(body) for body in bodies]
        self._write("module", len(head).to_bytes(8, "little") + head + marshal.dumps((blobs, counts)))
        self.cache.evict(keep=self.path)

    def store_function(self, done: Translated) -> None:
        """Keep one translated function (once per process; other processes may have written it too)."""
        if done.index in self._known:
            return
        self._known.add(done.index)
        self.functions_stored += 1
        self._write(
            f"f{done.index}",
            pickle.dumps(
                (done.code, done.line_table, done.consts, done.tail), protocol=pickle.HIGHEST_PROTOCOL
            ),
        )

    def cached_functions(self) -> set[int]:
        """The indices of the functions on disk now."""
        try:
            return {
                int(p.name[1:]) for p in self.path.iterdir() if p.name[:1] == "f" and p.name[1:].isdigit()
            }
        except OSError:
            return set()


class _KeptBody(Code):
    """A function's code whose body stays marshalled until it is first read."""

    def __init__(self, locals: tuple[str, ...], offset: int, blob: bytes, count: int) -> None:
        self.locals = locals
        self.offset = offset
        self._blob = blob
        self._body: list[Instr] | None = None
        self._count = count

    @property  # type: ignore[override]
    def body(self) -> list[Instr]:
        if self._body is None:
            self._body = marshal.loads(self._blob)
            self._blob = b""
        return self._body

    @body.setter
    def body(self, value: list[Instr]) -> None:
        self._body = value

    def instruction_count(self) -> int:
        return self._count if self._body is None else len(self._body)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _touch(path: Path) -> None:
    now = time.time()
    try:
        os.utime(path, (now, now))
    except OSError:
        pass


def resolve(cache: Any) -> CodeCache | None:
    """What ``CompiledModule(cache=...)`` means: ``True`` the default cache (unless
    ``$ASYNCWASM_NO_CACHE`` is set), ``False``/``None`` none, a path that directory, or a ``CodeCache``."""
    if cache is None or cache is False:
        return None
    if isinstance(cache, CodeCache):
        return cache
    if cache is True:
        if os.environ.get(ENV_OFF, "") not in ("", "0"):
            return None
        return _default()
    return CodeCache(cache)


_default_cache: CodeCache | None = None


def _default() -> CodeCache:
    global _default_cache
    path = default_cache_dir()
    if _default_cache is None or _default_cache.path != path:
        _default_cache = CodeCache(path)
    return _default_cache
