"""A store: the limits and fuel account shared by the instances created in it (as in wasmtime).

Compiled code counts fuel in a local of each frame and saves it in its instance's fuel cell (``_fuel``,
``compiler/contract.py``) where wasmtime saves it; a frame calls ``_refuel`` when its count runs out of the store's grant. The
store then accounts what every one of its instances used, enforces the limit, and, when the guest's
time slice is over, hands the CPU back to the driver. ``compiler/translate.py`` says where fuel is
charged, checked and saved.
"""

from __future__ import annotations

from collections.abc import Callable

from .compiler.contract import InstanceState
from .cpu import DEFAULT_SLICE
from .errors import FuelExhausted
from .runtime.budget import Budget
from .scheduler import end_slice_if_due

DEFAULT_MAX_DEPTH = 200_000
DEFAULT_MAX_HOST_NESTING = 1_000  # host calls inside host calls (through calls back into Wasm)
DEFAULT_TABLE_ELEMENTS = 10_000_000  # all the elements of all the tables of one store
DEFAULT_MEMORY_PAGES = (
    65_536  # all the pages of all the memories of one store: 4 GiB, what one 32-bit memory may have
)
# Fuel units between two looks at the clock. A refuel costs about 1 us; at 1,000 units (about 12 us of
# guest code) that was 8% of run time, at 10,000 it is under 1%, and since bulk operations charge
# per byte, a slice still sees the clock every 0.1-0.2 ms.
FUEL_CHUNK = 10_000


class Store:
    """Limits for the instances made in it: fuel, call depth, memory and table sizes, wall time.

    - ``fuel``: units of work (as wasmtime counts them) all calls together may use; None: no limit.
    - ``timeout``: seconds of wall time each call into the store's instances may take.
    - ``max_depth``: nested Wasm calls (default 200,000) before "call stack exhausted".
    - ``max_host_nesting``: host calls nested inside each other through calls back into Wasm
      (default 1,000; None means the default); each level costs native stack, so this is what keeps
      the C stack safe.
    - ``max_memory_pages``: the most 64 KiB pages the store's linear memories may have, all together
      (default 65,536, 4 GiB: what one 32-bit memory may have); memory.grow past it gives -1.
    - ``max_table_elements``: the most elements one table may have (table.grow gives -1).
    - ``max_table_elements_total``: all tables of the store together (default 10 million; None
      means the default, as for ``max_memory_pages``).
    - ``slice_seconds``: how long a guest runs before the loop and other guests get a turn
      (default 2 ms; see docs/limits.md, "The scheduler").
    - ``weight``: the share of the CPU its instances get when many are runnable (2.0: twice).
    """

    def __init__(
        self,
        *,
        fuel: int | None = None,
        max_depth: int | None = DEFAULT_MAX_DEPTH,
        slice_seconds: float = DEFAULT_SLICE,
        max_memory_pages: int | None = None,
        max_table_elements: int | None = None,
        timeout: float | None = None,
        weight: float = 1.0,
        max_host_nesting: int = DEFAULT_MAX_HOST_NESTING,
        max_table_elements_total: int | None = DEFAULT_TABLE_ELEMENTS,
    ) -> None:
        if fuel is not None and fuel < 0:
            raise ValueError("fuel must not be negative")
        if weight <= 0:
            raise ValueError("weight must be positive")
        self.fuel_limit = fuel
        self.fuel_used = 0
        self.max_depth = DEFAULT_MAX_DEPTH if max_depth is None else max_depth
        self.max_host_nesting = max_host_nesting
        self.slice_seconds = slice_seconds
        self.max_memory_pages = max_memory_pages
        self.memory_budget = Budget(DEFAULT_MEMORY_PAGES if max_memory_pages is None else max_memory_pages)
        self.max_table_elements = max_table_elements
        self.table_budget = Budget(
            DEFAULT_TABLE_ELEMENTS if max_table_elements_total is None else max_table_elements_total
        )
        self.timeout = timeout
        self.weight = weight
        self._states: list[InstanceState] = []

    @property
    def slices(self) -> int:
        """Time slices ended so far by this store's instances (for stats)."""
        return self._slices

    _slices = 0

    def slice_ended(self) -> None:
        """Count a time slice ended by one of this store's instances."""
        self._slices += 1

    def fuel_remaining(self) -> int | None:
        """Fuel left under the limit, or None when there is none (the same as ``get_fuel``)."""
        return None if self.fuel_limit is None else max(0, self.fuel_limit - self.fuel_used)

    def get_fuel(self) -> int | None:
        """Fuel left (wasmtime's ``Store.get_fuel``); None when there is no limit."""
        return self.fuel_remaining()

    def set_fuel(self, fuel: int | None) -> None:
        """Leave exactly ``fuel`` units (wasmtime's ``Store.set_fuel``), or lift the limit (None).

        It takes effect at once, also for a call in progress (from a host function): every
        instance's grant is redone from the new amount."""
        if fuel is not None and fuel < 0:
            raise ValueError("fuel must not be negative")
        self.account()
        self.fuel_limit = None if fuel is None else self.fuel_used + fuel
        self.settle()

    def next_grant(self) -> int:
        """The fuel a frame may use before it next calls ``_refuel``: a chunk, or what is left."""
        left = self.fuel_remaining()
        return FUEL_CHUNK if left is None else min(FUEL_CHUNK, left)

    def make_refuel(self, state: InstanceState) -> Callable[[int], int]:
        """The ``_refuel`` hook of one instance: called by a frame whose count ``fu`` ran out of its
        grant at a check; accounts, enforces the limit, yields; returns the new count.

        Only a save (``_fuel = fu``: calls, returns, ``unreachable``) makes a frame's use final, as in
        wasmtime: a trap loses what was used since. This is no save: the frame's use is accounted,
        but the saved count is left that much above the new grant, so a trap before the next save
        takes it back out of ``fuel_used`` (see ``account``)."""
        cell = state.fuel_cell

        def refuel(fu: int) -> int:
            unsaved = cell.cell_contents - fu
            cell.cell_contents = fu
            self.account()  # every instance of the store: their code may have run through imports
            if self.fuel_limit is not None and self.fuel_used >= self.fuel_limit:
                # out of fuel: wasmtime saves first, so the whole use counts (reported up to the limit)
                self.fuel_used = self.fuel_limit
                state.grant(0)
                raise FuelExhausted()
            end_slice_if_due()
            grant = self.next_grant()
            state.granted = grant
            cell.cell_contents = grant + unsaved
            return grant

        return refuel

    def attach(self, state: InstanceState) -> None:
        """Count this instance's fuel in this store (its code may run through other instances' calls)."""
        self._states.append(state)

    def account(self) -> None:
        """Add what every instance of the store used of its grant (once: a cancellation while
        suspended must not count it again)."""
        for st in self._states:
            fuel = st.fuel_cell.cell_contents
            self.fuel_used += st.granted - fuel
            st.granted = fuel
        if self.fuel_limit is not None and self.fuel_used > self.fuel_limit:
            # the last instructions of a call run unchecked (wasmtime checks at calls and loop
            # heads only): their use past the limit is not counted, as wasmtime's get_fuel shows 0
            self.fuel_used = self.fuel_limit

    def settle(self) -> None:
        """Account the fuel used and hand every instance a fresh grant."""
        self.account()
        grant = self.next_grant()
        for st in self._states:
            st.grant(grant)
