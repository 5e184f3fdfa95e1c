"""Read a study's run directory into the numbers the report shows (no computation of new results)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from spindoctor.io import read_jsonl
from spindoctor.models.checkpoints import DONE_FILE, METRICS_FILE, SELECTION_FILE

NULL_FILE = "null.json"  # drift/null.json: the spectral null of base -> SFT end (docs/design.md, "Evidence")

# The published numbers of Jin et al. (arXiv:2508.16546), Figure 1; accuracies in percent.
PUBLISHED = [
    {"model": "Qwen-2.5-7B", "stage": "SFT, OOD peak", "id_acc": 26.07, "ood_acc": 19.67},
    {"model": "Qwen-2.5-7B", "stage": "SFT, end", "id_acc": 43.59, "ood_acc": 17.09},
    {"model": "Qwen-2.5-7B", "stage": "RL after SFT", "id_acc": 40.60, "ood_acc": 19.66},
    {"model": "Llama-3.2-11B", "stage": "SFT, OOD peak", "id_acc": 24.79, "ood_acc": 17.52},
    {"model": "Llama-3.2-11B", "stage": "SFT, end", "id_acc": 68.38, "ood_acc": 8.97},
    {"model": "Llama-3.2-11B", "stage": "RL after SFT", "id_acc": 71.79, "ood_acc": 16.24},
]


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def probe_points(metrics: Path, stage: str | None = None) -> list[dict]:
    """Join a metrics.jsonl's ID and OOD probe rows by step: [{step, id_acc, id_acc_se, id_loss, ood_...}]."""
    from spindoctor.probes.core import points_by_step

    return points_by_step(read_jsonl(metrics), stage) if metrics.exists() else []


def _at(points: list[dict], step: int) -> dict | None:
    return next((p for p in points if p["step"] == step), None)


def figure1_rows(run: Path, selection: dict | None, sft: list[dict], rl: dict[str, list[dict]]) -> list[dict]:
    """Base, OOD peak, SFT end, and RL from each start: ID/OOD accuracy +- SE (fractions)."""
    rows = []

    def add(label: str, point: dict | None, step: int | None, note: str = "") -> None:
        if point:
            rows.append({"model": label, "step": step, "note": note,
                         **{k: point.get(k) for k in ("id_acc", "id_acc_se", "ood_acc", "ood_acc_se", "id_loss", "ood_loss")}})

    if sft:
        add("base (SFT step 0)", _at(sft, 0) or sft[0], sft[0]["step"])
    if selection:
        for name, label in (("peak", "SFT, OOD peak"), ("middle", "SFT, middle"), ("end", "SFT, end")):
            step = selection[name]["step"]
            add(label, _at(sft, step), step)
    for start, points in rl.items():
        if points:
            add(f"RL from SFT {start}", points[-1], points[-1]["step"], note=f"{points[-1]['step']} RL steps")
    return rows


def load_run(run: str | Path) -> dict:
    """Everything the report needs, read from the run directory; missing stages give empty parts."""
    run = Path(run)
    markers = {p.stem: json.loads(p.read_text()) for p in sorted((run / ".stages").glob("*.json"))}
    selection = _json(run / "sft" / SELECTION_FILE)
    sft = probe_points(run / "sft" / METRICS_FILE)
    rl = {d.name: probe_points(d / METRICS_FILE) for d in sorted((run / "rl").glob("*")) if d.is_dir()}
    rl_done = {d.name: _json(d / DONE_FILE) for d in sorted((run / "rl").glob("*")) if d.is_dir()}
    drift = {}
    for d in sorted((run / "drift").glob("*__*")):
        metrics = _json(d / "metrics.json")
        if metrics:
            drift[d.name] = {"dir": d, "metrics": metrics}
    sweeps = {d.name: {"dir": d, **(_json(d / "sweep.json") or {})} for d in sorted((run / "restore").glob("*"))
              if (d / "sweep.json").exists()}
    config_path = run / "config.yaml"
    return {
        "run": run,
        "config": yaml.safe_load(config_path.read_text()) if config_path.exists() else {},
        "markers": markers,
        "selection": selection,
        "sft": sft,
        "rl": rl,
        "drift": drift,
        "sweeps": sweeps,
        "toy": _json(run / "toy" / "toy.json"),
        "rl_done": {k: v for k, v in rl_done.items() if v},
        "null": _json(run / "drift" / NULL_FILE),
        "arena": _json(run / "arena" / "arena.json"),
        "figure1": figure1_rows(run, selection, sft, rl),
        "published": PUBLISHED,
    }
