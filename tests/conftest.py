"""Shared test helpers: where the read-only test data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_code_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The run's big modules are cached in a directory of its own, never the user's cache."""
    os.environ["ASYNCWASM_CACHE_DIR"] = str(tmp_path_factory.mktemp("code-cache"))


def shared_dir() -> Path | None:
    """The shared data folder: $ASYNCWASM_SHARED, else ../shared next to the repository."""
    env = os.environ.get("ASYNCWASM_SHARED")
    path = Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if path is None:
        # The spec and WASI suites are the judges of conformance: without them the run proves nothing,
        # so it fails instead of skipping.
        pytest.fail("shared test data not found (set ASYNCWASM_SHARED or put it at ../shared)")
    return path


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Async tests (``@pytest.mark.anyio``) run on both event loops asyncwasm supports."""
    return str(request.param)
