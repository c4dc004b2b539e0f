"""A store-wide budget: what all of a store's memories (pages) or tables (elements) may hold together.

A per-memory or per-table cap alone lets a module declare many of them (multi-memory, a hundred
tables) and grow each to the cap, or a 64-bit memory far past 4 GiB; the store as a whole is what
must be bounded. A Store holds one budget of pages and one of table elements.
"""

from __future__ import annotations


class Budget:
    """Units (pages, or elements) still available to reserve."""

    __slots__ = ("remaining", "total")

    def __init__(self, total: int) -> None:
        self.total = total
        self.remaining = total

    def take(self, n: int) -> bool:
        """Reserve ``n`` units; False (and nothing reserved) when that would pass the budget."""
        if n > self.remaining:
            return False
        self.remaining -= n
        return True

    def give(self, n: int) -> None:
        """Return ``n`` reserved units that were not used after all."""
        self.remaining += n
