;; An integer loop: a linear congruential step and an xor-shift per iteration, wrapping at 32 bits.
;;   acc = 0; for (i = 0; i < n; i++) { acc = acc * 1103515245 + i; acc ^= acc >> 7; }  (unsigned)
(module
  (func (export "loop") (param $n i32) (result i32)
    (local $i i32) (local $acc i32)
    (block $done
      (br_if $done (i32.eqz (local.get $n)))
      (loop $top
        (local.set $acc
          (i32.add (i32.mul (local.get $acc) (i32.const 1103515245)) (local.get $i)))
        (local.set $acc
          (i32.xor (local.get $acc) (i32.shr_u (local.get $acc) (i32.const 7))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $top (i32.lt_u (local.get $i) (local.get $n)))))
    (local.get $acc)))
