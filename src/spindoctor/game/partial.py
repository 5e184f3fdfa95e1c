"""Partial credit without enumerating every formula: a prefix search over the remaining cards.

A text earns partial credit (+1) when it is a proper prefix of a correct
formula over the hand *as the judge writes formulas*: any expression tree in
any leaf order, rendered with minimal parentheses or with every compound
operand parenthesised (:func:`spindoctor.game.surfaces.solution_surfaces`
lists them; that list grows as n! * Catalan(n-1) * 4^(n-1): 50 ms for four
cards, seconds for five, minutes for six). Hands of up to four cards look the
prefix up in that list; larger ones are searched.

:func:`is_prefix_of_solution` decides the same question by search. It walks
the rendering grammar left to right against the prefix; sub-expressions that
lie wholly inside the prefix have a few exact values (``_closed``), and once
the prefix is used up the rest of the formula is free, so the question
becomes whether some value is reachable from the remaining cards
(``_reach_has``, answered from the solver's cached reachable sets by splitting
the cards). Required values are passed down as goals: a value, a set of
excluded values, or anything. Every step is memoised; verdicts equal the
enumeration's (tests/game/test_partial.py compares them on random prefixes of
2- to 4-card hands); six-card checks take well under a second.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

from spindoctor.game.solver import reachable
from spindoctor.game.surfaces import LISTED_MAX_CARDS, is_surface_prefix

Values = tuple[int, ...]
Slot = tuple[str, str] | None  # (parent operator, "L" or "R"), None at the root
Goal = tuple  # ("eq", x) | ("ne", frozenset) | ("any",)

ANY: Goal = ("any",)
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}
_OPS = "+-*/"
MAX_HAND_CARDS = 6  # the largest hand the game deals; larger hands get no partial credit
_SMALL = 4  # reachable sets of up to this many cards are built; larger ones are split
_LISTED = 3  # open formulas over up to this many cards have their values listed


def _apply(op: str, a: Fraction, b: Fraction) -> Fraction | None:
    """``a op b`` exactly; None on division by zero."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b if b != 0 else None


def matches(value: Fraction, goal: Goal) -> bool:
    """True when ``value`` meets ``goal``."""
    if goal[0] == "eq":
        return value == goal[1]
    return goal[0] == "any" or value not in goal[1]


def inv_left(op: str, right: Fraction, goal: Goal) -> Goal | None:
    """Goal for ``l`` so that ``l op right`` meets ``goal``; None when no ``l`` can."""
    if op == "/" and right == 0:
        return None
    if goal[0] == "any":
        return ANY
    if op == "*" and right == 0:  # l * 0 == 0 whatever l is
        return ANY if matches(Fraction(0), goal) else None
    undo = {"+": lambda x: x - right, "-": lambda x: x + right, "*": lambda x: x / right, "/": lambda x: x * right}[op]
    if goal[0] == "eq":
        return ("eq", undo(goal[1]))
    return ("ne", frozenset(undo(x) for x in goal[1]))


def inv_right(op: str, left: Fraction, goal: Goal) -> Goal | None:
    """Goal for ``r`` so that ``left op r`` is defined and meets ``goal``; None when no ``r`` can."""
    if op in "+-*" and goal[0] == "any":
        return ANY
    if op == "+":
        return _map_goal(goal, lambda x: x - left)
    if op == "-":
        return _map_goal(goal, lambda x: left - x)
    if left == 0:  # 0 * r == 0 and 0 / r == 0 (r != 0)
        if not matches(Fraction(0), goal):
            return None
        return ANY if op == "*" else ("ne", frozenset((Fraction(0),)))
    if op == "*":
        return _map_goal(goal, lambda x: x / left)
    if goal[0] == "any":
        return ("ne", frozenset((Fraction(0),)))
    if goal[0] == "eq":  # left / r == x: r = left / x, impossible for x == 0
        return None if goal[1] == 0 else ("eq", left / goal[1])
    return ("ne", frozenset({Fraction(0)} | {left / x for x in goal[1] if x != 0}))


def _map_goal(goal: Goal, f) -> Goal:
    if goal[0] == "eq":
        return ("eq", f(goal[1]))
    return ("ne", frozenset(f(x) for x in goal[1]))


@lru_cache(maxsize=4096)
def splits(values: Values) -> tuple[tuple[Values, Values], ...]:
    """Ordered splits of a sorted multiset into two non-empty sorted parts, each once."""
    n = len(values)
    out = {
        (tuple(values[i] for i in range(n) if m >> i & 1), tuple(values[i] for i in range(n) if not m >> i & 1))
        for m in range(1, (1 << n) - 1)
    }
    return tuple(sorted(out))


@lru_cache(maxsize=65536)
def _reach_has(values: Values, goal: Goal) -> bool:
    """Whether some formula over ``values`` (each once, any tree) meets ``goal``."""
    if len(values) <= _SMALL:
        reach = reachable(values)
        if goal[0] == "eq":
            return goal[1] in reach
        return any(matches(v, goal) for v in reach)
    return any(_reach_top_has(values, op, goal) for op in _OPS)


@lru_cache(maxsize=65536)
def _reach_top_has(values: Values, op: str, goal: Goal) -> bool:
    """Whether some formula over ``values`` whose last operation is ``op`` meets ``goal``."""
    for left, right in splits(values):
        if len(left) <= len(right):
            for a in reachable(left):
                sub = inv_right(op, a, goal)
                if sub is not None and _reach_has(right, sub):
                    return True
        else:
            for b in reachable(right):
                sub = inv_left(op, b, goal)
                if sub is not None and _reach_has(left, sub):
                    return True
    return False


@lru_cache(maxsize=4096)
def _top_values(values: Values, op: str) -> frozenset:
    """Values of the formulas over ``values`` (a few cards) whose last operation is ``op``."""
    out = {_apply(op, a, b) for left, right in splits(values) for a in reachable(left) for b in reachable(right)}
    out.discard(None)
    return frozenset(out)


def needs_parens(top: str, slot: Slot, minimal: bool) -> bool:
    """Whether a compound operand with operator ``top`` is parenthesised in ``slot``."""
    if slot is None:
        return False
    if not minimal:
        return True
    parent, side = slot
    lower = _PREC[top] < _PREC[parent]
    return lower or (side == "R" and _PREC[top] == _PREC[parent] and parent in "-/")


class _PrefixSearch:
    """Memoised search for one prefix and one rendering (minimal or full parentheses)."""

    def __init__(self, text: str, minimal: bool) -> None:
        self.text, self.n, self.minimal = text, len(text), minimal
        self.memo_open: dict = {}
        self.memo_closed: dict = {}

    def closed(self, values: Values, off: int, slot: Slot) -> frozenset:
        """(value, end) of formulas over ``values`` in ``slot`` written wholly inside the prefix
        from ``off`` to ``end`` < len(prefix)."""
        key = (values, off, slot)
        if key not in self.memo_closed:
            self.memo_closed[key] = frozenset(self._closed(values, off, slot))
        return self.memo_closed[key]

    def _closed(self, values: Values, off: int, slot: Slot) -> set:
        text, n = self.text, self.n
        if len(values) == 1:
            s = str(values[0])
            end = off + len(s)
            return {(Fraction(values[0]), end)} if end < n and text.startswith(s, off) else set()
        out = set()
        for top in _OPS:
            if not needs_parens(top, slot, self.minimal):
                out |= self.closed_compound(values, off, top)
            elif off < n and text[off] == "(":
                out |= {(v, e + 1) for v, e in self.closed_compound(values, off + 1, top)
                        if e + 1 < n and text[e] == ")"}
        return out

    def closed_compound(self, values: Values, off: int, op: str) -> frozenset:
        """(value, end) of ``left op right`` over ``values``, unparenthesised, wholly inside the prefix."""
        key = (values, off, op)
        if key in self.memo_closed:
            return self.memo_closed[key]
        out = set()
        for left, right in splits(values):
            for lv, e1 in self.closed(left, off, (op, "L")):
                if self.text[e1] != op:
                    continue
                for rv, e2 in self.closed(right, e1 + 1, (op, "R")):
                    v = _apply(op, lv, rv)
                    if v is not None:
                        out.add((v, e2))
        self.memo_closed[key] = frozenset(out)
        return self.memo_closed[key]

    def open(self, values: Values, off: int, slot: Slot, goal: Goal) -> bool:
        """Whether a formula over ``values`` in ``slot``, written from ``off``, runs to the end of
        the prefix (or past it) and has a value meeting ``goal``."""
        if off == self.n:
            return _reach_has(values, goal)
        if len(values) <= _LISTED:
            found = self.open_values(values, off, slot)
            return goal[1] in found if goal[0] == "eq" else any(matches(v, goal) for v in found)
        key = (values, off, slot, goal)
        if key not in self.memo_open:
            self.memo_open[key] = self._open(values, off, slot, goal)
        return self.memo_open[key]

    def _open(self, values: Values, off: int, slot: Slot, goal: Goal) -> bool:
        text, n = self.text, self.n
        if len(values) == 1:
            return str(values[0]).startswith(text[off:]) and matches(Fraction(values[0]), goal)
        for top in _OPS:
            if not needs_parens(top, slot, self.minimal):
                if self.open_compound(values, off, top, goal):
                    return True
            elif text[off] == "(":
                if off + 1 == n:
                    if _reach_top_has(values, top, goal):
                        return True
                elif self.open_compound(values, off + 1, top, goal) or any(
                    e == n - 1 and text[e] == ")" and matches(v, goal)
                    for v, e in self.closed_compound(values, off + 1, top)
                ):
                    return True
        return False

    def open_values(self, values: Values, off: int, slot: Slot) -> frozenset:
        """Values of the formulas :meth:`open` asks about, listed (for a few cards: many goals
        are then asked of one small set)."""
        key = (values, off, slot)
        if key not in self.memo_open:
            self.memo_open[key] = frozenset(self._open_values(values, off, slot))
        return self.memo_open[key]

    def _open_values(self, values: Values, off: int, slot: Slot) -> set:
        text, n = self.text, self.n
        if off == n:
            return set(reachable(values))
        if len(values) == 1:
            return {Fraction(values[0])} if str(values[0]).startswith(text[off:]) else set()
        out: set = set()
        for top in _OPS:
            if not needs_parens(top, slot, self.minimal):
                out |= self._open_compound_values(values, off, top)
            elif text[off] == "(":
                if off + 1 == n:
                    out |= _top_values(values, top)
                else:
                    out |= self._open_compound_values(values, off + 1, top)
                    out |= {v for v, e in self.closed_compound(values, off + 1, top) if e == n - 1 and text[e] == ")"}
        return out

    def _open_compound_values(self, values: Values, off: int, op: str) -> set:
        out: set = set()
        for left, right in splits(values):
            for lv, e1 in self.closed(left, off, (op, "L")):
                if self.text[e1] == op:
                    out |= {_apply(op, lv, rv) for rv in self.open_values(right, e1 + 1, (op, "R"))}
            for lv in self.open_values(left, off, (op, "L")):
                out |= {_apply(op, lv, rv) for rv in reachable(right)}
        out.discard(None)
        return out

    def open_compound(self, values: Values, off: int, op: str, goal: Goal) -> bool:
        """Whether ``left op right`` over ``values``, unparenthesised from ``off``, runs to the end
        of the prefix with a value meeting ``goal``."""
        for left, right in splits(values):
            for lv, e1 in self.closed(left, off, (op, "L")):
                if self.text[e1] == op:
                    sub = inv_right(op, lv, goal)
                    if sub is not None and self.open(right, e1 + 1, (op, "R"), sub):
                        return True
            if not self.open(left, off, (op, "L"), ANY):
                continue
            for rv in reachable(right):
                sub = inv_left(op, rv, goal)
                if sub is not None and self.open(left, off, (op, "L"), sub):
                    return True
        return False


def is_prefix_of_solution(prefix: str, values: Values, target: int) -> bool:
    """True when ``prefix`` (blanks removed) begins a correct formula over ``values`` written
    with minimal parentheses or with every compound operand parenthesised.

    The same verdict as ``any(s.startswith(prefix) for s in solution_surfaces(values, target))``
    without listing the surfaces; a complete correct formula counts as its own prefix. Hands of
    more than :data:`MAX_HAND_CARDS` cards get False (the search would no longer be bounded).
    Hands of up to four cards look the prefix up in the listed formulas (a binary search);
    larger hands, whose lists take seconds to minutes, are searched (:func:`search_prefix`).
    """
    values = tuple(sorted(values))
    if not values or len(values) > MAX_HAND_CARDS:
        return False
    if len(values) <= LISTED_MAX_CARDS:
        return is_surface_prefix(prefix, values, target)
    return search_prefix(prefix, values, target)


def search_prefix(prefix: str, values: Values, target: int) -> bool:
    """:func:`is_prefix_of_solution` by search, whatever the hand size (sorted ``values``)."""
    goal: Goal = ("eq", Fraction(target))
    return any(_PrefixSearch(prefix, minimal).open(values, 0, None, goal) for minimal in (True, False))
