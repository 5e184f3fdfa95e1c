"""Verifier: legal and illegal formulas, exact values, and it never raises."""

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spindoctor.game.rewards import judge_formula
from spindoctor.game.verifier import FormulaError, evaluate, parse_formula


@pytest.mark.parametrize(
    ("text", "value"),
    [
        pytest.param("8/(3-8/3)", Fraction(24), id="exact-division"),
        pytest.param("2*3+4*5-2", Fraction(24), id="precedence"),
        pytest.param("((2))*((12))", Fraction(24), id="redundant-parens"),
        pytest.param(" 6 * 4 = 24 ", Fraction(24), id="spaces-and-equals"),
        pytest.param("10-5-2", Fraction(3), id="left-assoc-minus"),
        pytest.param("8/4/2", Fraction(1), id="left-assoc-div"),
    ],
)
def test_legal_formulas_evaluate_exactly(text, value):
    assert evaluate(parse_formula(text).rpn) == value


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("-3+27", "unary minus", id="unary-minus"),
        pytest.param("3*(-1+9)", "unary minus", id="unary-minus-in-parens"),
        pytest.param("2**3*3", "power", id="power"),
        pytest.param("1.5*16", "decimal", id="decimal"),
        pytest.param("3x8", "illegal characters", id="letter"),
        pytest.param("__import__('os')", "illegal characters", id="code-injection"),
        pytest.param("3 8 + 1", "unexpected", id="two-numbers-in-a-row"),
        pytest.param("(3+8", "unclosed", id="unclosed"),
        pytest.param("3+8)", "unexpected", id="stray-close"),
        pytest.param("()", "unexpected", id="empty-parens"),
        pytest.param("1" * 7, "number too long", id="huge-number"),
        pytest.param("(" * 150 + "1" + ")" * 150, "longer than", id="over-long"),
        pytest.param("", "empty", id="empty"),
        pytest.param("3+\u0668", "illegal characters", id="unicode-digit"),
    ],
)
def test_illegal_formulas_raise_with_reason(text, reason):
    with pytest.raises(FormulaError) as err:
        parse_formula(text)
    assert reason in err.value.reason


def test_division_by_zero_has_no_value():
    assert evaluate(parse_formula("3/(2-2)").rpn) is None
    verdict = judge_formula("8*8/(3-3)", (3, 3, 8, 8))
    assert not verdict.correct and "divides by zero" in verdict.reasons[0]


def test_float_judge_reproduces_the_reference_miss():
    assert evaluate(parse_formula("8/(3-8/3)").rpn, "float") != 24
    assert judge_formula("8/(3-8/3)", (3, 3, 8, 8), judge="float").status == "wrong_value"
    assert judge_formula("8/(3-8/3)", (3, 3, 8, 8)).correct


@given(st.text(max_size=300))
def test_judge_never_raises_on_any_text(text):
    verdict = judge_formula(text, (3, 3, 8, 8))
    assert verdict.reward in {5.0, 1.0, -1.0, -2.0, -3.0, -5.0}


@given(st.text(alphabet="0123456789+-*/() =", max_size=60))
def test_judge_never_raises_on_formula_like_text(text):
    verdict = judge_formula(text, (1, 2, 3, 4))
    assert verdict.correct == (verdict.reward == 5.0)
