"""Spec test scripts (``.wast``) read straight from text into the commands the JSON runner executes.

The commands have exactly the shape ``wasm-tools json-from-wast`` writes (``{"type": "assert_return",
"line": ..., "action": ..., "expected": [...]}``), so ``asyncwasm.wast.ScriptRunner`` executes a
``.wast`` file with the same code as its JSON form. Module commands name their module by a
``filename`` key into ``Script.modules``, which holds the encoded bytes instead of a file.

A module that does not parse does not stop the script: the error is kept with the module and
raised when the runner loads it, which is what ``assert_malformed`` expects, and an ordinary
command failure otherwise. ``(module quote ...)`` text is parsed only when it is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import TextError
from .lexer import EOF, ID, KEYWORD, LPAR, NUM, RPAR, STRING, utf8
from .literals import F32_FORMAT, F64_FORMAT, LiteralError, parse_float, parse_int, parse_sint
from .parser import Parser

_NULL_TYPES = {
    "func": ("funcref", True),
    "extern": ("externref", True),
    "any": ("anyref", True),
    "exn": ("exnref", True),
    "eq": ("eqref", True),
    "struct": ("structref", True),
    "array": ("arrayref", True),
    "i31": ("i31ref", True),
    "none": ("nullref", False),
    "nofunc": ("nullfuncref", False),
    "noextern": ("nullexternref", False),
    "noexn": ("nullexnref", False),
}
_REF_RESULTS = {
    "ref.func": "funcref",
    "ref.extern": "externref",
    "ref.array": "arrayref",
    "ref.struct": "structref",
    "ref.eq": "eqref",
    "ref.i31": "i31ref",
    "ref.any": "anyref",
    "ref.host": "anyref",
    "ref.exn": "exnref",
}
_LANES = {
    "i8x16": ("i8", 16, 8),
    "i16x8": ("i16", 8, 16),
    "i32x4": ("i32", 4, 32),
    "i64x2": ("i64", 2, 64),
    "f32x4": ("f32", 4, 32),
    "f64x2": ("f64", 2, 64),
}
_MODULE_ASSERTS = ("assert_malformed", "assert_invalid", "assert_unlinkable", "assert_uninstantiable")


@dataclass
class ScriptModule:
    """One module of a script: ``kind`` is ``text`` (parsed here), ``binary`` or ``quote``."""

    line: int
    kind: str
    source: str  # the module's text ((module ...) for text modules, the quoted text for quote)
    wasm: bytes | None = None
    error: TextError | None = None
    name: str | None = None

    def binary(self) -> bytes:
        """The module's bytes; raises the parse error for a module that is not well-formed text."""
        if self.error is not None:
            raise self.error
        if self.wasm is None:  # quote: parsed on first use
            from . import wat_to_wasm

            try:
                self.wasm = wat_to_wasm(self.source.encode("utf-8", "surrogateescape"))
            except TextError as exc:
                self.error = exc
                raise
        return self.wasm


@dataclass
class Script:
    commands: list[dict[str, Any]] = field(default_factory=list)
    modules: dict[str, ScriptModule] = field(default_factory=dict)


class ScriptParser(Parser):
    """Reads script commands; modules are read by the module parser over the same tokens."""

    def __init__(self, text: str, filename: str | None = None) -> None:
        super().__init__(text, filename)
        self.stem = (filename or "script").rsplit("/", 1)[-1].rsplit(".", 1)[0]
        self.script = Script()
        self._line = 1
        self._line_pos = 0

    def line_at(self, i: int) -> int:
        pos = self.offs[i]
        if pos < self._line_pos:
            self._line, self._line_pos = 1, 0
        self._line += self.text.count("\n", self._line_pos, pos)
        self._line_pos = pos
        return self._line

    def skip_balanced(self, i: int) -> int:
        """Index just past the parenthesised form opening at ``i``."""
        depth = 0
        kinds = self.kinds
        while True:
            k = kinds[i]
            if k == LPAR:
                depth += 1
            elif k == RPAR:
                depth -= 1
                if depth == 0:
                    return i + 1
            elif k == EOF:
                raise self.error("unclosed '('", i)
            i += 1

    def parse(self) -> Script:
        if self.kinds[0] != EOF and self.lpar_kw() not in _COMMANDS:
            # a bare module (fields without "(module ...)"), allowed as the whole script
            mod = ScriptModule(1, "text", self.text)
            mod.wasm = self.module()
            self.add_module_command("module", mod, {})
            return self.script
        while self.kinds[self.i] != EOF:
            kw = self.lpar_kw()
            if kw not in _COMMANDS:
                raise self.unexpected("a script command")
            _COMMANDS[kw](self)
        return self.script

    # --- modules ---------------------------------------------------------------------------------

    def script_module(self) -> ScriptModule:
        """``(module ...)`` in any of its script forms, at ``self.i``."""
        start = self.i
        line = self.line_at(start + 1)
        if self.lpar_kw() != "module":
            raise self.unexpected("'(module'")
        j = start + 2
        name = None
        if self.kinds[j] == KEYWORD and self.vals[j] == "definition":
            j += 1
        if self.kinds[j] == ID:
            name = self.vals[j]
            j += 1
        form = self.vals[j] if self.kinds[j] == KEYWORD else None
        if form in ("binary", "quote"):
            self.i = j + 1
            parts: list[bytes] = []
            while self.kinds[self.i] == STRING:
                parts.append(self.string())  # type: ignore[arg-type]
            self.expect_rpar()
            data = b"".join(parts)
            if form == "binary":
                return ScriptModule(line, "binary", "", wasm=data, name=name)  # type: ignore[arg-type]
            return ScriptModule(line, "quote", data.decode("utf-8", "surrogateescape"), name=name)  # type: ignore[arg-type]
        end = self.skip_balanced(start)
        source = self.text[self.offs[start] : self.offs[end - 1] + 1]
        mod = ScriptModule(line, "text", source, name=name)  # type: ignore[arg-type]
        try:
            if self.kinds[start + 2] == KEYWORD and self.vals[start + 2] == "definition":
                mod.wasm = self._module_skipping_definition(start)
            else:
                self.i = start
                mod.wasm = self.module()
        except TextError as exc:
            mod.error = exc
        except RecursionError:
            mod.error = self.error("folded instructions nested too deeply for this reader")
        self.i = end
        return mod

    def _module_skipping_definition(self, start: int) -> bytes:
        """``(module definition $id? field*)``: the module read as if ``definition`` were not there."""
        k, v, o = self.kinds, self.vals, self.offs
        saved = (k[start + 1], v[start + 1], o[start + 1], k[start + 2], v[start + 2], o[start + 2])
        # shift "(module" one token right over "definition"
        k[start + 1], v[start + 1], o[start + 1] = LPAR, None, o[start]
        k[start + 2], v[start + 2], o[start + 2] = KEYWORD, "module", saved[2]
        self.i = start + 1
        try:
            return self.module()
        finally:
            k[start + 1], v[start + 1], o[start + 1], k[start + 2], v[start + 2], o[start + 2] = saved

    def add_module_command(self, kind: str, mod: ScriptModule, extra: dict[str, Any]) -> dict[str, Any]:
        key = f"{self.stem}.{len(self.script.modules)}.wasm"
        self.script.modules[key] = mod
        cmd: dict[str, Any] = {"type": kind, "line": mod.line}
        if kind in ("module", "module_definition") and mod.name is not None:
            cmd["name"] = mod.name
        cmd["filename"] = key
        cmd["module_type"] = "text" if mod.kind == "quote" else "binary"
        cmd.update(extra)
        self.script.commands.append(cmd)
        return cmd

    def c_module(self) -> None:
        start = self.i
        j = start + 2
        if self.kinds[j] == KEYWORD and self.vals[j] == "instance":
            self.i = j + 1
            inst = self.opt_id()
            mod = self.opt_id()
            self.expect_rpar()
            cmd: dict[str, Any] = {"type": "module_instance", "line": self.line_at(start + 1), "module": mod}
            if inst is not None:
                cmd["instance"] = inst
            self.script.commands.append(cmd)
            return
        definition = self.kinds[j] == KEYWORD and self.vals[j] == "definition"
        module = self.script_module()
        self.add_module_command("module_definition" if definition else "module", module, {})

    # --- actions and values ----------------------------------------------------------------------

    def action(self) -> dict[str, Any]:
        kw = self.lpar_kw()
        if kw not in ("invoke", "get"):
            raise self.unexpected("'(invoke' or '(get'")
        self.i += 2
        act: dict[str, Any] = {"type": kw}
        mod = self.opt_id()
        if mod is not None:
            act["module"] = mod
        act["field"] = self.name()
        if kw == "invoke":
            args = []
            while self.kinds[self.i] == LPAR:
                args.append(self.value(result=False))
            act["args"] = args
        self.expect_rpar()
        return act

    def num(self, kind: str, result: bool) -> str:
        if self.kinds[self.i] != NUM:
            raise self.unexpected(f"an {kind} literal")
        tok: str = self.vals[self.i]  # type: ignore[assignment]
        self.i += 1
        if result and tok in ("nan:canonical", "nan:arithmetic"):
            return tok
        try:
            if kind in ("i8", "i16", "i32", "i64"):
                return str(parse_sint(tok, int(kind[1:])))
            return str(parse_float(tok, F32_FORMAT if kind == "f32" else F64_FORMAT))
        except LiteralError as exc:
            raise self.error(str(exc), self.i - 1) from None

    def value(self, result: bool) -> dict[str, Any]:
        kw = self.lpar_kw()
        start = self.i
        if kw is None:
            raise self.unexpected("a value")
        self.i += 2
        out: dict[str, Any]
        if kw in ("i32.const", "i64.const", "f32.const", "f64.const"):
            out = {"type": kw[:3], "value": self.num(kw[:3], result)}
        elif kw == "v128.const":
            shape = self.vals[self.i] if self.kinds[self.i] == KEYWORD else None
            if shape not in _LANES:
                raise self.unexpected("a vector shape")
            self.i += 1
            lane, n, bits = _LANES[shape]  # type: ignore[index]
            lanes = []
            for _ in range(n):
                if lane[0] == "i":
                    if self.kinds[self.i] != NUM:
                        raise self.unexpected("a lane value")
                    try:
                        v = parse_int(self.vals[self.i], bits)  # type: ignore[arg-type]
                    except LiteralError as exc:
                        raise self.error(str(exc)) from None
                    self.i += 1
                    lanes.append(str(v - (1 << bits) if v >> (bits - 1) else v))
                else:
                    lanes.append(self.num(lane, result))
            out = {"type": "v128", "lane_type": lane, "value": lanes}
        elif kw == "ref.null":
            if self.kinds[self.i] == RPAR:
                out = {"type": "refnull"}
            else:
                ht = self.vals[self.i]
                if self.kinds[self.i] != KEYWORD or ht not in _NULL_TYPES:
                    out = {"type": "refnull"}
                    self.i += 1
                else:
                    self.i += 1
                    name, has_value = _NULL_TYPES[ht]  # type: ignore[index]
                    out = {"type": name, "value": "null"} if has_value else {"type": name}
        elif kw in _REF_RESULTS:
            out = {"type": _REF_RESULTS[kw]}
            if self.kinds[self.i] == NUM:
                out["value"] = str(self.u32())
        elif kw == "either" and result:
            values = []
            while self.kinds[self.i] == LPAR:
                values.append(self.value(result=True))
            out = {"type": "either", "values": values}
        else:
            raise self.error(f"unknown value {kw}", start + 1)
        self.expect_rpar()
        return out

    def text_arg(self) -> str:
        pos = self.offs[self.i]
        return utf8(self.string(), self.text, pos)

    # --- commands --------------------------------------------------------------------------------

    def c_register(self) -> None:
        start = self.i
        self.i += 2
        as_name = self.text_arg()
        cmd: dict[str, Any] = {"type": "register", "line": self.line_at(start + 1)}
        mod = self.opt_id()
        if mod is not None:
            cmd["name"] = mod
        cmd["as"] = as_name
        self.expect_rpar()
        self.script.commands.append(cmd)

    def c_action(self) -> None:
        start = self.i
        act = self.action()
        self.script.commands.append({"type": "action", "line": self.line_at(start + 1), "action": act})

    def c_assert_return(self) -> None:
        start = self.i
        self.i += 2
        act = self.action()
        expected = []
        while self.kinds[self.i] == LPAR:
            expected.append(self.value(result=True))
        self.expect_rpar()
        self.script.commands.append(
            {"type": "assert_return", "line": self.line_at(start + 1), "action": act, "expected": expected}
        )

    def c_assert_trap(self) -> None:
        start = self.i
        kind: str = self.vals[self.i + 1]  # type: ignore[assignment]
        self.i += 2
        if kind == "assert_trap" and self.lpar_kw() == "module":
            mod = self.script_module()
            text = self.text_arg()
            self.expect_rpar()
            self.add_module_command("assert_trap", mod, {"text": text})
            return
        act = self.action()
        cmd: dict[str, Any] = {"type": kind, "line": self.line_at(start + 1), "action": act}
        if kind != "assert_exception":
            cmd["text"] = self.text_arg()
        self.expect_rpar()
        self.script.commands.append(cmd)

    def c_assert_module(self) -> None:
        kind: str = self.vals[self.i + 1]  # type: ignore[assignment]
        self.i += 2
        mod = self.script_module()
        text = self.text_arg()
        self.expect_rpar()
        self.add_module_command(kind, mod, {"text": text})

    def c_skip(self) -> None:
        """Meta commands (``script``, ``input``, ``output``) and threads: not run here."""
        self.i = self.skip_balanced(self.i)


_COMMANDS = {
    "module": ScriptParser.c_module,
    "register": ScriptParser.c_register,
    "invoke": ScriptParser.c_action,
    "get": ScriptParser.c_action,
    "assert_return": ScriptParser.c_assert_return,
    "assert_trap": ScriptParser.c_assert_trap,
    "assert_exhaustion": ScriptParser.c_assert_trap,
    "assert_exception": ScriptParser.c_assert_trap,
    **{k: ScriptParser.c_assert_module for k in _MODULE_ASSERTS},
    "script": ScriptParser.c_skip,
    "input": ScriptParser.c_skip,
    "output": ScriptParser.c_skip,
}


def parse_script(text: str, filename: str | None = None) -> Script:
    """The commands and modules of a ``.wast`` script."""
    return ScriptParser(text, filename).parse()
