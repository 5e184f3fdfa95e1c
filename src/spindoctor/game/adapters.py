"""Reward adapters with the exact signatures RL frameworks call.

* TRL ``reward_funcs``: ``f(prompts, completions, **kwargs) -> list[float]``;
  dataset columns arrive as keyword lists (here ``cards``, ``rule``,
  ``target``, ``format``, or one ``ground_truth`` column), completions are
  strings or, for conversational datasets, lists of message dicts.
* verl: ``compute_score(data_source, solution_str, ground_truth, extra_info=None)``
  returning a float; ``ground_truth`` is the JSON string (or dict) written by
  :func:`ground_truth`.
* OpenRLHF: ``reward_func(queries, prompts, labels, **kwargs)``, where each
  query is prompt + response; returns ``{"rewards", "scores", "extra_logs"}``
  with torch tensors, as OpenRLHF's remote reward function does.

All of them judge with the judge named in the ground truth (``exact`` by
default; ``float`` or ``reference``) and never raise on model output: a
completion of any type or text gets a reward, and should judging ever fail
the failure is logged and the completion scored as illegal (-3). A malformed
ground truth (a dataset or configuration error) raises ValueError.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from spindoctor.game.cards import Card, parse_card
from spindoctor.game.deal import Hand
from spindoctor.game.episodes import judge_response
from spindoctor.game.formats import FORMATS
from spindoctor.game.reference import REFERENCE_MAX_CARDS
from spindoctor.game.verdict import EXACT_JUDGE, JUDGES, PENALTY_ILLEGAL, REFERENCE_JUDGE

_log = logging.getLogger(__name__)

DATA_SOURCES = {"face10": "generalpoints_id", "face11": "generalpoints_ood"}


def ground_truth(hand: Hand, fmt: str = "paper", judge: str = EXACT_JUDGE) -> str:
    """The ground truth of a hand as a JSON string: cards, rule, target, format (and the judge
    when it is not the default ``exact``)."""
    obj = {"cards": [str(c) for c in hand.cards], "rule": hand.rule, "target": hand.target, "format": fmt}
    if judge != EXACT_JUDGE:
        obj["judge"] = judge
    return json.dumps(obj, sort_keys=True)


def task_from_ground_truth(gt: str | dict) -> tuple[Hand, str, str]:
    """(hand, format, judge) of a ground truth; raises ValueError on a malformed record."""
    obj = json.loads(gt) if isinstance(gt, str) else dict(gt)
    cards = tuple(c if isinstance(c, Card) else parse_card(str(c)) for c in obj["cards"])
    rule, fmt, judge = obj["rule"], obj.get("format", "paper"), obj.get("judge", EXACT_JUDGE)
    if rule not in DATA_SOURCES:
        raise ValueError(f"unknown rule {rule!r}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    if judge not in JUDGES:
        raise ValueError(f"unknown judge {judge!r}; expected one of {', '.join(JUDGES)}")
    if judge == REFERENCE_JUDGE and len(cards) > REFERENCE_MAX_CARDS:
        raise ValueError(f"the reference judge takes at most {REFERENCE_MAX_CARDS} cards, got {len(cards)}")
    return Hand(cards, rule, int(obj.get("target", 24))), fmt, judge


def hand_from_ground_truth(gt: str | dict) -> tuple[Hand, str]:
    """Inverse of :func:`ground_truth` without the judge; raises ValueError on a malformed record."""
    hand, fmt, _ = task_from_ground_truth(gt)
    return hand, fmt


def safe_reward(fmt: str, response: Any, hand: Hand, judge: str = EXACT_JUDGE) -> float:
    """The reward of one completion; never raises. Any failure while judging (none is known) is
    logged with its traceback and scored as illegal (-3), so one odd sample cannot stop an RL job."""
    text = _completion_text(response)
    try:
        return judge_response(fmt, text, hand, judge)[1].reward  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - the adapter boundary: a reward function never raises
        _log.exception("judging a %d-character completion failed; scored %s", len(text), PENALTY_ILLEGAL)
        return PENALTY_ILLEGAL


def score_response(response: Any, gt: str | dict) -> float:
    """Reward of one response for one ground truth (its format and judge)."""
    hand, fmt, judge = task_from_ground_truth(gt)
    return safe_reward(fmt, response, hand, judge)


def _completion_text(completion: Any) -> str:
    """The text of a completion: a string, or the content of the last message of a conversation."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        return content if isinstance(content, str) else ""
    return ""


def trl_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """TRL ``reward_funcs`` entry: one float per completion.

    Needs either a ``ground_truth`` column or ``cards`` + ``rule`` (+ optional
    ``target``, ``format`` and ``judge``) columns in the dataset.
    """
    n = len(completions)
    if "ground_truth" in kwargs:
        gts = list(kwargs["ground_truth"])
    else:
        cards, rules = kwargs.get("cards"), kwargs.get("rule")
        if cards is None or rules is None:
            raise KeyError("trl_reward needs a 'ground_truth' column or 'cards' and 'rule' columns")
        targets = kwargs.get("target") or [24] * n
        fmts = kwargs.get("format") or ["paper"] * n
        judges = kwargs.get("judge") or [EXACT_JUDGE] * n
        gts = [
            {"cards": c, "rule": r, "target": t, "format": f, "judge": j}
            for c, r, t, f, j in zip(cards, rules, targets, fmts, judges, strict=True)
        ]
    return [score_response(_completion_text(c), g) for c, g in zip(completions, gts, strict=True)]


trl_reward.__name__ = "generalpoints_reward"  # TRL logs rewards under the function's name


def compute_score(
    data_source: str, solution_str: str, ground_truth: str | dict, extra_info: dict | None = None
) -> float:
    """verl custom reward function (``custom_reward_function.name=compute_score``)."""
    if data_source not in DATA_SOURCES.values():
        raise ValueError(f"unknown data_source {data_source!r}; expected {sorted(DATA_SOURCES.values())}")
    return score_response(solution_str, ground_truth)


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[str], **kwargs: Any):
    """OpenRLHF remote reward function: queries are prompt + response, labels the ground truths."""
    import torch  # only OpenRLHF callers pay for the import

    scores = []
    for query, prompt, label in zip(queries, prompts, labels, strict=True):
        query = _completion_text(query)
        response = query[len(prompt) :] if isinstance(prompt, str) and query.startswith(prompt) else query
        scores.append(score_response(response, label))
    rewards = torch.tensor(scores, dtype=torch.float32)
    return {"rewards": rewards, "scores": rewards, "extra_logs": {"correct": (rewards == 5).float()}}
