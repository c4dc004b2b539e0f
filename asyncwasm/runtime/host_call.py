"""The wrapper compiled code calls for a host function: raw values in, the host's Python values out
and back, the native nesting count kept, an awaitable result awaited on the guest's behalf. And the
other way round, ``guest_caller``: what ``Table.call`` runs when a host function calls back into
its guest with Python values.

Interpreters compiled to Wasm call their host glue millions of times (emscripten's ``invoke_*``
trampolines for setjmp/longjmp, output, time), so this is a hot path. A generic wrapper (``*args``,
a conversion looked up per argument, ``inspect.isawaitable`` on every result) cost 2.4 us a call
against 0.1 us for a raw function. The wrapper is therefore generated per signature: the
conversions are inlined as expressions, the arity is fixed, a plain number or tuple returned by a
synchronous function skips the awaitable test. The source of each shape is compiled once per
process and shared by every host function of that shape.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..binary.module import F32, F64, I32, I64, V128
from ..compiler.numeric import fround
from ..errors import Trap
from ..scheduler import await_in_guest, end_slice_if_due
from ..scheduler import native as nesting
from .gc import host_check
from .objects import Func
from .values import INT_BITS, int_range, public_results

# raw (unsigned) to the host's value, and back: expressions over the name in braces
_FROM_RAW = {I32: "({v} - (({v} & 0x80000000) << 1))", I64: "({v} - (({v} & 0x8000000000000000) << 1))"}
_TO_RAW = {
    I32: "(int({v}) & 0xFFFFFFFF)",
    I64: "(int({v}) & 0xFFFFFFFFFFFFFFFF)",
    F32: "fround(float({v}))",
    F64: "float({v})",
    V128: f"(int({{v}}) & {(1 << 128) - 1:#x})",
}
# Synchronous host calls between two looks at the slice's clock: a guest calling one that takes 50 us
# in a loop still gives the token back within a slice and a millisecond.
CLOCK_EVERY = 16
_PLAIN = frozenset((int, float, bool, tuple, list, type(None)))

_factories: dict[tuple[Any, ...], Callable[..., Callable[..., Any]]] = {}


def _result(t: str, k: int) -> str:
    """The expression that turns the host's ``k``-th result of type ``t`` into a raw value: numbers
    converted, references other than externref/anyref checked (``gc.host_check``, as ``_rc<k>``)."""
    conv = _TO_RAW.get(t)
    if conv is not None:
        return conv
    return f"_rc{k}({{v}})" if host_check(t) is not None else "{v}"


def _source(params: tuple[str, ...], results: tuple[str, ...], is_async: bool, with_caller: bool) -> str:
    names = [f"a{k}" for k in range(len(params))]
    conv = [_FROM_RAW.get(t, "{v}").format(v=n) for t, n in zip(params, names, strict=True)]
    call_args = ", ".join((["caller"] if with_caller else []) + conv)
    lines = [
        "def make(fn, caller, limit):",
        "    countdown = CLOCK_EVERY",
        f"    def host({', '.join(names)}):",
        "        if nesting.depth >= limit:",
        "            raise Trap('call stack exhausted')",
        "        nesting.depth += 1",
        "        try:",
        f"            r = fn({call_args})",
    ]
    if is_async:
        lines.append("            r = await_in_guest(r)")
    else:  # a plain function may still hand back an awaitable (a coroutine made by a helper)
        lines.append(
            "            if r.__class__ is not int and r.__class__ not in _PLAIN and isawaitable(r):"
        )
        lines.append("                r = await_in_guest(r)")
    lines += ["        finally:", "            nesting.depth -= 1"]
    if not is_async:
        # A guest calling a host function in a loop spends its time there, not in guest code that
        # counts fuel: the slice is checked here too, every CLOCK_EVERY calls (a look at the clock
        # costs as much as a quick host call; an async call is checked by its driver).
        lines += [
            "        nonlocal countdown",
            "        countdown -= 1",
            "        if not countdown:",
            "            countdown = CLOCK_EVERY",
            "            end_slice_if_due()",
        ]
    if not results:
        lines.append("        return None")
    elif len(results) == 1:
        mask = {I32: "0xFFFFFFFF", I64: "0xFFFFFFFFFFFFFFFF"}.get(results[0])
        if mask:  # the common case first: an int comes back
            lines.append("        if r.__class__ is int:")
            lines.append(f"            return r & {mask}")
        lines.append("        if isinstance(r, (tuple, list)):")
        lines.append("            r = r[0]")
        lines.append(f"        return {_result(results[0], 0).format(v='r')}")
    else:
        outs = [f"r{k}" for k in range(len(results))]
        lines.append(f"        {', '.join(outs)}, = r")
        conv = [_result(t, k).format(v=o) for k, (t, o) in enumerate(zip(results, outs, strict=True))]
        lines.append(f"        return ({', '.join(conv)},)")
    lines.append("    return host")
    return "\n".join(lines) + "\n"


def host_wrapper(
    fn: Callable[..., Any],
    params: tuple[str, ...],
    results: tuple[str, ...],
    *,
    is_async: bool,
    caller: Any = None,
    with_caller: bool = False,
    limit: int,
) -> Callable[..., Any]:
    """The raw-convention function that calls ``fn`` (given ``caller`` first if ``with_caller``)."""
    key = (params, results, is_async, with_caller)
    make = _factories.get(key)
    if make is None:
        scope: dict[str, Any] = {
            "nesting": nesting,
            "Trap": Trap,
            "await_in_guest": await_in_guest,
            "isawaitable": inspect.isawaitable,
            "fround": fround,
            "_PLAIN": _PLAIN,
            "CLOCK_EVERY": CLOCK_EVERY,
            "end_slice_if_due": end_slice_if_due,
        }
        scope.update({f"_rc{k}": host_check(t) for k, t in enumerate(results)})
        exec(compile(_source(params, results, is_async, with_caller), "<asyncwasm host call>", "exec"), scope)
        make = _factories[key] = scope["make"]
    return make(fn, caller, limit)


def guest_caller(f: Func) -> Callable[[Any, tuple[Any, ...]], Any]:
    """``Table.call``'s conversions for ``f``'s type: ``call(fn, args)`` converts ``args`` as an
    export call does, calls ``fn`` with the raw values and returns the result as the host sees it.

    An integer-only signature (emscripten's ``invoke_*``) gets a generated function with the range
    checks inline: ``ExportedFunc``'s generic converters cost a microsecond a call, and glue calls
    this millions of times. Anything the inline checks refuse goes through those converters, for
    the same ``TypeError``."""
    from .exports import ExportedFunc  # exports imports this module

    slow = ExportedFunc(None, f, "table element")  # type: ignore[arg-type]
    ft = f.type
    if not all(t in INT_BITS for t in (*ft.params, *ft.results)) or len(ft.results) > 1:
        return lambda fn, args: public_results(ft, fn(*slow.convert_args(args)))
    names = [f"a{k}" for k in range(len(ft.params))]
    checks, raw = [], []
    for n, t in zip(names, ft.params, strict=True):
        low, high, mask = int_range(INT_BITS[t])
        checks.append(f"{n}.__class__ is int and {low} <= {n} < {high}")
        raw.append(f"{n} & {mask:#x}")
    call = f"fn({', '.join(raw)})"
    ret = f"r = {call}; return {_FROM_RAW[ft.results[0]].format(v='r')}" if ft.results else call
    source = "\n".join(
        [
            "def call(fn, args):",
            f"    if len(args) == {len(names)}:",
            f"        {', '.join(names)}{',' if names else ''} = args" if names else "        pass",
            f"        if {' and '.join(checks) or 'True'}:",
            f"            {ret}",
            "    return public_results(ft, fn(*slow.convert_args(args)))",
        ]
    )
    scope: dict[str, Any] = {"public_results": public_results, "ft": ft, "slow": slow}
    exec(compile(source + "\n", "<asyncwasm Table.call>", "exec"), scope)
    return scope["call"]  # type: ignore[no-any-return]
