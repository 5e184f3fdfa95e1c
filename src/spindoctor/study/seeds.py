"""``spindoctor study --seeds 0,1,2``: one study run per seed, then a pooled report.

docs/design.md, "Run folder": the multi-seed folder ``runs/NAME/`` holds the
study marker with schema ``spindoctor.study-seeds/1``, one ordinary (resumable)
study run folder ``seed-<s>/`` per seed, whose config is the shared config with
``seed: s``, and the pooled ``report/`` (docs/design.md, "Evidence"). Every check
(the folder, each seed folder, every stage folder, the base checkpoint) runs
before any seed starts, and before ``--restart`` deletes anything.
"""

from __future__ import annotations

from pathlib import Path

from spindoctor.errors import UserError
from spindoctor.study import runfolder
from spindoctor.study.config import StudyConfig, check_base_path
from spindoctor.study.pipeline import run_study


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]: comma-separated, non-negative, unique; UserError otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p.isdigit() or not p.isascii() for p in parts):
        raise UserError(f"--seeds must be comma-separated non-negative integers (e.g. 0,1,2), got {text!r}")
    seeds = [int(p) for p in parts]
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds lists a seed twice: {text!r}")
    return seeds


def seed_config(cfg: StudyConfig, seed: int) -> StudyConfig:
    """The shared config with ``seed: seed`` (validated like any config)."""
    return type(cfg).model_validate({**cfg.model_dump(mode="json"), "seed": seed})


def _check(cfg: StudyConfig, parent: Path, seeds: list[int], restart: bool) -> None:
    """Every refusal before any work: the folder, each seed folder and its stage folders, the base."""
    kind = runfolder.classify_seeds(parent)
    check_base_path(cfg)
    dirs = set(seeds) | (set(runfolder.owned_seeds(parent)) if restart and kind == "seeds" else set())
    for seed in sorted(dirs):
        run = runfolder.seed_dir(parent, seed)
        if runfolder.classify(run) == "study":
            for stage in runfolder.STAGE_DIRS:
                runfolder.check_stage_dirs(run, stage)


def run_seeds(cfg: StudyConfig, parent: str | Path, seeds: list[int], progress: bool = True,
              restart: bool = False, say=None) -> dict[int, dict]:
    """Run the study once per seed into ``<parent>/seed-<s>/``; return {seed: {stage: marker}}.

    ``say`` prints one progress line (which seed runs); the pooled report is
    written by :func:`pooled_report` afterwards.
    """
    parent = Path(parent)
    if not seeds:
        raise UserError("--seeds needs at least one seed")
    _check(cfg, parent, seeds, restart)
    if restart and runfolder.classify_seeds(parent) == "seeds":
        runfolder.restart_seeds(parent)
    runfolder.claim_seeds(parent, cfg.name, seeds)
    markers = {}
    for i, seed in enumerate(seeds, 1):
        run = runfolder.seed_dir(parent, seed)
        if say is not None:
            say(f"[bold]seed {seed}[/bold] ({i} of {len(seeds)}): {run}")
        markers[seed] = run_study(seed_config(cfg, seed), run, progress=progress)
    return markers


def seeds_of(parent: str | Path) -> tuple[str, dict[int, Path]]:
    """(config name, {seed: folder}) of a multi-seed folder's latest run; UserError if it is not one."""
    parent = Path(parent)
    if runfolder.classify_seeds(parent) != "seeds":
        raise UserError(f"{parent} is not a multi-seed study folder (no {runfolder.STUDY_MARKER})")
    found = runfolder.read_json(parent / runfolder.STUDY_MARKER) or {}
    seeds = [s for s in found.get("seeds", []) if isinstance(s, int) and s >= 0]
    return str(found.get("config", "")), {s: runfolder.seed_dir(parent, s) for s in seeds}


def pooled_report(parent: str | Path) -> dict:
    """(Re)build ``<parent>/report/`` from the seeds of the folder's latest run."""
    from spindoctor.report.pooled_report import build_pooled_report

    name, dirs = seeds_of(parent)
    return build_pooled_report(parent, {s: d for s, d in dirs.items() if d.is_dir()}, name)
