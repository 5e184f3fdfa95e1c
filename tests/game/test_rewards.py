"""The reference reward table, accumulation, and partial credit."""

import pytest

from spindoctor.game.rewards import judge_formula, solution_surfaces


@pytest.mark.parametrize(
    ("formula", "reward", "status"),
    [
        pytest.param("8/(3-8/3)", 5.0, "correct", id="correct"),
        pytest.param("8/(3-8/3)=24", 5.0, "correct", id="correct-with-equals"),
        pytest.param("8/(3-", 1.0, "partial", id="partial-prefix"),
        pytest.param("3+3+8+8", -1.0, "wrong_value", id="wrong-value"),
        pytest.param("3+3+8", -3.0, "numbers_misused", id="card-unused-and-wrong"),
        pytest.param("3*8", -2.0, "numbers_misused", id="two-cards-unused-right-value"),
        pytest.param("8*3*(8-3)/4", -3.0, "numbers_misused", id="extra-number-and-wrong"),
        pytest.param("(8-3)*3+8+1", -2.0, "numbers_misused", id="extra-number-right-value"),
        pytest.param("3**8", -3.0, "illegal", id="illegal"),
        pytest.param("9.5*3", -5.0, "illegal", id="illegal-and-misused"),
        pytest.param("8/(3-9", -5.0, "illegal", id="incomplete-with-foreign-number"),
        pytest.param("8-(8", -3.0, "illegal", id="incomplete-not-a-prefix"),
    ],
)
def test_reward_table(formula, reward, status):
    verdict = judge_formula(formula, (3, 3, 8, 8))
    assert (verdict.reward, verdict.status) == (reward, status)
    assert verdict.correct == (status == "correct")


def test_numbers_used_right_value_but_extra_card_is_misuse_only():
    verdict = judge_formula("(8-3)*3+8+1", (3, 3, 8, 8))
    assert verdict.value == "24"
    assert verdict.reasons == ("numbers not on the cards: 1",)


def test_solution_surfaces_hold_only_correct_formulas():
    surfaces = solution_surfaces((3, 3, 8, 8))
    assert "8/(3-8/3)" in surfaces
    for s in surfaces:
        assert judge_formula(s, (3, 3, 8, 8)).correct


def test_unsolvable_hand_gives_no_partial_credit():
    assert solution_surfaces((1, 1, 1, 1)) == frozenset()
    assert judge_formula("(1+1", (1, 1, 1, 1)).status == "illegal"
