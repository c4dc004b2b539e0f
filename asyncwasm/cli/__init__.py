"""The ``asyncwasm`` command line: one group, one module per command, one options module they share.

``run`` (cli/run.py), ``wast`` (cli/wast.py), ``serve-stdin`` (cli/serve.py), ``compile``
(cli/compile.py) and ``snapshot`` (cli/snapshot.py) each import
``cli/options.py`` and ``cli/report.py``; nothing here is imported back by them.
"""

from __future__ import annotations

import click

from ..errors import MalformedModule
from .compile import compile_command
from .report import fail
from .run import run
from .serve import serve_stdin
from .snapshot import snapshot
from .wast import wast


class _RunByDefault(click.Group):
    """``asyncwasm app.wasm ARGS`` (or ``asyncwasm -W fuel=N app.wasm``) means ``asyncwasm run ...``,
    as with wasmtime: anything that is neither a command nor the group's own option starts ``run``."""

    _own = frozenset({"-h", "--help", "--version"})

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in self._own:
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_RunByDefault, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="asyncwasm")
def main() -> None:
    """Run WebAssembly modules on an async event loop.

    With no command, `asyncwasm [OPTIONS] MODULE [ARGS]...` is `asyncwasm run` (as wasmtime's
    `wasmtime app.wasm` is `wasmtime run app.wasm`). See `asyncwasm COMMAND --help` for each.

    \b
    Examples:
      asyncwasm hello.wasm                          run a WASI program
      asyncwasm --dir data::/data app.wasm x        grant a directory, pass an argument
      asyncwasm -W fuel=10000000,timeout=5s app.wasm   limits, as wasmtime spells them
      asyncwasm run --invoke fib math.wasm 25       call an export and print its results
      asyncwasm wast ../shared/spec/json/*/*.json   run spec test scripts
      asyncwasm serve-stdin --http app.wasm         serve a CGI program over HTTP
      asyncwasm compile python.wasm                 translate a big module into the code cache
      asyncwasm snapshot -o app.init.wasm app.wasm  pre-initialise a module (as Wizer does)
    """


main.add_command(run)
main.add_command(wast)
main.add_command(serve_stdin)
main.add_command(compile_command)
main.add_command(snapshot)


def main_guard() -> None:  # pragma: no cover - for `python -m asyncwasm`
    """``main()``, with a malformed module that escaped a command reported in one line."""
    try:
        main()
    except MalformedModule as exc:
        fail(str(exc))


__all__ = ["main", "main_guard", "run", "serve_stdin", "snapshot", "wast"]
