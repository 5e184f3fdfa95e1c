"""Benchmark: the probes' teacher-forced loss with kept logits beside full logits, side by side.

On a chat model with a real vocabulary (SmolLM2-135M-Instruct from .cache/smollm2-135m,
vocabulary 49152; see README "Real weights"), ``n`` paper-format probe hands with gold
solutions, each phase in a fresh process with the same threads:

- full: one forward pass per ``batch`` sequences returning logits at every position,
  log-softmax of all of them (what the probes did before ``logits_to_keep``);
- kept: :func:`spindoctor.models.generate.teacher_forced_nll` (logits only where a
  token is scored, at most ``ProbeConfig().loss_max_logits`` per pass).

Reports seconds and peak RSS above the loaded model for each, their ratios, and the
difference of the two losses.

Last line: {"bench": "loss", "ratio": {...}, ...}.
Usage: python bench/loss.py [--n 64] [--batch 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / ".cache" / "smollm2-135m"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sequences(tok, n: int) -> list[tuple[list[int], int]]:
    from spindoctor.game.formats import render_response
    from spindoctor.models.generate import completion_token_ids
    from spindoctor.probes.core import ProbeConfig, _first_messages
    from spindoctor.probes.sets import gold_formula, probe_hands

    cfg = ProbeConfig(fmt="paper")
    hands = probe_hands("ood", n, 0, target=24, probe_fraction=cfg.probe_fraction, salt=cfg.salt,
                        ood_partition=cfg.ood_partition)
    return [completion_token_ids(tok, _first_messages(cfg, h),
                                 render_response(cfg.fmt, h.cards, h.rule, gold_formula(h, 0), h.target))
            for h in hands]


def full_logits_nll(model, tok, seqs, batch: int) -> tuple[float, int]:
    """The baseline: every position's logits, log-softmax over all of them, then pick the scored ones."""
    import torch

    total, count = 0.0, 0
    for start in range(0, len(seqs), batch):
        chunk = seqs[start : start + batch]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        target = torch.zeros((len(chunk), width), dtype=torch.bool)
        for row, (seq, begin) in enumerate(chunk):
            ids[row, : len(seq)], mask[row, : len(seq)] = torch.tensor(seq), 1
            target[row, max(begin, 1) : len(seq)] = True
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        total += float(-logp[target[:, 1:]].sum())
        count += int(target[:, 1:].sum())
    return total, count


def phase(name: str, n: int, batch: int) -> dict:
    from spindoctor.models.generate import ensure_pad_token, teacher_forced_nll
    from spindoctor.models.load import load_causal_lm
    from spindoctor.probes.core import ProbeConfig

    model, tok = load_causal_lm(MODEL)
    model.eval()
    ensure_pad_token(tok)
    seqs = sequences(tok, n)
    base = peak_rss_mb()
    t0 = time.perf_counter()
    if name == "full":
        total, count = full_logits_nll(model, tok, seqs, batch)
    else:
        total, count = teacher_forced_nll(model, tok, seqs, batch, ProbeConfig().loss_max_logits)
    return {"seconds": time.perf_counter() - t0, "rss_above_model_mb": peak_rss_mb() - base, "loss": total / count,
            "scored_tokens": count, "tokens": sum(len(ids) for ids, _ in seqs), "vocab": len(tok)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--phase", default=None)
    a = p.parse_args()
    if a.phase:
        import torch

        torch.set_num_threads(a.threads)
        print(json.dumps(phase(a.phase, a.n, a.batch)))
        return
    if not (MODEL / "model.safetensors").is_file():
        sys.exit(f"needs {MODEL} (README, 'Real weights')")
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
    res = {}
    for name in ("full", "kept"):
        proc = subprocess.run([sys.executable, __file__, "--phase", name, "--n", str(a.n), "--batch", str(a.batch),
                               "--threads", str(a.threads)], capture_output=True, text=True, env=env, check=True)
        res[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    full, kept = res["full"], res["kept"]
    print(f"{a.n} sequences, {full['tokens']} tokens ({full['scored_tokens']} scored), vocab {full['vocab']}: "
          f"full logits {full['seconds']:.2f} s / +{full['rss_above_model_mb']:.0f} MB, "
          f"kept {kept['seconds']:.2f} s / +{kept['rss_above_model_mb']:.0f} MB")
    print(json.dumps({
        "bench": "loss",
        "ratio": {"kept_vs_full_seconds": round(kept["seconds"] / full["seconds"], 3),
                  "kept_vs_full_peak_rss_above_model": round(kept["rss_above_model_mb"] / full["rss_above_model_mb"], 3)
                  if full["rss_above_model_mb"] > 0 else None},
        "seconds": {"full": round(full["seconds"], 3), "kept": round(kept["seconds"], 3)},
        "rss_above_model_mb": {"full": round(full["rss_above_model_mb"]), "kept": round(kept["rss_above_model_mb"])},
        "loss": {"full": full["loss"], "kept": kept["loss"], "abs_diff": abs(full["loss"] - kept["loss"])},
        "n": a.n, "batch": a.batch, "threads": a.threads, "tokens": full["tokens"],
        "scored_tokens": full["scored_tokens"], "vocab": full["vocab"],
    }))


if __name__ == "__main__":
    main()
