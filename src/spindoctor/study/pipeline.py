"""Run the study's stages in order: skip finished ones whose settings still match, rerun the rest.

docs/design.md, "Run folder": every check (the run folder is a study's, the base
checkpoint exists, no stage folder holds foreign files) runs before any stage does.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import yaml

from spindoctor.io import atomic_write_json, atomic_write_text
from spindoctor.study import runfolder
from spindoctor.study.config import StudyConfig, check_base_path
from spindoctor.study.fingerprint import UPSTREAM, saved_fingerprints, stage_fingerprints
from spindoctor.study.runfolder import marker, read_json, started
from spindoctor.study.stages import STAGES, Context, can_resume

__all__ = ["marker", "plan_stages", "run_study"]

# Stages that pick up an interrupted run of the same settings (SFT when stages.can_resume says it can);
# the others start over.
RESUMABLE = frozenset({"sft", "rl", "drift", "sweeps", "toy", "report"})


def adopt_legacy(run: Path) -> None:
    """Give a run folder from before the study marker its marker, started records and fingerprints.

    The code that wrote it refused to touch a run whose config differed from
    ``config.yaml``, so every finished stage ran with that config: its fingerprints
    are computed from it. When it no longer loads, markers stay without one (rerun).
    """
    try:
        saved = saved_fingerprints(yaml.safe_load(Path(run, runfolder.CONFIG).read_bytes().decode("utf-8")))
    except (OSError, ValueError, yaml.YAMLError):
        saved = None
    for stage, dirs in runfolder.STAGE_DIRS.items():
        done = read_json(marker(run, stage))
        if done is not None and saved is not None and "fingerprint" not in done:
            atomic_write_json(marker(run, stage), done | {"fingerprint": saved[stage]})
        if done is not None or any((run / d).exists() for d in dirs):
            atomic_write_json(started(run, stage), {"fingerprint": saved and saved[stage], "adopted": True})
    runfolder.claim(run)


def plan_stages(run: Path, fps: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """({stage: ``skip`` | ``resume`` | ``fresh``}, one notice line per finished stage rerun or
    interrupted stage that cannot resume)."""
    plan: dict[str, str] = {}
    notices = []
    for name in UPSTREAM:
        done, begun = read_json(marker(run, name)), read_json(started(run, name))
        rerun_inputs = [u for u in UPSTREAM[name] if plan[u] != "skip"]
        if done is not None and done.get("fingerprint") == fps[name] and not rerun_inputs:
            plan[name] = "skip"
            continue
        if done is not None:
            why = (f"its input stage {rerun_inputs[0]} reruns" if rerun_inputs
                   else "its settings changed" if "fingerprint" in done else "its marker has no settings fingerprint")
            notices.append(f"{name}: finished earlier, rerun because {why}")
        same = begun is not None and begun.get("fingerprint") == fps[name] and done is None
        plan[name] = "resume" if same and name in RESUMABLE and not rerun_inputs else "fresh"
        if plan[name] == "resume" and not can_resume(run, name):
            plan[name] = "fresh"
            notices.append(f"{name}: interrupted with no usable resume state; it starts over")
    return plan, notices


def _prepare(cfg: StudyConfig, run: Path, restart: bool) -> tuple[dict[str, str], dict[str, str]]:
    """Every check before any work; returns (fingerprints, plan)."""
    kind = runfolder.classify(run)
    fps = stage_fingerprints(cfg)
    check_base_path(cfg)
    if kind == "legacy":
        adopt_legacy(run)
    if restart and kind != "new":
        for name in UPSTREAM:  # refuse before deleting anything: these would block their stage
            runfolder.check_stage_dirs(run, name)
        runfolder.restart(run)
    plan, notices = plan_stages(run, fps)
    for name, action in plan.items():
        if action != "skip":
            runfolder.check_stage_dirs(run, name)
    for line in notices:
        warnings.warn(line, runfolder.StudyNotice, stacklevel=3)
    return fps, plan


def torch_threads() -> int | None:
    """torch's CPU thread count in force when a stage ended (None when torch was never imported).

    The count is chosen from the load at each stage's start unless ``threads`` pins it, and float
    reductions differ with it, so the marker records it: two runs of one config that differ in
    their numbers can be told apart by it (docs/design.md, "Engineering decisions")."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def run_study(cfg: StudyConfig, run: str | Path, progress: bool = True, restart: bool = False) -> dict:
    """Run every stage not finished with these settings; return {stage: marker} for all stages."""
    run = Path(run)
    fps, plan = _prepare(cfg, run, restart)
    runfolder.claim(run)
    atomic_write_text(run / runfolder.CONFIG, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    ctx = Context(cfg, run, progress)
    markers = {}
    for name, stage in STAGES:
        if plan[name] == "skip":
            markers[name] = read_json(marker(run, name))
            ctx.say(f"[dim]{name}: done earlier ({markers[name]['seconds']:.0f} s), skipped[/dim]")
            continue
        marker(run, name).unlink(missing_ok=True)
        if plan[name] == "fresh":
            runfolder.clear_stage(run, name)
        atomic_write_json(started(run, name), {"fingerprint": fps[name]})
        ctx.say(f"[bold]{name}[/bold]: {stage.__doc__.splitlines()[0]}")
        start = time.perf_counter()
        summary = stage(ctx)
        markers[name] = {"seconds": round(time.perf_counter() - start, 2),
                         "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "summary": summary,
                         "fingerprint": fps[name], "torch_threads": torch_threads()}
        atomic_write_json(marker(run, name), markers[name])
    return markers
