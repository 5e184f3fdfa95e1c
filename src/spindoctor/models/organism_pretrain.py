"""Pretrain the model organism from scratch (nanoGPT-style loop, top to bottom).

setup (threads, seeds, tokenizer, model, AdamW, cosine schedule) -> for each
step: sample a fresh corpus batch (:mod:`spindoctor.models.organism_corpus`),
tokenize, loss on the completion tokens only (the prompt's cards are random,
so predicting them is noise), clip, step -> log -> save (safetensors) with the
resolved config and the training log.

``--out`` must be absent, empty or a previous output of this command (its
:data:`OUTPUT_FILES` and nothing else, ``pretrain_config.yaml`` among them); anything
else is refused before any work, and only those files are ever replaced
(docs/design.md, "Run folder").

Prototype recipe: batch 64, lr 2e-3 cosine, about 1400 steps took
11 minutes on one thread; here both cores are used (``threads``).
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from spindoctor.errors import UserError
from spindoctor.io import append_jsonl, atomic_write_json, atomic_write_text, foreign_entries
from spindoctor.models.organism import OrganismConfig
from spindoctor.models.organism_corpus import CorpusConfig, sample_batch

CONFIG_FILE = "pretrain_config.yaml"
LOG_FILE = "pretrain_log.jsonl"
SUMMARY_FILE = "pretrain_log.json"
# What pretrain writes: its own three files and save_organism's (model and tokenizer;
# special_tokens_map.json is what transformers 4.x adds).
OUTPUT_FILES = frozenset({
    CONFIG_FILE, LOG_FILE, SUMMARY_FILE, "config.json", "generation_config.json", "model.safetensors",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
})


def check_out(out: str | Path) -> Path:
    """``out`` as a Path; :class:`UserError` unless it is absent, an empty folder or a previous
    output of :func:`pretrain` (``pretrain_config.yaml`` and only :data:`OUTPUT_FILES`)."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return out
    if not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if not any(out.iterdir()):
        return out
    foreign = foreign_entries(out, OUTPUT_FILES)
    if foreign or not (out / CONFIG_FILE).is_file():
        what = f"holds files pretraining does not write ({', '.join(foreign[:3])})" if foreign \
            else f"has no {CONFIG_FILE}"
        raise UserError(f"--out {out} is not empty and is not a previous pretrain output: it {what}; "
                        "choose another --out")
    return out


class PretrainConfig(BaseModel):
    """Every knob of ``spindoctor organism pretrain`` (saved as ``pretrain_config.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="seeds the weights and the corpus stream")
    steps: int = Field(1400, ge=1, description="optimizer steps")
    batch_size: int = Field(64, ge=1, description="examples per step (fresh samples each step)")
    lr: float = Field(2e-3, gt=0, description="peak learning rate (AdamW)")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine floor as a share of lr")
    warmup_steps: int = Field(50, ge=0, description="linear warm-up steps")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    grad_clip: float = Field(1.0, gt=0, description="max global grad norm")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads (None: the CPUs not busy at the start, at most 2)")
    pack_len: int = Field(
        96, ge=0, description="pack each batch's sequences into rows of at most this many tokens "
        "(block-diagonal attention, positions restart per sequence: the same loss as padding, about "
        "25% fewer tokens); 0 = one right-padded row per example"
    )
    log_every: int = Field(50, ge=1, description="steps between log rows")
    eval_n: int = Field(256, ge=1, description="fresh corpus problems for the final greedy accuracy")
    organism: OrganismConfig = Field(default_factory=OrganismConfig)
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up, then cosine to ``min_lr_ratio * lr``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.min_lr_ratio * cfg.lr
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


def encode_batch(tokenizer, pairs: list[tuple[str, str]]):
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 on prompt and padding).

    Each sequence is prompt + completion + EOS; the loss covers completion and EOS.
    """
    import torch

    full, prompt_lens = tokenize_pairs(tokenizer, pairs)
    enc = tokenizer.pad({"input_ids": full}, padding=True, padding_side="right", return_tensors="pt")
    labels = enc["input_ids"].clone()
    labels[enc["attention_mask"] == 0] = -100
    for row, n in enumerate(prompt_lens):
        labels[row, :n] = -100
    return enc["input_ids"], enc["attention_mask"], labels.to(torch.long)


def tokenize_pairs(tokenizer, pairs: list[tuple[str, str]]) -> tuple[list[list[int]], list[int]]:
    """Token ids of each prompt + completion + EOS, and each prompt's length in tokens."""
    full = tokenizer([p + c + tokenizer.eos_token for p, c in pairs])["input_ids"]
    return full, [len(ids) for ids in tokenizer([p for p, _ in pairs])["input_ids"]]


def pack_batch(tokenizer, pairs: list[tuple[str, str]], pack_len: int):
    """Pack prompt + completion + EOS sequences into rows of at most ``pack_len`` tokens.

    First-fit decreasing by length. Returns ``input_ids``, ``position_ids`` and
    ``labels``, each of shape (rows, longest row): positions restart at 0 for
    every sequence, which makes transformers build a block-diagonal causal mask
    (``masking_utils.find_packed_sequence_indices``; needs ``attention_mask=None``
    and ``use_cache=False``), so each sequence attends only to itself and the
    loss equals :func:`encode_batch`'s. Row tails are padding that continues the
    last sequence's positions (causal, so it changes nothing before it) with
    label -100. A sequence longer than ``pack_len`` gets a row of its own.
    """
    import torch

    full, prompt_lens = tokenize_pairs(tokenizer, pairs)
    rows: list[list[int]] = []  # indices of the sequences in each row
    fill: list[int] = []
    for i in sorted(range(len(full)), key=lambda j: -len(full[j])):
        row = next((r for r, used in enumerate(fill) if used + len(full[i]) <= pack_len), None)
        if row is None:
            rows.append([])
            fill.append(0)
            row = len(rows) - 1
        rows[row].append(i)
        fill[row] += len(full[i])
    width = max(fill)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    for r, members in enumerate(rows):
        at = 0
        for i in members:
            n = len(full[i])
            input_ids[r, at:at + n] = torch.tensor(full[i])
            labels[r, at + prompt_lens[i]:at + n] = input_ids[r, at + prompt_lens[i]:at + n]
            position_ids[r, at:at + n] = torch.arange(n)
            at += n
        position_ids[r, at:] = torch.arange(n, n + width - at)
    return input_ids, position_ids, labels


def training_loss(model, tokenizer, pairs: list[tuple[str, str]], pack_len: int):
    """Mean completion-token cross-entropy of ``pairs`` (packed when ``pack_len`` > 0)."""
    if pack_len > 0:
        input_ids, position_ids, labels = pack_batch(tokenizer, pairs, pack_len)
        return model(input_ids=input_ids, position_ids=position_ids, labels=labels, use_cache=False).loss
    input_ids, attention_mask, labels = encode_batch(tokenizer, pairs)
    return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, use_cache=False).loss


def pretrain(cfg: PretrainConfig, out: str | Path, progress: bool = True) -> dict:
    """Train the organism and save it to ``out`` (checked first: :func:`check_out`); returns a
    summary dict (also saved)."""
    out = check_out(out)
    import torch

    from spindoctor.devices import set_torch_threads
    from spindoctor.models.organism import (
        build_model,
        build_tokenizer,
        count_parameters,
        save_organism,
    )

    out.mkdir(parents=True, exist_ok=True)
    (out / LOG_FILE).unlink(missing_ok=True)  # ours: check_out let only pretrain's own files through
    atomic_write_text(out / CONFIG_FILE, yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    set_torch_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(f"organism-corpus|{cfg.seed}")
    tokenizer = build_tokenizer()
    model = build_model(cfg.organism, tokenizer, seed=cfg.seed)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95),
    )
    log: list[dict] = []
    start = time.perf_counter()
    running = None
    with _progress(progress, cfg.steps) as advance:
        for step in range(cfg.steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            loss = training_loss(model, tokenizer, sample_batch(cfg.corpus, rng, cfg.batch_size), cfg.pack_len)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            value = float(loss.detach())
            running = value if running is None else 0.95 * running + 0.05 * value
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                log.append({"step": step + 1, "loss": value, "loss_ema": running,
                            "lr": lr_at(step, cfg), "time": time.perf_counter() - start})
                append_jsonl(out / LOG_FILE, log[-1])
            advance(f"loss {running:.3f}")
    model.eval()
    seconds = time.perf_counter() - start
    save_organism(model, tokenizer, out)
    summary = {"steps": cfg.steps, "seconds": seconds, "parameters": count_parameters(model),
               "final_loss_ema": running, "corpus_acc": corpus_accuracy(model, tokenizer, cfg.corpus, cfg.eval_n),
               "log": log}
    atomic_write_json(out / SUMMARY_FILE, summary)
    return summary


def corpus_accuracy(model, tokenizer, corpus: CorpusConfig, n: int, seed: int = 12345) -> float:
    """Greedy single-attempt accuracy on ``n`` fresh corpus problems (targets outside the
    band, 2-4 cards; value lookups skipped): how well the base computes before SFT."""
    from spindoctor.game.formats import parse_compact_response
    from spindoctor.game.rewards import judge_formula
    from spindoctor.models.generate import generate_texts

    rng = random.Random(f"organism-eval|{seed}")
    pairs = [p for p in sample_batch(corpus, rng, 2 * n) if "=" in p[0]][:n]
    answers = generate_texts(model, tokenizer, [p for p, _ in pairs], max_new_tokens=48, batch_size=256)
    ok = 0
    for (prompt, _), answer in zip(pairs, answers, strict=True):
        target = int(prompt.rsplit("=", 1)[1].rstrip(":"))
        parsed = parse_compact_response(answer)
        ok += parsed.formula is not None and parsed.numbers is not None and judge_formula(
            parsed.formula, _values_of(prompt), target).correct
    return ok / max(len(pairs), 1)


def _values_of(prompt: str) -> tuple[int, ...]:
    """Card values stated by a compact prompt (``R11 K 5 =9:`` -> (13, 5))."""
    from spindoctor.game.cards import hand_values, parse_card

    marker, *labels = prompt.split("=")[0].split()
    return hand_values(tuple(parse_card(x) for x in labels), "face10" if marker == "R10" else "face11")


class _progress:
    """A rich progress bar (or nothing) yielding ``advance(description)``."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total, self.bar, self.task = enabled, total, None, None

    def __enter__(self):
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("pretrain {task.description}"), BarColumn(),
                                MofNCompleteColumn(), TimeRemainingColumn(), transient=False)
            self.bar.__enter__()
            self.task = self.bar.add_task("", total=self.total)

        def advance(description: str) -> None:
            if self.bar is not None:
                self.bar.update(self.task, advance=1, description=description)

        return advance

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
