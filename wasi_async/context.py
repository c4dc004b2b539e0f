"""WasiContext: one instance's WASI state (its capability table, arguments, environment, clock)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

import anyio.abc
from anyio.streams.stapled import MultiListener

from asyncwasm import FuncType

from .config import ProcessStdio, StdinSource, StdoutSink, SystemClock, WasiConfig
from .fdtable import DirEntry, FdTable, ListenerEntry, StreamEntry, identity
from .flags import (
    DIR_RIGHTS,
    DIR_WRITE_RIGHTS,
    FILE_RIGHTS,
    FILE_WRITE_RIGHTS,
    LISTENER_RIGHTS,
    STDIN_RIGHTS,
    STDOUT_RIGHTS,
    Filetype,
    Rights,
)
from .registry import MODULE, build_functions
from .sock import socket_entry
from .streams import (
    BytesInput,
    DiscardOutput,
    FdInput,
    FdOutput,
    InputStream,
    OutputStream,
    StreamInput,
    StreamOutput,
)


def _encode(text: str, what: str) -> bytes:
    raw = text.encode("utf-8", "surrogateescape")
    if b"\0" in raw:
        raise ValueError(f"{what} contains a NUL byte: {text!r}")
    return raw


def _input(source: StdinSource) -> InputStream:
    if source is None:
        return BytesInput(b"")
    if isinstance(source, bytes | bytearray | memoryview):
        return BytesInput(source)
    if isinstance(source, ProcessStdio):
        return FdInput(source.fd)
    if isinstance(source, anyio.abc.ByteReceiveStream | anyio.abc.ObjectReceiveStream):
        return StreamInput(source)
    raise TypeError(f"stdin must be bytes, an anyio receive stream, ProcessStdio or None, not {source!r}")


def _output(sink: StdoutSink) -> OutputStream:
    if sink is None:
        return DiscardOutput()
    if isinstance(sink, ProcessStdio):
        return FdOutput(sink.fd)
    if isinstance(sink, anyio.abc.ByteSendStream | anyio.abc.ObjectSendStream):
        return StreamOutput(sink)
    raise TypeError(f"stdout/stderr must be an anyio send stream, ProcessStdio or None, not {sink!r}")


def _stdio_entry(rights: int, kind: Filetype, **streams: Any) -> StreamEntry:
    if kind == Filetype.SOCKET_STREAM:  # stdio over a socket may also be shut down
        rights |= Rights.SOCK_SHUTDOWN
    return StreamEntry(rights, rights, kind=kind, **streams)


class WasiContext:
    """The WASI side of one instance: build it from a ``WasiConfig``, add it to a linker, close it.

    ``functions`` maps each wasi_snapshot_preview1 name to ``(FuncType, fn)``, where
    ``fn(caller, *args)`` is what ``add_to_linker`` registers with ``access_caller=True``.
    """

    def __init__(self, config: WasiConfig | None = None) -> None:
        config = config if config is not None else WasiConfig()
        self.config = config
        self.args = [_encode(a, "argument") for a in config.args]
        for key in config.env:
            if "=" in key:
                raise ValueError(f"environment variable name contains '=': {key!r}")
        self.environ = [_encode(f"{k}={v}", "environment variable") for k, v in config.env.items()]
        self.clock: Any = config.clock if config.clock is not None else SystemClock()
        self.random: Callable[[int], bytes] = config.random if config.random is not None else os.urandom
        self.exit_code: int | None = None
        self._functions: dict[str, tuple[FuncType, Callable[..., Any]]] | None = None
        if config.max_open_files is not None and config.max_open_files < 0:
            raise ValueError(f"max_open_files must be >= 0 or None, not {config.max_open_files!r}")
        self.fds = FdTable(config.max_open_files)
        try:
            self._grant_stdio()
            self._grant_preopens()
            self._grant_sockets()
        except BaseException:
            self.close()
            raise

    def _grant_stdio(self) -> None:
        cfg = self.config
        stdin = _input(cfg.stdin)
        self.fds.place(0, _stdio_entry(STDIN_RIGHTS, stdin.filetype, input=stdin))
        for fd, sink in ((1, cfg.stdout), (2, cfg.stderr)):
            out = _output(sink)
            self.fds.place(fd, _stdio_entry(STDOUT_RIGHTS, out.filetype, output=out))

    def _grant_preopens(self) -> None:
        for preopen in self.config.preopens:
            host_fd = os.open(os.fspath(preopen.host), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            base, inheriting = DIR_RIGHTS, DIR_RIGHTS | FILE_RIGHTS
            if preopen.readonly:
                base &= ~DIR_WRITE_RIGHTS
                inheriting &= ~(DIR_WRITE_RIGHTS | FILE_WRITE_RIGHTS)
            self.fds.add(
                DirEntry(base, inheriting, host_fd=host_fd, preopen=preopen.guest, root=identity(host_fd))
            )

    def _grant_sockets(self) -> None:
        for sock in self.config.sockets:
            if isinstance(sock, MultiListener):  # anyio.create_tcp_listener's: one fd per address
                for listener in sock.listeners:
                    self.fds.add(ListenerEntry(LISTENER_RIGHTS, 0, listener=listener))
            elif isinstance(sock, anyio.abc.Listener):
                self.fds.add(ListenerEntry(LISTENER_RIGHTS, 0, listener=sock))
            else:
                self.fds.add(socket_entry(sock, owned=False))

    @property
    def functions(self) -> dict[str, tuple[FuncType, Callable[..., Any]]]:
        """Every WASI function bound to this context: name -> (core function type, host function)."""
        if self._functions is None:
            self._functions = build_functions(self)
        return self._functions

    def add_to_linker(self, linker: Any, module: str = MODULE, names: Iterable[str] | None = None) -> None:
        """Define the WASI functions on an asyncwasm ``Linker``: every one, or only those in ``names``
        (the ones a module imports: binding and defining cost per function, and an instance made per
        request or connection should pay only for the few its module uses)."""
        functions = self.functions if names is None else build_functions(self, names)
        for name, (ftype, fn) in functions.items():
            linker.define_func(module, name, ftype, fn, access_caller=True)

    def close(self) -> None:
        """Close every host fd this context opened (files, directories, devices) and every socket the
        guest accepted: those are shut down at once and released by the running event loop (``aclose``
        waits for that)."""
        for entry in self.fds.clear():
            entry.close()

    async def aclose(self) -> None:
        """Like ``close``, waiting until the sockets the guest accepted are released."""
        for entry in self.fds.clear():
            await entry.aclose()

    def __enter__(self) -> WasiContext:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> WasiContext:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
