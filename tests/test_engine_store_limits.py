"""A Store's limits hold for everything run in it: fuel is one tank shared by all its instances
(whichever instance's code burns it, also through imports), and max_depth bounds the call depth."""

from __future__ import annotations

import anyio
import pytest
from wat import wat

import asyncwasm

pytestmark = pytest.mark.anyio


PROVIDER = """
(module $provider
  ;; 7 units per iteration
  (func $count (export "count") (param $n i32) (local $i i32)
    loop $l
      local.get $i i32.const 1 i32.add local.tee $i
      local.get $n i32.lt_u
      br_if $l
    end)
  (func $spin (export "spin")
    loop $l br $l end)
  (func $down (export "down") (param $n i32) (result i32)
    local.get $n
    if (result i32)
      local.get $n i32.const 1 i32.sub call $down i32.const 1 i32.add
    else
      i32.const 0
    end))
"""

USER = """
(module $user
  (import "provider" "count" (func $count (param i32)))
  (func (export "run") (param i32) local.get 0 call $count))
"""


async def provider(store: asyncwasm.Store) -> asyncwasm.Instance:
    return await asyncwasm.Linker().instantiate(asyncwasm.Module(wat(PROVIDER)), store)


async def test_fuel_burnt_in_an_imported_function_is_counted_by_the_call() -> None:
    store = asyncwasm.Store()
    prov = await provider(store)
    linker = asyncwasm.Linker()
    linker.define_instance("provider", prov)
    user = await linker.instantiate(asyncwasm.Module(wat(USER)), store)
    await user.call("run", 100)
    # run: local.get + call = 2, + 1 for its call; count(100) in the provider's code = 700 + 1
    assert store.fuel_used == 3 + 701


async def test_fuel_limit_holds_across_an_import() -> None:
    store = asyncwasm.Store(fuel=1_000)
    prov = await provider(store)
    linker = asyncwasm.Linker()
    linker.define_instance("provider", prov)
    user = await linker.instantiate(asyncwasm.Module(wat(USER)), store)
    await user.call("run", 100)  # 702 units
    with pytest.raises(asyncwasm.FuelExhausted):
        await user.call("run", 100)  # another 702 do not fit in what is left
    assert store.fuel_used == 1_000


async def test_instances_of_one_store_share_its_fuel_limit() -> None:
    store = asyncwasm.Store(fuel=1_000)
    first = await provider(store)
    second = await provider(store)
    with pytest.raises(asyncwasm.FuelExhausted):
        await first.call("spin")
    assert store.fuel_used == 1_000
    # the tank is empty, whichever instance draws on it
    with pytest.raises(asyncwasm.FuelExhausted):
        await second.call("count", 100)
    assert store.fuel_used == 1_000


async def test_store_max_depth_bounds_recursion() -> None:
    deep = await provider(asyncwasm.Store())
    assert await deep.call("down", 50_000) == 50_000  # the default depth allows this
    shallow = await provider(asyncwasm.Store(max_depth=2_000))
    assert await shallow.call("down", 100) == 100
    with pytest.raises(asyncwasm.Trap, match="call stack exhausted"):
        await shallow.call("down", 50_000)
    await anyio.sleep(0)
