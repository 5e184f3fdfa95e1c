"""Run the study's stages in order, skipping finished ones (their markers) and resuming the rest."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from spindoctor.errors import UserError
from spindoctor.io import atomic_write_json, atomic_write_text
from spindoctor.study.config import StudyConfig
from spindoctor.study.stages import STAGES, Context

MARKERS = ".stages"


def marker(run: Path, stage: str) -> Path:
    return run / MARKERS / f"{stage}.json"


def _check_same_config(run: Path, cfg: StudyConfig) -> None:
    saved_path = run / "config.yaml"
    if not saved_path.exists():
        return
    saved = yaml.safe_load(saved_path.read_text()) or {}
    if saved != cfg.model_dump(mode="json"):
        changed = sorted(k for k in set(saved) | set(cfg.model_dump(mode="json"))
                         if saved.get(k) != cfg.model_dump(mode="json").get(k))
        raise UserError(f"{run} holds a study with a different config (keys {', '.join(changed)}); "
                        "use another --out or --restart")


def run_study(cfg: StudyConfig, run: str | Path, progress: bool = True, restart: bool = False,
              only: list[str] | None = None) -> dict:
    """Run every stage not yet finished; return {stage: marker} for all stages."""
    import shutil

    run = Path(run)
    if restart and run.exists():
        shutil.rmtree(run)
    _check_same_config(run, cfg)
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    ctx = Context(cfg, run, progress)
    markers = {}
    for name, stage in STAGES:
        path = marker(run, name)
        if path.exists():
            markers[name] = yaml.safe_load(path.read_text())
            ctx.say(f"[dim]{name}: done earlier ({markers[name]['seconds']:.0f} s), skipped[/dim]")
            continue
        if only and name not in only:
            continue
        ctx.say(f"[bold]{name}[/bold]: {stage.__doc__.splitlines()[0]}")
        start = time.perf_counter()
        summary = stage(ctx)
        markers[name] = {"seconds": round(time.perf_counter() - start, 2),
                         "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "summary": summary}
        atomic_write_json(path, markers[name])
    return markers
