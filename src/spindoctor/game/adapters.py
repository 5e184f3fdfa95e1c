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

All of them judge with the exact verifier and never raise on model output.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from spindoctor.game.cards import Card, parse_card
from spindoctor.game.deal import Hand
from spindoctor.game.episodes import judge_response
from spindoctor.game.formats import FORMATS

DATA_SOURCES = {"face10": "generalpoints_id", "face11": "generalpoints_ood"}


def ground_truth(hand: Hand, fmt: str = "paper") -> str:
    """The ground truth of a hand as a JSON string: cards, rule, target, format."""
    return json.dumps(
        {"cards": [str(c) for c in hand.cards], "rule": hand.rule, "target": hand.target, "format": fmt},
        sort_keys=True,
    )


def hand_from_ground_truth(gt: str | dict) -> tuple[Hand, str]:
    """Inverse of :func:`ground_truth`; raises ValueError on a malformed record."""
    obj = json.loads(gt) if isinstance(gt, str) else dict(gt)
    cards = tuple(c if isinstance(c, Card) else parse_card(str(c)) for c in obj["cards"])
    rule = obj["rule"]
    if rule not in DATA_SOURCES:
        raise ValueError(f"unknown rule {rule!r}")
    fmt = obj.get("format", "paper")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    return Hand(cards, rule, int(obj.get("target", 24))), fmt


def score_response(response: str, gt: str | dict) -> float:
    """Reference reward of one response for one ground truth."""
    hand, fmt = hand_from_ground_truth(gt)
    return judge_response(fmt, response, hand)[1].reward  # type: ignore[arg-type]


def _completion_text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return ""


def trl_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """TRL ``reward_funcs`` entry: one float per completion.

    Needs either a ``ground_truth`` column or ``cards`` + ``rule`` (+ optional
    ``target`` and ``format``) columns in the dataset.
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
        gts = [
            {"cards": c, "rule": r, "target": t, "format": f}
            for c, r, t, f in zip(cards, rules, targets, fmts, strict=True)
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
        response = query[len(prompt) :] if query.startswith(prompt) else query
        scores.append(score_response(response, label))
    rewards = torch.tensor(scores, dtype=torch.float32)
    return {"rewards": rewards, "scores": rewards, "extra_logs": {"correct": (rewards == 5).float()}}
