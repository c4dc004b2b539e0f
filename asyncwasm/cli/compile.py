"""``asyncwasm compile``: translate every function of a module ahead of time into the code cache, as
``wasmtime compile`` does, so that the first run of a big guest starts as fast as a warm one."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from ..errors import WasmError
from ..features import Features
from ..runtime.code_cache import CodeCache, default_cache_dir
from ..runtime.instance import CompiledModule
from .options import FeatureSet
from .report import fail


@click.command("compile")
@click.argument("module", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="The code cache to fill (default: $ASYNCWASM_CACHE_DIR, else the user cache directory).",
)
@click.option(
    "--features",
    type=FeatureSet(),
    default="3.0",
    show_default=True,
    help="The Wasm feature set the module is validated under (as `run -W` would choose it).",
)
@click.option(
    "--progress/--no-progress", default=None, help="Show a progress bar (default: when stderr is a terminal)."
)
def compile_command(module: str, cache_dir: str | None, features: Features, progress: bool | None) -> None:
    """Translate every function of MODULE into the code cache, ahead of its first run.

    A big module (an interpreter: CPython, QuickJS, MicroPython) otherwise translates each function
    on its first call, during the run; `asyncwasm run` of the same module (with the same feature set)
    then finds everything in the cache. Small modules are not cached: they compile faster than
    they read back.

    \b
    Examples:
      asyncwasm compile python.wasm
      asyncwasm compile --cache-dir /var/cache/asyncwasm app.wasm
    """
    cache = CodeCache(cache_dir) if cache_dir else CodeCache(default_cache_dir())
    t0 = time.perf_counter()
    try:
        cm = CompiledModule.from_file(module, features=features, cache=cache)
    except WasmError as exc:
        fail(f"{module}: {exc}")
    if cm.cache_entry is None:
        if not cache.usable():
            fail(f"the code cache at {cache.path} cannot be used (see the warning above)")
        click.echo(f"{module}: not cached: a module this small compiles faster than it reads back", err=True)
        return
    show = sys.stderr.isatty() if progress is None else progress
    total = len(cm.module.codes)
    if show:
        with click.progressbar(
            length=total, label=f"translating {Path(module).name}", file=sys.stderr
        ) as bar:
            done = [0]

            def step(n: int, _total: int) -> None:
                bar.update(n - done[0])
                done[0] = n

            made = cm.precompile(step)
    else:
        made = cm.precompile()
    click.echo(
        f"{module}: {made} of {total} functions translated ({total - made} were cached) into "
        f"{cm.cache_entry.path} in {time.perf_counter() - t0:.1f} s",
        err=True,
    )
