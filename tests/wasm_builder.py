"""A small WebAssembly binary writer for tests that need modules too big or too regular to write as
text: thousands of functions, bodies of hundreds of thousands of instructions.

    b = ModuleBuilder()
    t = b.type((), ("i32",))
    b.func(t, body=[0x41, *sleb(7)], export="seven")
    wasm = b.build()
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from asyncwasm.binary.encode import sleb, uleb  # the engine's own LEB128 writers

VALTYPES = {"i32": 0x7F, "i64": 0x7E, "f32": 0x7D, "f64": 0x7C, "funcref": 0x70, "externref": 0x6F}
END = 0x0B


def vec(items: Sequence[bytes]) -> bytes:
    return uleb(len(items)) + b"".join(items)


def name(text: str) -> bytes:
    raw = text.encode()
    return uleb(len(raw)) + raw


def section(sid: int, payload: bytes) -> bytes:
    return bytes((sid,)) + uleb(len(payload)) + payload


class ModuleBuilder:
    """Collects types, functions, tables, memories and exports; ``build()`` writes the binary."""

    def __init__(self) -> None:
        self.types: list[bytes] = []
        self.imports: list[bytes] = []
        self.n_imported_funcs = 0
        self.funcs: list[tuple[int, bytes, bytes]] = []  # (type index, locals, body)
        self.tables: list[bytes] = []
        self.memories: list[bytes] = []
        self.globals: list[bytes] = []
        self.exports: list[bytes] = []
        self.start: int | None = None

    def type(self, params: Iterable[str], results: Iterable[str]) -> int:
        enc = (
            b"\x60"
            + vec([bytes((VALTYPES[p],)) for p in params])
            + vec([bytes((VALTYPES[r],)) for r in results])
        )
        if enc in self.types:
            return self.types.index(enc)
        self.types.append(enc)
        return len(self.types) - 1

    def import_func(self, module: str, field: str, type_index: int) -> int:
        self.imports.append(name(module) + name(field) + b"\x00" + uleb(type_index))
        self.n_imported_funcs += 1
        return self.n_imported_funcs - 1

    def func(
        self,
        type_index: int,
        body: Iterable[int] | bytes,
        *,
        locals: Sequence[tuple[int, str]] = (),
        export: str | None = None,
    ) -> int:
        """Add a function whose body is ``body`` (instructions, without the final ``end``)."""
        index = self.n_imported_funcs + len(self.funcs)
        loc = vec([uleb(n) + bytes((VALTYPES[t],)) for n, t in locals])
        self.funcs.append((type_index, loc, bytes(body) + bytes((END,))))
        if export is not None:
            self.export(export, 0, index)
        return index

    def table(self, minimum: int, maximum: int | None = None, elem: str = "funcref") -> int:
        self.tables.append(bytes((VALTYPES[elem],)) + _limits(minimum, maximum))
        return len(self.tables) - 1

    def memory(self, minimum: int, maximum: int | None = None, export: str | None = None) -> int:
        self.memories.append(_limits(minimum, maximum))
        if export is not None:
            self.export(export, 2, len(self.memories) - 1)
        return len(self.memories) - 1

    def export(self, field: str, kind: int, index: int) -> None:
        self.exports.append(name(field) + bytes((kind,)) + uleb(index))

    def build(self) -> bytes:
        out = bytearray(b"\x00asm\x01\x00\x00\x00")
        if self.types:
            out += section(1, vec(self.types))
        if self.imports:
            out += section(2, vec(self.imports))
        if self.funcs:
            out += section(3, vec([uleb(t) for t, _l, _b in self.funcs]))
        if self.tables:
            out += section(4, vec(self.tables))
        if self.memories:
            out += section(5, vec(self.memories))
        if self.globals:
            out += section(6, vec(self.globals))
        if self.exports:
            out += section(7, vec(self.exports))
        if self.start is not None:
            out += section(8, uleb(self.start))
        if self.funcs:
            bodies = [loc + body for _t, loc, body in self.funcs]
            out += section(10, vec([uleb(len(b)) + b for b in bodies]))
        return bytes(out)


def _limits(minimum: int, maximum: int | None) -> bytes:
    return b"\x00" + uleb(minimum) if maximum is None else b"\x01" + uleb(minimum) + uleb(maximum)


def call(index: int) -> bytes:
    return b"\x10" + uleb(index)


def i32_const(value: int) -> bytes:
    return b"\x41" + sleb(value)
