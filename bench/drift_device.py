"""Benchmark: ``drift`` cold (no factor cache) on CUDA vs CPU, same pair, one run.

A SmolLM2-135M-shaped pair with random weights (30 layers, hidden 576, the
``paper`` matrices of the tuned copy rotated by 0.1 rad) is compared on each
device present; it prints seconds per device, the CPU/CUDA ratio, and the
largest difference of the headline metrics between devices. Run by
``bench/device_check.sh`` on a GPU machine; on a CPU-only machine it reports CPU only.
Last line: one JSON object (docs/design.md, "Engineering decisions").

    python bench/drift_device.py [--matrices paper]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from spindoctor.spectral import drift
    from spindoctor.spectral.rotate import rotate_checkpoint

    ap = argparse.ArgumentParser()
    ap.add_argument("--matrices", default="paper")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ref, tuned = Path(tmp) / "ref", Path(tmp) / "tuned"
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                          num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)
        LlamaForCausalLM(cfg).save_pretrained(ref)
        rotate_checkpoint(ref, tuned, r"self_attn\.(q|k|v)_proj|mlp\.down_proj", 0.1, 0, -1)
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        seconds, results = {}, {}
        for device in devices:
            t0 = time.perf_counter()
            results[device] = drift(ref, tuned, matrices=args.matrices, device=device, cache_dir=None, figures=False)
            seconds[device] = round(time.perf_counter() - t0, 2)
        keys = ["angle_u_mean", "angle_v_mean", "k0.25_u_mean", "k0.25_v_mean", "k0.5_u_mean", "ds_rel_mean_abs"]
        pairs = list(zip(results["cpu"].rows, results[devices[-1]].rows, strict=True))
        diff = {k: max(abs(a[k] - b[k]) for a, b in pairs) for k in keys}
    print(json.dumps({"bench": "drift_device", "seconds": seconds,
                      "ratio": {"cpu_vs_cuda": round(seconds["cpu"] / seconds[devices[-1]], 2)},
                      "max_metric_diff": diff, "n_matrices": len(results["cpu"].rows),
                      "threads": torch.get_num_threads(), "devices": devices}))


if __name__ == "__main__":
    main()
