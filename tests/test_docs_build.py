"""The documentation: the site with its API reference builds with no warning (mkdocs --strict), every
relative link in the guides resolves to a file of the repository, and every public callable of
asyncwasm and wasi_async says what it does."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import asyncwasm
import wasi_async

ROOT = Path(__file__).resolve().parent.parent
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_site_and_api_reference_build_without_warnings(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (tmp_path / "site" / "api" / "asyncwasm" / "index.html").read_text()
    for name in ("Linker", "Store", "CompiledModule", "Features", "CodeCache", "scheduler_stats"):
        assert f'id="asyncwasm.{name}"' in page, name


@pytest.mark.parametrize(
    "doc",
    sorted(p.relative_to(ROOT).as_posix() for p in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]),
)
def test_relative_links_resolve(doc: str) -> None:
    path = ROOT / doc
    broken = []
    prose = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # code blocks hold no links
    for target in _LINK.findall(prose):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        file = target.split("#", 1)[0]
        if file and not (path.parent / file).exists():
            broken.append(target)
    assert not broken, f"{doc}: links to missing files: {broken}"


def _public_callables() -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for pkg in (asyncwasm, wasi_async):
        for name in pkg.__all__:
            obj = getattr(pkg, name)
            if not callable(obj):
                continue
            out.append((f"{pkg.__name__}.{name}", obj))
            if inspect.isclass(obj):
                for mname, member in vars(obj).items():
                    if mname.startswith("_"):
                        continue
                    f = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
                    if isinstance(member, property) or inspect.isfunction(f):
                        out.append((f"{pkg.__name__}.{name}.{mname}", f))
    return out


def test_every_public_callable_has_a_docstring() -> None:
    missing = [
        name
        for name, obj in _public_callables()
        if not (getattr(obj, "__doc__", None) or "").strip() or (inspect.isclass(obj) and obj.__doc__ is None)
    ]
    assert not missing, f"{len(missing)} public callables without a docstring: {missing}"
