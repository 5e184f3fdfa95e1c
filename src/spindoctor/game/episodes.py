"""Multi-turn sequential revision episodes (the paper's headline protocol).

Reference behaviour (docs/design.md, GeneralPoints; SFTvsRL, Zhai et al.): the model gets up to
``max_turns`` verified attempts in one conversation. After a failed attempt its
answer is appended and a user turn ``You failed this trial because {reasons}``
follows (reasons joined with ", ", ending in "."). The episode succeeds if any
attempt earns +5. The model is any ``generate(messages) -> str`` callable, so a
HF pipeline, a vLLM client or a test double all drive the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from spindoctor.game.deal import Hand
from spindoctor.game.formats import FormatName, parse_response, render_prompt
from spindoctor.game.reference import reference_formula
from spindoctor.game.rewards import Verdict, judge_formula
from spindoctor.game.verdict import EXACT_JUDGE, NO_FORMULA, REFERENCE_JUDGE, Judge

Message = dict[str, str]
Generate = Callable[[list[Message]], str]


@dataclass
class Attempt:
    """One turn: the model's raw answer, the formula found in it, and its verdict."""

    response: str
    formula: str | None
    verdict: Verdict


@dataclass
class Episode:
    """A finished episode: success if any attempt was correct."""

    hand: Hand
    messages: list[Message]
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return any(a.verdict.correct for a in self.attempts)

    @property
    def first_attempt_correct(self) -> bool:
        return bool(self.attempts) and self.attempts[0].verdict.correct


def extract_formula(fmt: FormatName, response: str, judge: Judge = EXACT_JUDGE) -> str | None:
    """The formula of a response: the reference's extraction for ``paper`` answers under the
    reference judge, else the format's own parser; None when there is none. Never raises."""
    if not isinstance(response, str):
        return None
    if judge == REFERENCE_JUDGE and fmt == "paper":
        return reference_formula(response)
    return parse_response(fmt, response).formula


def judge_response(
    fmt: FormatName, response: str, hand: Hand, judge: Judge = EXACT_JUDGE
) -> tuple[str | None, Verdict]:
    """Parse a response in ``fmt`` and judge its formula against ``hand``; never raises on the
    response (the reference judge refuses hands of more than four cards: ValueError)."""
    formula = extract_formula(fmt, response, judge)
    if formula is None:
        return None, NO_FORMULA
    return formula, judge_formula(formula, hand.values, hand.target, judge)


def feedback_text(verdict: Verdict) -> str:
    """The reference's revision turn: ``You failed this trial because {reasons}.``"""
    reasons = ", ".join(verdict.reasons) or "the formula is not correct"
    return f"You failed this trial because {reasons}."


def run_episode(
    generate: Generate,
    hand: Hand,
    fmt: FormatName = "paper",
    max_turns: int = 5,
    judge: Judge = EXACT_JUDGE,
) -> Episode:
    """Play one episode of up to ``max_turns`` verified attempts.

    Parameters
    ----------
    generate : callable
        ``generate(messages) -> str``; ``messages`` is the chat so far as a
        list of ``{"role", "content"}`` dicts, ending with a user turn.
    hand : Hand
        The dealt hand (cards, rule, target).
    fmt : {"paper", "compact"}
        Prompt format and response parser.
    max_turns : int
        Attempts allowed (the reference uses 5; 1 gives single-attempt accuracy).
    """
    if max_turns < 1:
        raise ValueError(f"max_turns must be >= 1, got {max_turns}")
    messages: list[Message] = [
        {"role": "user", "content": render_prompt(fmt, hand.cards, hand.rule, hand.target)}
    ]
    episode = Episode(hand, messages)
    for turn in range(max_turns):
        response = generate(list(messages))
        formula, verdict = judge_response(fmt, response, hand, judge)
        episode.attempts.append(Attempt(response, formula, verdict))
        messages.append({"role": "assistant", "content": response})
        if verdict.correct or turn == max_turns - 1:
            break
        messages.append({"role": "user", "content": feedback_text(verdict)})
    return episode
