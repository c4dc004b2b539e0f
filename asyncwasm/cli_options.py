"""Command-line option parsing shared by ``asyncwasm run`` and ``asyncwasm serve-stdin``.

``parse_duration`` and ``parse_size`` are the ones in ``asyncwasm.cli`` (imported when called:
``cli`` registers the server at import time, so importing it from here at module level would
make ``import asyncwasm.serve`` register a half-built command). ``--dir`` and ``--env`` follow
``asyncwasm run``: ``HOST[::GUEST]`` and ``NAME[=VALUE]``, a bare NAME passing the host's value.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import click


def parse_duration(text: str) -> float:
    """``500ms``, ``2s``, ``1.5m``, ``1h`` or plain seconds."""
    from .cli import parse_duration as parse

    return parse(text)


def parse_size(text: str) -> int:
    """``64MiB``, ``1G``, ``65536`` (bytes) -> bytes."""
    from .cli import parse_size as parse

    return parse(text)


def parse_dirs(dirs: Iterable[str]) -> list[tuple[str, str]]:
    """``--dir HOST[::GUEST]`` values as (host, guest) pairs; the host must be a directory."""
    out = []
    for d in dirs:
        host, _, guest = d.partition("::")
        if not os.path.isdir(host):
            raise click.BadParameter(f"{host} is not a directory", param_hint=f"--dir {d}")
        out.append((host, guest or host))
    return out


def parse_envs(envs: Iterable[str], environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """``--env NAME=VALUE`` sets a variable; ``--env NAME`` passes the host's value, if it has one."""
    env: dict[str, str] = {}
    for e in envs:
        name, eq, val = e.partition("=")
        if not name:
            raise click.BadParameter(f"{e!r} has no variable name", param_hint="--env")
        if eq:
            env[name] = val
        elif name in environ:
            env[name] = environ[name]
    return env


def pages_for(max_memory: str | None) -> int | None:
    """``--max-memory SIZE`` as a number of 64 KiB Wasm pages (rounded down), or None."""
    if not max_memory:
        return None
    return parse_size(max_memory) // 65536
