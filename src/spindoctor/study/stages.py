"""The study's stages. Each reads earlier stages' files and writes its own (docs/design.md, "Run folder").

A stage is a function ``stage(ctx) -> dict`` (its summary, kept in its marker).
It is only called when its marker is missing or its settings fingerprint changed;
a stage interrupted half-way is called again and picks up what it can: SFT resumes
from its last resume state (bit for bit), RL from its last checkpoint, drift and
sweeps reuse the factorisation cache, base starts over (the pipeline empties its
folder first, and only folders the study started: no stage deletes anything itself).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from spindoctor.errors import UserError
from spindoctor.io import atomic_write_json
from spindoctor.models.checkpoints import (
    DONE_FILE,
    SELECTION_FILE,
    checkpoint_path,
    last_checkpoint,
)
from spindoctor.study.config import (
    StudyConfig,
    arena_config,
    drift_config,
    rl_config,
    select_settings,
    sft_config,
    sweep_config,
)


@dataclass
class Context:
    """What every stage gets: the config, the run folder, and a printer."""

    cfg: StudyConfig
    run: Path
    progress: bool = True

    def say(self, text: str) -> None:
        if self.progress:
            from rich.console import Console

            Console(stderr=True).print(text, highlight=False)

    @property
    def cache_dir(self) -> Path:
        return self.run / ".cache" / "svd"

    def base_dir(self) -> Path:
        pointer = self.run / "base" / "pointer.json"
        if pointer.exists():
            return Path(json.loads(pointer.read_text())["path"])
        return self.run / "base"

    def selection(self) -> dict:
        path = self.run / "sft" / SELECTION_FILE
        if not path.exists():
            raise UserError(f"{path} is missing: run the select stage first")
        return json.loads(path.read_text())

    def sft_checkpoint(self, label: str) -> Path:
        """The SFT checkpoint of a selection label (peak, middle, end) or of ``step-N``."""
        if label.startswith("step-"):
            path = checkpoint_path(self.run / "sft", int(label.removeprefix("step-")))
            if not path.is_dir():
                raise UserError(f"rl start {label}: the SFT run has no checkpoint of that step ({path})")
            return path
        entry = self.selection()[label]
        # the study's own SFT checkpoint of that step first: selection.json records the path as written
        # (relative to the working folder of the time), which a moved or copied run folder breaks
        own = checkpoint_path(self.run / "sft", entry["step"]) if "step" in entry else None
        return own if own is not None and own.is_dir() else Path(entry.get("path") or own)

    def rl_final(self, label: str) -> Path | None:
        """The last RL checkpoint started from ``label`` (None when that run does not exist)."""
        return last_checkpoint(self.run / "rl" / label)


def stage_base(ctx: Context) -> dict:
    """Pretrain the organism into base/, or point at an existing checkpoint."""
    from spindoctor.models.organism_pretrain import PretrainConfig, pretrain

    out = ctx.run / "base"
    if ctx.cfg.base.path:
        folder = Path(ctx.cfg.base.path)
        if not (folder / "config.json").exists():
            raise UserError(f"base.path {folder} is not a Hugging Face checkpoint folder")
        atomic_write_json(out / "pointer.json", {"path": str(folder.resolve())})
        return {"path": str(folder.resolve()), "pretrained": False}
    cfg = PretrainConfig(**{"seed": ctx.cfg.seed, "threads": ctx.cfg.threads, **ctx.cfg.base.pretrain})
    summary = pretrain(cfg, out, progress=ctx.progress)
    return {"path": str(out), "pretrained": True, "steps": summary["steps"],
            "final_loss_ema": summary["final_loss_ema"], "parameters": summary["parameters"]}


def stage_sft(ctx: Context) -> dict:
    """SFT on the ID rule with ID/OOD probes and a checkpoint at every probe step."""
    from spindoctor.training.sft import run_sft

    out = ctx.run / "sft"
    if (out / DONE_FILE).is_file():  # finished before its marker was written (the pipeline planned a resume)
        summary = json.loads((out / DONE_FILE).read_text())
    else:  # an interrupted SFT of these settings resumes (the pipeline started it over when it could not)
        summary = run_sft(sft_config(ctx.cfg, ctx.base_dir(), out), say=ctx.say if ctx.progress else (lambda *_: None),
                          resume=True)
    return {k: summary[k] for k in ("steps", "seconds", "examples", "resumed_from") if k in summary}


def can_resume(ctx_run: Path, stage: str) -> bool:
    """Whether an interrupted ``stage`` (one of the pipeline's resumable stages) can go on in its
    folder; SFT only when its folder holds a usable resume state (or no run, or a finished one)."""
    if stage != "sft":
        return True
    from spindoctor.training.sft_resume import usable

    return usable(ctx_run / "sft")


def stage_select(ctx: Context) -> dict:
    """OOD peak, middle and end checkpoints -> sft/selection.json."""
    from spindoctor.training.select import select_run

    sel = select_run(ctx.run / "sft", **select_settings(ctx.cfg))
    return {name: sel[name]["step"] for name in ("peak", "middle", "end")} | {"shape": sel.get("shape")}


def stage_rl(ctx: Context) -> dict:
    """RL from each selected SFT checkpoint into rl/<start>/ (resumes a half-finished run)."""
    from spindoctor.devices import set_torch_threads

    if ctx.cfg.rl.algo == "ppo":
        from spindoctor.training.ppo import train
    else:
        from spindoctor.training.grpo import train
    set_torch_threads(ctx.cfg.threads)
    out = {}
    for label in ctx.cfg.rl.starts:
        ctx.say(f"RL ({ctx.cfg.rl.algo}) from the SFT {label} checkpoint")
        start = ctx.sft_checkpoint(label)
        summary = train(rl_config(ctx.cfg, start), start, ctx.run / "rl" / label, resume=True,
                        show_progress=ctx.progress)
        out[label] = {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))}
    return out


def drift_pairs(ctx: Context) -> list[tuple[str, Path, str, Path]]:
    """(ref label, ref, tuned label, tuned): base vs peak/end/RL, SFT end vs RL from the end."""
    pairs = [("base", ctx.base_dir(), "sft-peak", ctx.sft_checkpoint("peak")),
             ("base", ctx.base_dir(), "sft-end", ctx.sft_checkpoint("end"))]
    for label in ctx.cfg.rl.starts:
        final = ctx.rl_final(label)
        if final is not None:
            pairs.append(("base", ctx.base_dir(), f"rl-{label}", final))
            pairs.append((f"sft-{label}", ctx.sft_checkpoint(label), f"rl-{label}", final))
    return pairs


def stage_drift(ctx: Context) -> dict:
    """Spectral drift for each pair into drift/<ref>__<tuned>/."""
    from spindoctor.spectral.run import drift

    cfg = drift_config(ctx.cfg, ctx.cache_dir)
    out = {}
    for ref_label, ref, tuned_label, tuned in drift_pairs(ctx):
        name = f"{ref_label}__{tuned_label}"
        ctx.say(f"drift {name}")
        result = drift(ref, tuned, cfg)
        result.save(ctx.run / "drift" / name)
        out[name] = result.summary.get("overall", {}) if isinstance(result.summary, dict) else {}
    write_null(ctx, cfg.matrices, cfg.regex)
    return {"pairs": sorted(out)}


def write_null(ctx: Context, matrices: str, regex: str | None, draws: int = 3) -> None:
    """The spectral null of base -> SFT end (paper finding 3) into drift/null.json, float64
    (docs/design.md, "Evidence: the spectral null"); seeded by the study seed."""
    from spindoctor.report.data import NULL_FILE
    from spindoctor.spectral.null import null_rows, summarize_null

    ctx.say("drift null model (base -> sft-end)")
    rows = null_rows(ctx.base_dir(), ctx.sft_checkpoint("end"), matrices=matrices, regex=regex, draws=draws,
                     seed=ctx.cfg.seed)
    atomic_write_json(ctx.run / "drift" / NULL_FILE, {
        "pair": "base -> sft-end", "matrices": matrices, "regex": regex, "draws": draws, "seed": ctx.cfg.seed,
        "k_frac": 0.25, "summary": summarize_null(rows, seed=ctx.cfg.seed), "rows": rows})


def stage_sweeps(ctx: Context) -> dict:
    """Layer and rank restoration sweeps (SFT end towards the reference), and impose on RL."""
    from spindoctor.restore.run import run_sweep

    s = ctx.cfg.sweeps
    ref = ctx.base_dir() if s.reference == "base" else ctx.sft_checkpoint("peak")
    out, baselines = {}, {}
    jobs = [("layers", ref, ctx.sft_checkpoint("end")), ("ranks", ref, ctx.sft_checkpoint("end"))]
    rl_model = ctx.rl_final(s.impose_start)
    if rl_model is not None:
        jobs.append(("impose", ctx.sft_checkpoint(s.impose_start), rl_model))
    for kind, a, b in jobs:
        ctx.say(f"{kind} sweep: {b.relative_to(ctx.run) if b.is_relative_to(ctx.run) else b}")
        cfg = sweep_config(ctx.cfg, kind, a, b, ctx.cache_dir)
        record = run_sweep(cfg, ctx.run / "restore" / kind, progress=ctx.progress, baselines=baselines)
        out[kind] = len(record["rows"])
    return {"points": out, "reference": s.reference}


def stage_arena(ctx: Context) -> dict:
    """The recovery arena (WiSE-FT, checkpoint interpolation, soup, spectral threshold, restoration,
    RL) on the study's probes into arena/ (docs/design.md, "Arena")."""
    from spindoctor.arena.run import run_arena

    cfg = arena_config(ctx.cfg, ctx.base_dir(), ctx.run / "sft", ctx.sft_checkpoint("peak"),
                       ctx.sft_checkpoint("end"), ctx.run, ctx.cache_dir)
    record = run_arena(cfg, ctx.run / "arena", progress=ctx.progress)
    return {"points": len(record["rows"]), "best": record.get("best")}


def stage_toy(ctx: Context) -> dict:
    """The rotation toy into toy/."""
    from spindoctor.toy.run import run_toy

    numbers = run_toy(ctx.run / "toy", seed=ctx.cfg.seed)
    return numbers["fine_tune"]


def stage_report(ctx: Context) -> dict:
    """report/index.html, summary.md and the tables."""
    from spindoctor.report.build import build_report

    return build_report(ctx.run)


STAGES = [("base", stage_base), ("sft", stage_sft), ("select", stage_select), ("rl", stage_rl),
          ("drift", stage_drift), ("sweeps", stage_sweeps), ("arena", stage_arena), ("toy", stage_toy),
          ("report", stage_report)]
