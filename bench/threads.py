"""Benchmark: organism pretraining beside busy processes, old vs new torch thread default.

A fixed pretraining slice (the same optimizer step as ``bench/pretrain.py``:
fresh corpus batch, packed loss, backward, clip, AdamW; 2 warm-up steps, then
``--steps`` timed) runs in a fresh worker process per measurement, because the
OpenMP wait policy is read once when torch loads:

* ``old``: 2 threads, OpenMP's default wait policy (the fixed ``threads: 2``);
* ``new``: the default now, the thread count from
  :func:`spindoctor.devices.default_threads` (the CPUs not busy at the start,
  at most 2), OpenMP's default wait policy;
* ablations (``--extra``): 2 threads with ``OMP_WAIT_POLICY=PASSIVE`` or a small
  ``GOMP_SPINCOUNT`` (set in the worker before torch loads), 1 thread.

Each round runs both variants ``idle`` and ``busy``: beside ``--busy`` processes
spinning at nice 19 in their own session (``setsid``). On Linux with
autogroups, nice only ranks processes of one session, so a nice'd process
started from another terminal, a cron job or a container takes a whole core
from us; that is the issue's slowdown (pretraining 1790 s instead of 397 s).
Busy processes are started and killed here, and each ends by itself after
``--busy-cap`` seconds in any case. Rounds alternate the order of conditions and
variants; the reported numbers are medians over rounds. Other load on the
machine (``others_busy_cpus``, sampled by each ``new`` worker) is noise for
both variants alike. Last line: one JSON object (docs/design.md, "Engineering decisions").

    python bench/threads.py [--steps 20] [--rounds 3] [--busy 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SPIN = "import time\nend = time.time() + {cap}\nwhile time.time() < end:\n    pass\n"
# ablations (--extra): fixed threads and environment set in the worker before torch loads
EXTRA = {"passive2": (2, {"OMP_WAIT_POLICY": "PASSIVE"}), "spin10k2": (2, {"GOMP_SPINCOUNT": "10000"}),
         "spin1k2": (2, {"GOMP_SPINCOUNT": "1000"}), "one": (1, {})}


def worker(variant: str, steps: int) -> None:
    """Time ``steps`` pretraining steps (after 2 warm-up steps); print one JSON line."""
    from spindoctor.devices import busy_cpus, set_torch_threads, usable_cpus

    others = busy_cpus(usable_cpus())
    fixed, env = EXTRA.get(variant, (2, {}))
    os.environ.update(env)  # before torch loads: libgomp reads it once
    import random

    import torch

    from spindoctor.models.organism import build_model, build_tokenizer
    from spindoctor.models.organism_corpus import sample_batch
    from spindoctor.models.organism_pretrain import PretrainConfig, training_loss

    threads = set_torch_threads(None if variant == "new" else fixed)
    cfg = PretrainConfig(threads=threads)
    tok = build_tokenizer()
    model = build_model(cfg.organism, tok, seed=0).train()
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    rng = random.Random(0)
    seconds = 0.0
    for step in range(steps + 2):
        start = time.perf_counter()
        loss = training_loss(model, tok, sample_batch(cfg.corpus, rng, cfg.batch_size), cfg.pack_len)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optim.step()
        if step >= 2:
            seconds += time.perf_counter() - start
    print(json.dumps({"s_per_step": seconds / steps, "threads": threads, "others_busy_cpus": others,
                        "wait_policy": os.environ.get("OMP_WAIT_POLICY"), "spincount": os.environ.get("GOMP_SPINCOUNT")}))


def start_busy(n: int, cap: float) -> list[subprocess.Popen]:
    """``n`` spinning processes at nice 19, each in a new session; each ends after ``cap`` seconds."""
    return [subprocess.Popen([sys.executable, "-c", SPIN.format(cap=cap)], start_new_session=True,
                             preexec_fn=lambda: os.nice(19)) for _ in range(n)]


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait()


def measure(variant: str, steps: int, timeout: float) -> dict:
    """One worker process: the slice under ``variant``'s thread setting, in a clean environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, __file__, "--worker", variant, "--steps", str(steps)], env=env,
                         capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_rounds(args) -> dict:
    """``{(variant, condition): [worker results...]}`` over interleaved rounds."""
    results: dict[tuple[str, str], list[dict]] = {}
    for rnd in range(args.rounds):
        conditions = ("idle", "busy") if rnd % 2 == 0 else ("busy", "idle")
        for condition in conditions:
            procs = start_busy(args.busy, args.busy_cap) if condition == "busy" else []
            try:
                time.sleep(0.5 if procs else 0.0)  # let the spinners get going
                variants = ["old", "new", *args.extra]
                for variant in variants if rnd % 2 == 0 else variants[::-1]:
                    res = measure(variant, args.steps, args.busy_cap)
                    results.setdefault((variant, condition), []).append(res)
                    print(f"round {rnd} {condition:4s} {variant}: {res['s_per_step']:.3f} s/step, "
                          f"{res['threads']} threads", file=sys.stderr, flush=True)
            finally:
                stop(procs)
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--busy", type=int, default=1, help="nice'd spinning processes in the busy condition")
    ap.add_argument("--busy-cap", type=float, default=240.0, help="seconds after which a spinner ends itself")
    ap.add_argument("--extra", nargs="*", default=[], choices=sorted(EXTRA), help="ablation variants to add")
    ap.add_argument("--worker", choices=("old", "new", *EXTRA), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.steps)
        return
    start = time.perf_counter()
    results = run_rounds(args)
    med = {f"{v}_{c}": statistics.median(r["s_per_step"] for r in rs) for (v, c), rs in results.items()}
    others = [r["others_busy_cpus"] for (v, c), rs in results.items() if c == "idle" for r in rs]
    print(json.dumps({
        "bench": "threads",
        "ratio": {"busy_vs_idle_new": round(med["new_busy"] / med["new_idle"], 3),
                  "busy_vs_idle_old": round(med["old_busy"] / med["old_idle"], 3),
                  "new_vs_old_busy": round(med["new_busy"] / med["old_busy"], 3),
                  "new_vs_old_idle": round(med["new_idle"] / med["old_idle"], 3)},
        "seconds": {"per_step_median": {k: round(v, 4) for k, v in sorted(med.items())},
                    "per_step_all": {f"{v}_{c}": [round(r["s_per_step"], 4) for r in rs]
                                     for (v, c), rs in sorted(results.items())},
                    "bench_wall": round(time.perf_counter() - start, 1)},
        "threads_new": {c: [r["threads"] for r in results[("new", c)]] for c in ("idle", "busy")},
        "extra": {f"{v}_vs_old_{c}": round(med[f"{v}_{c}"] / med[f"old_{c}"], 3) for v in args.extra for c in ("idle", "busy")},
        "others_busy_cpus_idle": [None if o is None else round(o, 2) for o in others],
        "steps": args.steps, "rounds": args.rounds, "busy_procs": args.busy, "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
