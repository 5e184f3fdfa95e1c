"""Test oracle: the reference environment's judging, transcribed plainly and independently.

A straight transcription of how the public SFTvsRL GeneralPoints environment
(Zhai et al.; LeslieTrue/SFTvsRL: ``utils_rl.step_rewards``, ``utils_general.re_match``
and the Rosetta-code solver of ``GeneralPointEnv_oneline``) judges an answer,
written separately from ``spindoctor.game.reference`` so that the tests compare
two implementations. Unlike the library, this oracle calls Python's ``eval``,
as the reference does, and only ever on strings the tests generate themselves:
it is test code, never imported by ``src``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from fractions import Fraction
from functools import lru_cache
from itertools import chain, permutations, product, zip_longest

CORRECT, PARTIAL, NO_SOLUTION, WRONG_NUMBER, ILLEGAL = 5, 1, -1, -2, -3


class OracleCrash(Exception):
    """The reference itself would raise on this input."""


def oracle_extract(text: str):
    """``re_match(text, 'formula')`` then ``split('=')[0]`` as the environment's step does."""
    try:
        pred = json.loads(text)["formula"]
    except Exception:  # noqa: BLE001 - the reference's bare except
        try:
            pred = re.search(r'"formula": "(.*?)"', text).group(1)
        except Exception:  # noqa: BLE001
            pred = "None"
    try:
        pred = pred.split("=")[0]
    except Exception:  # noqa: BLE001
        pass
    return pred


@lru_cache(maxsize=64)
def oracle_solutions(digits: tuple[int, ...], target: int = 24) -> tuple[str, ...]:
    """The Rosetta-code solver: permutations x operators x bracket insertions, evaluated."""
    F = Fraction  # noqa: N806 - the name the generated strings use
    n = len(digits)
    exprlen = 2 * n - 1
    brackets = ([()] + [(x, y) for x in range(0, exprlen, 2) for y in range(x + 4, exprlen + 2, 2)
                        if (x, y) != (0, exprlen + 1)] + [(0, 3 + 1, 4 + 2, 7 + 3)])
    found = []
    for d in sorted(set(permutations(digits))):
        for ops in product("+-*/", repeat=n - 1):
            d2 = [f"F({i})" for i in d] if "/" in ops else d
            ex = list(chain.from_iterable(zip_longest(d2, ops, fillvalue="")))
            for b in brackets:
                exp = ex[::]
                for point, bracket in zip(b, "()" * (len(b) // 2), strict=True):
                    exp.insert(point, bracket)
                txt = "".join(str(i) for i in exp)
                try:
                    num = eval(txt, {"F": F})  # noqa: S307 - test oracle, test-built string
                except ZeroDivisionError:
                    continue
                if num == target:
                    if "/" in ops:
                        exp = [t if not str(t).startswith("F(") else t[2:-1] for t in exp]
                    found.append("".join(str(i) for i in exp).rstrip())
    return tuple(found)


def _kind(token: str) -> str:
    if token in "+-*/":
        return "operator"
    if token == "(":
        return "open_paren"
    if token == ")":
        return "close_paren"
    return "number" if re.match(r"\d+", token) else "unknown"


def oracle_reward(card_nums: tuple[int, ...], formula, target: int = 24) -> float:
    """``step_rewards(card_nums, formula, solutions, target)``'s reward (language only)."""
    if not isinstance(formula, str):
        raise OracleCrash("re.findall on a non-string")
    solutions = oracle_solutions(tuple(sorted(card_nums)), target)
    tokens = re.findall(r"\d+|[+\-*/()]", formula)
    reward = 0
    if "".join(tokens) != formula:
        return ILLEGAL
    prev, stack = None, []
    for token in tokens:
        kind = _kind(token)
        if kind in ("number", "open_paren"):
            if prev in (None, "operator", "open_paren"):
                if kind == "open_paren":
                    stack.append(token)
            else:
                reward += ILLEGAL
        elif kind == "operator":
            if prev not in ("number", "close_paren"):
                reward += ILLEGAL
        elif kind == "close_paren":
            if prev in ("number", "close_paren"):
                if stack:
                    stack.pop()
                else:
                    reward += ILLEGAL
            else:
                reward += ILLEGAL
        prev = kind
    try:
        used = Counter(int(x) for x in re.findall(r"\d+", formula))
    except ValueError as err:  # Python's int() digit limit
        raise OracleCrash(str(err)) from err
    cards = Counter(card_nums)
    if [x for x in used if x not in cards] or [x for x in used if used[x] > cards[x]]:
        reward += WRONG_NUMBER
    if [x for x in cards if cards[x] > used[x]]:
        reward += WRONG_NUMBER
    if reward != 0:
        return reward
    try:
        if eval(formula, {"__builtins__": {}}) == target:  # noqa: S307 - test oracle, test-built string
            return CORRECT
    except Exception:  # noqa: BLE001 - the reference's except Exception
        if any(sol.startswith(formula) for sol in solutions):
            return PARTIAL
    register = ""
    for token in tokens:
        register += token
        if not any(sol.startswith(register) for sol in solutions):
            return NO_SOLUTION
    return 0


def oracle_answer_reward(card_nums: tuple[int, ...], answer: str, target: int = 24) -> float:
    """The reward of a whole paper-format answer: extraction, then ``step_rewards``."""
    return oracle_reward(card_nums, oracle_extract(answer), target)
