"""Benchmark: probe throughput (answers/s) of the batched prober vs per-prompt ``generate``.

Side by side in one run, same process, same torch threads, same prompts
(the first N OOD and ID probe hands in the ``compact`` format), greedy,
the same ``max_new_tokens``:

* batched: :func:`spindoctor.models.generate.generate_texts` (left padding,
  KV cache, prompts sorted by length, ``batch_size`` per call);
* baseline: one ``model.generate`` call per prompt (KV cache on, batch 1).

It also reports the share of prompts whose answers agree (greedy decoding
should give the same text both ways). The model is the pretrained organism
when ``runs/organism-base`` exists, else a freshly initialised organism of
the prototype size (the timing depends on the size, not on the weights; the
``model`` field says which). Goal: ratio >= 8.
Last line: one JSON object (docs/design.md, "Engineering decisions").

    python bench/probe.py [--n 256] [--batch-size 256] [--threads 1] [--base runs/organism-base]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    import torch

    from spindoctor.game.formats import render_prompt
    from spindoctor.models.generate import generate_texts
    from spindoctor.models.load import load_causal_lm
    from spindoctor.models.organism import OrganismConfig, build_model, build_tokenizer
    from spindoctor.probes import probe_hands

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--base", default="runs/organism-base")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if (Path(args.base) / "config.json").exists():
        model, tok = load_causal_lm(args.base)
        which = args.base
    else:
        tok = build_tokenizer()
        model = build_model(OrganismConfig(), tok).eval()
        which = "fresh organism (prototype size)"
    hands = probe_hands("ood", args.n // 2, 0) + probe_hands("id", args.n - args.n // 2, 0)
    prompts = [render_prompt("compact", h.cards, h.rule, h.target) for h in hands]
    generate_texts(model, tok, prompts[:8], max_new_tokens=4, batch_size=8)  # warm-up

    t0 = time.perf_counter()
    batched = generate_texts(model, tok, prompts, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    t_batched = time.perf_counter() - t0

    t0 = time.perf_counter()
    single = []
    for prompt in prompts:
        enc = tok(prompt, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=args.max_new_tokens, do_sample=False, use_cache=True,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        single.append(tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    t_single = time.perf_counter() - t0

    agree = sum(a == b for a, b in zip(batched, single, strict=True)) / len(prompts)
    result = {
        "bench": "probe",
        "ratio": {"batched_vs_per_prompt_answers_per_s": t_single / t_batched},
        "seconds": {"batched": t_batched, "per_prompt": t_single},
        "answers_per_s": {"batched": len(prompts) / t_batched, "per_prompt": len(prompts) / t_single},
        "n": len(prompts), "batch_size": args.batch_size, "threads": args.threads,
        "max_new_tokens": args.max_new_tokens, "answers_agree": agree, "model": which,
    }
    print(f"batched {result['answers_per_s']['batched']:.1f} answers/s, per-prompt "
          f"{result['answers_per_s']['per_prompt']:.1f} answers/s, agree {agree:.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
