"""The limits ``asyncwasm run`` exposes beyond fuel, time and memory, tried from a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from wat import wat

OPEN_UNTIL_REFUSED = """
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) ".")
  ;; open the preopened directory again and again; exit with how many opens worked, or with
  ;; 200 + errno when the very first one failed
  (func (export "_start") (local $n i32) (local $e i32)
    (loop $l
      (local.set $e (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 2)
                                (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 200)))
      (if (i32.eqz (local.get $e)) (then (local.set $n (i32.add (local.get $n) (i32.const 1))) (br $l))))
    (call $exit (select (local.get $n) (i32.add (i32.const 200) (local.get $e)) (local.get $n)))))
"""

GROW_TABLES = """
(module
  (table $a 0 funcref) (table $b 0 funcref)
  (func (export "_start")
    (if (i32.eq (table.grow $a (ref.null func) (i32.const 600)) (i32.const -1)) (then unreachable))
    ;; the second grow is over a budget of 1,000 elements for both tables together
    (if (i32.ne (table.grow $b (ref.null func) (i32.const 600)) (i32.const -1)) (then unreachable))))
"""


def _run(tmp_path: Path, source: str, *flags: str) -> subprocess.CompletedProcess[str]:
    module = tmp_path / "guest.wasm"
    module.write_bytes(wat(source))
    return subprocess.run(
        [sys.executable, "-m", "asyncwasm", "run", *flags, str(module)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_max_open_files_stops_a_guest_that_opens_without_end(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    limited = _run(tmp_path, OPEN_UNTIL_REFUSED, "--dir", str(tmp_path / "d"), "--max-open-files", "10")
    assert limited.returncode == 10, limited.stderr  # then EMFILE, which the guest counts as the end


def test_max_table_elements_bounds_all_tables_together(tmp_path: Path) -> None:
    proc = _run(tmp_path, GROW_TABLES, "--max-table-elements", "1000")
    assert proc.returncode == 0, proc.stderr
