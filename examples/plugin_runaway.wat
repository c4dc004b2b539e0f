;; Plugin for plugin_service.py that never answers: it spins forever, until its fuel or time runs out.
;; Built with `wat2wasm --debug-names plugin_runaway.wat -o plugin_runaway.wasm`.
(module
  (memory (export "memory") 1)
  (func $spin (local $x i32)
    (loop $forever
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1664525)) (i32.const 1013904223)))
      (br $forever)))
  (func $start (export "_start") (call $spin)))
