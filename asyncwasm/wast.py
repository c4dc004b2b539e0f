"""Run spec test scripts: their JSON form (wasm-tools json-from-wast, or wabt's wast2json), or a
``.wast`` file read straight from text by ``asyncwasm.text``.

Every command kind is checked. In JSON scripts a text-format module (``module quote``) is read from
the ``.wat`` file the converter wrote beside it, through ``asyncwasm.text``; a ``.wast`` script is
converted into the same commands, with its modules encoded in memory. A command is skipped only if it
is of a kind this runner does not know. Failures are reported with file and line;
a known-failures file lists the ones that are expected, with reasons.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .binary.module import (
    EXTERNREF,
    F32,
    F64,
    FUNCREF,
    I32,
    I64,
    V128,
    FuncType,
    GlobalType,
    Limits,
    MemoryType,
    TableType,
)
from .compiler.numeric import f32_from_bits, f32_to_bits, f64_from_bits, f64_to_bits
from .compiler.simd_ops import M128
from .errors import InvalidModule, LinkError, MalformedModule, Trap, WasmError
from .features import WASM3, Features
from .runtime.gc import Array, HostAny, Struct
from .runtime.instance import CompiledModule, Instance, Linker
from .runtime.memory import Memory
from .runtime.objects import Func, Global, Table, WasmException
from .store import Store
from .text import TextError
from .text.script import Script, parse_script

DEFAULT_KNOWN_FAILURES = Path(__file__).with_name("wast_known_failures.txt")
_MASK = {I32: 0xFFFFFFFF, I64: 0xFFFFFFFFFFFFFFFF}


class HostRef:
    """An externref made by the test script: ``ref.extern N``."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HostRef) and other.n == self.n

    def __hash__(self) -> int:
        return hash(("HostRef", self.n))

    def __repr__(self) -> str:
        return f"ref.extern {self.n}"


@dataclass
class Result:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file:line, message)

    def add(self, other: Result) -> None:
        self.passed += other.passed
        self.failed += other.failed
        self.skipped += other.skipped
        self.failures.extend(other.failures)


class _Failure(Exception):
    pass


def spectest_linker() -> Linker:
    """The spec interpreter's ``spectest`` host module."""
    linker = Linker()
    for name, params in [
        ("print", ()),
        ("print_i32", (I32,)),
        ("print_i64", (I64,)),
        ("print_f32", (F32,)),
        ("print_f64", (F64,)),
        ("print_i32_f32", (I32, F32)),
        ("print_f64_f64", (F64, F64)),
    ]:
        linker.define_func("spectest", name, FuncType(params, ()), lambda *a: None)
    linker.define("spectest", "global_i32", Global(GlobalType(I32, False), 666))
    linker.define("spectest", "global_i64", Global(GlobalType(I64, False), 666))
    linker.define("spectest", "global_f32", Global(GlobalType(F32, False), f32_from_bits(0x4426A666)))
    linker.define("spectest", "global_f64", Global(GlobalType(F64, False), 666.6))
    linker.define("spectest", "table", Table(TableType(FUNCREF, Limits(10, 20))))
    linker.define("spectest", "table64", Table(TableType(FUNCREF, Limits(10, 20), I64)))
    linker.define("spectest", "memory", Memory(MemoryType(Limits(1, 2))))
    return linker


def _parse_value(v: dict[str, Any]) -> Any:
    t, s = v["type"], v["value"]
    if t in _MASK:
        return int(s) & _MASK[t]
    if t == F32:
        return f32_from_bits(int(s) & 0xFFFFFFFF)
    if t == F64:
        return f64_from_bits(int(s) & 0xFFFFFFFFFFFFFFFF)
    if t in (EXTERNREF, FUNCREF):
        return None if s == "null" else HostRef(int(s))
    if t == V128:
        return _v128_of(v["lane_type"], s)
    if t == "anyref" and s != "null":
        return HostAny(HostRef(int(s)))  # ``ref.host N``: a host value seen as an anyref
    if t in _NULLABLE_RESULTS:
        if s == "null":
            return None
    raise _Failure(f"unsupported value type {t}")


_LANE_BITS = {"i8": 8, "i16": 16, "i32": 32, "i64": 64, "f32": 32, "f64": 64}


def _v128_of(lane_type: str, lanes: list[str]) -> int:
    """A v128 argument from its lanes, each the decimal text of the lane's bits (signed or not)."""
    bits = _LANE_BITS[lane_type]
    mask = (1 << bits) - 1
    out = 0
    for k, text in enumerate(lanes):
        out |= (int(text) & mask) << (bits * k)
    return out


def _float_bits_match(bits: int, text: str, width: int) -> bool:
    """One float's bits against an expected value: exact bits, or a NaN pattern."""
    if width == 32:
        canon, quiet, exp, mag = 0x7FC00000, 0x00400000, 0x7F800000, bits & 0x7FFFFFFF
    else:
        canon, quiet, exp, mag = (
            0x7FF8000000000000,
            0x0008000000000000,
            0x7FF0000000000000,
            bits & 0x7FFFFFFFFFFFFFFF,
        )
    if text == "nan:canonical":
        return mag == canon
    if text == "nan:arithmetic":
        return mag & exp == exp and bits & quiet != 0
    return bits == int(text) & ((1 << width) - 1)


def _v128_matches(expected: dict[str, Any], got: Any) -> bool:
    """A v128 result lane by lane: integer lanes by their bits, float lanes with NaN patterns."""
    if not isinstance(got, int) or isinstance(got, bool) or not 0 <= got <= M128:
        return False
    lane_type = expected["lane_type"]
    bits = _LANE_BITS[lane_type]
    mask = (1 << bits) - 1
    for k, text in enumerate(expected["value"]):
        lane = (got >> (bits * k)) & mask
        if lane_type[0] == "f":
            if not _float_bits_match(lane, text, bits):
                return False
        elif lane != int(text) & mask:
            return False
    return True


def _matches(expected: dict[str, Any], got: Any) -> bool:
    t: str = expected["type"]
    s: Any = expected.get("value")
    if t == "either":
        return any(_matches(e, got) for e in expected["values"])
    if t == V128:
        return _v128_matches(expected, got)
    if t in _MASK:
        return isinstance(got, int) and (int(s) & _MASK[t]) == (int(got) & _MASK[t])
    if t in (F32, F64):
        if not isinstance(got, float):
            return False
        bits = f32_to_bits(got) if t == F32 else f64_to_bits(got)
        return _float_bits_match(bits, s, 32 if t == F32 else 64)
    if t == "refnull" or s == "null" or t in _NULL_TYPES:  # (ref.null), (ref.null none), ...
        return got is None
    if t == EXTERNREF:
        return got is not None if s is None else got == HostRef(int(s))
    if t == "anyref" and s is not None:
        return isinstance(got, HostAny) and got.value == HostRef(int(s))
    test = _NON_NULL_RESULTS.get(t)
    return test is not None and got is not None and test(got)


# Reference results without a value: a non-null reference of that heap type (``(ref.func)``, ...).
_NON_NULL_RESULTS: dict[str, Any] = {
    FUNCREF: lambda v: isinstance(v, Func),
    "anyref": lambda v: True,
    "exnref": lambda v: True,
    "eqref": lambda v: type(v) in (int, Struct, Array),
    "i31ref": lambda v: type(v) is int,
    "structref": lambda v: type(v) is Struct,
    "arrayref": lambda v: type(v) is Array,
}
_NULL_TYPES = frozenset(("nullref", "nullfuncref", "nullexternref", "nullexnref"))
_NULLABLE_RESULTS = frozenset((*_NON_NULL_RESULTS, *_NULL_TYPES, "refnull"))


def _show(got: Any) -> str:
    if isinstance(got, int) and got.bit_length() > 64:
        return f"v128 {got:#034x}"
    if isinstance(got, float):
        return f"{got!r} (f32 bits {f32_to_bits(got):#x}, f64 bits {f64_to_bits(got):#x})"
    return repr(got)


class ScriptRunner:
    """Runs one JSON script, command by command."""

    def __init__(self, path: Path, features: Features | None = None) -> None:
        self.path = path
        self.features = features if features is not None else WASM3
        self.dir = path.parent
        self.linker = spectest_linker()
        self.current: Instance | None = None
        self.named: dict[str, Instance] = {}
        self.definitions: dict[str, CompiledModule] = {}
        self.store = Store()
        self.script: Script | None = None  # a .wast script: its modules are in memory, text ones included

    def load(self, filename: str) -> CompiledModule:
        if self.script is not None:
            return CompiledModule(
                self.script.modules[filename].binary(), name=Path(filename).stem, features=self.features
            )
        return CompiledModule(
            (self.dir / filename).read_bytes(), name=Path(filename).stem, features=self.features
        )

    def commands(self) -> list[dict[str, Any]]:
        """The script's commands: from the JSON file, or converted from a ``.wast`` file's text."""
        if self.path.suffix == ".wast":
            self.script = parse_script(self.path.read_text(encoding="utf-8"), self.path.name)
            return self.script.commands
        return json.loads(self.path.read_text())["commands"]

    def instantiate(self, filename: str) -> Instance:
        return self.linker.instantiate_sync(self.load(filename), self.store)

    def instance(self, name: str | None) -> Instance:
        if name is None:
            if self.current is None:
                raise _Failure("no module instantiated")
            return self.current
        name = name.lstrip("$")
        if name not in self.named:
            raise _Failure(f"unknown module {name}")
        return self.named[name]

    def act(self, action: dict[str, Any]) -> list[Any]:
        inst = self.instance(action.get("module"))
        field_ = action["field"]
        if action["type"] == "get":
            g = inst.exports.get(field_)
            if not isinstance(g, Global):
                raise _Failure(f"no exported global {field_}")
            return [g.value]
        try:
            f = inst.get_func(field_)
        except KeyError:
            raise _Failure(f"no exported function {field_}") from None
        args = [_parse_value(a) for a in action.get("args", [])]
        raw = inst.call_raw_sync(f, args)
        n = len(f.type.results)
        return [] if n == 0 else [raw] if n == 1 else list(raw)

    def run(self, only_binary: bool = True) -> Result:
        res = Result()
        try:
            commands = self.commands()
        except TextError as exc:  # the script itself does not parse: nothing of it can run
            res.failed += 1
            res.failures.append((f"{self.path.name}:{exc.line}", str(exc)))
            return res
        for cmd in commands:
            where = f"{self.path.name}:{cmd.get('line', '?')}"
            try:
                outcome = self.command(cmd)
            except _Failure as exc:
                res.failed += 1
                res.failures.append((where, str(exc)))
                continue
            except Exception as exc:  # an engine bug: report it as a failure of this command
                res.failed += 1
                res.failures.append((where, f"unexpected {type(exc).__name__}: {exc}"))
                continue
            if outcome == "skip":
                res.skipped += 1
            else:
                res.passed += 1
        return res

    def command(self, cmd: dict[str, Any]) -> str:
        kind = cmd["type"]
        mtype = cmd.get("module_type", "binary")
        if self.script is not None:
            mtype = "binary"  # every module of a .wast script is loadable, quoted text included
        if kind == "module_definition":
            self.definitions[cmd.get("name") or ""] = self.load(cmd["filename"])
            return "ok"
        if kind == "module_instance":
            module = self.definitions.get(cmd.get("module") or "")
            if module is None:
                raise _Failure(f"unknown module definition {cmd.get('module')}")
            inst = self.linker.instantiate_sync(module, self.store)
            self.current = inst
            if cmd.get("instance"):
                self.named[cmd["instance"]] = inst
            return "ok"
        if kind == "module":
            # a text module: its binary when the converter made one, else its text through asyncwasm.text
            filename = cmd["filename"] if mtype == "binary" else cmd.get("binary_filename") or cmd["filename"]
            inst = self.instantiate(filename)
            self.current = inst
            if cmd.get("name"):
                self.named[cmd["name"].lstrip("$")] = inst
            return "ok"
        if kind == "register":
            inst = self.instance(cmd.get("name"))
            self.linker.define_instance(cmd["as"], inst)
            return "ok"
        if kind == "action":
            self.act(cmd["action"])
            return "ok"
        if kind == "assert_return":
            got = self.act(cmd["action"])
            expected = cmd.get("expected", [])
            if len(got) != len(expected) or not all(
                _matches(e, g) for e, g in zip(expected, got, strict=False)
            ):
                raise _Failure(
                    f"expected {[e.get('value') for e in expected]}, got {[_show(g) for g in got]}"
                )
            return "ok"
        if kind in ("assert_trap", "assert_exhaustion"):
            try:
                if "action" in cmd:
                    got = self.act(cmd["action"])
                else:
                    self.instantiate(cmd["filename"])
                    got = []
            except Trap as exc:
                return self._expect_text(exc.message, cmd["text"])
            raise _Failure(f"expected trap {cmd['text']!r}, got {[_show(g) for g in got]}")
        if kind == "assert_exception":
            try:
                got = self.act(cmd["action"])
            except WasmException:
                return "ok"
            raise _Failure(f"expected an exception, got {[_show(g) for g in got]}")
        if kind in ("assert_invalid", "assert_malformed", "assert_unlinkable", "assert_uninstantiable"):
            # a text module (``module quote``) is read from its .wat by asyncwasm.text: a text-format
            # error is a MalformedModule, as the spec's text-format assertions expect
            want: type[WasmError] = {
                "assert_invalid": InvalidModule,
                "assert_malformed": MalformedModule,
                "assert_unlinkable": LinkError,
                "assert_uninstantiable": Trap,
            }[kind]
            try:
                if kind in ("assert_invalid", "assert_malformed"):
                    self.load(cmd["filename"])
                else:
                    self.instantiate(cmd["filename"])
            except want as exc:
                if kind == "assert_invalid" and isinstance(exc, MalformedModule):
                    raise _Failure(f"expected invalid ({cmd['text']}), got malformed: {exc}") from None
                return "ok"
            except WasmError as exc:
                raise _Failure(
                    f"expected {kind[7:]} ({cmd['text']}), got {type(exc).__name__}: {exc}"
                ) from None
            raise _Failure(f"expected {kind[7:]} ({cmd['text']}), but the module was accepted")
        raise _Failure(f"unknown command {kind}")

    @staticmethod
    def _expect_text(message: str, text: str) -> str:
        if text in message or message in text:
            return "ok"
        raise _Failure(f"expected trap {text!r}, got {message!r}")


def failure_key(script: Path, where: str) -> str:
    """The name a known-failures file gives the failing command ``where`` (``file:line``) of ``script``.

    ``SUITE/NAME:LINE``: SUITE is the folder holding the suite's ``json/`` or ``wast/`` folder (``spec``,
    ``simd``, ``spec3``), NAME the script's path below that without its extension (a JSON script's own
    folder dropped: ``json/i32/i32.json`` and ``wast/i32.wast`` are both ``i32``), LINE the command's line
    in the ``.wast``, which is also what the JSON form records. So one file covers every suite (their
    scripts share names) and a known failure of the JSON form is the same entry in the text form. A
    script outside such a layout is just ``NAME:LINE``.
    """
    line = where.rpartition(":")[2]
    parts = Path(script).resolve().parts
    for k in range(len(parts) - 2, 0, -1):
        if parts[k] in ("json", "wast"):
            rest = list(parts[k + 1 :])
            rest[-1] = Path(rest[-1]).stem
            if parts[k] == "json" and len(rest) >= 2 and rest[-2] == rest[-1]:
                del rest[-2]
            return f"{parts[k - 1]}/{'/'.join(rest)}:{line}"
    return f"{Path(script).stem}:{line}"


def load_known_failures(path: Path | None) -> dict[str, str]:
    """``SUITE/NAME:LINE reason`` per line (see ``failure_key``); # starts a comment."""
    known: dict[str, str] = {}
    if path is None or not path.exists():
        return known
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
        if not line:
            continue
        key, _, reason = line.partition(" ")
        known[key] = reason.strip()
    return known


def run_scripts(paths: Iterable[Path], features: Features | None = None) -> Result:
    total = Result()
    for p in paths:
        total.add(ScriptRunner(Path(p), features).run())
    return total
