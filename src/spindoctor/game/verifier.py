"""Safe verifier for GeneralPoints formulas: tokenise, parse, compute exactly.

Never calls eval/exec and never raises on any string. The grammar is

    formula := expr [ '=' anything ]      (only the left side is judged)
    expr    := term (('+' | '-') term)*
    term    := factor (('*' | '/') factor)*
    factor  := integer | '(' expr ')'

checked and converted to postfix by a shunting-yard pass, so unary minus,
``**``, decimals, variables and any other character (non-ASCII digits such as
``²`` or ``٨`` included) are rejected with a reason. Values are
``fractions.Fraction`` (exact), or IEEE doubles for the ``float`` judge (then
``8/(3-8/3)`` is *not* 24), computed on the parsed tokens without evaluating
any text. The reference environment's own judging is :mod:`.reference`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from spindoctor.game.verdict import EXACT_JUDGE, FLOAT_JUDGE, Judge

__all__ = ["EXACT_JUDGE", "FLOAT_JUDGE", "FormulaError", "Judge", "Parsed", "evaluate", "parse_formula"]

MAX_FORMULA_CHARS = 200
MAX_NUMBER_DIGITS = 6
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
_ILLEGAL = re.compile(r"[^0-9+\-*/() \t\n]")
# ASCII digits only: str.isdigit() and re's \d also accept "²", "①" or "٨",
# which int() rejects or reads as another number.
_TOKEN = re.compile(r"[0-9]+|[-+*/()]")
_LONG_NUMBER = re.compile(rf"[0-9]{{{MAX_NUMBER_DIGITS + 1}}}")
_STATED = re.compile(rf"[0-9]{{1,{MAX_NUMBER_DIGITS}}}")


class FormulaError(Exception):
    """A formula that cannot be parsed; ``incomplete`` when it ended too early."""

    def __init__(self, reason: str, incomplete: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.incomplete = incomplete


@dataclass(frozen=True)
class Parsed:
    """A parsed formula in postfix order: ``int`` operands and ``str`` operators."""

    rpn: tuple[int | str, ...]
    numbers: tuple[int, ...]
    stated_result: int | None


def tokenize(text: str) -> list[str]:
    """Split a formula into integer, operator and parenthesis tokens.

    Raises
    ------
    FormulaError
        On any character outside digits, ``+-*/()`` and blanks (``=`` is split
        off before), on ``**``, on decimals, and on integers of more than
        ``MAX_NUMBER_DIGITS`` digits.
    """
    bad = _ILLEGAL.search(text)
    if bad:
        if bad.group() == ".":
            raise FormulaError("decimal numbers are not allowed")
        shown = "".join(sorted(set(_ILLEGAL.findall(text)))[:5])
        raise FormulaError(f"illegal characters {shown!r}")
    if "**" in text:
        raise FormulaError("'**' (power) is not allowed")
    if _LONG_NUMBER.search(text):
        raise FormulaError("number too long")
    return _TOKEN.findall(text)


def to_postfix(tokens: list[str]) -> tuple[tuple[int | str, ...], tuple[int, ...]]:
    """Check token order and convert to postfix (shunting-yard); returns (rpn, numbers).

    The grammar: expr := term (('+'|'-') term)*, term := factor (('*'|'/')
    factor)*, factor := integer | '(' expr ')'. An operator where an operand
    is expected is an error (so unary minus is rejected); running out of
    tokens while an operand or ')' is still owed marks the error incomplete.
    """
    out: list[int | str] = []
    ops: list[str] = []
    numbers: list[int] = []
    emit, push, pop, note = out.append, ops.append, ops.pop, numbers.append
    expect_operand = True
    depth = 0
    for tok in tokens:
        prec = _PRECEDENCE.get(tok)
        if prec is not None:
            if expect_operand:
                raise FormulaError("unary minus is not allowed" if tok == "-" else f"unexpected {tok!r}")
            while ops and ops[-1] != "(" and _PRECEDENCE[ops[-1]] >= prec:
                emit(pop())
            push(tok)
            expect_operand = True
        elif tok == "(":
            if not expect_operand:
                raise FormulaError("unexpected '('")
            push(tok)
            depth += 1
        elif tok == ")":
            if expect_operand or not depth:
                raise FormulaError("unexpected ')'")
            while ops[-1] != "(":
                emit(pop())
            pop()
            depth -= 1
        else:  # an integer: the tokenizer yields nothing else
            if not expect_operand:
                raise FormulaError(f"unexpected {tok!r}")
            value = int(tok)
            emit(value)
            note(value)
            expect_operand = False
    if expect_operand:
        raise FormulaError("formula ends too early", incomplete=True)
    if depth:
        raise FormulaError("unclosed parenthesis", incomplete=True)
    out.extend(reversed(ops))
    return tuple(out), tuple(numbers)


def parse_formula(text: str) -> Parsed:
    """Parse a formula; an optional ``= ...`` tail is split off, as the reference does.

    Only the part left of the first ``=`` is judged (spec: "The part left of
    ``=`` is the formula that is judged"); an integer right of it is kept as
    ``stated_result`` for information.

    Raises
    ------
    FormulaError
        With a short reason; ``incomplete`` is set when the text is a valid
        beginning of a formula that stops too early.
    """
    if len(text) > MAX_FORMULA_CHARS:
        raise FormulaError(f"formula longer than {MAX_FORMULA_CHARS} characters")
    left, eq, right = text.partition("=")
    tokens = tokenize(left)
    right = right.strip()
    stated = int(right) if eq and _STATED.fullmatch(right) else None
    if not tokens:
        raise FormulaError("empty formula", incomplete=not eq)
    rpn, numbers = to_postfix(tokens)
    return Parsed(rpn, numbers, stated)


def exact_pair(rpn: tuple[int | str, ...]) -> tuple[int, int] | None:
    """Exact value of a postfix formula as an unreduced (numerator, denominator) pair.

    Integer pairs avoid building a Fraction (and a gcd) at every step; the
    denominator may be negative. ``None`` on division by zero.
    """
    stack: list[tuple[int, int]] = []
    push, pop = stack.append, stack.pop
    for item in rpn:
        if type(item) is int:
            push((item, 1))
            continue
        bn, bd = pop()
        an, ad = pop()
        if item == "+":
            push((an * bd + bn * ad, ad * bd))
        elif item == "-":
            push((an * bd - bn * ad, ad * bd))
        elif item == "*":
            push((an * bn, ad * bd))
        elif bn == 0:
            return None
        else:
            push((an * bd, ad * bn))
    return stack[0]


def evaluate(rpn: tuple[int | str, ...], judge: Judge = EXACT_JUDGE) -> Fraction | float | None:
    """Value of a postfix formula; ``None`` on division by zero.

    ``exact`` is a Fraction (:func:`exact_pair` reduced once); ``float`` uses
    IEEE doubles, as the reference's ``eval`` does (so ``8/(3-8/3)`` is
    23.999999999999996).
    """
    if judge != EXACT_JUDGE:
        return _evaluate_float(rpn)
    pair = exact_pair(rpn)
    return None if pair is None else Fraction(*pair)


def _evaluate_float(rpn: tuple[int | str, ...]) -> float | None:
    stack: list[float] = []
    for item in rpn:
        if type(item) is int:
            stack.append(float(item))
            continue
        b, a = stack.pop(), stack.pop()
        if item == "+":
            stack.append(a + b)
        elif item == "-":
            stack.append(a - b)
        elif item == "*":
            stack.append(a * b)
        elif b == 0:
            return None
        else:
            stack.append(a / b)
    return stack[0]


def multiset_difference(a: list[int], b: list[int]) -> tuple[list[int], list[int]]:
    """(a - b, b - a) as sorted multisets, for sorted inputs (a merge, no Counter)."""
    only_a: list[int] = []
    only_b: list[int] = []
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            i += 1
            j += 1
        elif a[i] < b[j]:
            only_a.append(a[i])
            i += 1
        else:
            only_b.append(b[j])
            j += 1
    return only_a + a[i:], only_b + b[j:]


def numbers_misuse(used: tuple[int, ...], allowed: tuple[int, ...]) -> list[str]:
    """Reasons why the numbers used are not exactly the card values (empty when fine)."""
    used_sorted, allowed_sorted = sorted(used), sorted(allowed)
    if used_sorted == allowed_sorted:
        return []
    extra, missing = multiset_difference(used_sorted, allowed_sorted)
    on_cards = set(allowed_sorted)
    not_on_cards = sorted({x for x in extra if x not in on_cards})
    too_often = sorted({x for x in extra if x in on_cards})
    reasons: list[str] = []
    if not_on_cards:
        reasons.append(f"numbers not on the cards: {', '.join(map(str, not_on_cards))}")
    if too_often:
        reasons.append(f"numbers used too often: {', '.join(map(str, too_often))}")
    if missing:
        reasons.append(f"card numbers not used: {', '.join(map(str, missing))}")
    return reasons


def is_sub_multiset(used: tuple[int, ...], allowed: tuple[int, ...]) -> bool:
    """True when every number used is available on the cards (counting repeats)."""
    return not multiset_difference(sorted(used), sorted(allowed))[0]
