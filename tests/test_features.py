"""Feature sets: the presets, the command-line spelling, and the error for an unknown name."""

from __future__ import annotations

import pytest

from asyncwasm import Features
from asyncwasm.features import WASM2, WASM3


def test_presets() -> None:
    assert all(getattr(WASM3, n.replace("-", "_")) for n in Features.names())
    assert not any(getattr(WASM2, n.replace("-", "_")) for n in Features.names())
    assert Features() == WASM3


def test_parse_lists_start_from_a_preset() -> None:
    f = Features.parse("2.0,+simd,relaxed-simd=y")
    assert f.simd and f.relaxed_simd and not f.gc and not f.memory64
    g = Features.parse("-gc,tail-call=n")
    assert not g.gc and not g.tail_call and g.simd
    assert Features.parse("3.0") == WASM3 and Features.parse("2.0") == WASM2


def test_unknown_feature_is_named() -> None:
    with pytest.raises(ValueError, match="unknown Wasm feature 'threads'"):
        Features.parse("+threads")
    with pytest.raises(ValueError, match="expected y or n"):
        Features.parse("simd=maybe")
