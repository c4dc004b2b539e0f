"""The persistent code cache: a big module's description and translated functions survive the process,
damaged entries are rebuilt, the cache stays within its size, and an unsafe directory is not used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from wat import wat

from asyncwasm import CodeCache, CompiledModule, Features, Store, Trap
from asyncwasm.compiler.codegen import LAZY_THRESHOLD

N_FUNCS = 60  # 60 functions of ~100 instructions: lazily translated, so cached


def _big_module(seed: int = 0) -> bytes:
    """A module over the lazy threshold: f<k>(x) = x + k + seed computed the long way, and one that traps."""
    funcs = []
    for k in range(N_FUNCS):
        body = " ".join(["(local.set $t (i32.add (local.get $t) (i32.const 1)))"] * 32)
        funcs.append(f"""(func $f{k} (export "f{k}") (param $x i32) (result i32) (local $t i32)
            (local.set $t (i32.const {seed})) {body}
            (i32.add (local.get $x) (i32.add (i32.const {k - 32}) (local.get $t))))""")
    funcs.append('(func $boom (export "boom") (result i32) (i32.div_u (i32.const 1) (i32.const 0)))')
    return wat("(module " + "\n".join(funcs) + ")")


def test_big_module_is_over_the_lazy_threshold() -> None:
    cm = CompiledModule(_big_module(), cache=False)
    assert sum(len(c.body) for c in cm.module.codes) > LAZY_THRESHOLD
    assert cm.compiled.lazy


_CHILD = textwrap.dedent("""
    import json, sys, anyio
    from asyncwasm import CompiledModule, Linker, Store
    wasm = open(sys.argv[1], "rb").read()
    cm = CompiledModule(wasm, cache=sys.argv[2])
    async def main():
        inst = await Linker().instantiate(cm, Store())
        return [await inst.call(f"f{k}", 10) for k in (0, 5, 59)]
    values = anyio.run(main)
    e = cm.cache_entry
    print(json.dumps({"values": values, "module_hit": e.module_hit, "loaded": e.functions_loaded,
                      "stored": e.functions_stored, "translator": "asyncwasm.compiler.structured" in sys.modules,
                      "validator": "asyncwasm.validate" in sys.modules}))
""")


def _child(wasm_path: Path, cache: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(wasm_path), str(cache)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _counts(out: dict) -> dict:
    """A child's answer without what it imported."""
    return {k: v for k, v in out.items() if k not in ("translator", "validator")}


@pytest.fixture
def wasm_file(tmp_path: Path) -> Path:
    path = tmp_path / "big.wasm"
    path.write_bytes(_big_module())
    return path


def test_a_second_process_starts_from_the_cache(tmp_path: Path, wasm_file: Path) -> None:
    cache = tmp_path / "cache"
    first = _child(wasm_file, cache)
    assert _counts(first) == {"values": [10, 15, 69], "module_hit": False, "loaded": 0, "stored": 3}
    assert first["translator"] and first["validator"]
    (entry,) = [p for p in cache.iterdir() if p.is_dir()]
    assert sorted(p.name for p in entry.iterdir()) == sorted(["module", "f0", "f5", "f59"])
    second = _child(wasm_file, cache)
    assert _counts(second) == {"values": [10, 15, 69], "module_hit": True, "loaded": 3, "stored": 0}
    # a warm start never loads the validator or the translator: their import is a third of asyncwasm's
    assert not second["translator"] and not second["validator"]


def test_processes_sharing_a_cache_at_once(tmp_path: Path, wasm_file: Path) -> None:
    cache = tmp_path / "cache"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(wasm_file), str(cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert json.loads(out)["values"] == [10, 15, 69]
    assert _child(wasm_file, cache)["loaded"] == 3
    assert not [p for p in cache.rglob(".*.tmp")]  # no temporary file left behind


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "foreign"])
def test_damaged_entries_are_ignored_and_rebuilt(tmp_path: Path, wasm_file: Path, damage: str) -> None:
    cache = tmp_path / "cache"
    _child(wasm_file, cache)
    (entry,) = [p for p in cache.iterdir() if p.is_dir()]
    for name in ("module", "f5"):
        f = entry / name
        data = bytearray(f.read_bytes())
        if damage == "flip":
            data[len(data) // 2] ^= 0x40
        elif damage == "truncate":
            del data[len(data) // 2 :]
        elif damage == "empty":
            data = bytearray()
        else:
            data = bytearray(b"\x00" * len(data))
        f.write_bytes(bytes(data))
    again = _child(wasm_file, cache)
    assert again["values"] == [10, 15, 69]
    assert again["module_hit"] is False and again["loaded"] == 2 and again["stored"] == 1  # f5 rebuilt
    assert _counts(_child(wasm_file, cache)) == {
        "values": [10, 15, 69],
        "module_hit": True,
        "loaded": 3,
        "stored": 0,
    }


def test_the_key_covers_the_bytes_and_the_feature_set(tmp_path: Path) -> None:
    cache = CodeCache(tmp_path / "cache")
    a = CompiledModule(_big_module(0), cache=cache)
    b = CompiledModule(_big_module(1), cache=cache)
    c = CompiledModule(_big_module(0), cache=cache, features=Features.wasm2())
    d = CompiledModule(_big_module(0), cache=cache)
    paths = [m.cache_entry.path for m in (a, b, c, d)]  # type: ignore[union-attr]
    assert len(set(paths[:3])) == 3 and paths[3] == paths[0]
    assert d.cache_entry.module_hit  # type: ignore[union-attr]


def test_least_recently_used_modules_are_evicted(tmp_path: Path) -> None:
    probe = CodeCache(tmp_path / "probe")
    CompiledModule(_big_module(0), cache=probe)
    one = probe.size()
    cache = CodeCache(tmp_path / "cache", max_bytes=int(one * 2.5))
    first = CompiledModule(_big_module(0), cache=cache).cache_entry
    second = CompiledModule(_big_module(1), cache=cache).cache_entry
    time.sleep(0.05)
    os.utime(first.path)  # type: ignore[union-attr]  # the first was used more recently than the second
    CompiledModule(_big_module(2), cache=cache)
    assert first.path.exists() and not second.path.exists()  # type: ignore[union-attr]
    assert cache.size() <= cache.max_bytes


def test_small_modules_are_not_cached(tmp_path: Path) -> None:
    cache = CodeCache(tmp_path / "cache")
    cm = CompiledModule(wat('(module (func (export "f") (result i32) (i32.const 1)))'), cache=cache)
    assert cm.cache_entry is None and cache.size() == 0


def test_a_directory_others_can_write_is_not_used(tmp_path: Path) -> None:
    shared = tmp_path / "open"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.warns(UserWarning, match="writable by other users"):
        cm = CompiledModule(_big_module(), cache=shared)
    assert cm.cache_entry is None and not list(shared.iterdir())


def test_a_cache_that_cannot_be_written_costs_speed_not_correctness(tmp_path: Path, wasm_file: Path) -> None:
    cache = tmp_path / "cache"
    _child(wasm_file, cache)
    (entry,) = [p for p in cache.iterdir() if p.is_dir()]
    for f in entry.iterdir():
        f.unlink()
    entry.rmdir()
    entry.write_bytes(b"")  # a file where the entry's directory belongs: every read and write fails
    out = _counts(_child(wasm_file, cache))
    assert out == {"values": [10, 15, 69], "module_hit": False, "loaded": 0, "stored": 3}
    assert entry.read_bytes() == b""


@pytest.mark.anyio
async def test_a_trap_in_a_cached_function_has_its_backtrace(tmp_path: Path) -> None:
    from asyncwasm import Linker

    cache = CodeCache(tmp_path / "cache")
    for round_ in range(2):
        cm = CompiledModule(_big_module(), cache=cache)
        inst = await Linker().instantiate(cm, Store())
        with pytest.raises(Trap) as info:
            await inst.call("boom")
        assert "boom" in str(info.value) or any("boom" in str(f) for f in info.value.frames)
        assert cm.cache_entry.functions_loaded == round_  # type: ignore[union-attr]


def test_precompile_fills_the_cache_ahead_of_time(tmp_path: Path, wasm_file: Path) -> None:
    cache = tmp_path / "cache"
    seen: list[tuple[int, int]] = []
    cm = CompiledModule(wasm_file.read_bytes(), cache=cache)
    assert cm.precompile(lambda done, total: seen.append((done, total))) == N_FUNCS + 1
    assert seen[-1] == (N_FUNCS + 1, N_FUNCS + 1) and len(seen) > 1
    assert [d for d, _t in seen] == sorted(d for d, _t in seen)
    assert CompiledModule(wasm_file.read_bytes(), cache=cache).precompile() == 0  # all found in the cache
    assert _counts(_child(wasm_file, cache)) == {
        "values": [10, 15, 69],
        "module_hit": True,
        "loaded": 3,
        "stored": 0,
    }


@pytest.mark.anyio
async def test_a_warm_start_reads_no_function_body_it_does_not_translate(tmp_path: Path) -> None:
    from asyncwasm import Linker

    cache = CodeCache(tmp_path / "cache")
    first = await Linker().instantiate(CompiledModule(_big_module(), cache=cache), Store())
    assert await first.call("f1", 1) == 2
    cm = CompiledModule(_big_module(), cache=cache)
    kept = [c for c in cm.module.codes if c._body is None]  # type: ignore[attr-defined]  # noqa: SLF001
    assert len(kept) == N_FUNCS + 1  # nothing decoded yet
    inst = await Linker().instantiate(cm, Store())
    assert await inst.call("f1", 1) == 2  # from the cache: its body is still not read
    assert await inst.call("f2", 1) == 3  # translated now: its body is read
    unread = {i for i, c in enumerate(cm.module.codes) if c._body is None}  # type: ignore[attr-defined]  # noqa: SLF001
    assert 1 in unread and 2 not in unread and len(unread) == N_FUNCS
    assert cm.module.codes[3].instruction_count() == len(cm.module.codes[3].body)
