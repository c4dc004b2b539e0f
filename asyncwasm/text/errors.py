"""The one exception the text-format reader raises, pointing at the offending line and column."""

from __future__ import annotations

from ..errors import MalformedModule


def line_col(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of character offset ``pos`` (computed only when an error is reported)."""
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, col


class TextError(MalformedModule):
    """The text is not a well-formed WebAssembly module or script.

    A subclass of ``MalformedModule`` so that callers which load modules (the CLI, the spec-script
    runner's ``assert_malformed``) treat a text that does not parse exactly like a binary that does
    not decode. ``str()`` is ``LINE:COL: message`` followed by the source line and a caret under the
    offending column.
    """

    def __init__(
        self, message: str, text: str = "", pos: int | None = None, filename: str | None = None
    ) -> None:
        self.message = message
        self.offset = None
        self.pos = pos
        self.line, self.col = line_col(text, pos) if pos is not None else (0, 0)
        if pos is not None:
            start = text.rfind("\n", 0, pos) + 1
            end = text.find("\n", pos)
            src = text[start : end if end >= 0 else len(text)].rstrip("\r").expandtabs(1)
            where = f"{filename + ':' if filename else ''}{self.line}:{self.col}"
            shown = f"{where}: {message}\n  {src}\n  {' ' * (self.col - 1)}^"
        else:
            shown = f"{filename + ': ' if filename else ''}{message}"
        Exception.__init__(self, shown)
