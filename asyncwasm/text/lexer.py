"""Tokens of the WebAssembly text format.

The whole text is cut into three parallel lists (kinds, values, character offsets) by one compiled
regular expression, because a Python loop over ``re.match`` objects is the fastest pure-Python
tokenizer for megabyte-sized spec scripts; the parser then indexes these lists instead of creating a
token object per atom. Whitespace, line comments, nested block comments and annotations
``(@id ...)`` never reach the parser: annotations are skipped like comments (their content is still
lexed, so an unclosed string inside one is reported).

Token values: ``STRING`` holds the decoded ``bytes``; ``ID`` the identifier without ``$`` (the quoted
form ``$"..."`` decoded to text); ``KEYWORD`` and ``NUM`` the source text; ``RESERVED`` the source
text of an atom that is none of these (an error wherever the parser meets it).
"""

from __future__ import annotations

import re

from .errors import TextError

LPAR, RPAR, STRING, ID, KEYWORD, NUM, RESERVED, EOF = range(8)
KIND_NAMES = ("'('", "')'", "string", "identifier", "keyword", "number", "reserved token", "end of input")

_IDCHAR = r"0-9A-Za-z!#$%&'*+\-./:<=>?@\\^_`|~"
_STRING = r'"(?:[^"\\]|\\.)*"'
_SCAN = re.compile(
    r"[ \t\n\r]*(?:"
    r"(;;[^\n\r]*)"  # 1 line comment (ends at LF or CR)
    r"|(\(;)"  # 2 block comment (nests: scanned by hand)
    r"|(\(@)"  # 3 annotation
    r"|(\()"  # 4
    r"|(\))"  # 5
    rf"|((?:[{_IDCHAR}]|{_STRING})+)"  # 6 atom: idchars and strings, maximal munch
    r"|(.|\Z))",  # 7 anything else, or the end
    re.S,
)
_ANNOT_ID = re.compile(rf"[{_IDCHAR}]+|{_STRING}")
_PLAIN_STRING = re.compile(_STRING)
_KEYWORD = re.compile(rf"[a-z][{_IDCHAR}]*")
_IDNAME = re.compile(rf"[{_IDCHAR}]+")
_NUMLIKE = re.compile(r"[+-]?(?:[0-9]|inf|nan)")
_ESCAPE = re.compile(r"\\(?:([0-9a-fA-F]{2})|u\{([0-9a-fA-F](?:_?[0-9a-fA-F])*)\}|(.))", re.S)
_BAD_STRING_CHAR = re.compile(r"[\x00-\x1f\x7f]")
_SIMPLE_ESCAPES = {"t": b"\t", "n": b"\n", "r": b"\r", '"': b'"', "'": b"'", "\\": b"\\"}


def decode_string(raw: str, text: str, pos: int) -> bytes:
    """The bytes a string literal (with its quotes) stands for; ``pos`` is its offset, for errors."""
    body = raw[1:-1]
    bad = _BAD_STRING_CHAR.search(body)
    if bad:
        raise TextError("illegal character in string", text, pos + 1 + bad.start())
    if "\\" not in body:
        return body.encode("utf-8", "surrogatepass")
    out = bytearray()
    last = 0
    for m in _ESCAPE.finditer(body):
        out += body[last : m.start()].encode("utf-8", "surrogatepass")
        last = m.end()
        hexbyte, uni, other = m.groups()
        if hexbyte is not None:
            out.append(int(hexbyte, 16))
        elif uni is not None:
            cp = int(uni.replace("_", ""), 16)
            if cp >= 0x110000 or 0xD800 <= cp < 0xE000:
                raise TextError(
                    "malformed Unicode escape: not a Unicode scalar value", text, pos + 1 + m.start()
                )
            out += chr(cp).encode("utf-8")
        elif other in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[other]
        else:
            raise TextError("illegal escape in string", text, pos + 1 + m.start())
    out += body[last:].encode("utf-8", "surrogatepass")
    return bytes(out)


def utf8(data: bytes, text: str, pos: int) -> str:
    """A name: the string's bytes must be valid UTF-8 ("malformed UTF-8 encoding" otherwise)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise TextError("malformed UTF-8 encoding", text, pos) from None


def _skip_block_comment(text: str, pos: int) -> int:
    """Offset just past the block comment opening at ``pos``; block comments nest."""
    depth = 1
    i = pos + 2
    n = len(text)
    while depth:
        j = text.find(";", i)
        k = text.find("(;", i)
        if j < 0:
            raise TextError("unclosed block comment", text, pos)
        if 0 <= k < j:  # "(;" opens before the next ";" that could close
            depth += 1
            i = k + 2
            continue
        if j + 1 < n and text[j + 1] == ")":
            depth -= 1
            i = j + 2
        else:
            i = j + 1
    return i


def tokenize(text: str) -> tuple[list[int], list[object], list[int]]:
    """Kinds, values and offsets of every token of ``text``, ending with one ``EOF`` token."""
    kinds: list[int] = []
    vals: list[object] = []
    offs: list[int] = []
    kappend, vappend, oappend = kinds.append, vals.append, offs.append
    annot_depth = 0  # > 0 inside an annotation: tokens are lexed but dropped
    annot_start = 0
    pos = 0
    match = _SCAN.match
    while True:
        m = match(text, pos)
        assert m is not None  # the last alternative matches any character or the end
        pos = m.end()
        g = m.lastindex
        if g == 6:
            start = m.start(6)
            if annot_depth:
                continue
            atom = m.group(6)
            c = atom[0]
            if c == "$":
                kappend(ID)
                vappend(_identifier(atom, text, start))
            elif c == '"':
                if _PLAIN_STRING.fullmatch(atom):
                    kappend(STRING)
                    vappend(decode_string(atom, text, start))
                else:
                    kappend(RESERVED)
                    vappend(atom)
            elif (
                "a" <= c <= "z"
                and '"' not in atom
                and _KEYWORD.fullmatch(atom)
                and not atom.startswith(("inf", "nan"))
            ):
                kappend(KEYWORD)
                vappend(atom)
            elif _NUMLIKE.match(atom) and '"' not in atom:
                kappend(NUM)
                vappend(atom)
            else:
                kappend(RESERVED)
                vappend(atom)
            oappend(start)
        elif g == 4:
            if annot_depth:
                annot_depth += 1
                continue
            kappend(LPAR)
            vappend(None)
            oappend(m.start(4))
        elif g == 5:
            if annot_depth:
                annot_depth -= 1
                continue
            kappend(RPAR)
            vappend(None)
            oappend(m.start(5))
        elif g == 1:
            continue
        elif g == 2:
            pos = _skip_block_comment(text, m.start(2))
        elif g == 3:
            start = m.start(3)
            idm = _ANNOT_ID.match(text, pos)
            if idm is None or idm.group() == '""':
                if annot_depth:  # inside an annotation "(@" alone is just a parenthesis
                    annot_depth += 1
                    continue
                raise TextError("empty annotation id", text, start)
            if idm.group()[0] == '"':
                utf8(decode_string(idm.group(), text, pos), text, pos)
            pos = idm.end()
            if not annot_depth:
                annot_start = start
            annot_depth += 1
        else:
            start = m.start(7)
            if start >= len(text):
                if annot_depth:
                    raise TextError("unclosed annotation", text, annot_start)
                kappend(EOF)
                vappend(None)
                oappend(start)
                return kinds, vals, offs
            c = text[start]
            if c == '"':
                raise TextError("unclosed string", text, start)
            if annot_depth and c in ",;[]{}":
                continue
            if c in ",;[]{}":
                kappend(RESERVED)
                vappend(c)
                oappend(start)
                continue
            raise TextError(f"illegal character {c!r}", text, start)


def _identifier(atom: str, text: str, pos: int) -> str:
    """The name of ``$name`` or ``$"name"``; an empty or malformed one is an error here."""
    rest = atom[1:]
    if rest and '"' not in rest and _IDNAME.fullmatch(rest):
        return rest
    if rest.startswith('"') and _PLAIN_STRING.fullmatch(rest):
        name = utf8(decode_string(rest, text, pos + 1), text, pos + 1)
        if name:
            return name
    if not rest:
        raise TextError("empty identifier", text, pos)
    raise TextError(f"malformed identifier {atom}", text, pos)
