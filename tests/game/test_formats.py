"""Prompt formats: the paper text byte for byte, and prompt -> response -> parse round trips."""

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spindoctor.game.cards import Card, parse_cards
from spindoctor.game.deal import Hand
from spindoctor.game.episodes import judge_response
from spindoctor.game.formats import (
    PAPER_TEMPLATE,
    compact_prompt,
    paper_prompt,
    parse_compact_response,
    parse_paper_response,
    render_prompt,
    render_response,
)
from spindoctor.game.solver import solve

SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "generalpoints.md"


def spec_prompt_block() -> str:
    text = SPEC.read_text(encoding="utf-8")
    start = text.index("```\n", text.index('("paper" format)')) + 4
    return text[start : text.index("```", start)]


@pytest.mark.skipif(not SPEC.exists(), reason="shared/spec not beside the checkout")
def test_paper_template_is_the_spec_text_byte_for_byte():
    assert PAPER_TEMPLATE.replace("{{", "{").replace("}}", "}") == spec_prompt_block()


def test_paper_prompt_keeps_the_reference_quirk():
    prompt = paper_prompt(parse_cards("K,5,2,4"), "face10")
    assert "Note that 'J', 'Q', and 'K' count as '10'., and each card must be used once." in prompt
    assert "Cards: ['K', '5', '2', '4']" in prompt
    ood = paper_prompt(parse_cards("K,5,2,4"), "face11")
    assert "count as '11', '12', and '13' respectively., and" in ood


def test_compact_prompt_shape():
    assert compact_prompt(parse_cards("J,5,2,2"), "face10") == "R10 J 5 2 2 =24:"
    assert compact_prompt(parse_cards("J,5,2,2"), "face11", 10) == "R11 J 5 2 2 =10:"


@pytest.mark.parametrize(
    ("text", "formula"),
    [
        pytest.param('{"cards": ["3"], "number": [3], "formula": "8/(3-8/3)=24"}', "8/(3-8/3)=24", id="json"),
        pytest.param("Sure!\n{\n \"formula\": '3*8',\n}", "3*8", id="regex-fallback-single-quotes"),
        pytest.param('{"cards": [x], "formula": "6*4=24",}', "6*4=24", id="invalid-json-regex"),
        pytest.param("I cannot do this.", None, id="no-formula"),
        pytest.param('{"formula": 24}', None, id="formula-not-text"),
    ],
)
def test_parse_paper_response(text, formula):
    assert parse_paper_response(text).formula == formula


def test_parse_compact_response():
    parsed = parse_compact_response(" 10 5 2 2|10*2+2+2\nR10 ...")
    assert parsed.formula == "10*2+2+2" and parsed.numbers == (10, 5, 2, 2) and parsed.well_formed
    assert parse_compact_response("garbage").formula is None


hands = st.builds(
    lambda ranks, rule: Hand(tuple(Card(r) for r in ranks), rule),
    st.lists(st.integers(1, 13), min_size=4, max_size=4),
    st.sampled_from(["face10", "face11"]),
).filter(lambda h: bool(solve(tuple(sorted(h.values)))))


@given(hands, st.sampled_from(["paper", "compact"]))
def test_prompt_response_parse_round_trip(hand, fmt):
    formula = solve(tuple(sorted(hand.values)))[0]
    prompt = render_prompt(fmt, hand.cards, hand.rule)
    assert isinstance(prompt, str) and prompt
    response = render_response(fmt, hand.cards, hand.rule, formula)
    parsed_formula, verdict = judge_response(fmt, response, hand)
    assert parsed_formula is not None and parsed_formula.startswith(formula)
    assert verdict.correct
