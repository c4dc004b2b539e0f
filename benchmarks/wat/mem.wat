;; Memory stores and loads: fill n i32 words (n = 262144 is 1 MiB) with i * 2654435761, then sum them
;; back, wrapping at 32 bits.
(module
  (memory (export "memory") 16)
  (func (export "fill_sum") (param $n i32) (result i32)
    (local $i i32) (local $sum i32)
    (block $filled
      (br_if $filled (i32.eqz (local.get $n)))
      (loop $fill
        (i32.store (i32.shl (local.get $i) (i32.const 2))
                   (i32.mul (local.get $i) (i32.const 2654435761)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $fill (i32.lt_u (local.get $i) (local.get $n)))))
    (local.set $i (i32.const 0))
    (block $summed
      (br_if $summed (i32.eqz (local.get $n)))
      (loop $sum
        (local.set $sum
          (i32.add (local.get $sum) (i32.load (i32.shl (local.get $i) (i32.const 2)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $sum (i32.lt_u (local.get $i) (local.get $n)))))
    (local.get $sum)))
