"""WAT guests for the serve-stdin tests.

ECHO_CMD echoes each chunk it reads from stdin, except chunks that start with a command word:
``spin`` loops forever (CPU-bound, no WASI calls), ``trap`` traps, ``exit`` calls proc_exit(7),
``yes!`` writes 64 KiB blocks until a write fails (then exits 32), ``grow`` tries to grow memory
by 64 MiB and answers ``grew`` or ``nomem``, ``errs`` copies the chunk to stderr too.
In --http mode it is a CGI program whose response is the request body itself.

CGI writes a CGI header, its whole environment (one variable a line), ``--``, then its stdin.
"""

from __future__ import annotations

ECHO_CMD = r"""
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2)
  (data (i32.const 32) "grew\nnomem\n")
  (func $write (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 16)))
  (func $spin (local $x i32)
    (loop $l (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1664525)) (i32.const 1013904223)))
      (br $l)))
  (func (export "_start") (local $n i32) (local $cmd i32)
    (loop $again
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (i32.const 4096))
      (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)) (then (return)))
      (local.set $n (i32.load (i32.const 16)))
      (if (i32.eqz (local.get $n)) (then (return)))
      (local.set $cmd (i32.load (i32.const 1024)))
      (if (i32.eq (local.get $cmd) (i32.const 0x6e697073)) (then (call $spin)))          ;; "spin"
      (if (i32.eq (local.get $cmd) (i32.const 0x70617274)) (then (unreachable)))         ;; "trap"
      (if (i32.eq (local.get $cmd) (i32.const 0x74697865)) (then (call $proc_exit (i32.const 7))))  ;; "exit"
      (if (i32.eq (local.get $cmd) (i32.const 0x21736579))                               ;; "yes!"
        (then (loop $yes
          (if (call $write (i32.const 1) (i32.const 65536) (i32.const 65536))
            (then (call $proc_exit (i32.const 32))))
          (br $yes))))
      (if (i32.eq (local.get $cmd) (i32.const 0x776f7267))                               ;; "grow"
        (then
          (if (i32.eq (memory.grow (i32.const 1024)) (i32.const -1))
            (then (drop (call $write (i32.const 1) (i32.const 37) (i32.const 6))))
            (else (drop (call $write (i32.const 1) (i32.const 32) (i32.const 5)))))
          (br $again)))
      (if (i32.eq (local.get $cmd) (i32.const 0x73727265))                               ;; "errs"
        (then (drop (call $write (i32.const 2) (i32.const 1024) (local.get $n)))))
      (drop (call $write (i32.const 1) (i32.const 1024) (local.get $n)))
      (br $again)))
)
"""

CGI = r"""
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 64) "Content-Type: text/plain\r\nX-Guest: cgi\r\n\r\n--\n")
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16))))
  (func (export "_start") (local $size i32) (local $i i32) (local $n i32)
    (call $write (i32.const 64) (i32.const 42))
    (drop (call $sizes (i32.const 20) (i32.const 24)))
    (local.set $size (i32.load (i32.const 24)))
    (drop (call $environ (i32.const 4096) (i32.const 65536)))
    (block $done (loop $nul
      (br_if $done (i32.ge_u (local.get $i) (local.get $size)))
      (if (i32.eqz (i32.load8_u (i32.add (i32.const 65536) (local.get $i))))
        (then (i32.store8 (i32.add (i32.const 65536) (local.get $i)) (i32.const 10))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $nul)))
    (call $write (i32.const 65536) (local.get $size))
    (call $write (i32.const 106) (i32.const 3))
    (loop $copy
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (i32.const 2048))
      (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)) (then (return)))
      (local.set $n (i32.load (i32.const 16)))
      (if (i32.eqz (local.get $n)) (then (return)))
      (call $write (i32.const 1024) (local.get $n))
      (br $copy)))
)
"""

# HOSTILE reads one chunk from stdin; its first four bytes pick what it does (anything else is echoed,
# like ECHO_CMD, until end of input):
#   ``late``  never reads again (sleeps in poll_oneoff for an hour)
#   ``sink``  sleeps 200 ms, then reads and drops everything until end of input, then writes ``sunk``
#   ``spin``  loops forever without a WASI call
#   ``yes?``  writes 64 KiB blocks forever, ignoring every error (EPIPE included)
#   ``deaf``  reads forever, ignoring end of input and errors
#   ``open``  opens the file ``f`` of its first preopened directory (fd 3) until that fails, answers
#             the count and the errno (two little-endian u32), holds the files and echoes
HOSTILE = r"""
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 3)
  (data (i32.const 48) "fsunk")
  (func $write (param $ptr i32) (param $len i32) (result i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
  (func $read (param $ptr i32) (param $len i32) (result i32)  ;; bytes read, -1 on an error
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (if (result i32) (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16))
      (then (i32.const -1)) (else (i32.load (i32.const 16)))))
  (func $sleep (param $ns i64)  ;; one relative monotonic-clock subscription at 256, its event at 320
    (i64.store (i32.const 256) (i64.const 0))
    (i32.store8 (i32.const 264) (i32.const 0))
    (i32.store (i32.const 272) (i32.const 1))
    (i64.store (i32.const 280) (local.get $ns))
    (i64.store (i32.const 288) (i64.const 0))
    (i32.store16 (i32.const 296) (i32.const 0))
    (drop (call $poll (i32.const 256) (i32.const 320) (i32.const 1) (i32.const 400))))
  (func $spin (local $x i32)
    (loop $l (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1664525)) (i32.const 1013904223)))
      (br $l)))
  (func $echo (local $n i32)
    (loop $again
      (local.set $n (call $read (i32.const 1024) (i32.const 4096)))
      (if (i32.le_s (local.get $n) (i32.const 0)) (then (return)))
      (drop (call $write (i32.const 1024) (local.get $n)))
      (br $again)))
  (func (export "_start") (local $n i32) (local $cmd i32) (local $count i32) (local $err i32)
    (local.set $n (call $read (i32.const 1024) (i32.const 4)))
    (if (i32.le_s (local.get $n) (i32.const 0)) (then (return)))
    (local.set $cmd (i32.load (i32.const 1024)))
    (if (i32.eq (local.get $cmd) (i32.const 0x6574616c))                                 ;; "late"
      (then (loop $forever (call $sleep (i64.const 3600000000000)) (br $forever))))
    (if (i32.eq (local.get $cmd) (i32.const 0x6b6e6973))                                 ;; "sink"
      (then
        (call $sleep (i64.const 200000000))
        (loop $drop
          (if (i32.gt_s (call $read (i32.const 65536) (i32.const 65536)) (i32.const 0)) (then (br $drop))))
        (drop (call $write (i32.const 49) (i32.const 4)))
        (return)))
    (if (i32.eq (local.get $cmd) (i32.const 0x6e697073)) (then (call $spin)))            ;; "spin"
    (if (i32.eq (local.get $cmd) (i32.const 0x3f736579))                                 ;; "yes?"
      (then (loop $yes (drop (call $write (i32.const 65536) (i32.const 65536))) (br $yes))))
    (if (i32.eq (local.get $cmd) (i32.const 0x66616564))                                 ;; "deaf"
      (then (loop $deaf (drop (call $read (i32.const 1024) (i32.const 4096))) (br $deaf))))
    (if (i32.eq (local.get $cmd) (i32.const 0x6e65706f))                                 ;; "open"
      (then
        (block $full (loop $more
          (local.set $err (call $path_open (i32.const 3) (i32.const 0) (i32.const 48) (i32.const 1)
            (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 20)))
          (br_if $full (local.get $err))
          (local.set $count (i32.add (local.get $count) (i32.const 1)))
          (br $more)))
        (i32.store (i32.const 24) (local.get $count))
        (i32.store (i32.const 28) (local.get $err))
        (drop (call $write (i32.const 24) (i32.const 8)))
        (call $echo)
        (return)))
    (drop (call $write (i32.const 1024) (local.get $n)))
    (call $echo))
)
"""
