;; An f64 loop: the Mandelbrot set on a w x h grid over [-2, 0.5] x [-1.25, 1.25], at most maxiter
;; iterations per point; returns the total number of iterations (the work done).
(module
  (func (export "mandel") (param $w i32) (param $h i32) (param $maxiter i32) (result i32)
    (local $px i32) (local $py i32) (local $it i32) (local $total i32)
    (local $cr f64) (local $ci f64) (local $zr f64) (local $zi f64) (local $zr2 f64) (local $zi2 f64)
    (block $rows_done
      (br_if $rows_done (i32.le_s (local.get $h) (i32.const 0)))
      (loop $rows
        (local.set $ci
          (f64.add (f64.const -1.25)
                   (f64.div (f64.mul (f64.const 2.5) (f64.convert_i32_s (local.get $py)))
                            (f64.convert_i32_s (local.get $h)))))
        (local.set $px (i32.const 0))
        (block $cols_done
          (br_if $cols_done (i32.le_s (local.get $w) (i32.const 0)))
          (loop $cols
            (local.set $cr
              (f64.add (f64.const -2.0)
                       (f64.div (f64.mul (f64.const 2.5) (f64.convert_i32_s (local.get $px)))
                                (f64.convert_i32_s (local.get $w)))))
            (local.set $zr (f64.const 0))
            (local.set $zi (f64.const 0))
            (local.set $zr2 (f64.const 0))
            (local.set $zi2 (f64.const 0))
            (local.set $it (i32.const 0))
            (block $escaped
              (loop $iter
                (br_if $escaped (i32.ge_s (local.get $it) (local.get $maxiter)))
                (br_if $escaped (f64.gt (f64.add (local.get $zr2) (local.get $zi2)) (f64.const 4.0)))
                (local.set $zi
                  (f64.add (f64.mul (f64.mul (f64.const 2.0) (local.get $zr)) (local.get $zi))
                           (local.get $ci)))
                (local.set $zr
                  (f64.add (f64.sub (local.get $zr2) (local.get $zi2)) (local.get $cr)))
                (local.set $zr2 (f64.mul (local.get $zr) (local.get $zr)))
                (local.set $zi2 (f64.mul (local.get $zi) (local.get $zi)))
                (local.set $it (i32.add (local.get $it) (i32.const 1)))
                (br $iter)))
            (local.set $total (i32.add (local.get $total) (local.get $it)))
            (local.set $px (i32.add (local.get $px) (i32.const 1)))
            (br_if $cols (i32.lt_s (local.get $px) (local.get $w)))))
        (local.set $py (i32.add (local.get $py) (i32.const 1)))
        (br_if $rows (i32.lt_s (local.get $py) (local.get $h)))))
    (local.get $total)))
