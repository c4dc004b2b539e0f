"""The import graph of the package, read from the source with ``ast``: every arrow points down.

- No engine module (everything in asyncwasm/ outside cli/, serve/ and __main__) imports ``wasi_async`` or an
  application subpackage: the engine knows nothing of WASI, the command line or the server.
- wasi_async imports no application either.
- No import cycle among the application modules (asyncwasm.cli.*, asyncwasm.serve.*).
- The application modules import at module level only: a function-level import is how a cycle
  hides, so there are none.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("asyncwasm", "wasi_async")
APPLICATIONS = ("asyncwasm.cli", "asyncwasm.serve")
ENTRY = "asyncwasm.__main__"  # `python -m asyncwasm`: the command line's entry, an application too


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, ast.AST]]:
    """(imported module, node) for every import statement anywhere in the file, relative ones resolved.

    ``from pkg import name`` counts as an import of ``pkg.name`` when that is a module, else of ``pkg``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    base = name.split(".") if is_package(path) else name.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub if sub in known else target), node


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def graph() -> dict[str, set[str]]:
    known = all_modules()
    return {name: {target for target, _ in imports(name, path, known)} for name, path in known.items()}


def test_the_engine_imports_neither_wasi_nor_the_applications() -> None:
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in graph().items()
        if name.startswith("asyncwasm") and not within(name, APPLICATIONS) and name != ENTRY
        for target in targets
        if within(target, ("wasi_async", *APPLICATIONS))
    )
    assert not wrong, wrong


def test_wasi_imports_no_application() -> None:
    """wasi_async sits on the engine's facade, beneath the applications that use it."""
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in graph().items()
        if within(name, ("wasi_async",))
        for target in targets
        if within(target, APPLICATIONS)
    )
    assert not wrong, wrong


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module importing itself
    (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_among_the_applications() -> None:
    full = graph()
    apps = {
        n: {t for t in ts if within(t, APPLICATIONS)} for n, ts in full.items() if within(n, APPLICATIONS)
    }
    assert len(apps) >= 8, sorted(apps)  # the layout is there: cli/ and serve/ hold the applications
    assert cycles(apps) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_application_modules_import_at_module_level() -> None:
    known = all_modules()
    nested = []
    for name, path in known.items():
        if not within(name, APPLICATIONS):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = set(map(id, tree.body))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top:
                nested.append(f"{name}:{node.lineno}")
    assert nested == []
