"""Exact solver for GeneralPoints: which hands reach the target, and how.

Two tools, both in exact rational arithmetic (``fractions.Fraction``), so that
``8/(3-8/3)`` counts as 24 (the reference's float ``eval`` misses it):

* :func:`solvable_table` answers "can these values make the target?" for every
  multiset of values at once, by dynamic programming over sub-multisets
  (the set of values reachable from a multiset is the union, over its splits
  into two parts, of the pairwise combinations of the parts' reachable sets).
  For the last step it looks up the operand it needs instead of forming every
  combination, which keeps the 4-card table well under a second.
* :func:`solve` enumerates the distinct solutions of one hand as canonical
  formula strings: expressions are flattened into sums (positive and negative
  terms) and products (numerator and denominator factors) whose operands are
  sorted, so solutions that differ only by commutativity or associativity are
  one solution. Distributivity is not folded: ``2*(3+9)`` and ``2*3+2*9`` are
  two solutions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from functools import cache
from itertools import combinations_with_replacement

Values = tuple[int, ...]


def _combine(a: Fraction, b: Fraction) -> Iterator[Fraction]:
    """Every value of ``a op b`` and ``b op a`` for the four operations."""
    yield a + b
    yield a - b
    yield b - a
    yield a * b
    if b != 0:
        yield a / b
    if a != 0:
        yield b / a


def _splits(values: Values) -> Iterator[tuple[Values, Values]]:
    """Splits of a sorted multiset into two non-empty sorted parts, each unordered pair once."""
    n = len(values)
    seen: set[tuple[Values, Values]] = set()
    for mask in range(1, (1 << n) - 1):
        if not mask & 1:  # put values[0] in the left part: each unordered split once
            continue
        left = tuple(values[i] for i in range(n) if mask >> i & 1)
        right = tuple(values[i] for i in range(n) if not mask >> i & 1)
        if (left, right) not in seen:
            seen.add((left, right))
            yield left, right


@cache
def reachable(values: Values) -> frozenset[Fraction]:
    """All values an expression over the sorted multiset ``values`` can take.

    Parameters
    ----------
    values : tuple of int, sorted, length >= 1
        The card numbers.

    Returns
    -------
    frozenset of Fraction
        Exact values of every formula that uses each number exactly once.
    """
    if len(values) == 1:
        return frozenset((Fraction(values[0]),))
    out: set[Fraction] = set()
    for left, right in _splits(values):
        for a in reachable(left):
            for b in reachable(right):
                out.update(_combine(a, b))
    return frozenset(out)


def _needed_operands(a: Fraction, target: Fraction) -> Iterator[Fraction]:
    """Values b for which some ``a op b`` or ``b op a`` equals ``target``."""
    yield target - a  # a + b
    yield a - target  # a - b
    yield target + a  # b - a
    if a != 0:
        yield target / a  # a * b
        yield a * target  # b / a
    if target != 0 and a != 0:
        yield a / target  # a / b (b = 0 would divide by zero)
    # a * b with a == 0 reaches target only when target == 0: b is anything
    if a == 0 and target == 0:
        yield Fraction(0)


def can_make(values: Iterable[int], target: int = 24) -> bool:
    """True when the numbers, each used once with + - * / and parentheses, make ``target``.

    >>> can_make((3, 3, 8, 8))
    True
    >>> can_make((1, 1, 1, 1))
    False
    """
    vals = tuple(sorted(values))
    if not vals:
        return False
    goal = Fraction(target)
    if len(vals) == 1:
        return vals[0] == target
    for left, right in _splits(vals):
        small, large = (left, right) if len(left) <= len(right) else (right, left)
        reach_large = reachable(large)
        if goal == 0 and Fraction(0) in reach_large:
            return True  # 0 * x
        for a in reachable(small):
            if any(b in reach_large for b in _needed_operands(a, goal)):
                return True
    return False


@cache
def solvable_table(
    value_range: tuple[int, int] = (1, 13), n_cards: int = 4, target: int = 24
) -> dict[Values, bool]:
    """Solvability of every multiset of ``n_cards`` values from ``value_range`` (inclusive).

    Built once per argument tuple and cached for the process. For the default
    arguments, 1362 of the 1820 multisets are solvable (the public count).
    """
    lo, hi = value_range
    return {
        combo: can_make(combo, target)
        for combo in combinations_with_replacement(range(lo, hi + 1), n_cards)
    }


# ---------------------------------------------------------------- enumeration
# A canonical expression is (kind, value, text): kind is "n" (number), "s"
# (flattened sum) or "p" (flattened product); text is its canonical string.
# Sums keep (positive terms, negative terms), products (numerator factors,
# denominator factors), each sorted, so a+b and b+a, (a+b)+c and a+(b+c) meet.


def _render_sum(pos: tuple[str, ...], neg: tuple[str, ...]) -> str:
    return "+".join(pos) + "".join("-" + t for t in neg)


def _render_product(num: tuple[tuple[str, str], ...], den: tuple[tuple[str, str], ...]) -> str:
    def fac(item: tuple[str, str]) -> str:
        kind, text = item
        return f"({text})" if kind == "s" else text

    return "*".join(fac(f) for f in num) + "".join("/" + fac(f) for f in den)


class _Expr:
    __slots__ = ("kind", "value", "text", "pos", "neg")

    def __init__(self, kind: str, value: Fraction, text: str, pos: tuple, neg: tuple) -> None:
        self.kind, self.value, self.text, self.pos, self.neg = kind, value, text, pos, neg


def _leaf(v: int) -> _Expr:
    t = str(v)
    return _Expr("n", Fraction(v), t, ((("n", t),)), ())


def _terms(e: _Expr, kind: str) -> tuple[tuple, tuple]:
    """Operands of ``e`` as a flattened sum ("s") or product ("p")."""
    if e.kind == kind:
        return e.pos, e.neg
    return ((e.kind, e.text),), ()


def _make(kind: str, value: Fraction, pos: tuple, neg: tuple) -> _Expr:
    pos, neg = tuple(sorted(pos)), tuple(sorted(neg))
    if kind == "s":
        text = _render_sum(tuple(t for _, t in pos), tuple(t for _, t in neg))
    else:
        text = _render_product(pos, neg)
    return _Expr(kind, value, text, pos, neg)


def _combine_exprs(x: _Expr, y: _Expr) -> Iterator[_Expr]:
    xs, ys = _terms(x, "s"), _terms(y, "s")
    yield _make("s", x.value + y.value, xs[0] + ys[0], xs[1] + ys[1])
    yield _make("s", x.value - y.value, xs[0] + ys[1], xs[1] + ys[0])
    yield _make("s", y.value - x.value, ys[0] + xs[1], ys[1] + xs[0])
    xp, yp = _terms(x, "p"), _terms(y, "p")
    yield _make("p", x.value * y.value, xp[0] + yp[0], xp[1] + yp[1])
    if y.value != 0:
        yield _make("p", x.value / y.value, xp[0] + yp[1], xp[1] + yp[0])
    if x.value != 0:
        yield _make("p", y.value / x.value, yp[0] + xp[1], yp[1] + xp[0])


def _all_exprs(items: tuple[_Expr, ...], seen: set[tuple[str, ...]]) -> Iterator[_Expr]:
    """Every expression over ``items`` (each used once), pruning repeated states."""
    if len(items) == 1:
        yield items[0]
        return
    state = tuple(sorted(e.text for e in items))
    if state in seen:
        return
    seen.add(state)
    n = len(items)
    for i in range(n):
        for j in range(i + 1, n):
            rest = items[:i] + items[i + 1 : j] + items[j + 1 :]
            for combined in _combine_exprs(items[i], items[j]):
                yield from _all_exprs(rest + (combined,), seen)


@cache
def solve(values: Values, target: int = 24) -> tuple[str, ...]:
    """Distinct solutions of a hand as canonical formula strings, sorted.

    Parameters
    ----------
    values : tuple of int
        The card numbers (any order; duplicates allowed).
    target : int
        The number to make.

    Returns
    -------
    tuple of str
        Canonical formulas (no spaces, minimal parentheses, no ``=``); empty
        when the hand is unsolvable. Every string verifies with
        :func:`spindoctor.game.verifier.check_formula`.
    """
    goal = Fraction(target)
    leaves = tuple(_leaf(v) for v in sorted(values))
    found = {e.text for e in _all_exprs(leaves, set()) if e.value == goal}
    return tuple(sorted(found, key=lambda s: (len(s), s)))
