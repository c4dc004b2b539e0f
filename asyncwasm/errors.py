"""The exceptions asyncwasm raises: the bottom floor, imported by everything and importing nothing."""

from __future__ import annotations

from dataclasses import dataclass

MEMORY_OOB = "out of bounds memory access"  # the trap messages several layers raise (wasmtime's words)
TABLE_OOB = "out of bounds table access"


class WasmError(Exception):
    """Base of every error asyncwasm raises on purpose."""


class MalformedModule(WasmError):
    """The bytes are not a WebAssembly binary: names the byte offset and what was wrong."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        self.message = message
        self.offset = offset
        where = f" at byte offset {offset:#x}" if offset is not None else ""
        super().__init__(f"malformed module{where}: {message}")


class UnsupportedFeature(MalformedModule):
    """The binary uses a feature that the feature set in force does not enable."""

    def __init__(self, feature: str, offset: int | None = None) -> None:
        self.feature = feature
        WasmError.__init__(self)
        self.message = f"unsupported feature: {feature}"
        self.offset = offset
        where = f" at byte offset {offset:#x}" if offset is not None else ""
        self.args = (f"unsupported feature{where}: {feature}",)


class InvalidModule(WasmError):
    """The module decodes but breaks a validation rule: names the function and instruction."""

    def __init__(
        self, message: str, func: int | None = None, offset: int | None = None, func_name: str | None = None
    ) -> None:
        self.message = message
        self.func = func
        self.offset = offset
        self.func_name = func_name
        where = ""
        if func is not None:
            where = f" in function {func_name or func}"
        if offset is not None:
            where += f" at byte offset {offset:#x}"
        super().__init__(f"invalid module{where}: {message}")


class LinkError(WasmError):
    """An import is missing or has the wrong type."""


@dataclass(frozen=True)
class Frame:
    """One Wasm frame of a trap's backtrace."""

    func_index: int
    func_name: str | None
    module_name: str | None
    offset: int | None  # code offset of the instruction in the module's bytes

    def describe(self) -> str:
        """One line of a backtrace: the function's name (or index), its module and the code offset."""
        name = self.func_name or f"<wasm function {self.func_index}>"
        mod = self.module_name or "<unknown>"
        off = f"{self.offset:#x}" if self.offset is not None else "0x?"
        return f"{off} - {mod}!{name}"


class Trap(WasmError):
    """Execution stopped abnormally; carries the Wasm backtrace, innermost frame first."""

    def __init__(self, message: str, frames: list[Frame] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.frames: list[Frame] = frames if frames is not None else []

    omitted = 0  # frames left out of a very deep backtrace, after the first ``KEEP_INNER``

    KEEP_INNER = 40

    def numbered_frames(self) -> list[tuple[int | None, str]]:
        """(depth, text) per line of the backtrace; depth None marks the line for omitted frames."""
        out: list[tuple[int | None, str]] = []
        for i, f in enumerate(self.frames):
            if self.omitted and i == self.KEEP_INNER:
                out.append((None, f"... {self.omitted} frames omitted ..."))
            depth = i + self.omitted if self.omitted and i >= self.KEEP_INNER else i
            out.append((depth, f.describe()))
        return out

    def backtrace(self) -> str:
        """The frames as text, innermost first, numbered as wasmtime numbers them."""
        return "\n".join(
            f"  {'':>3}  {t}" if d is None else f"  {d:>3}: {t}" for d, t in self.numbered_frames()
        )

    def __str__(self) -> str:
        if not self.frames:
            return self.message
        return f"{self.message}\nwasm backtrace:\n{self.backtrace()}"


class InstantiationError(WasmError):
    """Instantiation failed for a reason other than a trap (kept for API symmetry)."""


class FuelExhausted(Trap):
    """The fuel limit was reached."""

    def __init__(self, frames: list[Frame] | None = None) -> None:
        super().__init__("all fuel consumed by WebAssembly", frames)


class Interrupted(Trap):
    """The call ran past its wall-clock limit (``Store(timeout=...)``) and was stopped."""


class InstanceDead(WasmError):
    """The instance was stopped in the middle of a call (cancelled or timed out) and may not run."""
