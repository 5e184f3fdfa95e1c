"""The spectral early warning: does weight drift announce the fall of OOD before it happens?

For one SFT run (docs/design.md, "Spectral early warning"):

* the **trace**: each saved SFT checkpoint's drift from the base on the paper
  matrices (:func:`spindoctor.callbacks.drift.drift_rows`, the numbers of
  ``spindoctor drift``), summarised over all matrices (the ``kind="all"`` row);
* the **peak**: the run's selected OOD peak (``sft/selection.json``, the step
  ``spindoctor select`` chose: smoothed accuracy, or the loss proxy when accuracy is
  flat), or without a selection the probe step of highest OOD accuracy;
* the **fall**: the first probe step after the OOD peak whose OOD accuracy is
  below the peak's (paired 95% interval below 0), and the first whose OOD loss
  proxy is above it (interval above 0), on the same hands;
* the **association**: Spearman's rank correlation of the drift with the OOD
  loss proxy across checkpoints, beside the correlation of the step count with
  it (drift that only counts steps warns no better than a clock).

Across seeds, each seed's warning threshold comes from the *other* seeds
(leave one seed out): the smallest drift any other seed had reached at its
own fall. The warning step is the first checkpoint of the held-out seed whose
drift reaches that threshold; the lead is ``fall step - warning step`` (positive:
the warning came first). The same rule on the step count gives the clock's
lead, the baseline a drift warning has to beat.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from spindoctor.callbacks.drift import base_factors, drift_rows, kind_rows, select
from spindoctor.errors import UserError
from spindoctor.io import read_jsonl
from spindoctor.models.checkpoints import (
    CONFIG_FILE,
    METRICS_FILE,
    SELECTION_FILE,
    list_checkpoints,
)
from spindoctor.probes.compare import compare_probes

DRIFT_METRIC = "k0.25_mean_deg"  # mean top-25% principal angle of U and V, degrees, over the paper matrices


def base_of(run: Path) -> Path:
    """The base checkpoint of a study run: ``RUN/base`` when it holds a model, else the SFT config's ``base``."""
    if (run / "base" / "config.json").exists():
        return run / "base"
    config = run / "sft" / CONFIG_FILE
    if config.exists():
        base = Path(str((yaml.safe_load(config.read_text()) or {}).get("base", "")))
        if (base / "config.json").exists():
            return base
    raise UserError(f"{run}: no base checkpoint found (RUN/base or the base named in sft/{CONFIG_FILE})")


def drift_trace(run: Path, matrices: str = "paper", dtype: str = "float64", progress: bool = False) -> list[dict]:
    """The drift of every SFT checkpoint of ``run`` from its base (one summary row per step).

    Returns
    -------
    list of dict
        ``{"step", "rel_update", "ds_rel_mean_abs", "k0.25_mean_deg", "n"}`` in step order;
        ``k0.25_mean_deg`` is the mean of the top-25% principal angles of U and V, degrees.
    """
    from rich.progress import track

    from spindoctor.models.load import load_causal_lm

    sft, base = run / "sft", base_of(run)
    found = list_checkpoints(sft)
    if not found:
        raise UserError(f"{sft}: no SFT checkpoints to trace")
    trace, factors, infos = [], None, None
    for step, folder in track(found, description=f"drift trace {run.name}", disable=not progress, transient=True):
        model, _ = load_causal_lm(folder)
        if factors is None:
            infos = select(model, base, matrices, None)
            factors = base_factors(model, base, infos, dtype, None)
        overall = kind_rows(drift_rows(model, factors, infos, [0.25], dtype), [0.25])[0]
        angle = (overall["k0.25_u_mean"] + overall["k0.25_v_mean"]) / 2
        trace.append({"step": step, "n": overall["n"], "rel_update": overall["rel_update"],
                      "ds_rel_mean_abs": overall["ds_rel_mean_abs"], DRIFT_METRIC: math.degrees(angle)})
    return trace


def ood_rows(run: Path) -> dict[int, dict]:
    """The SFT run's OOD probe rows by step."""
    rows = read_jsonl(run / "sft" / METRICS_FILE) if (run / "sft" / METRICS_FILE).exists() else []
    return {int(r["step"]): r for r in rows if r.get("split") == "ood" and r.get("acc") is not None}


def selected_peak(run: Path) -> int | None:
    """The OOD-peak step of the run's ``sft/selection.json`` (None without one)."""
    path = run / "sft" / SELECTION_FILE
    if not path.exists():
        return None
    try:
        return int(json.loads(path.read_text())["peak"]["step"])
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path} holds no peak step: {err}") from err


def fall_steps(ood: dict[int, dict], peak: int | None = None) -> dict[str, Any]:
    """The OOD peak (``peak`` when given; otherwise the highest accuracy, earliest on ties) and the
    first later steps where OOD has significantly fallen from it: ``{"peak", "fall_acc",
    "fall_loss"}`` (None: never)."""
    if not ood:
        raise UserError("the run has no OOD probe rows")
    if peak is None:
        peak = min(ood, key=lambda s: (-ood[s]["acc"], s))
    elif peak not in ood:
        raise UserError(f"the selected OOD peak (step {peak}) has no OOD probe row")
    fall: dict[str, Any] = {"peak": peak, "fall_acc": None, "fall_loss": None}
    for step in sorted(s for s in ood if s > peak):
        change = compare_probes(ood[peak], ood[step])
        if fall["fall_acc"] is None and change["acc"]["hi"] < 0:
            fall["fall_acc"] = step
        if fall["fall_loss"] is None and change.get("loss") and change["loss"]["lo"] > 0:
            fall["fall_loss"] = step
    return fall


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation (scipy), None with fewer than 3 points or a constant input."""
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(spearmanr(x, y).statistic)


def seed_summary(run: Path, trace: list[dict]) -> dict:
    """One run's trace joined with its OOD probes: fall steps, drift at the peak and at the falls,
    and the rank correlations of drift and of the step count with the OOD loss proxy."""
    ood = ood_rows(run)
    chosen = selected_peak(run)
    fall = fall_steps(ood, chosen)
    drift = {row["step"]: row[DRIFT_METRIC] for row in trace}
    both = [s for s in sorted(drift) if s in ood and ood[s].get("loss") is not None]
    loss = [float(ood[s]["loss"]) for s in both]
    return {
        **fall, "peak_from": "max OOD accuracy" if chosen is None else "selection.json",
        "drift_at_peak": drift.get(fall["peak"]),
        "drift_at_fall_acc": drift.get(fall["fall_acc"]) if fall["fall_acc"] is not None else None,
        "drift_at_fall_loss": drift.get(fall["fall_loss"]) if fall["fall_loss"] is not None else None,
        "rho_drift_ood_loss": spearman([drift[s] for s in both], loss),
        "rho_step_ood_loss": spearman([float(s) for s in both], loss),
        "checkpoints": len(both),
    }


def first_reaching(values: dict[int, float], threshold: float) -> int | None:
    """First step whose value reaches ``threshold`` (None: never)."""
    return next((s for s in sorted(values) if values[s] >= threshold), None)


def leave_one_out_leads(seeds: dict[str, dict], traces: dict[str, list[dict]], signal: str) -> dict[str, dict]:
    """Per seed: the threshold from the other seeds (smallest drift and smallest step at their
    ``signal`` fall, ``fall_acc`` or ``fall_loss``), the warning steps and the leads in steps."""
    out = {}
    for name, summary in seeds.items():
        others = [s for other, s in seeds.items() if other != name and s[signal] is not None]
        fall = summary[signal]
        row: dict[str, Any] = {"fall": fall, "drift_threshold": None, "drift_warning": None, "drift_lead": None,
                               "step_threshold": None, "step_warning": None, "step_lead": None}
        if others:
            drift = {r["step"]: r[DRIFT_METRIC] for r in traces[name]}
            row["drift_threshold"] = min(s[f"drift_at_{signal}"] for s in others)
            row["step_threshold"] = min(s[signal] for s in others)
            row["drift_warning"] = first_reaching(drift, row["drift_threshold"])
            row["step_warning"] = first_reaching({s: float(s) for s in drift}, row["step_threshold"])
            if fall is not None:
                for kind in ("drift", "step"):
                    warn = row[f"{kind}_warning"]
                    row[f"{kind}_lead"] = None if warn is None else fall - warn
        out[name] = row
    return out


def early_warning(runs: dict[str, Path], matrices: str = "paper", dtype: str = "float64",
                  progress: bool = False) -> dict:
    """The early-warning analysis of one or more runs (seeds): traces, summaries and,
    with two or more runs, the leave-one-seed-out leads for the accuracy and the loss fall."""
    traces = {name: drift_trace(run, matrices, dtype, progress) for name, run in runs.items()}
    seeds = {name: seed_summary(run, traces[name]) for name, run in runs.items()}
    leads = {}
    if len(runs) >= 2:
        leads = {signal: leave_one_out_leads(seeds, traces, signal) for signal in ("fall_acc", "fall_loss")}
    return {"metric": DRIFT_METRIC, "matrices": matrices, "traces": traces, "seeds": seeds, "leads": leads,
            "verdict": lead_verdict(leads)}


def lead_verdict(leads: dict) -> str:
    """One sentence: does drift warn before the fall, and earlier than the step count?"""
    if not leads:
        return "one run: no held-out threshold (the leads need two or more seeds)"
    parts = []
    for signal, rows in leads.items():
        drift = [r["drift_lead"] for r in rows.values() if r["drift_lead"] is not None]
        clock = [r["step_lead"] for r in rows.values() if r["step_lead"] is not None]
        what = "OOD accuracy" if signal == "fall_acc" else "OOD loss proxy"
        if not drift:
            parts.append(f"{what}: no seed with a fall and a held-out threshold")
            continue
        ahead = sum(d > 0 for d in drift)
        better = sum(d > c for d, c in zip(drift, clock, strict=False))
        parts.append(f"{what}: drift warned before the fall on {ahead}/{len(drift)} seeds (median lead "
                     f"{float(np.median(drift)):+.0f} steps), earlier than the step count on {better}/{len(clock)}")
    return "; ".join(parts)


def _fmt(value: Any, spec: str = "{:.2f}") -> str:
    return "-" if value is None else spec.format(value)


def table_markdown(result: dict) -> str:
    """The early-warning table (one row per run) and, with seeds, the held-out leads, as Markdown."""
    lines = ["| run | OOD peak step | drift at peak (deg) | OOD acc falls at | OOD loss rises at | drift at acc fall "
             "| rho(drift, OOD loss) | rho(step, OOD loss) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, s in result["seeds"].items():
        lines.append(f"| {name} | {s['peak']} | {_fmt(s['drift_at_peak'])} | {_fmt(s['fall_acc'], '{}')} "
                     f"| {_fmt(s['fall_loss'], '{}')} | {_fmt(s['drift_at_fall_acc'])} "
                     f"| {_fmt(s['rho_drift_ood_loss'])} | {_fmt(s['rho_step_ood_loss'])} |")
    sources = sorted({s.get("peak_from", "max OOD accuracy") for s in result["seeds"].values()})
    lines += ["", f"OOD peak from: {', '.join(sources)}."]
    for signal, rows in result["leads"].items():
        what = "OOD accuracy fall" if signal == "fall_acc" else "OOD loss rise"
        lines += ["", f"Leave-one-seed-out warning before the {what} (threshold: the smallest value any other "
                  "seed had reached at its own fall):", "",
                  "| run | fall step | drift threshold (deg) | drift warns at | drift lead | step threshold "
                  "| step-count lead |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, r in rows.items():
            lines.append(f"| {name} | {_fmt(r['fall'], '{}')} | {_fmt(r['drift_threshold'])} "
                         f"| {_fmt(r['drift_warning'], '{}')} | {_fmt(r['drift_lead'], '{:+d}')} "
                         f"| {_fmt(r['step_threshold'], '{}')} | {_fmt(r['step_lead'], '{:+d}')} |")
    return "\n".join(lines + ["", result["verdict"]]) + "\n"


def find_runs(paths: list[Path]) -> dict[str, Path]:
    """Runs to analyse: each path a study run (with ``sft/``) or a multi-seed folder (its ``seed-*/``)."""
    runs: dict[str, Path] = {}
    for path in paths:
        if (path / "sft").is_dir():
            runs[path.name] = path
            continue
        seeds = sorted(p for p in path.glob("seed-*") if (p / "sft").is_dir())
        if not seeds:
            raise UserError(f"{path} is neither a study run (no sft/) nor a multi-seed folder (no seed-*/sft/)")
        runs.update({p.name if len(paths) == 1 else f"{path.name}/{p.name}": p for p in seeds})
    return runs
