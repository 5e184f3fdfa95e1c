"""ID/OOD probes of a model: accuracy +- SE, well-formed share, value listing, loss proxy.

Metrics (each defined once; docs/design.md, "Probes"):

* ``acc``: share of probe hands whose first answer (greedy by default) is
  correct under the exact judge; ``acc_se = sqrt(acc (1 - acc) / n)``.
* ``episode_acc`` (only with ``max_turns > 1``): the reference's
  sequential-revision success rate (any of ``max_turns`` verified attempts).
* ``well_formed``: share of answers the format's parser reads whole
  (compact: values, ``|``, formula; paper: JSON with a ``formula`` string).
* ``values_acc``: share of answers listing exactly the hand's values under
  the stated rule, in card order (separates "misread the rule" from "cannot
  compute with these values").
* ``loss``: mean per-token negative log-likelihood (nats) of one held-out gold
  solution per probe hand, teacher-forced: the paper's cheap loss proxy.
* ``per_hand``: what each hand scored, in probe order, so two probes of the
  same hands can be compared hand by hand (:mod:`spindoctor.probes.compare`):
  ``digest`` (hash of the ordered hand keys), ``correct`` (a string of 0/1, one
  character per hand), ``reward`` (the game reward of each first answer),
  ``loss`` (each hand's mean NLL per token, or None) and, with
  ``max_turns > 1``, ``episode_correct``.
* ``reward``: mean game reward of the first answers (the RL stage's reward
  table on the probe hands, greedy by default).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spindoctor.game.deal import DEFAULT_SALT, SPLITS, Hand
from spindoctor.game.episodes import feedback_text, judge_response
from spindoctor.game.formats import FormatName, parse_response, render_prompt, render_response
from spindoctor.models.generate import (
    Done,
    completion_token_ids,
    generate_and_score,
    generate_texts,
    has_chat_template,
    render_chat,
    sequence_nll,
)
from spindoctor.models.prefix import fast_path_supported
from spindoctor.probes.sets import (
    DEFAULT_PROBE_FRACTION,
    flush_solution_cache,
    gold_formula,
    probe_hands,
)

Progress = Callable[[str, int, int], None]  # progress(phase, done, total), e.g. ("ood loss", 256, 796)


class ProbeConfig(BaseModel):
    """What to probe and how (the only source of probe defaults; saved with every run)."""

    model_config = ConfigDict(extra="forbid")

    splits: list[Literal["id", "ood"]] = Field(default_factory=lambda: ["id", "ood"], description="splits to probe")
    n: int | None = Field(500, ge=1, description="hands per split (None: every eligible hand)")
    seed: int = Field(0, description="seeds the probe sets (order, suits) and gold solutions")
    fmt: FormatName = Field("compact", description="prompt format: compact (organism) or paper (chat models)")
    target: int = Field(24, description="the number to make")
    probe_fraction: float = Field(DEFAULT_PROBE_FRACTION, gt=0, lt=1, description="share of keys held out for probes")
    salt: str = Field(DEFAULT_SALT, description="salt of the train/probe partition hash")
    ood_partition: Literal["all", "probe"] = Field("all", description="OOD hands: every eligible one, or the probe partition only")
    batch_size: int = Field(256, ge=1, description="prompts per generate call")
    loss_batch_size: int = Field(256, ge=1, description="most sequences per teacher-forced forward pass")
    loss_max_logits: int = Field(
        2**28, ge=1, description="most logits (rows x scored positions x vocab) per teacher-forced pass; "
        "bounds its memory for large vocabularies (2**28: 1 GiB in float32)",
    )
    max_new_tokens: int | None = Field(None, ge=1, description="new tokens per answer (None: 48 compact, 256 paper)")
    mode: Literal["greedy", "sample"] = Field("greedy", description="decoding")
    temperature: float = Field(1.0, gt=0, description="sampling temperature (mode=sample)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling (mode=sample)")
    sample_seed: int = Field(0, description="torch seed for sampled decoding")
    max_turns: int = Field(1, ge=1, description="1: single attempt; >1: also the multi-turn episode success rate")
    loss: bool = Field(True, description="compute the teacher-forced loss of gold solutions")
    threads: int | None = Field(None, ge=1, description="torch CPU threads while probing (None: leave as set)")
    keep_samples: int = Field(3, ge=0, description="example answers kept per split in the result")

    @field_validator("splits")
    @classmethod
    def _known_splits(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one split")
        return list(dict.fromkeys(v))

    def new_tokens(self) -> int:
        return self.max_new_tokens or (48 if self.fmt == "compact" else 256)


@dataclass
class ProbeResult:
    """The probe of one split (see the module docstring for each metric)."""

    split: str
    n: int
    acc: float
    acc_se: float
    well_formed: float
    values_acc: float
    loss: float | None
    loss_tokens: int
    seconds: float
    episode_acc: float | None = None
    episode_acc_se: float | None = None
    status_counts: dict[str, int] = field(default_factory=dict)
    samples: list[dict] = field(default_factory=list)
    per_hand: dict | None = None
    reward: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def hands_digest(hands: list[Hand]) -> str:
    """16 hex digits identifying an ordered list of probe hands (rule, target, cards):
    two probes can be paired hand by hand only when their digests agree."""
    keys = "\n".join(f"{h.rule}:{h.target}:{','.join(h.labels)}" for h in hands)
    return hashlib.sha256(keys.encode()).hexdigest()[:16]


def _bits(flags: list[bool]) -> str:
    return "".join("1" if f else "0" for f in flags)


def binomial_se(p: float, n: int) -> float:
    """Standard error of a proportion: sqrt(p (1 - p) / n) (docs/design.md, "Probes"); nan for n = 0."""
    return math.sqrt(p * (1.0 - p) / n) if n > 0 else float("nan")


def metrics_row(stage: str, step: int, result: ProbeResult) -> dict:
    """One metrics.jsonl row (docs/design.md, "Run folder"): stage, step, split, n, acc,
    acc_se, loss, time (unix seconds when written), plus the probe's other fields."""
    row = {"stage": stage, "step": int(step), "split": result.split, "n": result.n,
           "acc": result.acc, "acc_se": result.acc_se, "loss": result.loss, "time": time.time()}
    extra = result.to_dict()
    extra.pop("samples", None)
    for key, value in extra.items():
        row.setdefault(key, value)
    return row


def points_by_step(rows: list[dict], stage: str | None = None) -> list[dict]:
    """Join metrics.jsonl probe rows (of ``stage``, or any) by step, in step order.

    Returns
    -------
    list of dict
        ``{"step", "id_acc", "id_acc_se", "id_loss", "id_n", "id_values_acc",
        "id_well_formed", "ood_...": ...}`` with the keys of the splits present.
    """
    by_step: dict[int, dict] = {}
    for row in rows:
        if row.get("split") not in ("id", "ood") or row.get("acc") is None:
            continue
        if stage is not None and row.get("stage") != stage:
            continue
        point = by_step.setdefault(int(row["step"]), {"step": int(row["step"])})
        for key in ("acc", "acc_se", "loss", "n", "values_acc", "well_formed"):
            point[f"{row['split']}_{key}"] = row.get(key)
    return [p for _, p in sorted(by_step.items())]


def _first_messages(cfg: ProbeConfig, hand: Hand) -> list[dict[str, str]]:
    return [{"role": "user", "content": render_prompt(cfg.fmt, hand.cards, hand.rule, hand.target)}]


def _answer(model: Any, tokenizer: Any, cfg: ProbeConfig, chats: list[list[dict]], on_batch: Done | None = None,
            fast: bool = True) -> list[str]:
    prompts = [render_chat(tokenizer, msgs) for msgs in chats]
    return generate_texts(
        model, tokenizer, prompts, max_new_tokens=cfg.new_tokens(), batch_size=cfg.batch_size,
        do_sample=cfg.mode == "sample", temperature=cfg.temperature, top_p=cfg.top_p,
        add_special_tokens=not has_chat_template(tokenizer), on_batch=on_batch, fast=fast,
    )


def _gold_sequences(tokenizer: Any, cfg: ProbeConfig, hands: list[Hand]) -> list[tuple[list[int], int]]:
    """Token ids of each hand's first prompt + its seeded gold solution, and the completion start."""
    return [completion_token_ids(tokenizer, _first_messages(cfg, h), render_response(
        cfg.fmt, h.cards, h.rule, gold_formula(h, cfg.seed), h.target)) for h in hands]


def _first_answers(model: Any, tokenizer: Any, cfg: ProbeConfig, hands: list[Hand], progress: Progress | None,
                   split: str, fast: bool) -> tuple[list[str], list[tuple[float, int]] | None]:
    """The first answers and, on the prefix path, the loss proxy's per-hand (NLL, tokens) read
    off the same prompt caches (:func:`generate_and_score`); None where the loss runs apart
    (plain path, loss off, or a gold sequence whose prompt tokens differ from the prompt's own)."""
    chats = [_first_messages(cfg, h) for h in hands]
    on_answers = _phase(progress, f"{split} answers")
    if not (fast and cfg.loss and hands and fast_path_supported(model)):
        return _answer(model, tokenizer, cfg, chats, on_answers, fast), None
    special = not has_chat_template(tokenizer)
    prompts = [render_chat(tokenizer, c) for c in chats]
    seqs = _gold_sequences(tokenizer, cfg, hands)
    own = tokenizer(prompts, add_special_tokens=special)["input_ids"]
    if any(begin != len(p) or ids[:begin] != p for (ids, begin), p in zip(seqs, own, strict=True)):
        return _answer(model, tokenizer, cfg, chats, on_answers, fast), None
    answers, scores = generate_and_score(
        model, tokenizer, prompts, [ids[begin:] for ids, begin in seqs], max_new_tokens=cfg.new_tokens(),
        batch_size=cfg.batch_size, max_logits=cfg.loss_max_logits, add_special_tokens=special,
        on_batch=on_answers, do_sample=cfg.mode == "sample", temperature=cfg.temperature, top_p=cfg.top_p)
    if progress:
        progress(f"{split} loss", len(hands), len(hands))
    return answers, scores


def _phase(progress: Progress | None, label: str) -> Done | None:
    """``progress`` bound to one phase label (None stays None)."""
    return (lambda done, total: progress(label, done, total)) if progress else None


def _episodes(model: Any, tokenizer: Any, cfg: ProbeConfig, hands: list[Hand], first: list[str],
              first_ok: list[bool], progress: Progress | None = None, split: str = "", fast: bool = True
              ) -> list[bool]:
    """Turn-batched sequential revision: every unfinished episode answers in one batch per turn."""
    chats = [_first_messages(cfg, h) + [{"role": "assistant", "content": a}] for h, a in zip(hands, first, strict=True)]
    done = list(first_ok)
    for turn in range(1, cfg.max_turns):
        active = [i for i, ok in enumerate(done) if not ok]
        if not active:
            break
        for i in active:
            _, verdict = judge_response(cfg.fmt, chats[i][-1]["content"], hands[i])
            chats[i].append({"role": "user", "content": feedback_text(verdict)})
        answers = _answer(model, tokenizer, cfg, [chats[i] for i in active], _phase(progress, f"{split} turn {turn + 1}"),
                          fast)
        for i, answer in zip(active, answers, strict=True):
            chats[i].append({"role": "assistant", "content": answer})
            done[i] = judge_response(cfg.fmt, answer, hands[i])[1].correct
    return done


def probe_split(model: Any, tokenizer: Any, cfg: ProbeConfig, split: str, progress: Progress | None = None,
                fast: bool = True) -> ProbeResult:
    """Probe one split (model already in eval mode); ``progress(phase, done, total)`` after each batch.

    ``fast`` runs generation and the loss through the shared-prefix path
    (:mod:`spindoctor.models.prefix`; the loss is read off the answers' prompt caches,
    in their batches, at most ``loss_max_logits`` logits per pass); False keeps the plain
    path (``bench/probe.py`` compares the two). Both give the same answers and losses up
    to float rounding.
    """
    start = time.perf_counter()
    hands = probe_hands(split, cfg.n, cfg.seed, target=cfg.target, probe_fraction=cfg.probe_fraction,
                        salt=cfg.salt, ood_partition=cfg.ood_partition)
    answers, per_seq = _first_answers(model, tokenizer, cfg, hands, progress, split, fast)
    correct, rewards, formed, values_ok, counts, samples = [], [], 0, 0, {}, []
    for hand, answer in zip(hands, answers, strict=True):
        parsed = parse_response(cfg.fmt, answer)
        _, verdict = judge_response(cfg.fmt, answer, hand)
        correct.append(verdict.correct)
        rewards.append(float(verdict.reward))
        formed += parsed.well_formed
        values_ok += parsed.numbers is not None and tuple(parsed.numbers) == hand.values
        counts[verdict.status] = counts.get(verdict.status, 0) + 1
        if len(samples) < cfg.keep_samples:
            samples.append({"cards": hand.labels, "rule": hand.rule, "answer": answer, "status": verdict.status})
    n = len(hands)
    acc = sum(correct) / n if n else float("nan")
    result = ProbeResult(split=split, n=n, acc=acc, acc_se=binomial_se(acc, n),
                         well_formed=formed / n if n else float("nan"),
                         values_acc=values_ok / n if n else float("nan"),
                         loss=None, loss_tokens=0, seconds=0.0, status_counts=counts, samples=samples)
    result.reward = sum(rewards) / n if n else None
    result.per_hand = {"digest": hands_digest(hands), "correct": _bits(correct), "reward": rewards, "loss": None}
    if cfg.max_turns > 1:
        done = _episodes(model, tokenizer, cfg, hands, answers, correct, progress, split, fast)
        result.episode_acc = sum(done) / n
        result.episode_acc_se = binomial_se(result.episode_acc, n)
        result.per_hand["episode_correct"] = _bits(done)
    if cfg.loss and n:
        if per_seq is None:
            per_seq = sequence_nll(model, tokenizer, _gold_sequences(tokenizer, cfg, hands), cfg.loss_batch_size,
                                   cfg.loss_max_logits, _phase(progress, f"{split} loss"), fast=fast)
        total, count = sum(nll for nll, _ in per_seq), sum(c for _, c in per_seq)
        result.loss, result.loss_tokens = total / max(count, 1), count
        result.per_hand["loss"] = [round(nll / c, 6) if c else None for nll, c in per_seq]
    result.seconds = time.perf_counter() - start
    return result


def probe_model(model: Any, tokenizer: Any, cfg: ProbeConfig, progress: Progress | None = None,
                fast: bool = True) -> dict[str, ProbeResult]:
    """Probe every split of ``cfg``; the model is put in eval mode and its mode restored after.

    ``progress(phase, done, total)``, when given, is called after each generation batch and
    loss pass (phases such as ``"ood answers"``, ``"ood turn 2"``, ``"ood loss"``).
    ``fast``: see :func:`probe_split`.

    Returns
    -------
    dict
        ``{"id": ProbeResult, "ood": ProbeResult}`` (the splits asked for).
    """
    import torch

    was_training = model.training
    threads = torch.get_num_threads()
    model.eval()
    try:
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        if cfg.mode == "sample":
            torch.manual_seed(cfg.sample_seed)
        results = {split: probe_split(model, tokenizer, cfg, split, progress, fast) for split in cfg.splits}
    finally:
        model.train(was_training)
        torch.set_num_threads(threads)
        flush_solution_cache()
    return results


__all__ = ["SPLITS", "ProbeConfig", "ProbeResult", "binomial_se", "metrics_row", "probe_model", "probe_split"]
