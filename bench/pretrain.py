"""Benchmark: organism pretraining steps/s, packed rows vs one right-padded row per example.

Side by side in one run, same process, same threads, the same fresh corpus
batches (batch 64 of the default corpus) and the same initial weights for
both layouts; the timed work is a whole optimizer step (batch building,
forward, backward, clip, AdamW), interleaved A/B/A/B so machine noise hits
both alike. It also reports the largest loss difference seen between the two
layouts on the same weights (packing is a layout change only: ~1e-6).
The pretraining budget (at most 8 minutes on 2 cores) is what this speeds up.
Last line: one JSON object (docs/design.md, "Engineering decisions").

    python bench/pretrain.py [--steps 30] [--pack-len 96] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import random
import time


def main() -> None:
    import torch

    from spindoctor.models.organism import build_model, build_tokenizer
    from spindoctor.models.organism_corpus import sample_batch
    from spindoctor.models.organism_pretrain import PretrainConfig, training_loss

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--pack-len", type=int, default=PretrainConfig().pack_len)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = PretrainConfig()
    tok = build_tokenizer()
    models = {name: build_model(cfg.organism, tok, seed=0).train() for name in ("padded", "packed")}
    optims = {name: torch.optim.AdamW(m.parameters(), lr=cfg.lr) for name, m in models.items()}
    pack = {"padded": 0, "packed": args.pack_len}
    seconds = {"padded": 0.0, "packed": 0.0}
    max_diff = 0.0
    rng = random.Random(0)
    for step in range(args.steps + 2):
        pairs = sample_batch(cfg.corpus, rng, cfg.batch_size)
        losses = {}
        for name in ("padded", "packed") if step % 2 else ("packed", "padded"):
            start = time.perf_counter()
            loss = training_loss(models[name], tok, pairs, pack[name])
            optims[name].zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(models[name].parameters(), cfg.grad_clip)
            optims[name].step()
            if step >= 2:  # two warm-up steps
                seconds[name] += time.perf_counter() - start
            losses[name] = float(loss.detach())
        if step == 0:
            max_diff = abs(losses["padded"] - losses["packed"])  # same weights only before the first update
    print(json.dumps({
        "bench": "pretrain",
        "ratio": {"packed_vs_padded_step_time": round(seconds["packed"] / seconds["padded"], 4)},
        "seconds_per_step": {k: round(v / args.steps, 4) for k, v in seconds.items()},
        "loss_diff_same_weights": max_diff,
        "pack_len": args.pack_len, "batch_size": cfg.batch_size, "threads": args.threads,
        "projected_pretrain_s": {k: round(v / args.steps * cfg.steps, 1) for k, v in seconds.items()},
    }))


if __name__ == "__main__":
    main()
