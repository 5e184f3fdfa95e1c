"""Choose SFT checkpoints: the robust OOD peak, the end, and one in the middle (playbook step 2).

:data:`RULE` states the rule; it is written verbatim into every
``selection.json`` (docs/design.md, "Checkpoint selection"). The selection
functions are pure (lists in, dicts out); :func:`select_run` reads a run
folder's ``metrics.jsonl`` and :func:`read_selection` reads a ``selection.json``
back (for RL and the study).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from spindoctor.errors import UserError
from spindoctor.io import atomic_write_json, read_jsonl
from spindoctor.models.checkpoints import METRICS_FILE, SELECTION_FILE, checkpoint_path
from spindoctor.training.flat import curve_shape

Z95 = 1.959963984540054

RULE = """1. **Smoothing.** At each probe point i, pool the OOD successes of the
   centred window of ``window`` probe points (edges use the neighbours that
   exist): p~_i = sum_j k_j / sum_j n_j (a trials-weighted mean). The same
   probe hands are answered at neighbouring steps, so the pooled counts are
   not independent draws: the intervals below treat them as if they were and
   are somewhat optimistic; the window is in probe points, not steps.
2. **Peak.** The probe step with the highest pooled OOD accuracy (ties: the
   earliest step).
3. **Intervals.** Wilson 95% score intervals on the pooled counts.
4. **Shape.** rise = (p~_peak - p~_first) / SE, decline = (p~_peak - p~_last) / SE,
   with SE = sqrt(se_a^2 + se_b^2) of the pooled proportions. "peak then
   decline" when both are >= ``z`` (2 by default), "decline" when only the
   decline is, "rise" when only the rise is, else "flat" (no difference of z SE).
5. **Middle.** The probe step nearest to halfway between the peak and the end.
6. **Signal.** When OOD accuracy is flat within its noise (no probe step's
   per-hand OOD correctness differs from the first step's or from the best
   step's by the exact McNemar test at 5%, each pair tested alone), accuracy
   cannot place a peak: the peak is then the probe step with the lowest OOD
   loss proxy (earliest on ties), rise and decline are the paired per-hand
   loss differences of the first and last steps from it over their paired SE,
   the shape follows them as in 4, and the middle follows from that peak.
   ``signal`` ("accuracy" or "loss") and ``why`` say which applied. Probe rows
   without per-hand records keep accuracy."""


def wilson_interval(k: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n (Wilson 1927).

    Parameters
    ----------
    k, n : float
        Successes and trials (n > 0).

    Returns
    -------
    (float, float)
        Lower and upper bounds in [0, 1].
    """
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def pooled_smoothing(k: list[float], n: list[float], window: int = 3) -> tuple[list[float], list[float]]:
    """Pooled successes and trials over a centred window of ``window`` points.

    Parameters
    ----------
    k, n : list of float, same length m
        Successes and trials per probe point, in step order.
    window : int, odd, >= 1

    Returns
    -------
    (list of float, list of float)
        Pooled successes and pooled trials, length m.
    """
    if len(k) != len(n):
        raise ValueError(f"k and n differ in length: {len(k)} vs {len(n)}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be odd and >= 1, got {window}")
    half = window // 2
    pk, pn = [], []
    for i in range(len(k)):
        lo, hi = max(0, i - half), min(len(k), i + half + 1)
        pk.append(float(sum(k[lo:hi])))
        pn.append(float(sum(n[lo:hi])))
    return pk, pn


def _z_diff(ka: float, na: float, kb: float, nb: float) -> float:
    """(p_a - p_b) / sqrt(se_a^2 + se_b^2); 0 when both SEs are 0 and p_a == p_b."""
    pa, pb = ka / na, kb / nb
    se = math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    if se == 0:
        return 0.0 if pa == pb else math.copysign(math.inf, pa - pb)
    return (pa - pb) / se


def select_from_curve(curve: list[dict], window: int = 3, z: float = 2.0,
                      ood_rows: dict[int, dict] | None = None) -> dict:
    """Apply :data:`RULE` to a curve of probe points.

    Parameters
    ----------
    curve : list of dict
        One entry per probe step with ``step``, ``ood_acc``, ``ood_n`` and
        optionally ``id_acc``, ``id_n``, ``ood_loss``, ``id_loss``; any order.
    ood_rows : dict, optional
        The OOD probe rows (``metrics.jsonl``, with ``per_hand``) by step, for
        step 6 of the rule; without them the signal is accuracy.

    Returns
    -------
    dict
        ``peak``, ``end``, ``middle`` (each with step, raw and pooled numbers,
        Wilson interval and a reason), ``shape``, ``rise_z``, ``decline_z``,
        ``signal`` ("accuracy" or "loss"), ``why``, ``flatness`` (the test of
        :func:`spindoctor.training.flat.accuracy_flat`, or None), ``rule``.
    """
    if not curve:
        raise UserError("no OOD probe rows to select from")
    pts = sorted(curve, key=lambda r: r["step"])
    k = [p["ood_acc"] * p["ood_n"] for p in pts]
    n = [float(p["ood_n"]) for p in pts]
    pk, pn = pooled_smoothing(k, n, window)
    smooth = [a / b for a, b in zip(pk, pn, strict=True)]
    ip = max(range(len(pts)), key=lambda i: (smooth[i], -i))
    last = len(pts) - 1
    rise = _z_diff(pk[ip], pn[ip], pk[0], pn[0])
    decline = _z_diff(pk[ip], pn[ip], pk[last], pn[last])
    shape = curve_shape(rise, decline, z)
    signal, why, flatness, by_loss = _signal(pts, ood_rows, z)
    if by_loss is not None:
        ip = next(i for i, p in enumerate(pts) if p["step"] == by_loss["step"])
        shape, rise, decline = by_loss["shape"], by_loss["rise_z"], by_loss["decline_z"]
    mid_step = (pts[ip]["step"] + pts[last]["step"]) / 2
    im = min(range(ip, last + 1), key=lambda i: (abs(pts[i]["step"] - mid_step), i))

    def entry(i: int, reason: str) -> dict:
        out = {"step": pts[i]["step"], "ood_acc": pts[i]["ood_acc"], "ood_n": pts[i]["ood_n"],
               "ood_acc_se": math.sqrt(max(pts[i]["ood_acc"] * (1 - pts[i]["ood_acc"]), 0) / n[i]),
               "ood_smoothed": smooth[i], "ood_smoothed_ci95": list(wilson_interval(pk[i], pn[i])),
               "reason": reason}
        for key in ("id_acc", "id_acc_se", "id_loss", "ood_loss"):
            if key in pts[i]:
                out[key] = pts[i][key]
        return out

    peak_reason = (f"highest OOD accuracy pooled over {window} neighbouring probes "
                   f"({smooth[ip]:.3f}); {shape}: {rise:.1f} SE above the first probe, "
                   f"{decline:.1f} SE above the last")
    if by_loss is not None:
        peak_reason = (f"lowest OOD loss proxy ({by_loss['loss']:.4f} nats/token; OOD accuracy is flat); {shape}: "
                       f"{rise:.1f} paired SE below the first probe's loss, {decline:.1f} below the last's")
    return {
        "rule": RULE,
        "window": window, "z": z, "shape": shape, "rise_z": rise, "decline_z": decline,
        "signal": signal, "why": why, "flatness": flatness,
        "peak": entry(ip, peak_reason),
        "end": entry(last, "last probe step of the run"),
        "middle": entry(im, f"probe step nearest to halfway ({mid_step:g}) between peak and end"),
    }


def _signal(pts: list[dict], ood_rows: dict[int, dict] | None, z: float
            ) -> tuple[str, str, dict | None, dict | None]:
    """Step 6 of :data:`RULE`: (signal, why, the flatness test, the loss peak or None)."""
    from spindoctor.training.flat import accuracy_flat, loss_peak

    if not ood_rows:
        return "accuracy", "no per-hand OOD probe rows were given, so accuracy was not tested for flatness", None, None
    rows = {p["step"]: ood_rows[p["step"]] for p in pts if p["step"] in ood_rows}
    flatness = accuracy_flat(rows) if len(rows) == len(pts) else {
        "flat": None, "detail": "some probe steps have no OOD probe row"}
    if flatness["flat"] is None:
        return "accuracy", f"flatness not tested: {flatness['detail']}", flatness, None
    if not flatness["flat"]:
        return "accuracy", f"OOD accuracy moves: {flatness['detail']}", flatness, None
    by_loss = loss_peak(rows, z)
    if by_loss is None:
        return "accuracy", (f"OOD accuracy is flat ({flatness['detail']}), but the probes have no per-hand "
                            "OOD loss to select on"), flatness, None
    return "loss", (f"OOD accuracy is flat ({flatness['detail']}), so the peak is the lowest OOD loss "
                    "proxy"), flatness, by_loss


def ood_rows_by_step(rows: list[dict], stage: str = "sft") -> dict[int, dict]:
    """The OOD probe rows of ``stage`` by step (the last row of a step wins)."""
    return {int(r["step"]): r for r in rows
            if r.get("stage") == stage and r.get("split") == "ood" and "step" in r and r.get("acc") is not None}


def curve_from_metrics(rows: list[dict], stage: str = "sft") -> list[dict]:
    """Join ID and OOD metrics rows of ``stage`` by step into curve points (points with an OOD probe)."""
    from spindoctor.probes.core import points_by_step

    return [p for p in points_by_step(rows, stage) if "ood_acc" in p]


def paired_comparisons(rows: list[dict], selection: dict, stage: str = "sft") -> dict:
    """Hand-by-hand changes between the chosen checkpoints (docs/design.md, "Evidence").

    Returns
    -------
    dict
        ``{"peak_vs_base": {split: compare}, "end_vs_peak": {...},
        "end_vs_base": {...}}`` where each ``compare`` is
        :func:`spindoctor.probes.compare.compare_probes` of the later model
        against the earlier one (``after - before``), for every split whose
        two probe rows hold per-hand records of the same hands; pairs without
        such rows are left out.
    """
    from spindoctor.probes.compare import compare_probes

    by_key = {(r.get("stage"), int(r["step"]), r.get("split")): r for r in rows if "step" in r and r.get("per_hand")}
    first = min((step for (st, step, _) in by_key if st == stage), default=None)
    steps = {"base": first, "peak": selection["peak"]["step"], "end": selection["end"]["step"]}
    out: dict = {}
    for later, earlier in (("peak", "base"), ("end", "peak"), ("end", "base")):
        pair = {}
        for split in ("id", "ood"):
            a, b = by_key.get((stage, steps[earlier], split)), by_key.get((stage, steps[later], split))
            if a is None or b is None or steps[earlier] == steps[later]:
                continue
            try:
                pair[split] = {"before_step": steps[earlier], "after_step": steps[later], **compare_probes(a, b)}
            except ValueError:  # rows of different hands (probe settings changed mid-run)
                continue
        if pair:
            out[f"{later}_vs_{earlier}"] = pair
    return out


def select_run(run_dir: str | Path, window: int = 3, z: float = 2.0) -> dict:
    """Read ``run_dir/metrics.jsonl``, select, add the paired comparisons of the chosen
    checkpoints, write ``selection.json`` atomically; return it."""
    run_dir = Path(run_dir)
    metrics = run_dir / METRICS_FILE
    if not metrics.exists():
        raise UserError(f"no {METRICS_FILE} in {run_dir}: not an SFT run folder")
    rows = read_jsonl(metrics)
    curve = curve_from_metrics(rows)
    curve = [p for p in curve if checkpoint_path(run_dir, p["step"]).is_dir()] or curve
    selection = select_from_curve(curve, window=window, z=z, ood_rows=ood_rows_by_step(rows))
    for name in ("peak", "end", "middle"):
        path = checkpoint_path(run_dir, selection[name]["step"])
        selection[name]["path"] = str(path) if path.is_dir() else None
    selection["curve"] = curve
    selection["paired"] = paired_comparisons(rows, selection)
    atomic_write_json(run_dir / SELECTION_FILE, selection)
    return selection


def read_selection(path: Path) -> list[tuple[str, Path]]:
    """(label, checkpoint folder) pairs from an SFT ``selection.json``, in file order.

    Reads the shape :func:`select_run` writes (``{"peak": {"step", "path", ...},
    "end": {...}, "middle": {...}, "rule": ..., ...}``) and a plain
    ``{"checkpoints": [{"label", "path" or "step"}, ...]}`` list; see
    :func:`_checkpoint_folder` for how a path or step is found. Labels naming the
    same checkpoint run once (first label).
    """
    if not path.is_file():
        raise UserError(f"selection file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a selection (expected a JSON object)")
    if isinstance(data.get("checkpoints"), list):
        items = [(str(e.get("label")), e) for e in data["checkpoints"] if isinstance(e, dict)]
    else:
        items = [(k, v) for k, v in data.items() if isinstance(v, dict) and ("step" in v or "path" in v)]
    out: list[tuple[str, Path]] = []
    seen: set[Path] = set()
    for label, entry in items:
        folder = _checkpoint_folder(path, entry.get("path"), entry.get("step"))
        if folder is None:
            continue
        if folder.resolve() not in seen:
            seen.add(folder.resolve())
            out.append((label, folder))
    if not out:
        raise UserError(f"{path} names no checkpoints (expected peak/end/middle entries with a step or path)")
    return out


def _checkpoint_folder(selection: Path, where: str | None, step: int | None) -> Path | None:
    """The first existing of: ``where`` as written (absolute or relative to the working
    folder, as :func:`select_run` writes it), ``where`` beside the selection file, the
    checkpoint of ``step`` beside it; else the first of them."""
    candidates = [Path(where), selection.parent / where] if where else []
    if step is not None:
        candidates.append(checkpoint_path(selection.parent, step))
    return next((c for c in candidates if c.is_dir()), candidates[0] if candidates else None)
