"""Judging a formula against a hand, and the reward table (docs/design.md, GeneralPoints).

The table is the reference environment's (SFTvsRL, Zhai et al.):

=====================================================================  ======
outcome                                                                reward
=====================================================================  ======
correct: uses each card value once and equals the target               +5
partial: a proper prefix of a valid solution                           +1
legal formula and numbers, but wrong value                             -1
numbers misused: not on the cards, used too often, or a card unused    -2
illegal formula: other characters, bad token order, unary minus, ...   -3
=====================================================================  ======

Three judges. ``exact`` (the default): violations are (illegal formula,
numbers misused, wrong value), each counted at most once, and the reward is
the sum of their penalties; e.g. ``9*9*9*9`` for cards 1,2,3,4 misuses
numbers (-2) and misses 24 (-1): -3. A correct formula scores +5 and a
partial one +1, with no penalty. Values are exact (``8/(3-8/3)`` is 24),
blanks are allowed, and nothing is ever evaluated as code. "Prefix of a valid
solution" means a prefix of some correct formula over the hand written with
minimal parentheses or with every compound operand parenthesised, in every
operand order (:func:`solution_surfaces` lists them;
:func:`spindoctor.game.partial.is_prefix_of_solution` decides it by search).
``float``: the same rules with IEEE double values (``8/(3-8/3)`` misses).
``reference``: the reference environment's own rules, reward for reward
(:mod:`spindoctor.game.reference`; the README lists every difference).
"""

from __future__ import annotations

import re
from fractions import Fraction

from spindoctor.game.partial import is_prefix_of_solution
from spindoctor.game.reference import judge_reference
from spindoctor.game.surfaces import solution_surfaces
from spindoctor.game.verdict import (
    EXACT_JUDGE,
    PENALTY_CARD_RECOGNITION,
    PENALTY_ILLEGAL,
    PENALTY_NUMBERS,
    PENALTY_WRONG_VALUE,
    REFERENCE_JUDGE,
    REWARD_CORRECT,
    REWARD_PARTIAL,
    Judge,
    Verdict,
)
from spindoctor.game.verifier import (
    FormulaError,
    evaluate,
    exact_pair,
    is_sub_multiset,
    numbers_misuse,
    parse_formula,
)

__all__ = [
    "PENALTY_CARD_RECOGNITION", "PENALTY_ILLEGAL", "PENALTY_NUMBERS", "PENALTY_WRONG_VALUE",
    "REWARD_CORRECT", "REWARD_PARTIAL", "Verdict", "judge_formula", "solution_surfaces",
]

_INTEGER = re.compile(r"[0-9]+")  # ASCII only: int() rejects "²"


def _value_text(rpn: tuple, judge: Judge, target: int) -> str | None:
    """The formula's value as text ("24", "71/3", or a float repr); None on division by zero.

    Exact mode compares the unreduced pair with the target before building a
    Fraction, which keeps the common correct case cheap.
    """
    if judge == EXACT_JUDGE:
        pair = exact_pair(rpn)
        if pair is None:
            return None
        if pair[0] == target * pair[1]:
            return str(target)
        return str(Fraction(*pair))
    value = evaluate(rpn, judge)
    if value is None:
        return None
    return str(target) if value == target else repr(value)


def judge_formula(
    formula: str, values: tuple[int, ...], target: int = 24, judge: Judge = EXACT_JUDGE
) -> Verdict:
    """Judge ``formula`` (an optional ``=...`` tail is ignored) for card ``values``.

    ``judge``: ``exact`` (default), ``float`` (the same rules, float values)
    or ``reference`` (the reference environment's rules, :mod:`.reference`).
    Never raises on any ``formula``: any string gets a verdict.
    """
    if judge == REFERENCE_JUDGE:
        return judge_reference(formula, tuple(values), target)
    if not isinstance(formula, str):
        return Verdict(False, PENALTY_ILLEGAL, "illegal", None, ("the answer is not text",))
    values = tuple(values)
    try:
        parsed = parse_formula(formula)
    except FormulaError as err:
        return _judge_unparsed(formula, err, values, target)
    reasons: list[str] = []
    reward = 0.0
    misuse = numbers_misuse(parsed.numbers, values)
    if misuse:
        reasons.extend(misuse)
        reward += PENALTY_NUMBERS
    value = _value_text(parsed.rpn, judge, target)
    if value is None:
        reasons.append("the formula divides by zero")
        reward += PENALTY_WRONG_VALUE
    elif value != str(target):
        reasons.append(f"the formula equals {value}, not {target}")
        reward += PENALTY_WRONG_VALUE
    if not reasons:
        return Verdict(True, REWARD_CORRECT, "correct", value, (), parsed.numbers)
    status = "numbers_misused" if misuse else "wrong_value"
    return Verdict(False, reward, status, value, tuple(reasons), parsed.numbers)


def _judge_unparsed(
    formula: str, err: FormulaError, values: tuple[int, ...], target: int
) -> Verdict:
    """Verdict for text that does not parse: partial (+1) or illegal (-3, plus -2 for misuse)."""
    left = formula.partition("=")[0]
    numbers = tuple(int(x) for x in _INTEGER.findall(left)) if len(left) < 1000 else ()
    compact = "".join(left.split())
    if err.incomplete and compact and is_sub_multiset(numbers, values):
        if is_prefix_of_solution(compact, values, target):
            return Verdict(False, REWARD_PARTIAL, "partial", None, ("the formula is incomplete",), numbers)
    reasons = [f"the formula is illegal ({err.reason})"]
    reward = PENALTY_ILLEGAL
    misuse = [r for r in numbers_misuse(numbers, values) if not r.startswith("card numbers not used")]
    if misuse and not err.incomplete:
        misuse = numbers_misuse(numbers, values)
    if misuse:
        reasons.extend(misuse)
        reward += PENALTY_NUMBERS
    return Verdict(False, reward, "illegal", None, tuple(reasons), numbers)
