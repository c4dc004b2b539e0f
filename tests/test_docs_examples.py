"""The documentation's examples run: every ```python block of docs/embedding.md, docs/limits.md,
wasi_async/README.md and of the README's embedding section is executed from the repository's root, on asyncio and on trio (``anyio.run``
is pointed at the backend under test), so the docs cannot rot unnoticed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio
import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def python_blocks(text: str) -> list[str]:
    return [m.group(1) for m in FENCE.finditer(text)]


def readme_embedding_section() -> str:
    """The README's section whose heading mentions embedding, up to the next heading of its level."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^(#+) [^\n]*\bEmbed", text, re.M)
    if m is None:
        return ""
    level = m.group(1)
    end = re.compile(rf"^{level} ", re.M).search(text, m.end())
    return text[m.start() : end.start() if end else len(text)]


def cases() -> list[Any]:
    out = []
    for doc in ("embedding.md", "limits.md"):
        for i, code in enumerate(python_blocks((ROOT / "docs" / doc).read_text(encoding="utf-8")), 1):
            out.append(pytest.param(code, id=f"{doc}-{i}"))
    for i, code in enumerate(python_blocks(readme_embedding_section()), 1):
        out.append(pytest.param(code, id=f"README-embed-{i}"))
    for i, code in enumerate(
        python_blocks((ROOT / "wasi_async" / "README.md").read_text(encoding="utf-8")), 1
    ):
        out.append(pytest.param(code, id=f"wasi_async-README-{i}"))
    return out


def test_the_docs_have_examples() -> None:
    assert len(python_blocks((ROOT / "docs" / "embedding.md").read_text(encoding="utf-8"))) >= 8
    assert python_blocks(readme_embedding_section())


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("code", cases())
def test_example_runs(
    code: str, backend: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_run = anyio.run

    def run_on_backend(func: Any, *args: Any, backend: str = backend, **kwargs: Any) -> Any:
        return real_run(func, *args, backend=backend, **kwargs)

    monkeypatch.setattr(anyio, "run", run_on_backend)
    monkeypatch.chdir(ROOT)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(code, "<docs example>", "exec"), namespace)
    assert "Traceback" not in capsys.readouterr().out
