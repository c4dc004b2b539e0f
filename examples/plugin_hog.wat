;; Plugin for plugin_service.py that wants all the memory it can get: it grows its memory a page at a
;; time until memory.grow refuses (returns -1), then answers "memory.grow refused at N pages".
;; Built with `wat2wasm --debug-names plugin_hog.wat -o plugin_hog.wasm`.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "memory.grow refused at ")
  ;; write the decimal digits of $v ending just before $end; returns where they start
  (func $itoa (param $v i32) (param $end i32) (result i32)
    (loop $l
      (local.set $end (i32.sub (local.get $end) (i32.const 1)))
      (i32.store8 (local.get $end) (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
      (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
      (br_if $l (local.get $v)))
    (local.get $end))
  (func $start (export "_start") (local $digits i32)
    (block $refused
      (loop $grow
        (br_if $refused (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (br $grow)))
    ;; "memory.grow refused at " (23 bytes at 64), the page count, " pages\n"
    (local.set $digits (call $itoa (memory.size) (i32.const 160)))
    (i64.store (i32.const 160) (i64.const 0x0a7365676170_20))
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 23))
    (i32.store (i32.const 8) (local.get $digits))
    (i32.store (i32.const 12) (i32.sub (i32.const 167) (local.get $digits)))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 2) (i32.const 16)))))
