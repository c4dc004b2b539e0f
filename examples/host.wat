;; Host functions that read and write the guest's memory.
;; env.log(ptr, len): the host reads a string; env.fetch(ptr, cap) -> len: the host writes up to cap
;; bytes at ptr. run() logs a greeting, fetches into offset 256 and logs what it got; returns its length.
;; Built with `wat2wasm --debug-names host.wat -o host.wasm`.
(module
  (import "env" "log" (func $log (param i32 i32)))
  (import "env" "fetch" (func $fetch (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "hello from the guest")
  (func $run (export "run") (result i32) (local $n i32)
    (call $log (i32.const 0) (i32.const 20))
    (local.set $n (call $fetch (i32.const 256) (i32.const 64)))
    (call $log (i32.const 256) (local.get $n))
    (local.get $n)))
