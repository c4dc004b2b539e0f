"""The ``asyncwasm`` command line: one group, one module per command, one options module they share.

``run`` (cli/run.py), ``wast`` (cli/wast.py) and ``serve-stdin`` (cli/serve.py) each import
``cli/options.py`` and ``cli/report.py``; nothing here is imported back by them.
"""

from __future__ import annotations

import click

from ..errors import MalformedModule
from .report import fail
from .run import run
from .serve import serve_stdin
from .wast import wast


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="asyncwasm")
def main() -> None:
    """Run WebAssembly modules on an async event loop.

    \b
    Examples:
      asyncwasm run hello.wasm                      run a WASI program
      asyncwasm run --dir data::/data app.wasm x    grant a directory, pass an argument
      asyncwasm run --invoke fib math.wasm 25       call an export and print its results
      asyncwasm wast ../shared/spec/json/*/*.json   run spec test scripts
      asyncwasm serve-stdin --http app.wasm         serve a CGI program over HTTP
    """


main.add_command(run)
main.add_command(wast)
main.add_command(serve_stdin)


def main_guard() -> None:  # pragma: no cover - for `python -m asyncwasm`
    """``main()``, with a malformed module that escaped a command reported in one line."""
    try:
        main()
    except MalformedModule as exc:
        fail(str(exc))


__all__ = ["main", "main_guard", "run", "serve_stdin", "wast"]
