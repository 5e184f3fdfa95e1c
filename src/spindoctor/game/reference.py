"""The reference judge: the SFTvsRL GeneralPoints environment's verdicts and rewards, without eval.

Reproduces, input for input, the text environment of "SFT Memorizes, RL
Generalizes" (Zhai et al.; the public LeslieTrue/SFTvsRL code: ``utils_rl.py``
``step_rewards`` and ``REWARD_FN``, the ``re_match`` formula extraction of
``utils_general.py`` and the solution list of
``gym/gym_cards/envs/general_points_oneline.py``). Its rules, as observed:

* extraction: ``json.loads`` of the whole answer and its ``"formula"`` key,
  else the first ``"formula": "(.*?)"`` (exactly that spacing and quoting),
  else the text ``None``; the part left of the first ``=`` is judged;
* any character outside ``\\d+`` and ``+-*/()`` (a blank too) is illegal:
  -3 and stop (``\\d`` is Unicode, so ``٨`` is a digit there);
* each token-order violation adds -3 (an operator first or after an operator
  or ``(``; a number or ``(`` after a number or ``)``; a ``)`` after an
  operator or ``(``, or unmatched); unclosed ``(`` and a trailing operator
  are not violations;
* a number not on the cards, else a number used too often: -2; a card
  unused: another -2; any penalty so far ends the judging;
* otherwise the formula is evaluated as Python does (ints, true division to
  float, so ``8/(3-8/3)`` is 23.999999999999996): equal to the target is +5;
  a Python error (unclosed ``(``, trailing operator, leading zeros as in
  ``003``, a non-ASCII digit, over 200 nested parentheses, division by zero)
  is +1 when the text begins one of the reference's solution strings;
* else -1 when the text leaves every solution string, naming the longest
  token prefix that still matched, and 0 when it follows one to the end (a
  solution the float evaluation missed).

The solution strings are the reference's own: every order of the cards,
every operator triple, and a fixed list of bracket placements, kept when the
exact value is the target (:func:`reference_solutions`). Nothing is ever
evaluated as code: the Python semantics are emulated on the parsed tokens.
Two inputs crash the reference itself; here they are illegal (-3): a JSON
``"formula"`` that is not a string, and (Python >= 3.11) a number of more
than 4300 digits, which is read as a number not on the cards.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import lru_cache
from itertools import permutations, product

from spindoctor.game.verdict import (
    PENALTY_ILLEGAL,
    PENALTY_NUMBERS,
    PENALTY_WRONG_VALUE,
    REWARD_CORRECT,
    REWARD_PARTIAL,
    Verdict,
)
from spindoctor.game.verifier import FormulaError, exact_pair, to_postfix

REFERENCE_MAX_CARDS = 4  # the reference deals four cards; its solution list grows as n! 4^(n-1)
PY_MAX_NESTING = 200  # CPython's tokenizer: "too many nested parentheses" beyond this
_TOKEN = re.compile(r"\d+|[+\-*/()]")  # Unicode \d, as the reference's pattern
_NUMBER = re.compile(r"\d+")
_FORMULA = re.compile(r'"formula": "(.*?)"')


def reference_formula(text: str) -> str | None:
    """The formula the reference extracts from an answer (left of ``=``); None where the reference
    itself would crash (a JSON ``"formula"`` that is not a string)."""
    try:
        value = json.loads(text)["formula"]
    except (ValueError, TypeError, KeyError, IndexError, RecursionError):
        match = _FORMULA.search(text)
        value = match.group(1) if match else "None"
    if not isinstance(value, str):
        return None
    return value.split("=")[0]


def _kind(token: str) -> str:
    if token in ("+", "-", "*", "/"):
        return "operator"
    if token == "(":
        return "open"
    return "close" if token == ")" else "number"


_AFTER_OK = {"number": (None, "operator", "open"), "operator": ("number", "close"),
             "open": (None, "operator", "open"), "close": ("number", "close")}
_ORDER_MESSAGE = {"number": "invalid sequence after number", "operator": "invalid sequence after operator",
                  "open": "invalid sequence before '('", "close": "invalid sequence after ')'"}


def order_violations(tokens: list[str]) -> list[str]:
    """One message per token-order violation, as the reference counts them (each is -3)."""
    out: list[str] = []
    prev: str | None = None
    depth = 0
    for token in tokens:
        kind = _kind(token)
        if prev not in _AFTER_OK[kind]:
            out.append(_ORDER_MESSAGE[kind])
        elif kind == "open":
            depth += 1
        elif kind == "close":
            if depth:
                depth -= 1
            else:
                out.append("unmatched closing parenthesis")
        prev = kind
    return out


def _int(token: str) -> int:
    """``int(token)`` (Unicode digits allowed); -1, never a card, past Python's 4300-digit limit."""
    try:
        return int(token)
    except ValueError:
        return -1


def number_messages(numbers: list[int], values: tuple[int, ...]) -> list[str]:
    """The reference's number checks: invalid else overused (-2), then unused (-2)."""
    cards, used = Counter(values), Counter(numbers)
    out: list[str] = []
    invalid = [x for x in used if x not in cards]
    overused = [x for x in used if used[x] > cards[x]]
    if invalid:
        out.append(f"you used invalid numbers: {invalid}")
    elif overused:
        out.append(f"you used numbers: {overused} too many times")
    unused = [x for x in cards if cards[x] > used[x]]
    if unused:
        out.append(f"you didn't use numbers: {unused}")
    return out


def python_syntax_ok(tokens: list[str]) -> bool:
    """Whether Python would parse the token string (order already checked): ASCII digits, no
    leading zeros, every ``(`` closed, no trailing operator, at most 200 nested parentheses."""
    depth = 0
    for token in tokens:
        if token == "(":
            depth += 1
            if depth > PY_MAX_NESTING:
                return False
        elif token == ")":
            depth -= 1
        elif token not in "+-*/":
            if not token.isascii() or (token[0] == "0" and token.strip("0")):
                return False
    return depth == 0 and _kind(tokens[-1]) in ("number", "close")


def python_value(tokens: list[str]) -> int | float | None:
    """The value Python's ``eval`` gives a syntactically valid token string: int ``+ - *``, true
    division to float; None where it raises (division by zero, overflow)."""
    rpn, _ = to_postfix(tokens)
    stack: list[int | float] = []
    try:
        for item in rpn:
            if type(item) is int:
                stack.append(item)
                continue
            b, a = stack.pop(), stack.pop()
            if item == "+":
                stack.append(a + b)
            elif item == "-":
                stack.append(a - b)
            elif item == "*":
                stack.append(a * b)
            else:
                stack.append(a / b)
    except (ZeroDivisionError, OverflowError):
        return None
    return stack[0]


def _bracket_placements(n: int) -> list[tuple[int, ...]]:
    """The reference's bracket insertion points for ``n`` cards: none, one pair around every run
    of two or more cards but the whole, and the double pair ``(a o b) o (c o d)``."""
    length = 2 * n - 1
    pairs = [(x, y) for x in range(0, length, 2) for y in range(x + 4, length + 2, 2) if (x, y) != (0, length + 1)]
    return [(), *pairs, (0, 4, 6, 10)]


def _solution_text(order: tuple[int, ...], ops: tuple[str, ...], placement: tuple[int, ...]) -> list[str]:
    """Tokens of one candidate: cards and operators interleaved, brackets inserted one by one at
    the listed positions of the growing list (a position past the end appends)."""
    items = [tok for pair in zip(map(str, order), (*ops, ""), strict=True) for tok in pair]
    for pos, bracket in zip(placement, "()" * (len(placement) // 2), strict=True):
        items.insert(pos, bracket)
    return [tok for tok in items if tok]


@lru_cache(maxsize=2048)
def reference_solutions(values: tuple[int, ...], target: int = 24) -> frozenset[str]:
    """The reference environment's solution strings for a hand (sorted ``values``): candidates
    whose exact value is the target. Candidates that do not parse are skipped (the reference
    builds them only for hands of other sizes than four, where its own solver fails)."""
    out: set[str] = set()
    placements = _bracket_placements(len(values))
    for order in set(permutations(values)):
        for ops in product("+-*/", repeat=len(values) - 1):
            for placement in placements:
                tokens = _solution_text(order, ops, placement)
                try:
                    pair = exact_pair(to_postfix(tokens)[0])
                except FormulaError:
                    continue
                if pair is not None and pair[0] == target * pair[1]:
                    out.add("".join(tokens))
    return frozenset(out)


@lru_cache(maxsize=2048)
def _solution_prefixes(values: tuple[int, ...], target: int) -> frozenset[str]:
    """Every prefix of every reference solution string: ``sol.startswith(x)`` for some ``sol``."""
    return frozenset(s[:k] for s in reference_solutions(values, target) for k in range(len(s) + 1))


def judge_reference(formula: str | None, values: tuple[int, ...], target: int = 24) -> Verdict:
    """The reference's reward and messages for ``formula`` (left of ``=``) and card ``values``.

    ``None`` (no string where the reference expected one) is illegal. Raises ValueError for hands
    of more than :data:`REFERENCE_MAX_CARDS` cards (never on the formula text).
    """
    if len(values) > REFERENCE_MAX_CARDS:
        raise ValueError(f"the reference judge takes at most {REFERENCE_MAX_CARDS} cards, got {len(values)}")
    if not isinstance(formula, str):
        return Verdict(False, PENALTY_ILLEGAL, "illegal", None, ("the formula is not text",))
    formula = formula.split("=")[0]
    tokens = _TOKEN.findall(formula)
    if "".join(tokens) != formula:
        return Verdict(False, PENALTY_ILLEGAL, "illegal", None, ("illegal characters",))
    numbers = [_int(x) for x in _NUMBER.findall(formula)]
    order = order_violations(tokens)
    misuse = number_messages(numbers, tuple(values))
    if order or misuse:
        reward = PENALTY_ILLEGAL * len(order) + PENALTY_NUMBERS * len(misuse)
        status = "illegal" if order else "numbers_misused"
        return Verdict(False, reward, status, None, tuple(order + misuse), tuple(numbers))
    return _judge_value(formula, tokens, tuple(numbers), tuple(sorted(values)), target)


def _judge_value(formula: str, tokens: list[str], numbers: tuple[int, ...], values: tuple[int, ...],
                 target: int) -> Verdict:
    """The reference's last stage, for a formula whose characters, order and numbers passed."""
    value = python_value(tokens) if python_syntax_ok(tokens) else None
    shown = None if value is None else repr(value)
    if value is not None and value == target:
        return Verdict(True, REWARD_CORRECT, "correct", str(target), (), numbers)
    prefixes = _solution_prefixes(values, target)
    if value is None and formula in prefixes:
        return Verdict(False, REWARD_PARTIAL, "partial", None, ("partial solution",), numbers)
    register = ""
    for token in tokens:
        if register + token not in prefixes:
            reason = (f"{register} is partially correct but the full formula does not match any solution"
                      if register else "your formula does not match any solution")
            return Verdict(False, PENALTY_WRONG_VALUE, "wrong_value", shown, (reason,), numbers)
        register += token
    return Verdict(False, 0.0, "wrong_value", shown, (), numbers)
