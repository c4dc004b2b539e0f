"""The WebAssembly text format: modules (``.wat``) and spec scripts (``.wast``) to binary, without IO.

``wat_to_wasm(text)`` encodes a module written in the text format to the binary format, which then
goes through the same decoder and validator as any ``.wasm`` file. Errors are ``TextError`` (a
``MalformedModule``) naming ``line:column`` with the offending line and a caret.
"""

from __future__ import annotations

from .errors import TextError

__all__ = ["TextError", "is_text", "wat_to_wasm"]


def is_text(data: bytes | bytearray | memoryview | str) -> bool:
    """Whether a module's content is the text format rather than the binary one.

    Text starts (after an optional UTF-8 byte-order mark) with ``(``, whitespace or a ``;;`` comment;
    a binary module starts with ``\\0asm``.
    """
    if isinstance(data, str):
        return True
    head = bytes(data[:4])
    if head.startswith(b"\xef\xbb\xbf"):
        return True
    return bool(head) and (head[:1] in (b"(", b" ", b"\t", b"\n", b"\r") or head[:2] == b";;")


def wat_to_wasm(text: str | bytes, filename: str | None = None) -> bytes:
    """The binary module for a module written in the text format."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        raw = bytes(text)
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TextError(
                "malformed UTF-8 encoding", raw.decode("utf-8", "replace"), exc.start, filename
            ) from None
    # The parser and its tables take a good part of ``import asyncwasm``: a program that only loads
    # binary modules (every guest in production) never pays for them.
    from .parser import parse_module

    return parse_module(text, filename)
