"""``asyncwasm wast``: run spec test scripts (``.wast`` text or JSON) and count what passes."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..features import Features
from ..wast import DEFAULT_KNOWN_FAILURES, ScriptRunner, failure_key, load_known_failures
from ..wast import Result as WastResult
from .options import FeatureSet


@click.command()
@click.argument("scripts", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--known-failures",
    type=click.Path(dir_okay=False),
    default=str(DEFAULT_KNOWN_FAILURES),
    show_default=True,
    help="File of `SUITE/NAME:LINE reason` lines that are expected to fail "
    "(e.g. `spec3/simd_lane:42 reason`; one file serves the JSON and .wast forms).",
)
@click.option("-v", "--verbose", is_flag=True, help="Print each script's counts as it runs.")
@click.option(
    "--features",
    type=FeatureSet(),
    default="3.0",
    show_default=True,
    help="The Wasm feature set the scripts run under: 2.0, 3.0, or a list such as 2.0,+simd "
    f"or 3.0,-gc. Names: {', '.join(Features.names())}.",
)
def wast(scripts: tuple[str, ...], known_failures: str, verbose: bool, features: Features) -> None:
    """Run spec test SCRIPTS: `.wast` text, or JSON from wasm-tools json-from-wast or wabt's wast2json.

    Prints every failure with its file and line, then `N passed, M failed, K skipped`. Text-format
    modules inside JSON scripts are read from their `.wat` files with asyncwasm's own text reader.
    Exits 0 only when every
    failure is listed in the known-failures file.

    The 2.0 and 3.0 suites disagree in a few places: run ../spec with `--features 2.0` and the 3.0
    suite with the default.

    \b
    Examples:
      asyncwasm wast --features 2.0 ../shared/spec/json/*/*.json
      asyncwasm wast -v ../shared/spec3/json/simd/*.json
    """
    known = load_known_failures(Path(known_failures))
    total = WastResult()
    keys: list[str] = []
    for s in scripts:
        try:
            r = ScriptRunner(Path(s), features).run()
        except (OSError, ValueError, KeyError) as exc:
            r = WastResult(failed=1, failures=[(f"{Path(s).name}:0", f"cannot read script: {exc}")])
        total.add(r)
        keys += [failure_key(Path(s), where) for where, _m in r.failures]
        if verbose:
            click.echo(f"{Path(s).name}: {r.passed} passed, {r.failed} failed, {r.skipped} skipped")
    unexpected = 0
    for key, (where, message) in zip(keys, total.failures, strict=True):
        tag = "known failure" if key in known else "FAIL"
        if key not in known:
            unexpected += 1
        click.echo(f"{tag}: {where}: {message}")
    click.echo(f"{total.passed} passed, {total.failed} failed, {total.skipped} skipped")
    sys.exit(1 if unexpected else 0)
