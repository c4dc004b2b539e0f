;; A guest that traps two calls deep: run -> check -> fail (unreachable).
;; Built with `wat2wasm --debug-names trap.wat -o trap.wasm`, so backtraces have names.
(module
  (func $fail (unreachable))
  (func $check (param $x i32) (if (i32.gt_u (local.get $x) (i32.const 10)) (then (call $fail))))
  (func $run (export "run") (param $x i32) (result i32) (call $check (local.get $x)) (local.get $x)))
