"""Multi-turn revision episodes driven by a scripted generate callable."""

import pytest

from spindoctor.game.cards import parse_cards
from spindoctor.game.deal import Hand
from spindoctor.game.episodes import run_episode


class Scripted:
    def __init__(self, answers):
        self.answers = list(answers)
        self.seen = []

    def __call__(self, messages):
        self.seen.append(list(messages))
        return self.answers.pop(0)


HAND = Hand(parse_cards("3,3,8,8"), "face10")


def test_success_on_third_attempt_with_reference_feedback():
    gen = Scripted([" 3 3 8 8|3+3+8+8", " 3 3 8 8|3**8", " 3 3 8 8|8/(3-8/3)", "unused"])
    ep = run_episode(gen, HAND, "compact", max_turns=5)
    assert ep.success and not ep.first_attempt_correct
    assert len(ep.attempts) == 3
    assert [m["role"] for m in ep.messages] == ["user", "assistant", "user", "assistant", "user", "assistant"]
    assert ep.messages[2]["content"] == "You failed this trial because the formula equals 22, not 24."
    assert ep.messages[4]["content"].startswith("You failed this trial because the formula is illegal")
    assert len(gen.seen[2]) == 5  # the third call saw the whole conversation


def test_episode_stops_after_max_turns():
    ep = run_episode(Scripted(["nope"] * 5), HAND, "paper", max_turns=5)
    assert not ep.success and len(ep.attempts) == 5
    assert ep.messages[-1]["role"] == "assistant"


def test_single_turn_is_first_attempt_accuracy():
    ep = run_episode(Scripted(['{"formula": "8/(3-8/3)=24"}']), HAND, "paper", max_turns=1)
    assert ep.first_attempt_correct


def test_zero_turns_is_rejected():
    with pytest.raises(ValueError):
        run_episode(Scripted([]), HAND, "paper", max_turns=0)
