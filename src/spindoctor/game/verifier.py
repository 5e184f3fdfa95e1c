"""Safe verifier for GeneralPoints formulas: tokenise, parse, compute exactly.

Never calls eval/exec and never raises on any string. The grammar is

    formula := expr [ '=' integer ]
    expr    := term (('+' | '-') term)*
    term    := factor (('*' | '/') factor)*
    factor  := integer | '(' expr ')'

so unary minus, ``**``, decimals, variables and any other character are
rejected with a reason. Values are ``fractions.Fraction`` (exact), or floats in
the reference-compatible mode (:data:`FLOAT_JUDGE`), which reproduces the
reference's float ``eval`` verdicts (``8/(3-8/3)`` is then *not* 24) without
evaluating any text.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

Judge = Literal["exact", "float"]
EXACT_JUDGE: Judge = "exact"
FLOAT_JUDGE: Judge = "float"

MAX_FORMULA_CHARS = 200
MAX_NUMBER_DIGITS = 6
_OPERATORS = "+-*/"
_ALLOWED = set("0123456789+-*/() \t=")


class FormulaError(Exception):
    """A formula that cannot be parsed; ``incomplete`` when it ended too early."""

    def __init__(self, reason: str, incomplete: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.incomplete = incomplete


@dataclass(frozen=True)
class Parsed:
    """A parsed formula: a tree of tuples ``(op, left, right)`` or ``int`` leaves."""

    tree: object
    numbers: tuple[int, ...]
    stated_result: int | None


def tokenize(text: str) -> list[str]:
    """Split a formula into integer, operator, parenthesis and '=' tokens.

    Raises
    ------
    FormulaError
        On any character outside digits, ``+-*/()=`` and blanks, on ``**``, on
        decimals, and on integers of more than ``MAX_NUMBER_DIGITS`` digits.
    """
    bad = sorted({ch for ch in text if ch not in _ALLOWED})
    if bad:
        if "." in bad:
            raise FormulaError("decimal numbers are not allowed")
        shown = "".join(bad[:5])
        raise FormulaError(f"illegal characters {shown!r}")
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch.isdigit():
            j = i
            while j < n and text[j].isdigit():
                j += 1
            if j - i > MAX_NUMBER_DIGITS:
                raise FormulaError("number too long")
            tokens.append(text[i:j])
            i = j
        else:
            if ch == "*" and i + 1 < n and text[i + 1] == "*":
                raise FormulaError("'**' (power) is not allowed")
            tokens.append(ch)
            i += 1
    return tokens


class _Parser:
    """Recursive-descent parser over a token list (depth bounded by the length cap)."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.numbers: list[int] = []

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise FormulaError("formula ends too early", incomplete=True)
        self.pos += 1
        return tok

    def expr(self) -> object:
        node = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            node = (op, node, self.term())
        return node

    def term(self) -> object:
        node = self.factor()
        while self.peek() in ("*", "/"):
            op = self.take()
            node = (op, node, self.factor())
        return node

    def factor(self) -> object:
        tok = self.take()
        if tok.isdigit():
            self.numbers.append(int(tok))
            return int(tok)
        if tok == "(":
            node = self.expr()
            if self.peek() is None:
                raise FormulaError("unclosed parenthesis", incomplete=True)
            if self.take() != ")":
                raise FormulaError("expected ')'")
            return node
        if tok == "-":
            raise FormulaError("unary minus is not allowed")
        raise FormulaError(f"unexpected {tok!r}")


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
    stated = int(right) if eq and right.isdigit() and len(right) <= MAX_NUMBER_DIGITS else None
    if not tokens:
        raise FormulaError("empty formula", incomplete=not eq)
    parser = _Parser(tokens)
    tree = parser.expr()
    if parser.peek() is not None:
        raise FormulaError(f"unexpected {parser.peek()!r}")
    return Parsed(tree, tuple(parser.numbers), stated)


def evaluate(tree: object, judge: Judge = EXACT_JUDGE) -> Fraction | float | None:
    """Value of a parsed tree; ``None`` on division by zero.

    ``exact`` uses Fractions; ``float`` uses IEEE doubles, as the reference's
    ``eval`` does (so ``8/(3-8/3)`` is 23.999999999999996).
    """
    if isinstance(tree, int):
        return Fraction(tree) if judge == EXACT_JUDGE else float(tree)
    op, left, right = tree  # type: ignore[misc]
    a, b = evaluate(left, judge), evaluate(right, judge)
    if a is None or b is None:
        return None
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        return None
    return a / b


def numbers_misuse(used: tuple[int, ...], allowed: tuple[int, ...]) -> list[str]:
    """Reasons why the numbers used are not exactly the card values (empty when fine)."""
    reasons: list[str] = []
    need, have = Counter(allowed), Counter(used)
    extra = sorted((have - need).elements())
    missing = sorted((need - have).elements())
    not_on_cards = sorted({x for x in extra if x not in need})
    too_often = sorted({x for x in extra if x in need})
    if not_on_cards:
        reasons.append(f"numbers not on the cards: {', '.join(map(str, not_on_cards))}")
    if too_often:
        reasons.append(f"numbers used too often: {', '.join(map(str, too_often))}")
    if missing:
        reasons.append(f"card numbers not used: {', '.join(map(str, missing))}")
    return reasons


def is_sub_multiset(used: tuple[int, ...], allowed: tuple[int, ...]) -> bool:
    """True when every number used is available on the cards (counting repeats)."""
    return not (Counter(used) - Counter(allowed))
