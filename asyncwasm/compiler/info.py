"""What a function's translator knows of the rest of its module (``ModuleInfo``).

Kept apart from the translator so that a process running code from the persistent cache builds
its modules' descriptions without importing the translator at all.
"""

from __future__ import annotations

from ..binary.module import I32, FuncType
from .contract import FUEL


class ModuleInfo:
    """What a function translator needs to know about the rest of the module."""

    def __init__(
        self,
        types: list[FuncType],
        func_types: list[FuncType],
        global_cells: set[int],
        type_ids: list[int],
        memory_max: int = 1 << 32,
        fixed_tables: dict[int, int] | None = None,
        memories: list[tuple[str, int]] | None = None,
        table_addrs: list[str] | None = None,
    ) -> None:
        self.types = types
        self.func_types = func_types
        self.global_cells = global_cells  # globals shared through a cell object (``g3.value``)
        self.type_ids = type_ids  # canonical id of each type index, for call_indirect checks
        self.memory_max = memory_max  # bytes memory 0 can ever have: an access past it always traps
        self.fixed_tables = fixed_tables or {}  # table -> its size, for tables that cannot change size
        self.tag_types: list[tuple[str, ...]] = []  # the parameters of each tag (exceptions)
        # the state cells of the module's code (``compiler/contract.py``): the fuel count and every
        # mutable global of its own that nothing else shares (a C program's stack pointer...)
        self.state_cells: tuple[str, ...] = (FUEL,)
        # (address type, the most bytes it can ever have) of each memory; the index type of each table
        self.memories = memories or [(I32, memory_max)]
        self.table_addrs = table_addrs or []

    def memory_limit(self, k: int) -> int:
        """The most bytes memory ``k`` can ever have: an access past it always traps."""
        return self.memory_max if k == 0 else self.memories[k][1]

    def memory_address(self, k: int) -> str:
        return self.memories[k][0] if k < len(self.memories) else I32

    def table_address(self, k: int) -> str:
        return self.table_addrs[k] if k < len(self.table_addrs) else I32
