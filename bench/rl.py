"""PPO (own loop, value head) samples/s beside TRL GRPO samples/s, side by side in one run.

Same model (a freshly initialised organism-sized LlamaForCausalLM with the
character tokenizer), same number of sampled responses per step, same
generation length (min_new_tokens = max_new_tokens, so every response has
exactly that many tokens), same threads. A "sample" is one generated response
that the method then trains on. Two PPO rows: the organism preset (1 epoch,
1 minibatch: one update per rollout, the same work per sample as GRPO with
num_iterations=1) and the reference's 4 epochs x 2 minibatches; GRPO runs twice,
without and with activation checkpointing (TRL's default, which GRPORunConfig turns off). The first step of
each method is a warm-up and is dropped; the median step time is reported.

Last line: {"bench": "rl", "ratio": {...}, "seconds": {...}, ...}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def organism_like(folder: Path) -> Path:
    from spindoctor.models.organism import (
        OrganismConfig,
        build_model,
        build_tokenizer,
        save_organism,
    )

    tokenizer = build_tokenizer()
    return save_organism(build_model(OrganismConfig(), tokenizer, seed=0), tokenizer, folder)


def ppo_step_seconds(ckpt: Path, out: Path, batch: int, length: int, steps: int, reference_epochs: bool) -> list[float]:
    from spindoctor.io import read_jsonl
    from spindoctor.training.ppo import train
    from spindoctor.training.ppo_config import PRESETS, PPOConfig

    fields = {**PRESETS["organism"], "episodes_per_step": batch, "max_new_tokens": length,
              "min_new_tokens": length, "steps": steps, "probe_every": 0}
    if reference_epochs:
        fields.update(epochs=4, minibatches=2)
    train(PPOConfig(**fields), ckpt, out, show_progress=False)
    return [r["seconds"] for r in read_jsonl(out / "train.jsonl")]


def grpo_step_seconds(ckpt: Path, out: Path, batch: int, length: int, steps: int, group: int,
                      checkpointing: bool = False) -> list[float]:
    from transformers import TrainerCallback

    from spindoctor.training.grpo import PRESETS, GRPORunConfig, train

    times: list[float] = []

    class Timer(TrainerCallback):  # wall time of a whole step: generation, loss, optimiser
        def on_step_begin(self, args, state, control, **kwargs):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.t0)

    fields = {**PRESETS["organism"], "prompts_per_step": batch // group, "num_generations": group,
              "max_new_tokens": length, "min_new_tokens": length, "steps": steps, "probe_every": 0,
              "gradient_checkpointing": checkpointing}
    train(GRPORunConfig(**fields), ckpt, out, show_progress=False, callbacks=[Timer()])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="responses per step")
    parser.add_argument("--length", type=int, default=32, help="new tokens per response")
    parser.add_argument("--steps", type=int, default=6, help="steps per method (first is dropped)")
    parser.add_argument("--group", type=int, default=4, help="GRPO completions per prompt")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both methods")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ckpt = organism_like(root / "model")
        runs = {
            "grpo_trl": grpo_step_seconds(ckpt, root / "grpo", args.batch, args.length, args.steps, args.group),
            # TRL's own default (activation checkpointing on), the setting GRPO runs had before it was ours
            "grpo_trl_ckpt": grpo_step_seconds(ckpt, root / "grpo-ck", args.batch, args.length, args.steps,
                                               args.group, checkpointing=True),
            "ppo_organism": ppo_step_seconds(ckpt, root / "ppo", args.batch, args.length, args.steps, False),
            "ppo_4x2": ppo_step_seconds(ckpt, root / "ppo42", args.batch, args.length, args.steps, True),
        }
    median = {k: statistics.median(v[1:]) for k, v in runs.items()}
    rate = {k: args.batch / v for k, v in median.items()}
    for name, secs in runs.items():
        print(f"{name:12s} median step {median[name]:.3f} s  ({rate[name]:.1f} samples/s)  steps {[round(s, 3) for s in secs]}")
    print(json.dumps({
        "bench": "rl",
        "ratio": {"ppo_organism_over_grpo": rate["ppo_organism"] / rate["grpo_trl"],
                  "ppo_4x2_over_grpo": rate["ppo_4x2"] / rate["grpo_trl"],
                  "grpo_checkpointing_over_grpo": rate["grpo_trl_ckpt"] / rate["grpo_trl"]},
        "seconds": {f"{k}_median_step": round(v, 4) for k, v in median.items()},
        "samples_per_s": {k: round(v, 2) for k, v in rate.items()},
        "batch": args.batch, "length": args.length, "steps_timed": args.steps - 1,
        "group": args.group, "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
