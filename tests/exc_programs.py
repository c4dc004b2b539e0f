"""Random programs of nested handlers, for differential tests of exception handling: try_table (with
catch, catch_ref, catch_all, catch_all_ref and throw_ref) or the legacy try/catch/catch_all/rethrow/
delegate, mixed with blocks, bounded loops, branches out of handlers, calls that throw and tail calls.
Each program is a function ``run(x: i32) -> i32`` folding what happened into an accumulator."""

from __future__ import annotations

import random

_TAGS = "(tag $t0 (param i32)) (tag $t1) (tag $t2 (param i32 i64))"
_HELPERS = """
  (func $thrower (param $k i32)
    (if (i32.eq (i32.rem_u (local.get $k) (i32.const 3)) (i32.const 0)) (then (throw $t0 (local.get $k))))
    (if (i32.eq (i32.rem_u (local.get $k) (i32.const 3)) (i32.const 1)) (then (throw $t1)))
    (throw $t2 (local.get $k) (i64.extend_i32_u (local.get $k))))
  (func $tail (param $k i32) (result i32) (return_call $leaf (i32.add (local.get $k) (i32.const 1))))
  (func $leaf (param $k i32) (result i32)
    (if (i32.and (local.get $k) (i32.const 4)) (then (call $thrower (local.get $k))))
    (i32.mul (local.get $k) (i32.const 3)))
"""
_LOCALS = 8


class _Gen:
    def __init__(self, seed: int, legacy: bool) -> None:
        self.r = random.Random(seed)
        self.legacy = legacy
        self.n = 0
        self.loops = 0
        self.labels: list[str] = []  # enclosing labels that take no values (for br)

    def label(self, kind: str) -> str:
        self.n += 1
        return f"${kind}{self.n}"

    def add(self, expr: str) -> str:
        return f"(local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 3)) {expr}))"

    def stmts(self, depth: int) -> str:
        return " ".join(self.stmt(depth) for _ in range(self.r.randint(1, 3)))

    def stmt(self, depth: int) -> str:
        r = self.r
        k = r.randint(0, 40)
        choice = r.random()
        if depth <= 0 or choice < 0.25:
            return r.choice(
                [
                    self.add(f"(i32.const {k})"),
                    f"(if (i32.and (local.get $x) (i32.const {1 << r.randint(0, 4)})) (then (call $thrower (i32.const {k}))))",
                    self.add(f"(call $tail (i32.add (local.get $x) (i32.const {k})))"),
                    f"(if (i32.eq (local.get $x) (i32.const {k % 8})) (then (throw $t0 (i32.const {k}))))",
                ]
                + (
                    [
                        f"(br_if {r.choice(self.labels)} (i32.and (local.get $x) (i32.const {1 << r.randint(0, 3)})))"
                    ]
                    if self.labels
                    else []
                )
            )
        if choice < 0.4 and self.loops < _LOCALS:
            c = self.loops
            self.loops += 1
            lbl = self.label("l")  # not a br target of the body: a br to a loop could spin for ever
            body = self.stmts(depth - 1)
            return (
                f"(local.set $c{c} (i32.const {r.randint(1, 3)})) (loop {lbl} {body} "
                f"(br_if {lbl} (local.tee $c{c} (i32.sub (local.get $c{c}) (i32.const 1)))))"
            )
        if choice < 0.5:
            lbl = self.label("b")
            self.labels.append(lbl)
            body = self.stmts(depth - 1)
            self.labels.pop()
            return f"(block {lbl} {body})"
        return self.legacy_try(depth) if self.legacy else self.try_table(depth)

    def try_table(self, depth: int) -> str:
        r = self.r
        out, all_, t0, t2, ref = (self.label(x) for x in ("o", "a", "t", "u", "r"))
        self.labels.append(out)
        body = self.stmts(depth - 1)
        self.labels.pop()
        catches = []
        if r.random() < 0.7:
            catches.append(f"(catch $t0 {t0})")
        if r.random() < 0.4:
            catches.append(f"(catch $t2 {t2})")
        if r.random() < 0.3:
            catches.append(f"(catch_ref $t1 {ref})")
        if r.random() < 0.5:
            catches.append(f"(catch_all {all_})" if r.random() < 0.6 else f"(catch_all_ref {ref})")
        r.shuffle(catches)
        rethrow = "(throw_ref)" if r.random() < 0.3 else "(drop)"
        return f"""
        (block {out}
          (block {ref} (result exnref)
            (block {all_}
              (block {t2} (result i32 i64)
                (local.set $acc (i32.add (local.get $acc) (block {t0} (result i32)
                  (try_table {" ".join(catches)} {body})
                  (i32.const 1000))))
                (br {out}))
              (drop) {self.add("(i32.const 5)")} (br {out}))
            {self.add("(i32.const 7)")} (br {out}))
          {self.add("(i32.const 11)")} {rethrow})"""

    def rethrow(self) -> str:
        """Sometimes, a rethrow of the clause's exception (from inside an ``if``: label 1 is the catch)."""
        if self.r.random() < 0.3:
            return f"(if (i32.and (local.get $x) (i32.const {1 << self.r.randint(0, 3)})) (then (rethrow 1)))"
        return ""

    def legacy_try(self, depth: int) -> str:
        r = self.r
        lbl = self.label("y")
        self.labels.append(lbl)
        body = self.stmts(depth - 1)
        self.labels.pop()
        if r.random() < 0.2:
            outer = r.choice(["0", *self.labels])  # an enclosing label, or the function body
            return f"(try {lbl} (do {body}) (delegate {outer}))"
        clauses = []
        for tag, arity in (("$t0", 1), ("$t1", 0), ("$t2", 2)):
            if r.random() < 0.5:
                inner = self.stmts(depth - 2) if r.random() < 0.4 else ""
                drops = "(drop) " * arity
                clauses.append(
                    f"(catch {tag} {drops}{self.add(f'(i32.const {arity + 20})')} {inner} {self.rethrow()})"
                )
        if r.random() < 0.5 or not clauses:
            clauses.append(f"(catch_all {self.add('(i32.const 30)')} {self.rethrow()})")
        return f"(try {lbl} (do {body}) {' '.join(clauses)})"


def program(seed: int, legacy: bool = False) -> str:
    """The text of one random module (export ``run``)."""
    g = _Gen(seed, legacy)
    body = g.stmts(4)
    locals_ = " ".join(f"(local $c{k} i32)" for k in range(_LOCALS))
    return f"""(module {_TAGS} {_HELPERS}
  (func (export "run") (param $x i32) (result i32) (local $acc i32) {locals_}
    {body}
    (local.get $acc)))"""
