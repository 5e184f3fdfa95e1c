"""Solver: golden counts, exactness, distinct canonical solutions, degenerate hands."""

from fractions import Fraction
from itertools import combinations_with_replacement

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spindoctor.game.solver import can_make, reachable, solvable_table, solve
from spindoctor.game.verifier import evaluate, parse_formula


def brute_force_can_make(values: tuple[int, ...], target: int) -> bool:
    """Independent check: repeatedly combine any ordered pair, exact arithmetic."""

    def rec(nums: list[Fraction]) -> bool:
        if len(nums) == 1:
            return nums[0] == target
        for i in range(len(nums)):
            for j in range(len(nums)):
                if i == j:
                    continue
                rest = [nums[k] for k in range(len(nums)) if k not in (i, j)]
                a, b = nums[i], nums[j]
                for c in (a + b, a - b, a * b, a / b if b else None):
                    if c is not None and rec(rest + [c]):
                        return True
        return False

    return rec([Fraction(v) for v in values])


def test_public_count_1362_of_1820():
    table = solvable_table()
    assert len(table) == 1820
    assert sum(table.values()) == 1362


def test_table_matches_independent_brute_force_on_a_sample():
    table = solvable_table()
    sample = list(combinations_with_replacement(range(1, 14), 4))[::37]
    for combo in sample:
        assert table[combo] == brute_force_can_make(combo, 24), combo


def test_8_over_3_minus_8_over_3_needs_exact_arithmetic():
    assert can_make((3, 3, 8, 8))
    assert solve((3, 3, 8, 8)) == ("8/(3-8/3)",)


@pytest.mark.parametrize(
    ("values", "target", "expected"),
    [
        pytest.param((1, 1, 1, 1), 24, False, id="ones-unsolvable"),
        pytest.param((1, 1, 1, 1), 0, True, id="ones-make-zero"),
        pytest.param((6, 6, 6, 6), 24, True, id="four-sixes"),
        pytest.param((13, 13, 13, 13), 24, False, id="four-kings-face11"),
        pytest.param((1, 2, 3, 4), 10, True, id="other-target"),
        pytest.param((1, 1, 1, 1, 1), 24, False, id="five-ones"),
        pytest.param((1, 2, 3, 4, 5), 24, True, id="five-cards"),
        pytest.param((24,), 24, True, id="single-card"),
        pytest.param((5, 5), 24, False, id="two-cards-unsolvable"),
    ],
)
def test_can_make_cases(values, target, expected):
    assert can_make(values, target) is expected
    assert brute_force_can_make(values, target) is expected


def test_reachable_is_closed_under_the_brute_force():
    # every value reachable from 3 numbers is what the brute force reaches
    assert Fraction(24) in reachable((3, 3, 8, 8))
    assert Fraction(1, 3) in reachable((1, 3))


def test_solutions_are_distinct_up_to_commutativity():
    sols = solve((1, 2, 3, 4))
    assert "1*2*3*4" in sols
    assert not any(s in sols for s in ("2*1*3*4", "4*3*2*1", "(1*2)*3*4"))
    assert len(sols) == len(set(sols))


def test_unsolvable_hand_has_no_solutions():
    assert solve((1, 1, 1, 1)) == ()


@given(st.lists(st.integers(1, 13), min_size=4, max_size=4).map(lambda xs: tuple(sorted(xs))))
def test_every_solution_verifies_and_solvability_agrees(values):
    sols = solve(values)
    assert bool(sols) == can_make(values)
    for s in sols:
        parsed = parse_formula(s)
        assert sorted(parsed.numbers) == list(values)
        assert evaluate(parsed.rpn) == 24
