"""Benchmark: `spindoctor drift` against the plain-SVD floor (and WeightWatcher where it imports).

On a SmolLM2-135M-sized pair (real weights from .cache/smollm2-135m when present,
else random weights of the same shapes) and its copy whose paper matrices were
rotated by a known angle, measured side by side in one run, each phase in a
fresh process with the same thread count:

- floor: sum of plain ``torch.linalg.svd(W, full_matrices=False)`` times (float32)
  over the selected matrices of both checkpoints;
- cold: ``drift()`` with an empty factorisation cache (+ writing metrics/CSV);
- warm: the same call again (every factorisation from the cache);
- peak RSS of the cold phase, against the model size and the largest matrix;
- accuracy: float32 ``gram`` metrics against float64 ``svd`` on one layer, and the
  recovered rotation angle against the known one;
- rounds: floor, cold and warm are repeated ``--rounds`` times, interleaved
  (floor, cold, warm, floor, cold, warm, ...; a fresh cache for every cold), and
  the ratios use the medians, so a burst of noise on this shared machine hits
  one sample, not one side of a ratio;
- WeightWatcher 0.7.x ``analyze()`` of both models (spectra only), when
  ``import weightwatcher`` works (``BENCH_WW_PATH`` may point at a private
  ``pip install --target`` folder; it is not a dependency).

Last line: one JSON object ``{"bench": "drift", "ratio": {...}, "seconds": {...}, ...}``.
Usage: ``python bench/drift.py [--matrices linear] [--threads 2] [--rounds 3] [--no-ww]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / ".cache" / "smollm2-135m"
ANGLE = 0.1  # radians, rotation applied to the paper matrices of the tuned copy
ROTATE_REGEX = r"self_attn\.(q|k|v)_proj|mlp\.down_proj"


def prepare(work: Path) -> tuple[Path, Path, str]:
    """Return (ref, tuned, source) creating the rotated copy (and random weights) if needed."""
    from spindoctor.spectral.rotate import rotate_checkpoint

    if REAL.is_dir():
        ref, source = REAL, "smollm2-135m (GGUF Q4_1, dequantized)"
        tuned = ROOT / ".cache" / "smollm2-135m-rot"
    else:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        ref, tuned, source = work / "ref", work / "tuned", "random weights, SmolLM2-135M shapes"
        if not ref.is_dir():
            torch.manual_seed(0)
            cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                              num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)
            LlamaForCausalLM(cfg).save_pretrained(ref)
    if not (tuned / "model.safetensors").is_file():
        rotate_checkpoint(ref, tuned, ROTATE_REGEX, ANGLE, 0, -1)
    return ref, tuned, source


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_floor(ref: str, tuned: str, matrices: str) -> dict:
    import torch

    from spindoctor.spectral.tensors import Checkpoint, select_matrices

    total, cpu, n, largest, size = 0.0, 0.0, 0, 0, 0
    for path in (ref, tuned):
        ck = Checkpoint(path)
        for info in select_matrices(ck, matrices):
            W = ck.matrix(info.name)
            largest, size, n = max(largest, W.numel() * 4), size + W.numel() * 4, n + 1
            t0, c0 = time.perf_counter(), time.process_time()
            torch.linalg.svd(W, full_matrices=False)
            total += time.perf_counter() - t0
            cpu += time.process_time() - c0
    return {"floor_s": total, "floor_cpu_s": cpu, "n_svd": n, "largest_matrix_mb": largest / 2**20, "selected_mb": size / 2**20 / 2}


def phase_drift(ref: str, tuned: str, matrices: str, cache: str) -> dict:
    import torch  # noqa: F401 (imported before the baseline RSS is read)

    from spindoctor.spectral import drift

    base_rss = peak_rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    res = drift(ref, tuned, matrices=matrices, cache_dir=cache, device="cpu")
    t1, c1 = time.perf_counter(), time.process_time()
    out = Path(cache).parent / "out"
    res.save(out, figures=False)
    t2 = time.perf_counter()
    res.save(out, figures=True)
    t3 = time.perf_counter()
    rot = [n for n, r in zip(res.spectra, res.rows, strict=True) if r["kind"] in ("q_proj", "k_proj", "v_proj", "down_proj")]
    err = max(max(abs(float(res.spectra[n]["angle_u"][i]) - ANGLE) for i in (0, -1)) for n in rot) if rot else None
    methods = sorted({r["method"] for r in res.rows})
    return {"drift_s": t1 - t0, "drift_cpu_s": c1 - c0, "write_s": t2 - t1, "figures_s": t3 - t2, "peak_rss_mb": peak_rss_mb(),
            "rss_after_imports_mb": base_rss, "hits": res.meta["cache"]["hits"], "n": len(res.rows),
            "rotation_angle_error_rad": err, "methods": methods}


def phase_accuracy(ref: str, tuned: str) -> dict:
    import math

    from spindoctor.spectral import drift

    kw = dict(matrices="linear", regex=r"layers\.15\.", cache_dir=None, device="cpu")
    a = drift(ref, tuned, **kw)
    b = drift(ref, tuned, dtype="float64", method="svd", **kw)
    worst = 0.0
    for x, y in zip(a.rows, b.rows, strict=True):
        for key, val in x.items():
            if key.startswith(("k0", "k1", "angle_")) and not key.endswith(("_k", "_proj")) and not math.isnan(val):
                worst = max(worst, abs(val - y[key]))
    s_err = max(float(((a.spectra[n]["s_ref"].double() - b.spectra[n]["s_ref"].double()).abs()
                       / b.spectra[n]["s_ref"].double()).max()) for n in a.spectra)
    return {"max_angle_metric_diff_rad": worst, "max_rel_sv_diff": s_err, "n": len(a.rows)}


def phase_ww(ref: str, tuned: str) -> dict:
    import logging

    import weightwatcher as ww
    from transformers import AutoModelForCausalLM

    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    total, cpu = 0.0, 0.0
    for path in (ref, tuned):
        model = AutoModelForCausalLM.from_pretrained(path)
        t0, c0 = time.perf_counter(), time.process_time()
        ww.WeightWatcher(model=model).analyze()
        total += time.perf_counter() - t0
        cpu += time.process_time() - c0
    return {"ww_s": total, "ww_cpu_s": cpu, "ww_version": ww.__version__, "peak_rss_mb": peak_rss_mb()}


def run_phase(name: str, args: list[str], threads: int, extra_path: str | None = None) -> dict | None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join([extra_path, env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, __file__, "--phase", name, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"phase {name} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_run(runs: list[dict], key: str) -> dict:
    """The run whose ``key`` is the median (upper median for an even count)."""
    return sorted(runs, key=lambda r: r[key])[len(runs) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--matrices", default="linear")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="Interleaved floor/cold/warm repetitions (medians).")
    p.add_argument("--no-ww", action="store_true", help="Skip the WeightWatcher comparison.")
    p.add_argument("--phase", default=None)
    p.add_argument("rest", nargs="*")
    a = p.parse_args()
    if a.phase:
        import torch

        torch.set_num_threads(a.threads)
        fn = {"floor": phase_floor, "drift": phase_drift, "accuracy": phase_accuracy, "ww": phase_ww}[a.phase]
        print(json.dumps(fn(*a.rest)))
        return
    work = ROOT / "runs" / "bench-drift"
    ref, tuned, source = prepare(work)
    model_mb = (ref / "model.safetensors").stat().st_size / 2**20
    common = ["--threads", str(a.threads)]
    floors, colds, warms = [], [], []
    for _ in range(a.rounds):
        with tempfile.TemporaryDirectory(dir=work.parent if work.parent.is_dir() else None) as tmp:
            cache = str(Path(tmp) / "cache")
            floors.append(run_phase("floor", [*common, str(ref), str(tuned), a.matrices], a.threads))
            colds.append(run_phase("drift", [*common, str(ref), str(tuned), a.matrices, cache], a.threads))
            warms.append(run_phase("drift", [*common, str(ref), str(tuned), a.matrices, cache], a.threads))
    acc = run_phase("accuracy", [*common, str(ref), str(tuned)], a.threads)
    if None in floors + colds + warms:
        sys.exit("bench failed")
    floor, cold, warm = (median_run(runs, key) for runs, key in
                         ((floors, "floor_s"), (colds, "drift_s"), (warms, "drift_s")))
    ww_path = os.environ.get("BENCH_WW_PATH", str(ROOT / ".cache" / "ww"))
    wwr = None if a.no_ww else run_phase("ww", [*common, str(ref), str(tuned)], a.threads, ww_path)
    f = floor["floor_s"]
    print(f"pair: {source}; {floor['n_svd'] // 2} matrices per model ({a.matrices}), {a.threads} threads")
    print(f"floor (plain svd, both models) {f:.1f} s; cold drift {cold['drift_s']:.1f} s; warm {warm['drift_s']:.1f} s"
          f" (medians of {a.rounds} interleaved rounds)")
    print(f"peak RSS cold {cold['peak_rss_mb']:.0f} MB (after imports {cold['rss_after_imports_mb']:.0f} MB; "
          f"model file {model_mb:.0f} MB; largest matrix {floor['largest_matrix_mb']:.1f} MB)")
    result = {
        "bench": "drift",
        "ratio": {
            "cold_vs_svd_floor": round(cold["drift_s"] / f, 3),
            "warm_vs_svd_floor": round(warm["drift_s"] / f, 3),
            "cold_vs_weightwatcher": round(cold["drift_s"] / wwr["ww_s"], 3) if wwr else None,
            # CPU seconds of each phase's process: less sensitive to other jobs on a shared machine
            "cpu_cold_vs_svd_floor": round(cold["drift_cpu_s"] / floor["floor_cpu_s"], 3),
            "cpu_warm_vs_svd_floor": round(warm["drift_cpu_s"] / floor["floor_cpu_s"], 3),
            "cpu_cold_vs_weightwatcher": round(cold["drift_cpu_s"] / wwr["ww_cpu_s"], 3) if wwr else None,
        },
        "cpu_seconds": {"svd_floor": round(floor["floor_cpu_s"], 2), "drift_cold": round(cold["drift_cpu_s"], 2),
                        "drift_warm": round(warm["drift_cpu_s"], 2),
                        "weightwatcher": round(wwr["ww_cpu_s"], 2) if wwr else None},
        "seconds": {"svd_floor": round(f, 2), "drift_cold": round(cold["drift_s"], 2),
                    "drift_warm": round(warm["drift_s"], 2), "write_outputs": round(cold["write_s"], 2),
                    "figures": round(cold["figures_s"], 2), "weightwatcher": round(wwr["ww_s"], 2) if wwr else None},
        "peak_rss_mb": {"drift_cold": round(cold["peak_rss_mb"]), "after_imports": round(cold["rss_after_imports_mb"]),
                        "weightwatcher": round(wwr["peak_rss_mb"]) if wwr else None},
        "sizes_mb": {"model_file": round(model_mb), "largest_matrix": round(floor["largest_matrix_mb"], 2)},
        "accuracy": {**(acc or {}), "rotation_angle_error_rad": cold["rotation_angle_error_rad"]},
        "rounds": {"svd_floor_s": [round(r["floor_s"], 2) for r in floors],
                   "drift_cold_s": [round(r["drift_s"], 2) for r in colds],
                   "drift_warm_s": [round(r["drift_s"], 2) for r in warms]},
        "pair": source, "matrices": a.matrices, "n_matrices": cold["n"], "threads": a.threads,
        "methods": cold["methods"], "warm_cache_hits": warm["hits"],
        "weightwatcher": wwr["ww_version"] if wwr else "not importable",
        "goals": {"cold_vs_svd_floor_max": 1.15, "warm_vs_svd_floor_max": 0.2},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
