;; A CPU-bound guest for scheduler demos: spin(n) runs n iterations of a linear congruential
;; generator (n = -1: forever) and keeps the count in the exported global "count".
;; Built with `wat2wasm --debug-names spin.wat -o spin.wasm`.
(module
  (global $count (export "count") (mut i64) (i64.const 0))
  (func $spin (export "spin") (param $n i64) (local $x i32) (local $i i64)
    (loop $l
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1664525)) (i32.const 1013904223)))
      (global.set $count (local.tee $i (i64.add (local.get $i) (i64.const 1))))
      (br_if $l (i64.ne (local.get $i) (local.get $n)))))
  ;; grow(n): memory.grow by n pages; the old size, or -1 when refused
  (memory (export "memory") 1)
  (func $grow (export "grow") (param $n i32) (result i32) (memory.grow (local.get $n)))
  ;; depth(n): recurse n calls deep
  (func $depth (export "depth") (param $n i32) (result i32)
    (if (result i32) (local.get $n)
      (then (i32.add (call $depth (i32.sub (local.get $n) (i32.const 1))) (i32.const 1)))
      (else (i32.const 0)))))
