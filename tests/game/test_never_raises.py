"""The judge and every adapter return a reward for any text."""

import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spindoctor.game import adapters
from spindoctor.game.adapters import compute_score, ground_truth, reward_func, trl_reward
from spindoctor.game.cards import parse_cards
from spindoctor.game.deal import Hand
from spindoctor.game.episodes import judge_response
from spindoctor.game.formats import parse_compact_response
from spindoctor.game.rewards import judge_formula
from spindoctor.game.verifier import parse_formula

HAND = Hand(parse_cards("KH,5S,2D,4C"), "face10")
JUDGES = ("exact", "float", "reference")
UNICODE_DIGITS = "²³¹①⑴⒈٣٨۳३০๓３𝟑⁴₄Ⅳ"
_PIECES = st.sampled_from(["(", ")", "+", "-", "*", "/", "=", " ", "10", "5", "2", "4", "0", "'", '"', "{", "}",
                           ":", ",", "|", "formula", "\n", *UNICODE_DIGITS])


@st.composite
def nasty_text(draw):
    """Arbitrary text, formula-like text with unicode digits, huge inputs and deep nesting."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.text(max_size=200))
    if kind == 1:
        return "".join(draw(st.lists(_PIECES, max_size=40)))
    if kind == 2:
        depth = draw(st.integers(100, 3000))
        return "(" * depth + "".join(draw(st.lists(_PIECES, max_size=8))) + ")" * draw(st.integers(0, depth))
    if kind == 3:
        return draw(st.sampled_from(["9", "1", "(", "٣", "²"])) * draw(st.integers(1000, 60_000))
    inner = "".join(draw(st.lists(_PIECES, max_size=20)))
    return draw(st.sampled_from([json.dumps({"formula": inner}), '"formula": "' + inner + '"',
                                 " " + inner + "|" + inner, '{"formula": ' + inner + "}"]))


_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(nasty_text())
def test_judge_never_raises(text):
    for judge in JUDGES:
        verdict = judge_formula(text, HAND.values, judge=judge)
        assert verdict.correct == (verdict.reward == 5.0)
        for fmt in ("paper", "compact"):
            judge_response(fmt, text, HAND, judge)


@_SETTINGS
@given(nasty_text())
def test_every_adapter_never_raises(text):
    for judge in JUDGES:
        for fmt in ("paper", "compact"):
            gt = ground_truth(HAND, fmt, judge)
            [r] = trl_reward(prompts=["p"], completions=[text], ground_truth=[gt])
            assert r == compute_score("generalpoints_id", text, gt)
            assert reward_func(queries=["P" + text], prompts=["P"], labels=[gt])["rewards"].tolist() == [r]
            assert trl_reward(prompts=[[]], completions=[[{"role": "assistant", "content": text}]],
                              ground_truth=[gt]) == [r]


@pytest.mark.parametrize("digit", list(UNICODE_DIGITS))
def test_unicode_digits_are_illegal_characters_not_crashes(digit):
    assert judge_formula(f"(10-5+2)*4-4={digit}", HAND.values).status == "numbers_misused"
    assert judge_formula(f"10*2+{digit}", HAND.values).status == "illegal"
    assert parse_compact_response(f" {digit}|(10-5+2)*4-4").numbers is None
    assert parse_formula(f"2*4={digit}").stated_result is None


def test_issue_reproductions_score_instead_of_raising():
    gt = ground_truth(HAND, "compact")
    assert compute_score("generalpoints_id", " ²|(10-5+2)*4-4", gt) == -2.0
    assert judge_response("paper", '{"formula": "(10-5+2)*4-4=²"}', HAND)[1].reward == -2.0


def test_adapter_boundary_logs_and_scores_illegal(monkeypatch, caplog):
    def boom(*args, **kwargs):
        raise RuntimeError("judge bug")

    monkeypatch.setattr(adapters, "judge_response", boom)
    with caplog.at_level(logging.ERROR, logger="spindoctor.game.adapters"):
        assert trl_reward(prompts=["p"], completions=["1+2"], ground_truth=[ground_truth(HAND)]) == [-3.0]
    assert "judging a 3-character completion failed" in caplog.text


def test_non_text_completions_score_illegal():
    gt = ground_truth(HAND)
    assert trl_reward(prompts=["p", "p"], completions=[None, [{"content": 5}]], ground_truth=[gt, gt]) == [-3.0, -3.0]


def test_malformed_ground_truth_still_fails_loudly():
    with pytest.raises(ValueError, match="judge"):
        compute_score("generalpoints_id", "1", json.dumps({"cards": ["K"], "rule": "face10", "judge": "x"}))
    five = Hand(parse_cards("A,2,3,4,5"), "face10")
    with pytest.raises(ValueError, match="at most 4"):
        compute_score("generalpoints_id", "1", ground_truth(five, "paper", "reference"))
