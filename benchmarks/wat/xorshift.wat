;; An i64 loop: n steps of xorshift64 from a fixed seed, summing the states, wrapping at 64 bits.
(module
  (func (export "xorshift") (param $n i32) (result i64)
    (local $i i32) (local $x i64) (local $sum i64)
    (local.set $x (i64.const 88172645463325252))
    (block $done
      (br_if $done (i32.eqz (local.get $n)))
      (loop $top
        (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
        (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
        (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
        (local.set $sum (i64.add (local.get $sum) (local.get $x)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $top (i32.lt_u (local.get $i) (local.get $n)))))
    (local.get $sum)))
