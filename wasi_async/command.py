"""Run a WASI command the way ``anyio.run_process`` runs a program: instantiate it with its arguments,
environment, directories and stdio, call ``_start``, and return its exit code and output.

    result = await run_command(module, ["app.wasm", "--verbose"], stdin=b"input")
    print(result.exit_code, result.stdout)

stdout and stderr are captured by default (``CAPTURE``), the first ``max_output`` bytes of each (16 MiB
by default: what comes after is dropped, the guest's writes still succeed, and ``stdout_truncated`` /
``stderr_truncated`` say so); pass an anyio send stream to have the guest's writes streamed into it as
they happen, ``INHERIT`` for the host process's own, or ``DISCARD`` (None means the same as ``DISCARD``,
as it does in ``WasiConfig``: no output is kept). A trap does not raise: it is returned in
``result.trap`` (call ``result.check()`` to raise it); a cancel scope around the call cancels the
guest as usual; the store's ``timeout`` is the one wall-clock limit (an ``Interrupted`` trap).

This is the one way a WASI command runs: ``asyncwasm run``, every ``serve-stdin`` connection or
request and the ASGI adapter all call ``run_command``; ``asyncwasm run --invoke`` uses
``wasi_instance``, the step beneath it, to call another export.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

from asyncwasm import (
    ExportedFunc,
    Instance,
    Linker,
    Module,
    RunStats,
    Snapshot,
    Store,
    Trap,
    WasmError,
    cpu_turn,
)

from .config import Preopen, ProcessStdio, SocketGrant, StdinSource, StdoutSink, WasiConfig
from .context import WasiContext
from .limits import DEFAULT_MAX_OPEN_FILES, DEFAULT_MAX_OUTPUT
from .proc import WasiExit
from .registry import MODULE
from .streams import CollectStream


class _Mode:
    """A named choice for where stdin, stdout or stderr goes."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


CAPTURE = _Mode("CAPTURE")
"""Keep what the guest writes; it is returned as bytes in the result (the default)."""
INHERIT = _Mode("INHERIT")
"""Use the host process's own stdin, stdout or stderr (like ``asyncwasm run``)."""
DISCARD = _Mode("DISCARD")
"""Throw the guest's output away (for stdin: an empty input)."""

ModuleSource = Module | bytes | bytearray | str | os.PathLike[str]
Output = _Mode | anyio.abc.ByteSendStream | anyio.abc.ObjectSendStream[bytes] | ProcessStdio | None
Input = (
    _Mode
    | bytes
    | bytearray
    | memoryview
    | anyio.abc.ByteReceiveStream
    | anyio.abc.ObjectReceiveStream[bytes]
    | ProcessStdio
    | None
)


class NotACommand(WasmError):
    """The module exports no ``_start`` function, so it is not a WASI command (a reactor, perhaps)."""


class CommandFailed(Exception):
    """``CommandResult.check()`` on a command that exited with a non-zero status."""

    def __init__(self, result: CommandResult) -> None:
        super().__init__(f"the command exited with status {result.exit_code}")
        self.result = result


@dataclass
class CommandResult:
    """How a WASI command ended, what it wrote, and what it cost.

    ``exit_code`` is its ``proc_exit`` status (0 when ``_start`` returns), or None when it trapped.
    ``stdout``/``stderr`` hold the output when captured, else None; ``stdout_truncated`` /
    ``stderr_truncated`` are True when the guest wrote more than ``max_output`` bytes there and only
    the first ``max_output`` were kept. ``stats`` is what the scheduler measured (slices, seconds run
    and waiting); ``fuel_used`` is the fuel the run consumed.
    """

    exit_code: int | None
    stdout: bytes | None = None
    stderr: bytes | None = None
    trap: Trap | None = None
    stats: RunStats = field(default_factory=RunStats)
    fuel_used: int = 0
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    @property
    def ok(self) -> bool:
        """True when the command exited with status 0."""
        return self.exit_code == 0

    def check(self) -> CommandResult:
        """Raise the trap, or ``CommandFailed`` for a non-zero exit status; else return self."""
        if self.trap is not None:
            raise self.trap
        if self.exit_code != 0:
            raise CommandFailed(self)
        return self


class _Overlay(Linker):
    """A linker that adds definitions on top of another without changing it."""

    def __init__(self, base: Linker) -> None:
        super().__init__()
        self._base = base

    def get(self, module: str, name: str) -> Any:
        item = super().get(module, name)
        return item if item is not None else self._base.get(module, name)


def _module(source: ModuleSource) -> Module:
    if isinstance(source, Module):
        return source
    if isinstance(source, bytes | bytearray):
        return Module(bytes(source))
    return Module.from_file(os.fspath(source))


def _preopen(p: Preopen | tuple[str | os.PathLike[str], str]) -> Preopen:
    if isinstance(p, Preopen):
        return p
    host, guest = p
    return Preopen(host=host, guest=guest)


def _stdin(source: Input) -> StdinSource:
    if source is INHERIT:
        return ProcessStdio(0)
    if source is DISCARD or source is None:
        return None
    if source is CAPTURE:
        raise ValueError("stdin cannot be CAPTURE: pass bytes, an anyio receive stream, INHERIT or None")
    return source  # type: ignore[return-value]


def _sink(target: Output, fd: int, limit: int | None) -> tuple[StdoutSink, CollectStream | None]:
    if target is CAPTURE:
        cap = CollectStream(limit)
        return cap, cap
    if target is INHERIT:
        return ProcessStdio(fd), None
    if target is DISCARD or target is None:
        return None, None
    return target, None  # type: ignore[return-value]


@asynccontextmanager
async def wasi_instance(
    module: Module,
    config: WasiConfig,
    *,
    store: Store | None = None,
    linker: Linker | None = None,
    snapshot: Snapshot | None = None,
) -> AsyncIterator[Instance]:
    """An instance of ``module`` with WASI as ``config`` describes it, for the length of the block.

    ``linker`` supplies further imports and is not modified; ``store`` defaults to a fresh ``Store()``.
    With ``snapshot`` (``instance.snapshot()`` of an instance of ``module``) the instance starts in
    that state instead of running its segments and start function (``Linker.instantiate``); its WASI
    context is its own, new one.
    The WASI context (its open descriptors, its streams) is closed when the block ends, whatever ends
    it. Raises ``OSError`` when a preopened directory cannot be opened and ``LinkError`` when an
    import is missing; a ``WasiExit`` or a trap from the start function passes through."""
    store = store if store is not None else Store()
    # The host side of the set-up takes a turn of the CPU token: thousands of commands started at once
    # then queue for it instead of all setting up before the event loop gets a tick.
    async with cpu_turn(RunStats(weight=store.weight)):
        ctx = WasiContext(config)
        try:
            overlay = _Overlay(linker if linker is not None else Linker())
            ctx.add_to_linker(overlay, names=[i.name for i in module.imports if i.module == MODULE])
        except BaseException:
            with anyio.CancelScope(shield=True):
                await ctx.aclose()
            raise
    try:
        yield await overlay.instantiate(module, store, snapshot=snapshot)
    finally:
        with anyio.CancelScope(shield=True):
            await ctx.aclose()


async def run_command(
    module: ModuleSource,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    preopens: Sequence[Preopen | tuple[str | os.PathLike[str], str]] = (),
    stdin: Input = None,
    stdout: Output = CAPTURE,
    stderr: Output = CAPTURE,
    store: Store | None = None,
    linker: Linker | None = None,
    max_output: int | None = DEFAULT_MAX_OUTPUT,
    max_open_files: int | None = DEFAULT_MAX_OPEN_FILES,
    sockets: Sequence[SocketGrant] = (),
    snapshot: Snapshot | None = None,
) -> CommandResult:
    """Instantiate ``module`` with WASI, call its ``_start``, and return how it ended.

    ``module``: a compiled ``asyncwasm.Module`` (compile once, run many times), or Wasm bytes or a
    file path (compiled on each call). ``args`` is the guest's whole argv, argv[0] included (default:
    the module's name). ``preopens``: ``Preopen``s or ``(host_dir, guest_path)`` pairs.
    ``stdin``: bytes, an anyio receive stream, ``INHERIT``, or None for an empty input.
    ``stdout``/``stderr``: ``CAPTURE`` (the default), an anyio send stream to stream into,
    ``INHERIT``, or ``DISCARD`` (None means ``DISCARD`` too, as everywhere in wasi_async).
    ``store`` carries the limits (fuel, timeout, memory, call depth) and the CPU weight; a fresh
    ``Store()`` by default. ``linker`` supplies extra imports (host functions, other instances);
    it is not modified.

    ``max_output``: the most bytes kept of each captured stream (16 MiB by default; None keeps
    everything). Past it the output is truncated, not an error: the guest's writes keep succeeding
    and are dropped, so a guest that writes forever holds no more than this, and the result's
    ``stdout_truncated``/``stderr_truncated`` are set. Streams passed in are never capped.
    ``max_open_files``: ``WasiConfig.max_open_files``, the descriptors the guest may open itself
    (1024 by default; one more is EMFILE). ``sockets``: ``WasiConfig.sockets``, preopened sockets
    (anyio listeners for ``sock_accept``, or connected streams), numbered after the preopens.
    ``snapshot``: start from this ``instance.snapshot()`` of an instance of ``module`` (one that ran
    an initialiser, say) instead of a fresh instantiation; ``_start`` is then called on it as usual.

    Traps, including an exhausted fuel limit and the store's timeout (``Interrupted``), end up in
    ``result.trap``; cancellation from outside propagates as usual, after the guest is stopped.
    Raises ``NotACommand`` (a ``WasmError``) when the module exports no ``_start``, ``LinkError``
    for a missing import, and ``OSError`` when a preopened directory cannot be opened.
    """
    compiled = _module(module)
    argv = list(args) if args else [compiled.name]
    out_sink, out_cap = _sink(stdout, 1, max_output)
    err_sink, err_cap = _sink(stderr, 2, max_output)
    config = WasiConfig(
        args=argv,
        env=dict(env or {}),
        preopens=[_preopen(p) for p in preopens],
        stdin=_stdin(stdin),
        stdout=out_sink,
        stderr=err_sink,
        max_open_files=max_open_files,
        sockets=list(sockets),
    )
    store = store if store is not None else Store()
    fuel_before = store.fuel_used
    stats = RunStats(weight=store.weight)
    exit_code: int | None = 0
    trap: Trap | None = None
    try:
        async with wasi_instance(compiled, config, store=store, linker=linker, snapshot=snapshot) as instance:
            stats = instance.stats
            if not isinstance(
                instance.exports.get("_start"), ExportedFunc
            ):  # (after linking: a missing import says more)
                raise NotACommand(f"{compiled.name} exports no _start function: it is not a WASI command")
            await instance.call("_start")
    except WasiExit as exc:
        exit_code = exc.code
    except Trap as exc:
        exit_code, trap = None, exc
    return CommandResult(
        exit_code=exit_code,
        stdout=bytes(out_cap.data) if out_cap is not None else None,
        stderr=bytes(err_cap.data) if err_cap is not None else None,
        trap=trap,
        stats=stats,
        fuel_used=store.fuel_used - fuel_before,
        stdout_truncated=out_cap is not None and out_cap.truncated,
        stderr_truncated=err_cap is not None and err_cap.truncated,
    )


__all__ = [
    "CAPTURE",
    "DISCARD",
    "INHERIT",
    "CommandFailed",
    "CommandResult",
    "NotACommand",
    "run_command",
    "wasi_instance",
]
