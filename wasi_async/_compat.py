"""Version shims."""

from __future__ import annotations

import math

import anyio


def cancel(scope: anyio.CancelScope) -> None:
    """``scope.cancel()``, also where anyio (4.10+ passes a reason) meets a trio older than 0.32
    (whose ``CancelScope.cancel`` takes none): an expired deadline cancels the same way."""
    try:
        scope.cancel()
    except TypeError:
        scope.deadline = -math.inf
