"""Guests for the pre-initialisation tests (test_preinit.py, and serve-stdin --init in test_serve.py)."""

from __future__ import annotations

# A WASI command with an initialiser that prints, reads its environment, copies a passive segment
# into memory and drops it, grows and fills memory, sets globals and fills a table. ``_start``
# prints one line of the state it finds, then changes it (so a leak into the next instance shows):
#   inits starts envc t[1] t[3] mem[74999] mem[196000] |big|%10 -f memory.size KEPT visits
INIT_CMD = """
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
  (type $num (func (result i32)))
  (memory (export "memory") 1)
  (global $inits (mut i32) (i32.const 0))
  (global $starts (mut i32) (i32.const 0))
  (global $big (mut i64) (i64.const 0))
  (global $f (mut f64) (f64.const 0))
  (global $envc (mut i32) (i32.const 0))
  (table $t 4 funcref)
  (data $greeting "initialising\\n")
  (data $kept "KEPT")
  (func $seven (type $num) (i32.const 7))
  (func $eight (type $num) (i32.const 8))
  (elem declare func $seven $eight)
  (start $on_start)
  (func $on_start (global.set $starts (i32.add (global.get $starts) (i32.const 1))))
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "wizer.initialize")
    (memory.init $greeting (i32.const 100) (i32.const 0) (i32.const 13))
    (data.drop $greeting)
    (call $write (i32.const 100) (i32.const 13))
    (drop (call $env_sizes (i32.const 16) (i32.const 20)))
    (global.set $envc (i32.load (i32.const 16)))
    (global.set $inits (i32.add (global.get $inits) (i32.const 1)))
    (global.set $big (i64.const -123456789012))
    (global.set $f (f64.const -2.5))
    (drop (memory.grow (i32.const 2)))
    (memory.fill (i32.const 70000) (i32.const 0x41) (i32.const 5000))
    (i32.store8 (i32.const 196000) (i32.const 0x42))
    (table.set $t (i32.const 1) (ref.func $seven))
    (table.set $t (i32.const 3) (ref.func $eight)))
  (func $digit (param $at i32) (param $v i32)
    (i32.store8 (local.get $at) (i32.add (i32.const 48) (local.get $v))))
  (func (export "_start")
    (call $digit (i32.const 200) (global.get $inits))
    (call $digit (i32.const 201) (global.get $starts))
    (call $digit (i32.const 202) (global.get $envc))
    (call $digit (i32.const 203) (call_indirect $t (type $num) (i32.const 1)))
    (call $digit (i32.const 204) (call_indirect $t (type $num) (i32.const 3)))
    (i32.store8 (i32.const 205) (i32.load8_u (i32.const 74999)))
    (i32.store8 (i32.const 206) (i32.load8_u (i32.const 196000)))
    (call $digit (i32.const 207)
      (i32.wrap_i64 (i64.rem_u (i64.sub (i64.const 0) (global.get $big)) (i64.const 10))))
    (call $digit (i32.const 208) (i32.trunc_f64_s (f64.neg (global.get $f))))
    (call $digit (i32.const 209) (memory.size))
    (memory.init $kept (i32.const 210) (i32.const 0) (i32.const 4))
    (call $digit (i32.const 214) (i32.load8_u (i32.const 1000)))
    (i32.store8 (i32.const 215) (i32.const 10))
    (call $write (i32.const 200) (i32.const 16))
    (i32.store8 (i32.const 1000) (i32.add (i32.load8_u (i32.const 1000)) (i32.const 1)))
    (global.set $starts (i32.add (global.get $starts) (i32.const 1))))
  (func (export "reinit") (memory.init $greeting (i32.const 0) (i32.const 0) (i32.const 1))))
"""

# What ``_start`` prints after the initialiser ran once with one environment variable.
INIT_CMD_LINE = b"11178AB223KEPT0\n"
