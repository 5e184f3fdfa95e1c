"""Run the recovery arena end to end: inputs, baselines, points, table, chart (docs/design.md, "Arena").

The SFT end is loaded once; every point (and the base and peak baselines) is
patched into it in place (:func:`spindoctor.restore.sweep.patched`), probed on
the same hands and put back bitwise. Outputs in ``out``, written as one set
(:func:`spindoctor.io.atomic_dir`): ``arena.json`` (resolved config,
baselines, one row per point with its paired evidence, the Pareto front, the
best point), ``arena.csv`` and ``arena.png``. A non-empty ``out`` that is not
a previous arena's is refused before any work.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from spindoctor.arena.config import ArenaConfig
from spindoctor.arena.points import (
    Point,
    States,
    build_points,
    check_architectures,
    rl_runs,
    soup_members,
)
from spindoctor.arena.table import (
    CSV_FIELDS,
    add_evidence,
    best_point,
    pareto_front,
    probe_row,
    simple_vs_restore,
)
from spindoctor.errors import UserError
from spindoctor.io import atomic_dir, foreign_entries, rows_to_csv

OUTPUT_FILES = ("arena.json", "arena.csv", "arena.png")  # every file the arena writes; the only ones it deletes
SCHEMA = "spindoctor.arena/1"


def check_out(out: Path) -> None:
    """Refuse (UserError) a file, or a non-empty folder that is not a previous arena output."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and (foreign_entries(out, OUTPUT_FILES) or not (out / "arena.json").is_file()):
        raise UserError(f"--out {out} exists and is not an arena output folder (only {', '.join(OUTPUT_FILES)}); "
                        "choose a new or empty folder")


def resolve_sources(sft_run: str | None, peak: str | None, end: str | None) -> tuple[str | None, str]:
    """``(peak, end)``: the explicit ones, else the SFT run's selection.json (peak and end entries)."""
    from spindoctor.models.checkpoints import SELECTION_FILE
    from spindoctor.training.select import read_selection

    if (peak is None or end is None) and sft_run is None:
        raise UserError("give an SFT run folder (with its selection.json) or both --peak and --end")
    if peak is None or end is None:
        path = Path(sft_run) / SELECTION_FILE
        chosen = dict(read_selection(path))
        if "end" not in chosen and "peak" in chosen and _same_step(path, "peak", "end"):
            chosen["end"] = chosen["peak"]  # read_selection names a checkpoint once: the peak is the end
        peak = peak if peak is not None else (str(chosen["peak"]) if "peak" in chosen else None)
        if end is None:
            if "end" not in chosen:
                raise UserError(f"{path} names no end checkpoint; pass --end")
            end = str(chosen["end"])
    return peak, end


def _same_step(selection: Path, a: str, b: str) -> bool:
    data = json.loads(selection.read_text(encoding="utf-8"))
    steps = [data.get(k, {}).get("step") if isinstance(data.get(k), dict) else None for k in (a, b)]
    return steps[0] is not None and steps[0] == steps[1]


def sft_curve(sft_run: str | None, peak: str | None) -> list[dict]:
    """``[{step, id_acc, ood_acc}]`` of the SFT run's probe rows (metrics.jsonl), step order; [] when absent."""
    from spindoctor.io import read_jsonl
    from spindoctor.models.checkpoints import METRICS_FILE

    run = Path(sft_run) if sft_run else (Path(peak).parent if peak else None)
    if run is None or not (run / METRICS_FILE).is_file():
        return []
    by_step: dict[int, dict] = {}
    for row in read_jsonl(run / METRICS_FILE):
        if row.get("stage", "sft") == "sft" and row.get("split") in ("id", "ood") and "step" in row:
            by_step.setdefault(int(row["step"]), {"step": int(row["step"])})[f"{row['split']}_acc"] = row.get("acc")
    return [c for _, c in sorted(by_step.items()) if c.get("id_acc") is not None and c.get("ood_acc") is not None]


def _check_inputs(cfg: ArenaConfig, out: Path) -> dict[str, str]:
    """Every check before work: out, model folders, architectures, soup and RL sources, device."""
    from spindoctor.models.load import check_model_folder

    check_out(out)
    paths = {"base": cfg.base, "end": cfg.end} | ({"peak": cfg.peak} if cfg.peak else {})
    for path in paths.values():
        check_model_folder(path)
    if "soup" in cfg.methods and cfg.peak:
        for w in cfg.grids["soup"]:
            paths.update({f"soup member {p}": p for p in soup_members(cfg.sft_run, cfg.peak, int(w))})
    if "rl" in cfg.methods:
        paths.update({f"rl/{start}": ckpt for start, ckpt in rl_runs(cfg.study or "")})
    check_architectures(paths)
    if cfg.device != "cpu":
        from spindoctor.devices import resolve_device

        resolve_device(cfg.device)
    return paths


def _matrix_names(cfg: ArenaConfig):
    from spindoctor.restore.plan import RestorePlan, plan_matrices
    from spindoctor.spectral.tensors import Checkpoint

    plan = RestorePlan(layers="all", matrices=cfg.matrices)
    return plan_matrices(Checkpoint(cfg.base), Checkpoint(cfg.end), plan)


def score_point(model, tok, states: States, point: Point, probe) -> tuple[dict, float, float]:
    """Probe ``point`` patched into ``model``; return ``({split: ProbeResult}, seconds for edit + probe,
    seconds for the edit alone)``."""
    from spindoctor.probes import probe_model
    from spindoctor.restore.sweep import patched

    t0 = time.perf_counter()
    params = {n for n, _ in model.named_parameters()}
    edits = {n: t for n, t in states.stored(point.make()).items() if n in params}
    edit_s = time.perf_counter() - t0
    with patched(model, edits):
        results = probe_model(model, tok, probe)
    return results, time.perf_counter() - t0, edit_s


def saved_probe(ckpt: str, probe, model) -> tuple[dict, str] | None:
    """``({split: ProbeResult}, path)`` from the checkpoint's own ``probe.json`` when it answers
    ``probe`` exactly (same resolved ProbeConfig and parameter dtype: the numbers a new probe of the
    same weights gives, the rule RL's step 0 follows, docs/design.md "Arena"); None otherwise."""
    from dataclasses import fields

    from spindoctor.models.checkpoints import PROBE_FILE
    from spindoctor.probes.core import ProbeResult
    from spindoctor.training.rl_common import reusable_probe_rows

    rows = reusable_probe_rows(ckpt, probe.model_dump(mode="json"), str(next(model.parameters()).dtype))
    if rows is None:
        return None
    names = {f.name for f in fields(ProbeResult)}
    try:
        results = {r["split"]: ProbeResult(**{k: v for k, v in r.items() if k in names}) for r in rows}
    except (TypeError, KeyError):  # a row that is not a probe row: probe again
        return None
    return results, str(Path(ckpt) / PROBE_FILE)


def _baseline_row(model, tok, states: States, point: Point, probe) -> dict:
    """A baseline's row: its checkpoint's own probe rows when they answer ``probe``, else a probe."""
    t0 = time.perf_counter()
    saved = saved_probe(point.sources[0], probe, model)
    if saved is not None:
        return probe_row(point.method, point.knob, point.label, saved[0], time.perf_counter() - t0, point.sources,
                         reused_from=saved[1])
    results, seconds, edit_s = score_point(model, tok, states, point, probe)
    return probe_row(point.method, point.knob, point.label, results, seconds, point.sources,
                     edit_seconds=round(edit_s, 3))


def run_arena(cfg: ArenaConfig, out: str | Path, progress: bool = True, write: tuple[str, float | str] | None = None,
              write_best: bool = False, model_out: str | Path | None = None) -> dict:
    """Score every point of ``cfg``; write arena.json, arena.csv and arena.png into ``out``; return the record.

    ``write`` (a ``(method, knob)`` of the grid) or ``write_best`` also writes that
    point as a checkpoint with a model card into ``model_out``
    (:func:`spindoctor.arena.card.write_point`).
    """
    from rich.progress import Progress

    from spindoctor.arena.card import owned_files
    from spindoctor.arena.figures import plot_arena
    from spindoctor.models.load import load_causal_lm

    started, out = time.time(), Path(out)
    _check_inputs(cfg, out)
    if (write or write_best) and model_out is None:
        raise UserError("writing a checkpoint needs model_out")
    if model_out is not None:
        owned_files(Path(model_out))
    infos = _matrix_names(cfg)
    states = States(cfg.end)
    memo: dict = {}

    def factors(ref: str):
        """Factorisations of ``ref`` and the end (once per reference)."""
        if ref not in memo:
            from spindoctor.restore.sweep import load_factors

            memo[ref] = load_factors(ref, cfg.end, infos, cfg.cache_dir, "float32", cfg.device, progress=False)
        return memo[ref]

    points = build_points(cfg, states, [i.name for i in infos], factors)
    model, tok = load_causal_lm(cfg.end, device=cfg.device)
    rows = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("arena", total=len(points) + 1 + bool(cfg.peak))
        end_point = Point("baseline", None, "sft end", [cfg.end], lambda: {})
        rows.append(_baseline_row(model, tok, states, end_point, cfg.probe))
        baselines = [Point("baseline", None, "base", [cfg.base], lambda: states.get(cfg.base))]
        if cfg.peak:
            baselines.append(Point("baseline", None, "sft peak", [cfg.peak], lambda: states.get(cfg.peak)))
        for point in baselines:
            bar.update(task, description=point.label)
            rows.append(_baseline_row(model, tok, states, point, cfg.probe))
            bar.advance(task)
        for point in points:
            bar.update(task, description=point.label)
            results, seconds, edit_s = score_point(model, tok, states, point, cfg.probe)
            rows.append(probe_row(point.method, point.knob, point.label, results, seconds, point.sources,
                                  edit_seconds=round(edit_s, 3), **point.extra))
            bar.advance(task)
    end, reference = rows[0], rows[2 if cfg.reference == "peak" else 1]
    for row in rows:
        add_evidence(row, end, reference)
    record = _record(cfg, rows, sft_curve(cfg.sft_run, cfg.peak), started)
    _save(out, record, plot_arena)  # the table first: a refused write leaves the scores on disk
    if write or write_best:
        record["written"] = _write_chosen(cfg, record, points, states, write, model_out)
    return record


def _write_chosen(cfg, record: dict, points: list[Point], states: States, write, model_out) -> dict:
    """Write the chosen point (``write`` or the best one) as a checkpoint; return its record."""
    from spindoctor.arena.card import write_point

    if write is None:
        label = record["best"]
        if label is None:
            raise UserError(f"no point recovers OOD within the ID tolerance {cfg.id_tolerance:g}; "
                            "nothing to write (see the table, or choose one with --write)")
        i = next(i for i, r in enumerate(record["rows"]) if r["label"] == label)
    else:
        method, knob = write
        found = [i for i, r in enumerate(record["rows"]) if r["method"] == method and
                 (r["knob"] == knob or (method == "soup" and r["knob"] == int(knob)))]
        if not found:
            raise UserError(f"--write {method}:{knob}: no such point in this arena (add it to the grid)")
        i = found[0]
    row = record["rows"][i]
    point = next(p for p in points if p.label == row["label"])
    return write_point(states.stored(point.make()), cfg.end, model_out, row, record)


def _record(cfg, rows: list[dict], curve: list[dict], started: float) -> dict:
    from spindoctor import __version__

    front = pareto_front(rows)
    for i, row in enumerate(rows):
        row["pareto"] = i in front
    best = best_point(rows, cfg.id_tolerance)
    for row in rows:
        row["best"] = row is best
    return {"schema": SCHEMA, "spindoctor_version": __version__, "config": cfg.model_dump(),
            "seconds": round(time.time() - started, 2), "best": None if best is None else best["label"],
            "simple_vs_restore": simple_vs_restore(rows), "front": front, "sft_curve": curve, "rows": rows}


def _save(out: Path, record: dict, plot) -> dict:
    """Write the three outputs as one set."""
    rows, curve, front = record["rows"], record["sft_curve"], record["front"]
    try:
        with atomic_dir(out, owned=OUTPUT_FILES) as tmp:
            (tmp / "arena.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            (tmp / "arena.csv").write_text(rows_to_csv(rows, CSV_FIELDS), encoding="utf-8")
            plot(rows, curve, front, tmp / "arena.png")
    except FileExistsError as exc:  # out changed while we worked: nothing was replaced
        raise UserError(str(exc)) from None
    return record
