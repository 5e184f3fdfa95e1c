"""Benchmark: cost of one arena interpolation point beside one probe evaluation of the same model.

An interpolation point = WiSE-FT at a = 0.5 of every tensor (the base and end
states read once, as the arena does), cast to the end's stored dtypes, patched
into the loaded model, ID/OOD probes, parameters put back
(:func:`spindoctor.arena.run.score_point`). The goal is <= 1.1x one plain probe
evaluation of the same model (the interpolated weights, patched in outside the
timing: a different model answers at a different length, so the probe of the
SFT end is not the baseline). Both are timed alternately in one run on the same
loaded model; the minimum of several repeats is reported.

Usage: python bench/arena.py [--base DIR] [--end DIR] [--n 500] [--repeats 6]
Defaults to a study's base and SFT end when --study (default /tmp/exp/s0, or
runs/seed0) exists, else to a tiny random pair built in a temporary folder
(said in the output). Last line: one JSON object (docs/design.md, "Engineering decisions").
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from spindoctor.arena.methods import wise_ft
from spindoctor.arena.points import Point, States
from spindoctor.arena.run import resolve_sources, score_point
from spindoctor.models.load import load_causal_lm
from spindoctor.probes import ProbeConfig, probe_model
from spindoctor.restore.sweep import patched

ROOT = Path(__file__).resolve().parents[1]


def default_pair(study: Path | None) -> tuple[str, str, str]:
    for run in [study] if study else [ROOT / "runs" / "seed0"]:
        if run and (run / "sft" / "selection.json").is_file() and (run / "base" / "config.json").is_file():
            _, end = resolve_sources(str(run / "sft"), None, None)
            return str(run / "base"), end, f"{run} base vs SFT end"
    sys.path.insert(0, str(ROOT / "tests" / "restore"))
    from conftest import make_pair

    ref, tuned = make_pair(Path(tempfile.mkdtemp()))
    return str(ref), str(tuned), "tiny random Llama pair (no study run found)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path)
    parser.add_argument("--end", type=Path)
    parser.add_argument("--study", type=Path)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    if args.base and args.end:
        base, end, what = str(args.base), str(args.end), f"{args.base} vs {args.end}"
    else:
        base, end, what = default_pair(args.study)
    cfg = ProbeConfig(n=args.n)
    model, tok = load_causal_lm(end)
    states = States(end)
    t0 = time.perf_counter()
    states.get(base), states.get(end), states.stored({})
    t_read = time.perf_counter() - t0
    point = Point("wise-ft", 0.5, "wise-ft 0.5", [base, end], lambda: wise_ft(states.get(base), states.get(end), 0.5))
    params = {n for n, _ in model.named_parameters()}
    same = {n: v for n, v in states.stored(point.make()).items() if n in params}
    probe_model(model, tok, cfg)  # warm-up: probe sets, solver caches, allocator
    probe_times, point_times, edit_times = [], [], []

    def plain() -> None:
        with patched(model, same):  # the same model as the point, patched outside the timing
            t0 = time.perf_counter()
            probe_model(model, tok, cfg)
            probe_times.append(time.perf_counter() - t0)

    def arena_point() -> None:
        t0 = time.perf_counter()
        states.stored(point.make())
        edit_times.append(time.perf_counter() - t0)
        point_times.append(score_point(model, tok, states, point, cfg)[1])

    for i in range(args.repeats):  # ABBA order: load drifting during the run hits both alike
        for run in (plain, arena_point) if i % 2 == 0 else (arena_point, plain):
            run()
    probe_s, point_s = min(probe_times), min(point_times)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"pair: {what}; {n_params} parameters; probes n={args.n} per split")
    print(f"one probe evaluation {probe_s:.2f} s; one interpolation point {point_s:.2f} s "
          f"(edit {min(edit_times):.3f} s); ratio {point_s / probe_s:.3f} (goal <= 1.1)")
    print(json.dumps({
        "bench": "arena", "pair": what,
        "ratio": {"interpolation_point_vs_probe": round(point_s / probe_s, 4)},
        "seconds": {"probe": round(probe_s, 3), "interpolation_point": round(point_s, 3),
                    "edit": round(min(edit_times), 4), "read_states_once": round(t_read, 3)},
        "n_parameters": n_params, "probe_n": args.n, "goal": {"interpolation_point_vs_probe_max": 1.1},
    }))


if __name__ == "__main__":
    main()
