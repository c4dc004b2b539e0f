"""Which WebAssembly proposals a module may use: the feature set, chosen per module as wasmtime's
``Config`` chooses them per engine.

The default is all of Wasm 3.0. ``Features.wasm2()`` is the 2.0 preset, under which the 2.0 spec suite's
rules hold (the two suites disagree in a few places: 2.0 rejects several memories, a constant
expression reading a defined global, ...). Names follow wasmtime's ``-W`` flags (``simd``,
``relaxed-simd``, ``tail-call``, ...), so ``Features.parse("2.0,+simd")`` reads like a command line.

The decoder and the validator consult the set: a module that uses a disabled feature fails with an
error naming it (``UnsupportedFeature`` where the binary itself needs the feature, ``InvalidModule``
where only a validation rule differs).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from .errors import UnsupportedFeature

__all__ = ["Features", "WASM2", "WASM3"]


@dataclass(frozen=True)
class Features:
    """A set of enabled proposals beyond Wasm 2.0 (which is always on)."""

    simd: bool = True
    relaxed_simd: bool = True
    tail_call: bool = True
    exceptions: bool = True
    legacy_exceptions: bool = True  # try/catch/delegate/rethrow, still LLVM's default output
    function_references: bool = True
    gc: bool = True
    memory64: bool = True
    multi_memory: bool = True
    extended_const: bool = True

    @classmethod
    def wasm2(cls) -> Features:
        """Wasm 2.0 exactly: every proposal of 3.0 off."""
        return cls(**{f.name: False for f in fields(cls)})

    @classmethod
    def wasm3(cls) -> Features:
        """All of Wasm 3.0 (the default)."""
        return cls()

    @classmethod
    def names(cls) -> list[str]:
        """The feature names as the command line spells them (wasmtime's)."""
        return [f.name.replace("_", "-") for f in fields(cls)]

    @classmethod
    def parse(cls, text: str) -> Features:
        """Read ``"2.0"``, ``"3.0"``, or a comma list of presets and ``+name`` / ``-name`` / ``name=y|n``.

        A list starts from 3.0 unless its first item is a preset: ``"2.0,+simd"`` is 2.0 with SIMD,
        ``"-gc"`` is 3.0 without GC. Raises ``ValueError`` naming an unknown feature.
        """
        feats = cls()
        for raw in (t.strip() for t in text.split(",")):
            if not raw:
                continue
            if raw in ("2.0", "wasm2", "2"):
                feats = cls.wasm2()
                continue
            if raw in ("3.0", "wasm3", "3", "all"):
                feats = cls.wasm3()
                continue
            on = True
            name = raw
            if raw[0] in "+-":
                on, name = raw[0] == "+", raw[1:]
            elif "=" in raw:
                name, _, val = raw.partition("=")
                if val.lower() not in ("y", "yes", "true", "1", "n", "no", "false", "0"):
                    raise ValueError(f"feature {name}: expected y or n, got {val!r}")
                on = val.lower() in ("y", "yes", "true", "1")
            attr = name.strip().replace("-", "_")
            if attr not in {f.name for f in fields(cls)}:
                raise ValueError(f"unknown Wasm feature {name!r} (known: {', '.join(cls.names())}, 2.0, 3.0)")
            feats = replace(feats, **{attr: on})
        return feats

    def require(self, name: str, offset: int | None = None) -> None:
        """Raise ``UnsupportedFeature`` unless feature ``name`` (the attribute name) is enabled."""
        if not getattr(self, name):
            raise UnsupportedFeature(f"{name.replace('_', '-')} (not enabled in this feature set)", offset)

    def __str__(self) -> str:
        on = [f.name.replace("_", "-") for f in fields(self) if getattr(self, f.name)]
        return ",".join(on) if on else "2.0"


WASM2 = Features.wasm2()
WASM3 = Features.wasm3()
