;; Sieve of Eratosthenes over a byte array in linear memory (n <= 4 MiB): clear n flag bytes, cross
;; out the multiples of each prime p from p * p, then count the primes below n.
(module
  (memory (export "memory") 64)
  (func (export "sieve") (param $n i32) (result i32)
    (local $i i32) (local $j i32) (local $count i32)
    (memory.fill (i32.const 0) (i32.const 0) (local.get $n))
    (local.set $i (i32.const 2))
    (block $marked
      (loop $outer
        (br_if $marked (i32.ge_u (i32.mul (local.get $i) (local.get $i)) (local.get $n)))
        (if (i32.eqz (i32.load8_u (local.get $i)))
          (then
            (local.set $j (i32.mul (local.get $i) (local.get $i)))
            (loop $inner
              (i32.store8 (local.get $j) (i32.const 1))
              (local.set $j (i32.add (local.get $j) (local.get $i)))
              (br_if $inner (i32.lt_u (local.get $j) (local.get $n))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $outer)))
    (local.set $i (i32.const 2))
    (block $counted
      (br_if $counted (i32.le_u (local.get $n) (i32.const 2)))
      (loop $count_loop
        (local.set $count
          (i32.add (local.get $count) (i32.eqz (i32.load8_u (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $count_loop (i32.lt_u (local.get $i) (local.get $n)))))
    (local.get $count)))
