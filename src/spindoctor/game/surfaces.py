"""The formulas that define partial credit, listed: every correct formula as the judge writes it.

"A proper prefix of a valid solution" (docs/design.md, GeneralPoints) is
decided against every correct formula over the hand, in every operand order
and tree shape, written with minimal parentheses or with every compound
operand parenthesised. :func:`solution_surfaces` lists them; the list grows
as n! * Catalan(n-1) * 4^(n-1), so it is used for hands of up to four cards
(about 50 ms, cached), where a prefix query is a binary search
(:func:`is_surface_prefix`), and :mod:`spindoctor.game.partial` decides the
same question by search for larger hands.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from fractions import Fraction
from functools import lru_cache
from itertools import permutations

LISTED_MAX_CARDS = 4

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def _trees(items: tuple) -> Iterator[tuple[object, Fraction | None]]:
    """Every binary expression tree over ``items`` in the given leaf order, with its value."""
    if len(items) == 1:
        yield items[0], Fraction(items[0])
        return
    for cut in range(1, len(items)):
        for lt, lv in _trees(items[:cut]):
            for rt, rv in _trees(items[cut:]):
                for op in "+-*/":
                    if lv is None or rv is None:
                        val = None
                    elif op == "+":
                        val = lv + rv
                    elif op == "-":
                        val = lv - rv
                    elif op == "*":
                        val = lv * rv
                    else:
                        val = lv / rv if rv != 0 else None
                    yield (op, lt, rt), val


def _render(tree: object, minimal: bool) -> str:
    if isinstance(tree, int):
        return str(tree)
    op, left, right = tree  # type: ignore[misc]
    ls, rs = _render(left, minimal), _render(right, minimal)
    if not isinstance(left, int) and (not minimal or _PREC[left[0]] < _PREC[op]):
        ls = f"({ls})"
    if not isinstance(right, int):
        lower = _PREC[right[0]] < _PREC[op]
        same_noncomm = _PREC[right[0]] == _PREC[op] and op in "-/"
        if not minimal or lower or same_noncomm:
            rs = f"({rs})"
    return f"{ls}{op}{rs}"


@lru_cache(maxsize=1024)
def solution_surfaces(values: tuple[int, ...], target: int = 24) -> frozenset[str]:
    """Every correct formula over ``values`` as written text: the definition of partial credit.

    All leaf orders and tree shapes; each tree rendered with minimal
    parentheses and fully parenthesised. Empty for an unsolvable hand. The
    list grows as n! * Catalan(n-1) * 4^(n-1) (seconds for five cards,
    minutes for six), so the judge decides "a prefix of one of these" by
    search (:func:`spindoctor.game.partial.is_prefix_of_solution`); this
    enumeration stays as the definition the tests compare against.
    """
    out: set[str] = set()
    goal = Fraction(target)
    for order in set(permutations(values)):
        for tree, val in _trees(order):
            if val == goal:
                out.add(_render(tree, True))
                out.add(_render(tree, False))
    return frozenset(out)


@lru_cache(maxsize=1024)
def _sorted_surfaces(values: tuple[int, ...], target: int) -> tuple[str, ...]:
    return tuple(sorted(solution_surfaces(values, target)))


def is_surface_prefix(prefix: str, values: tuple[int, ...], target: int = 24) -> bool:
    """``any(s.startswith(prefix) for s in solution_surfaces(sorted values))`` by binary search."""
    surfaces = _sorted_surfaces(tuple(sorted(values)), target)
    i = bisect_left(surfaces, prefix)
    return i < len(surfaces) and surfaces[i].startswith(prefix)
