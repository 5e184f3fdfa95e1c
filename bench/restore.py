"""Benchmark: cost of one restoration sweep point beside one probe evaluation of the same model.

A sweep point = compute the edits from cached factorisations (every selected
matrix of every layer, k_top = 100%: the most expensive point), patch the
model in place, run the ID/OOD probes, and put the parameters back. The goal
is <= 1.2x one plain probe evaluation. Both are timed alternately in
one run on the same loaded model; the minimum of several repeats is reported.

Usage: python bench/restore.py [--ref DIR] [--tuned DIR] [--n 500] [--repeats 3]
Defaults to the organism base and the last SFT checkpoint under runs/ when
present, else to a tiny random pair built in a temporary folder (said in the output).
Last line: one JSON object (docs/design.md, "Engineering decisions").
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from spindoctor.models.load import load_causal_lm
from spindoctor.probes import ProbeConfig, probe_model
from spindoctor.restore.plan import RestorePlan, plan_matrices
from spindoctor.restore.sweep import load_factors, patched, point_edits
from spindoctor.spectral.tensors import Checkpoint

ROOT = Path(__file__).resolve().parents[1]


def default_pair() -> tuple[Path, Path, str]:
    base = ROOT / "runs" / "organism-base"
    ckpts = sorted((ROOT / "runs" / "seed0" / "sft").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    if base.is_dir() and ckpts:
        return base, ckpts[-1], "organism base vs last SFT checkpoint"
    sys.path.insert(0, str(ROOT / "tests" / "restore"))
    from conftest import make_pair

    ref, tuned = make_pair(Path(tempfile.mkdtemp()))
    return ref, tuned, "tiny random Llama pair (no organism run found under runs/)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", type=Path)
    parser.add_argument("--tuned", type=Path)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.ref and args.tuned:
        ref, tuned, what = args.ref, args.tuned, f"{args.ref} vs {args.tuned}"
    else:
        ref, tuned, what = default_pair()
    cfg = ProbeConfig(n=args.n)
    t0 = time.perf_counter()
    infos = plan_matrices(Checkpoint(ref), Checkpoint(tuned), RestorePlan())
    factors = load_factors(ref, tuned, infos, progress=False)
    t_factors = time.perf_counter() - t0
    model, tok = load_causal_lm(tuned)
    probe_model(model, tok, cfg)  # warm-up: probe sets, solver caches, allocator
    probe_times, point_times, edit_times = [], [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        probe_model(model, tok, cfg)
        probe_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        edits = point_edits(factors, None, 1.0)
        edit_times.append(time.perf_counter() - t0)
        with patched(model, edits):
            probe_model(model, tok, cfg)
        point_times.append(time.perf_counter() - t0)
    probe_s, point_s = min(probe_times), min(point_times)
    print(f"pair: {what}; {len(infos)} matrices; probes n={args.n} per split")
    print(f"one probe evaluation {probe_s:.2f} s; one sweep point {point_s:.2f} s "
          f"(edits {min(edit_times):.3f} s); ratio {point_s / probe_s:.3f} (goal <= 1.2)")
    print(json.dumps({
        "bench": "restore", "pair": what,
        "ratio": {"sweep_point_vs_probe": round(point_s / probe_s, 4)},
        "seconds": {"probe": round(probe_s, 3), "sweep_point": round(point_s, 3),
                    "edits": round(min(edit_times), 4), "factorise_once": round(t_factors, 3)},
        "n_matrices": len(infos), "probe_n": args.n, "goal": {"sweep_point_vs_probe_max": 1.2},
    }))


if __name__ == "__main__":
    main()
