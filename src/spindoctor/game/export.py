"""Dataset exports: SFT pairs, RL prompts, probe sets (jsonl) and verl parquet.

Files written into ``out_dir`` (each atomically):

* ``sft_train.jsonl``: ``prompt``, ``completion``, ``messages`` (user +
  assistant chat turns), and the hand (``cards``, ``rule``, ``target``);
  train-partition ID hands, one gold solution each (seeded choice among the
  solver's distinct solutions).
* ``rl_prompts.jsonl``: train-partition ID hands as RL prompts with
  ``ground_truth`` (see :func:`spindoctor.game.adapters.ground_truth`).
* ``probe_id.jsonl``, ``probe_ood.jsonl``: held-out probe hands with every
  solution, disjoint from the train partition by key.
* ``verl_train.parquet``, ``verl_test.parquet`` (needs pyarrow): verl's RL
  dataset layout; ``data_source`` is ``generalpoints_id`` / ``generalpoints_ood``.
"""

from __future__ import annotations

import random
from pathlib import Path

from spindoctor.game.adapters import DATA_SOURCES, ground_truth
from spindoctor.game.deal import Hand, deal_hands
from spindoctor.game.formats import FormatName, render_prompt, render_response
from spindoctor.game.solver import solve
from spindoctor.io import atomic_path, atomic_write_jsonl


def hand_columns(hand: Hand) -> dict:
    return {"cards": [str(c) for c in hand.cards], "rule": hand.rule, "target": hand.target}


def sft_row(hand: Hand, fmt: FormatName, rng: random.Random) -> dict:
    """One SFT example: the prompt, a gold completion and the chat form."""
    formula = rng.choice(solve(tuple(sorted(hand.values)), hand.target))
    prompt = render_prompt(fmt, hand.cards, hand.rule, hand.target)
    completion = render_response(fmt, hand.cards, hand.rule, formula, hand.target)
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    return {"prompt": prompt, "completion": completion, "messages": messages, **hand_columns(hand)}


def rl_row(hand: Hand, fmt: FormatName) -> dict:
    return {
        "prompt": render_prompt(fmt, hand.cards, hand.rule, hand.target),
        "ground_truth": ground_truth(hand, fmt),
        "data_source": DATA_SOURCES[hand.rule],
        "format": fmt,
        **hand_columns(hand),
    }


def probe_row(hand: Hand, fmt: FormatName) -> dict:
    return {**rl_row(hand, fmt), "solutions": list(solve(tuple(sorted(hand.values)), hand.target))}


def verl_row(hand: Hand, fmt: FormatName, split: str, index: int) -> dict:
    """verl's RL row: chat prompt, rule-based reward model with ground truth, extra_info."""
    return {
        "data_source": DATA_SOURCES[hand.rule],
        "prompt": [{"role": "user", "content": render_prompt(fmt, hand.cards, hand.rule, hand.target)}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": ground_truth(hand, fmt)},
        "extra_info": {"split": split, "index": index, "rule": hand.rule},
    }


def write_parquet(path: Path, rows: list[dict]) -> None:
    """Write rows to parquet atomically (pyarrow, an optional extra)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("verl parquet export needs pyarrow: pip install 'spindoctor[parquet]'") from exc
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp)


def export_all(
    out_dir: str | Path,
    *,
    n_train: int,
    n_probe: int,
    seed: int = 0,
    fmt: FormatName = "paper",
    target: int = 24,
    probe_fraction: float = 0.3,
    parquet: bool = True,
) -> dict[str, int]:
    """Write every export into ``out_dir``; return rows written per file."""
    out = Path(out_dir)
    rng = random.Random(seed)
    kw = {"target": target, "probe_fraction": probe_fraction}
    train = deal_hands("id", n_train, seed, partition="train", **kw)
    probe_id = deal_hands("id", n_probe, seed, partition="probe", **kw)
    probe_ood = deal_hands("ood", n_probe, seed, partition="probe", **kw)
    counts = {
        "sft_train.jsonl": atomic_write_jsonl(out / "sft_train.jsonl", (sft_row(h, fmt, rng) for h in train)),
        "rl_prompts.jsonl": atomic_write_jsonl(out / "rl_prompts.jsonl", (rl_row(h, fmt) for h in train)),
        "probe_id.jsonl": atomic_write_jsonl(out / "probe_id.jsonl", (probe_row(h, fmt) for h in probe_id)),
        "probe_ood.jsonl": atomic_write_jsonl(out / "probe_ood.jsonl", (probe_row(h, fmt) for h in probe_ood)),
    }
    if parquet:
        test_rows = [verl_row(h, fmt, "test", i) for i, h in enumerate(probe_id + probe_ood)]
        write_parquet(out / "verl_train.parquet", [verl_row(h, fmt, "train", i) for i, h in enumerate(train)])
        write_parquet(out / "verl_test.parquet", test_rows)
        counts["verl_train.parquet"] = len(train)
        counts["verl_test.parquet"] = len(test_rows)
    return counts
