"""The reference judge equals the reference environment's rewards."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spindoctor.game.cards import parse_cards
from spindoctor.game.deal import Hand
from spindoctor.game.episodes import judge_response
from spindoctor.game.formats import parse_paper_response
from spindoctor.game.reference import judge_reference, reference_formula, reference_solutions
from spindoctor.game.rewards import judge_formula

from .reference_oracle import OracleCrash, oracle_answer_reward, oracle_reward, oracle_solutions

HANDS = [(3, 8, 1, 1), (3, 3, 8, 8), (7, 3, 3, 7), (10, 5, 2, 4), (1, 2, 3, 4), (12, 1, 6, 13), (1, 1, 1, 1)]


@pytest.mark.parametrize(
    ("formula", "values", "exact", "reference"),
    [
        pytest.param("3*8*1*1 = 24", (3, 8, 1, 1), 5.0, -3.0, id="blank-is-illegal-there"),
        pytest.param("7*(3+003/7)", (7, 3, 3, 7), 5.0, -1.0, id="leading-zeros-syntax-error-there"),
        pytest.param("8/(3-8/3)", (3, 3, 8, 8), 5.0, 0.0, id="float-miss-follows-a-solution"),
        pytest.param("8/(3-8/3)=24", (3, 3, 8, 8), 5.0, 0.0, id="float-miss-with-equals"),
        pytest.param("(" * 101 + "3*8*1*1" + ")" * 101, (3, 8, 1, 1), -3.0, 5.0, id="over-200-chars"),
        pytest.param("(" * 201 + "3*8*1*1" + ")" * 201, (3, 8, 1, 1), -3.0, -1.0, id="over-200-nested"),
        pytest.param("--3*8", (3, 8, 1, 1), -3.0, -8.0, id="violations-add-up"),
        pytest.param("3*8*1*1+", (3, 8, 1, 1), -3.0, -1.0, id="trailing-operator"),
        pytest.param("8/(3-8/3", (3, 3, 8, 8), 1.0, 1.0, id="unclosed-prefix"),
        pytest.param("(3*8*1*1", (3, 8, 1, 1), -3.0, -1.0, id="unclosed-not-a-rendering"),
        pytest.param("", (3, 8, 1, 1), -3.0, -2.0, id="empty"),
        pytest.param("3*8*1*\u0661", (3, 8, 1, 1), -3.0, -1.0, id="arabic-indic-digit"),
        pytest.param("9*9", (3, 8, 1, 1), -3.0, -4.0, id="invalid-and-unused"),
    ],
)
def test_reference_and_exact_verdicts(formula, values, exact, reference):
    assert judge_formula(formula, values).reward == exact
    assert judge_formula(formula, values, judge="reference").reward == reference
    assert oracle_reward(values, formula.split("=")[0]) == reference


@pytest.mark.parametrize(
    ("answer", "exact", "reference"),
    [
        pytest.param('"formula": "3*8*1*1\'=24"', -3.0, -3.0, id="apostrophe-inside-double-quotes"),
        pytest.param("\"formula\": '3*8*1*1=24'", 5.0, -3.0, id="single-quoted-value"),
        pytest.param('"formula":"3*8*1*1=24"', 5.0, -3.0, id="no-blank-after-colon"),
        pytest.param('Here: {"formula": "3*8*1*1=24"} done', 5.0, 5.0, id="json-inside-text"),
        pytest.param('{"formula": "3*8*1*1=24", }', 5.0, 5.0, id="trailing-comma-regex"),
        pytest.param('{"formula": 24}', -3.0, -3.0, id="non-string-formula"),
        pytest.param("no formula at all", -3.0, -3.0, id="nothing"),
    ],
)
def test_paper_extraction(answer, exact, reference):
    hand = Hand(parse_cards("3,8,A,A"), "face10")
    assert judge_response("paper", answer, hand)[1].reward == exact
    assert judge_response("paper", answer, hand, "reference")[1].reward == reference


def test_apostrophe_is_not_a_formula_end_in_any_mode():
    assert parse_paper_response('"formula": "3*8*1*1\'=24"').formula == "3*8*1*1'=24"
    assert reference_formula('"formula": "3*8*1*1\'=24"') == "3*8*1*1'"


def test_solution_strings_equal_the_reference_solver():
    for values in HANDS:
        assert reference_solutions(tuple(sorted(values))) == frozenset(oracle_solutions(tuple(sorted(values))))


def test_reference_judge_refuses_five_cards():
    with pytest.raises(ValueError, match="at most 4"):
        judge_reference("1+2", (1, 2, 3, 4, 5))


def _numbers(values):
    card = st.sampled_from([str(v) for v in values])
    return st.one_of(card, card.map(lambda s: "0" + s), st.sampled_from(["0", "00", "11", "25", "\u0663", "\u00b2"]))


_OTHER = st.sampled_from(["+", "-", "*", "/", "(", ")", " ", "'", "=", "=24", "x", "**", "."])


def _mutate(draw, text: str, values) -> str:
    """One small edit of the kind model answers show."""
    kind = draw(st.integers(0, 6))
    at = draw(st.integers(0, len(text)))
    if kind == 0:
        return text[:at]
    if kind == 1:
        return text[:at] + " " + text[at:]
    if kind == 2:
        return text.replace(str(draw(st.sampled_from(values))), "0" + str(values[0]), 1)
    if kind == 3:
        return text + draw(st.sampled_from(["=24", "=2", " = 24", "'=24", "="]))
    if kind == 4:
        return text[:at] + draw(st.sampled_from("+-*/()")) + text[at:]
    if kind == 5:
        ops = [i for i, ch in enumerate(text) if ch in "+-*/"]
        i = draw(st.sampled_from(ops)) if ops else 0
        return text[:i] + draw(st.sampled_from("+-*/")) + text[i + 1 :] if ops else text
    depth = draw(st.integers(1, 3)) if draw(st.booleans()) else draw(st.integers(95, 205))
    return "(" * depth + text + ")" * draw(st.sampled_from([depth, depth - 1]))


@st.composite
def formulas(draw):
    """Formula-like text for a 4-card hand: solutions and small edits of them, all four cards
    in any order with any operators and brackets, or loose tokens with the odd intruder."""
    values = draw(st.sampled_from(HANDS))
    solutions = sorted(reference_solutions(tuple(sorted(values))))
    mode = draw(st.integers(0, 2))
    if mode == 0 and solutions:
        text = draw(st.sampled_from(solutions))
        for _ in range(draw(st.integers(0, 2))):
            text = _mutate(draw, text, values)
    elif mode == 1:
        order = draw(st.permutations([str(v) for v in values]))
        parts = []
        for i, card in enumerate(order):
            parts.append("(" * draw(st.integers(0, 2)) + card + ")" * draw(st.integers(0, 1)))
            if i < 3:
                parts.append(draw(st.sampled_from("+-*/")))
        text = "".join(parts)
    else:
        text = "".join(draw(st.lists(st.one_of(_numbers(values), _OTHER, _OTHER), max_size=14)))
    return values, text


_SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(formulas())
def test_reference_judge_equals_the_oracle_on_formulas(case):
    values, text = case
    assert judge_formula(text, values, judge="reference").reward == oracle_reward(values, text.split("=")[0])


@st.composite
def paper_answers(draw):
    values, formula = draw(formulas())
    shape = draw(st.integers(0, 6))
    if shape == 0:
        answer = json.dumps({"cards": [str(v) for v in values], "number": list(values), "formula": formula})
    elif shape == 1:
        answer = '{"formula": "' + formula + '"}'
    elif shape == 2:
        answer = 'text "formula": "' + formula + '", more'
    elif shape == 3:
        answer = "{\"formula\": '" + formula + "'}"
    elif shape == 4:
        answer = '{"formula":"' + formula + '"}'
    elif shape == 5:
        answer = json.dumps([formula])
    else:
        answer = json.dumps({"formula": formula}) + draw(st.sampled_from(["", "\n", " trailing"]))
    return values, answer


@_SETTINGS
@given(paper_answers())
def test_reference_judge_equals_the_oracle_on_paper_answers(case):
    values, answer = case
    hand = Hand(parse_cards(",".join(map(str, values))), "face11")
    try:
        expected = oracle_answer_reward(values, answer)
    except OracleCrash:
        expected = -3.0
    assert judge_response("paper", answer, hand, "reference")[1].reward == expected
