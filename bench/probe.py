"""Benchmark: the prober's shared-prefix path beside its plain path, side by side in one run.

For each model, the same ``n`` OOD probe hands, greedy, float32, the same
torch threads, probed twice by :func:`spindoctor.probes.core.probe_split`:

* plain: ``fast=False`` (one left-padded ``model.generate`` per batch, one
  right-padded teacher-forced pass per loss group: the prober before the fast path);
* fast: ``fast=True`` (:mod:`spindoctor.models.prefix`: the batch's shared
  prompt prefix run once on one row and copied into every row's cache, the
  cache written into preallocated buffers, the loss proxy read off the
  answers' prompt caches).

It prints, per model, the seconds of each path (the plain one split into
answers and loss; the fast one scores the loss inside generation) and the
ratio plain / fast, and asserts that both paths give identical answers (and
correctness) on every hand and per-hand losses within 1e-4 nats/token.
Goal: ratio >= 2 on smollm2 (answers + loss).

Models: ``organism`` (``compact`` format; the pretrained organism from
``--organism`` when it exists, else a freshly initialised one of the same
size: timing depends on the size, not the weights), ``smollm2``
(SmolLM2-135M-Instruct, ``paper`` format through its chat template, 96 new
tokens as in the smollm2-135m study config; weights from ``--smollm2``,
default ``$SPINDOCTOR_SMOLLM2`` else ``.cache/smollm2-135m``, imported as the
README says; skipped with one line when absent).
Last line: one JSON object (docs/design.md, "Engineering decisions").

    python bench/probe.py [--model organism|smollm2|all] [--n 64] [--threads 1] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load(name: str, args: argparse.Namespace) -> tuple[object, object, str, str, int] | None:
    """(model, tokenizer, format, description, max new tokens), or None when the weights are absent."""
    from spindoctor.models.load import load_causal_lm
    from spindoctor.models.organism import OrganismConfig, build_model, build_tokenizer

    if name == "organism":
        if (Path(args.organism) / "config.json").exists():
            model, tok = load_causal_lm(args.organism)
            return model, tok, "compact", str(args.organism), 48
        tok = build_tokenizer()
        return build_model(OrganismConfig(), tok).eval(), tok, "compact", "fresh organism (same size)", 48
    path = Path(args.smollm2)
    if not (path / "config.json").is_file():
        print(f"smollm2: skipped, no weights at {path} (import them as README 'Real weights' says, "
              "or pass --smollm2 / set SPINDOCTOR_SMOLLM2)")
        return None
    model, tok = load_causal_lm(path)
    return model, tok, "paper", str(path), 96


def timed_probe(model, tok, cfg, fast: bool) -> tuple[dict, object]:
    """Seconds of the answers and the loss phase, and the ProbeResult."""
    from spindoctor.probes.core import probe_split

    marks: dict[str, float] = {}
    t0 = time.perf_counter()

    def progress(phase: str, done: int, total: int) -> None:
        if done == total:
            marks[phase.split()[-1]] = time.perf_counter()

    result = probe_split(model, tok, cfg, "ood", progress, fast=fast)
    end = time.perf_counter()
    answers = marks.get("answers", end) - t0
    return {"answers": answers, "loss": end - t0 - answers, "total": end - t0}, result


def check_same(plain, fast) -> float:
    """Assert identical answers and correctness; return the largest per-hand loss difference."""
    a = [s["answer"] for s in plain.samples]
    b = [s["answer"] for s in fast.samples]
    differ = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    assert not differ, f"answers differ on hands {differ[:5]}: {a[differ[0]]!r} vs {b[differ[0]]!r}"
    assert plain.per_hand["correct"] == fast.per_hand["correct"]
    diff = max(abs(x - y) for x, y in zip(plain.per_hand["loss"], fast.per_hand["loss"], strict=True))
    assert diff < 1e-4, f"per-hand losses differ by {diff}"
    return diff


def bench_model(name: str, args: argparse.Namespace) -> dict | None:
    from spindoctor.probes.core import ProbeConfig

    loaded = load(name, args)
    if loaded is None:
        return {"model": name, "skipped": "no weights"}
    model, tok, fmt, which, new_tokens = loaded
    cfg = ProbeConfig(splits=["ood"], n=args.n, fmt=fmt, max_new_tokens=new_tokens, batch_size=args.n,
                      keep_samples=args.n)
    timed_probe(model, tok, cfg.model_copy(update={"n": 2, "max_new_tokens": 2}), True)  # warm-up
    seconds: dict[str, list[dict]] = {"plain": [], "fast": []}
    for _ in range(args.rounds):
        for path in ("plain", "fast"):
            secs, result = timed_probe(model, tok, cfg, path == "fast")
            seconds[path].append(secs)
            if path == "plain":
                plain = result
            else:
                loss_diff = check_same(plain, result)
    med = {p: {k: sorted(s[k] for s in rows)[len(rows) // 2] for k in rows[0]} for p, rows in seconds.items()}
    ratio = med["plain"]["total"] / med["fast"]["total"]
    print(f"{name}: {args.n} hands ({fmt}, {new_tokens} new tokens), plain {med['plain']['total']:.1f} s "
          f"(answers {med['plain']['answers']:.1f} + loss {med['plain']['loss']:.1f}), fast "
          f"{med['fast']['total']:.1f} s (answers and loss together): {ratio:.2f}x; answers identical, "
          f"per-hand losses within {loss_diff:.1e}")
    return {"model": name, "weights": which, "format": fmt, "max_new_tokens": new_tokens,
            "ratio": {"plain_vs_fast_total": round(ratio, 3)},
            "seconds": {"plain": {k: round(v, 2) for k, v in med["plain"].items()},
                        "fast": {"total": round(med["fast"]["total"], 2)}},
            "answers_identical": True, "max_loss_diff": loss_diff, "ood_acc": plain.acc}


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["organism", "smollm2", "all"], default="all")
    ap.add_argument("--n", type=int, default=64, help="OOD hands (one batch)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1, help="plain/fast pairs; medians are reported")
    ap.add_argument("--organism", default=str(ROOT / "runs" / "organism-base"))
    ap.add_argument("--smollm2", default=os.environ.get("SPINDOCTOR_SMOLLM2") or str(ROOT / ".cache" / "smollm2-135m"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = ["organism", "smollm2"] if args.model == "all" else [args.model]
    results = [bench_model(name, args) for name in names]
    print(json.dumps({"bench": "probe", "n": args.n, "threads": args.threads, "rounds": args.rounds,
                      "models": results}))


if __name__ == "__main__":
    main()
