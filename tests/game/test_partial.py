"""Partial credit by search: the enumeration's verdicts, in bounded time."""

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spindoctor.game.partial import is_prefix_of_solution, search_prefix
from spindoctor.game.rewards import judge_formula, solution_surfaces


def _old(prefix, values, target=24):
    return any(s.startswith(prefix) for s in solution_surfaces(tuple(sorted(values)), target))


def _random_prefixes(rng, values, surfaces, n):
    out = set()
    for s in rng.sample(sorted(surfaces), min(len(surfaces), 8)):
        out.update(s[:k] for k in range(len(s) + 1))
    tokens = [str(v) for v in values] + list("+-*/()") + ["1", "10", "(("]
    while len(out) < n:
        out.add("".join(rng.choice(tokens) for _ in range(rng.randint(1, 9))))
    return sorted(out)


def test_search_equals_enumeration_on_random_4_card_prefixes():
    rng = random.Random(13)
    checked = 0
    for _ in range(30):
        values = tuple(rng.randint(1, 13) for _ in range(4))
        surfaces = solution_surfaces(tuple(sorted(values)))
        for prefix in _random_prefixes(rng, values, surfaces, 80):
            old = _old(prefix, values)
            assert search_prefix(prefix, tuple(sorted(values)), 24) == old, (values, prefix)
            assert is_prefix_of_solution(prefix, values, 24) == old
            checked += 1
    assert checked >= 2400


@settings(max_examples=300, deadline=None)
@given(st.tuples(*[st.integers(1, 13)] * 4), st.text(alphabet="0123456789+-*/()", max_size=10),
       st.sampled_from([24, 10, 0, 1]))
def test_search_equals_enumeration_hypothesis(values, prefix, target):
    assert search_prefix(prefix, tuple(sorted(values)), target) == _old(prefix, values, target)


@pytest.mark.parametrize("cards", [5, 6])
def test_any_check_answers_in_under_a_second(cards):
    rng = random.Random(cards)
    worst = 0.0
    for _ in range(6):
        values = tuple(rng.randint(1, 13) for _ in range(cards))
        a, b = values[0], values[1]
        for prefix in ["(", "((", f"({a}+{b}", f"{a}+", f"{a}*(", f"{a}/({b}-", f"(({a}-{b})*"]:
            start = time.perf_counter()
            judge_formula(prefix, values)
            worst = max(worst, time.perf_counter() - start)
    assert worst < 1.0


@pytest.mark.parametrize("values", [(1, 2, 3), (2, 12), (3, 3, 8, 8)])
def test_search_equals_enumeration_on_small_hands(values):
    surfaces = solution_surfaces(tuple(sorted(values)))
    for prefix in _random_prefixes(random.Random(len(values)), values, surfaces, 300):
        assert search_prefix(prefix, tuple(sorted(values)), 24) == _old(prefix, values)


def test_issue_hang_case_is_partial_and_fast():
    start = time.perf_counter()
    verdict = judge_formula("(1+2", (1, 2, 3, 4, 5, 6))
    assert verdict.status == "partial" and time.perf_counter() - start < 1.0


def test_more_than_six_cards_get_no_partial_credit():
    assert judge_formula("(1+2", tuple(range(1, 9))).status == "illegal"
