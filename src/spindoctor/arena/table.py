"""The arena's rows: paired evidence against the SFT end, the Pareto front, the best point, the CSV.

Every model is probed on the same hands, so each point is judged by the
per-hand differences (docs/design.md, "Evidence"; :mod:`spindoctor.probes.compare`):
the change against the SFT end of ID and OOD accuracy and loss proxy with 95%
paired intervals, the share of the OOD lost from the base to the end that the
point wins back (accuracy and loss), and the ID cost (end minus point, ID accuracy).
"""

from __future__ import annotations

from spindoctor.probes.compare import compare_probes, recovered

TRIPLE = ("est", "lo", "hi")
CSV_FIELDS = ["method", "knob", "label", "id_acc", "id_acc_se", "ood_acc", "ood_acc_se", "id_loss", "ood_loss"]
CSV_FIELDS += [f"{name}_{part}" for name in ("id_acc_vs_end", "ood_acc_vs_end", "id_loss_vs_end", "ood_loss_vs_end",
                                              "ood_acc_recovered", "ood_loss_recovered", "id_cost") for part in TRIPLE]
CSV_FIELDS += ["seconds", "edit_seconds", "train_seconds", "pareto", "best"]
SIMPLE = ("wise-ft", "ckpt-interp")


def probe_row(method: str, knob, label: str, results: dict, seconds: float, sources: list[str], **extra) -> dict:
    """One row from ``{split: ProbeResult}``: accuracy, SE, loss and the per-hand record of each split
    (``extra``: more fields, such as ``edit_seconds`` or an RL run's ``train_seconds``)."""
    row = {"method": method, "knob": knob, "label": label, "sources": sources, "seconds": round(seconds, 3),
           **extra, "probes": {}}
    for split, r in results.items():
        d = r.to_dict()
        d.pop("samples", None)
        row["probes"][split] = d
        row[f"{split}_acc"], row[f"{split}_acc_se"], row[f"{split}_loss"] = r.acc, r.acc_se, r.loss
    return row


def _triple(stat: dict | None, sign: float = 1.0) -> tuple:
    if stat is None or stat.get("estimate") is None:
        return (None, None, None)
    lo, hi = stat.get("lo"), stat.get("hi")
    if sign < 0:
        lo, hi = (None if hi is None else -hi), (None if lo is None else -lo)
    lo, hi = (None if lo is None else lo + 0.0), (None if hi is None else hi + 0.0)  # + 0.0: no -0.0 in the table
    return (sign * stat["estimate"] + 0.0, lo, hi)


def add_evidence(row: dict, end: dict, base: dict) -> None:
    """Add ``paired`` (per split: change vs the end, recovered share vs ``base``, the reference row:
    the base model or the OOD peak) and the flat columns."""
    row["paired"] = {}
    for split in ("id", "ood"):
        if split not in row["probes"] or split not in end["probes"]:
            continue
        point, tuned, ref = row["probes"][split], end["probes"][split], base["probes"][split]
        ev = {"vs_end": compare_probes(tuned, point), "recovered": recovered(tuned, point, ref)}
        row["paired"][split] = ev
        for what in ("acc", "loss"):
            row.update(zip((f"{split}_{what}_vs_end_{p}" for p in TRIPLE), _triple(ev["vs_end"][what]), strict=True))
        if split == "ood":
            for what in ("acc", "loss"):
                row.update(zip((f"ood_{what}_recovered_{p}" for p in TRIPLE), _triple(ev["recovered"][what]),
                               strict=True))
        else:
            row.update(zip((f"id_cost_{p}" for p in TRIPLE), _triple(ev["vs_end"]["acc"], -1.0), strict=True))


def pareto_front(rows: list[dict]) -> list[int]:
    """Indices of the rows no other row beats on both ID and OOD accuracy (ties kept)."""
    pts = [(r.get("id_acc"), r.get("ood_acc")) for r in rows]
    front = []
    for i, (x, y) in enumerate(pts):
        if x is None or y is None:
            continue
        if not any(a is not None and b is not None and a >= x and b >= y and (a > x or b > y) for a, b in pts):
            front.append(i)
    return front


def best_point(rows: list[dict], tolerance: float) -> dict | None:
    """The point (not a baseline) that recovers the most OOD accuracy at an ID cost within ``tolerance``;
    ties go to the cheaper (fewer seconds). None when no point qualifies."""
    ok = [r for r in rows if r["method"] != "baseline" and r.get("id_cost_est") is not None
          and r["id_cost_est"] <= tolerance and r.get("ood_acc") is not None]
    if not ok:
        return None
    return max(ok, key=lambda r: (round(r["ood_acc"], 12), -r["seconds"]))


def simple_vs_restore(rows: list[dict]) -> dict | None:
    """Whether the best interpolation point (wise-ft, ckpt-interp) does as well on OOD as the best restore
    point: the paired OOD accuracy difference (interpolation minus restore) and a sentence."""
    def best(methods):
        cands = [r for r in rows if r["method"] in methods and r.get("ood_acc") is not None]
        return max(cands, key=lambda r: r["ood_acc"]) if cands else None

    simple, restore = best(SIMPLE), best(("restore",))
    if simple is None or restore is None or "ood" not in simple["probes"]:
        return None
    diff = compare_probes(restore["probes"]["ood"], simple["probes"]["ood"])["acc"]
    if diff["lo"] > 0:
        words = "does better than"
    elif diff["hi"] < 0:
        words = "does worse than"
    else:
        words = "does as well as (the paired 95% interval includes 0)"
    sentence = (f"{simple['label']} {words} {restore['label']} on OOD accuracy: "
                f"{diff['estimate']:+.3f} [{diff['lo']:+.3f}, {diff['hi']:+.3f}]")
    return {"simple": simple["label"], "restore": restore["label"], "ood_acc_diff": diff, "sentence": sentence}
