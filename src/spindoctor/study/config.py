"""The study's typed config: one model, every stage's settings, saved with the run.

Each stage's own config model (PretrainConfig, SFTRunConfig, PPOConfig,
DriftConfig, SweepConfig, ProbeConfig) stays the only source of that stage's
defaults: the study config names a preset and holds overrides, and
:func:`validate_stages` builds every stage config at startup so a bad option is
rejected before any work starts (docs/design.md, "Configs and defaults").

Shipped presets live in ``spindoctor/configs/<name>.yaml``; ``--config`` also
takes a path to a YAML file. ``--quick`` deep-merges the file's ``quick:``
section over the rest: a miniature of every stage, for tests and smoke runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from spindoctor.errors import UserError, first_error

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
STARTS = ("peak", "middle", "end")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BaseStage(_Strict):
    path: str | None = Field(None, description="existing HF checkpoint folder; None: pretrain the organism")
    pretrain: dict[str, Any] = Field(default_factory=dict, description="PretrainConfig overrides (organism)")


class SFTStage(_Strict):
    preset: str = Field("organism", description="SFT preset: organism or chat")
    overrides: dict[str, Any] = Field(default_factory=dict, description="SFTRunConfig overrides")


class SelectStage(_Strict):
    overrides: dict[str, Any] = Field(default_factory=dict, description="selection settings overrides")


class RLStage(_Strict):
    algo: Literal["ppo", "grpo"] = Field("ppo", description="ppo (the paper's RL) or grpo")
    preset: Literal["organism", "reference"] = Field("organism", description="RL preset")
    starts: list[str] = Field(default_factory=lambda: list(STARTS),
                              description="SFT checkpoints RL starts from: peak, middle, end (the selection's) or "
                              "step-N (the SFT checkpoint of step N), for a recoverability map along the curve")

    @field_validator("starts")
    @classmethod
    def _known_starts(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("starts must list at least one start")
        for start in v:
            if start not in STARTS and not re.fullmatch(r"step-\d+", start):
                raise ValueError(f"start {start!r} is not peak, middle, end or step-N")
        return list(dict.fromkeys(v))
    overrides: dict[str, Any] = Field(default_factory=dict, description="PPOConfig / GRPORunConfig overrides")


class SweepStage(BaseModel):
    """The study's own sweep choices; every other key is a :class:`SweepConfig` override
    (``matrices``, ``blocks``, ``ks``, ...; ``ks`` reaches the ranks sweep only)."""

    model_config = ConfigDict(extra="allow")

    reference: Literal["peak", "base"] = Field(
        "peak", description="restore towards the OOD-peak SFT checkpoint (authors' scripts) or the base (article)")
    impose_start: Literal["peak", "middle", "end"] = Field("end", description="RL run whose model gets SFT directions")
    probe: dict[str, Any] = Field(default_factory=dict, description="ProbeConfig overrides for sweep points")

    def overrides(self) -> dict[str, Any]:
        """The SweepConfig fields this study sets."""
        return dict(self.model_extra or {})


class StudyConfig(_Strict):
    """The whole study. Saved as ``config.yaml`` in the run directory before any stage runs."""

    name: str = Field("organism", description="preset name, for the report")
    seed: int = Field(0, description="seeds pretraining, SFT data and RL")
    probe: dict[str, Any] = Field(default_factory=dict, description="ProbeConfig overrides for SFT/RL/baselines")
    base: BaseStage = Field(default_factory=BaseStage)
    sft: SFTStage = Field(default_factory=SFTStage)
    select: SelectStage = Field(default_factory=SelectStage)
    rl: RLStage = Field(default_factory=RLStage)
    drift: dict[str, Any] = Field(default_factory=dict, description="DriftConfig overrides (matrices, k, dtype, ...)")
    sweeps: SweepStage = Field(default_factory=SweepStage)
    arena: dict[str, Any] = Field(default_factory=dict, description="ArenaConfig overrides (methods, grids, reference, "
                                  "id_tolerance, ...); the study sets the sources, the cache and the probes")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: the CPUs not busy at each stage's start, at most 2)")


def deep_merge(base: dict, over: dict) -> dict:
    """``over`` merged into ``base`` recursively (dicts merge, everything else replaces)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def config_path(name_or_path: str) -> Path:
    """A shipped preset name (``organism``) or a YAML path -> the file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise UserError(f"config file not found: {candidate}")
        return candidate
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if not shipped.is_file():
        names = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise UserError(f"unknown config {name_or_path!r}; shipped presets: {names}; or pass a .yaml path")
    return shipped


def load_study_config(name_or_path: str = "organism", quick: bool = False) -> StudyConfig:
    """Read a preset or YAML file, apply ``quick:`` when asked, validate every stage."""
    path = config_path(name_or_path)
    raw = read_yaml_mapping(path)
    quick_over = raw.pop("quick", None)
    if quick_over is None:
        quick_over = {}
    if not isinstance(quick_over, dict):
        raise UserError(f"{path}: quick must be a mapping of study settings, got {type(quick_over).__name__}")
    if quick:
        raw = deep_merge(raw, quick_over)
    try:
        cfg = StudyConfig(**raw)
    except ValidationError as exc:
        where, msg = first_error(exc)
        raise UserError(f"{path}: {where}: {msg}") from None
    validate_stages(cfg)
    return cfg


def read_yaml_mapping(path: Path) -> dict:
    """The mapping a YAML file holds; :class:`UserError` (one line) for unreadable, non-UTF-8,
    invalid YAML or anything but a mapping."""
    try:
        raw = yaml.safe_load(path.read_bytes().decode("utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"{path} cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} must hold a mapping of study settings")
    return raw


def validate_stages(cfg: StudyConfig) -> None:
    """Build every stage's own config once, so bad options fail at startup, in one place."""
    from spindoctor.models.organism_pretrain import PretrainConfig
    from spindoctor.probes import ProbeConfig

    checks = {
        "probe": lambda: ProbeConfig(**cfg.probe),
        "sweeps.probe": lambda: ProbeConfig(**deep_merge(cfg.probe, cfg.sweeps.probe)),
        "base.pretrain": lambda: PretrainConfig(**{"seed": cfg.seed, **cfg.base.pretrain}),
        "drift": lambda: drift_config(cfg, None),
        "sweeps": lambda: [sweep_config(cfg, kind, "ref", "tuned", None) for kind in ("layers", "ranks")]
        + [check_matrix_choice(cfg.sweeps.overrides())],
        "sft.overrides": lambda: sft_config(cfg, "base", "out"),
        "rl.overrides": lambda: rl_config(cfg),
        "select.overrides": lambda: select_settings(cfg),
        "arena": lambda: arena_config(cfg, "base", "sft", "peak", "end", "run", None),
    }
    for where, build in checks.items():
        try:
            build()
        except (ValidationError, ValueError, TypeError) as exc:
            loc, msg = first_error(exc) if isinstance(exc, ValidationError) else ("", str(exc))
            raise UserError(f"config {where}{'.' + loc if loc else ''}: {msg}") from None


def check_matrix_choice(overrides: dict) -> None:
    """A sweep's ``matrices`` must name a preset and its ``regex`` must compile (SweepConfig
    takes any string; the restoration plan would only refuse it when the sweep runs)."""
    import re

    from spindoctor.spectral.tensors import PRESETS

    matrices = overrides.get("matrices", "linear")
    if matrices not in PRESETS:
        raise ValueError(f"matrices must be one of {', '.join(PRESETS)}, got {matrices!r}")
    try:
        re.compile(overrides.get("regex") or "")
    except re.error as exc:
        raise ValueError(f"regex {overrides['regex']!r} does not compile: {exc}") from None


def check_base_path(cfg: StudyConfig) -> None:
    """``base.path`` must be a Hugging Face checkpoint folder with safetensors weights. Checked
    when a study starts (not when a config loads: a shipped preset names a folder to provide)."""
    from spindoctor.models.checkpoints import check_checkpoint

    if cfg.base.path:
        try:
            check_checkpoint(cfg.base.path, need_config=True)
        except UserError as exc:
            raise UserError(f"config base.path: {exc}") from None


def select_settings(cfg: StudyConfig) -> dict:
    """The ``select`` overrides, checked against ``select_run``'s own keywords and their types
    (the defaults stay in ``select_run``); the smoothing window is checked by the smoother itself."""
    import inspect
    from typing import get_type_hints

    from pydantic import create_model

    from spindoctor.training.select import pooled_smoothing, select_run

    hints = get_type_hints(select_run)
    params = list(inspect.signature(select_run).parameters.values())[1:]  # after run_dir
    model = create_model("SelectSettings", __config__=ConfigDict(extra="forbid"),
                         **{p.name: (hints.get(p.name, Any), p.default) for p in params})
    chosen = model(**cfg.select.overrides).model_dump(exclude_unset=True)
    if "window" in chosen:
        pooled_smoothing([0.0], [1.0], chosen["window"])
    return chosen


def drift_config(cfg: StudyConfig, cache_dir: str | Path | None):
    """The DriftConfig of this study: its ``drift`` overrides and the run's own cache."""
    from spindoctor.spectral.run import DriftConfig

    _refuse_study_owned("drift", cfg.drift, ("cache_dir",))
    return DriftConfig(**cfg.drift, cache_dir=cache_dir)


def sweep_config(cfg: StudyConfig, kind: str, ref: str | Path, tuned: str | Path, cache_dir: str | Path | None):
    """The SweepConfig of one of this study's sweeps (``ks`` applies to the ranks sweep only)."""
    from spindoctor.probes import ProbeConfig
    from spindoctor.restore.run import SweepConfig

    overrides = cfg.sweeps.overrides()
    _refuse_study_owned("sweeps", overrides, ("kind", "ref", "tuned", "cache_dir"))
    if kind != "ranks":
        overrides.pop("ks", None)
    probe = ProbeConfig(**deep_merge(cfg.probe, cfg.sweeps.probe))
    return SweepConfig(kind=kind, ref=str(ref), tuned=str(tuned), probe=probe,
                       cache_dir=None if cache_dir is None else str(cache_dir), **overrides)


def arena_config(cfg: StudyConfig, base: str | Path, sft_run: str | Path, peak: str | Path, end: str | Path,
                 study: str | Path, cache_dir: str | Path | None):
    """The ArenaConfig of this study's arena stage: sources, cache and probes from the study, the rest
    from the ``arena:`` overrides (the arena's probes are the study's, so its points pair with every
    other probe of the run)."""
    from spindoctor.arena.config import ArenaConfig
    from spindoctor.probes import ProbeConfig

    overrides = dict(cfg.arena)
    _refuse_study_owned("arena", overrides, ("base", "end", "peak", "sft_run", "study", "cache_dir", "probe"))
    return ArenaConfig(base=str(base), sft_run=str(sft_run), peak=str(peak), end=str(end), study=str(study),
                       cache_dir=None if cache_dir is None else str(cache_dir), probe=ProbeConfig(**cfg.probe),
                       **overrides)


def _refuse_study_owned(section: str, overrides: dict, owned: tuple[str, ...]) -> None:
    taken = sorted(set(overrides) & set(owned))
    if taken:
        raise ValueError(f"{section}.{taken[0]} is set by the study itself")


def sft_config(cfg: StudyConfig, base: str | Path, out: str | Path):
    """The SFTRunConfig of this study (preset, overrides, the study's seed and probes)."""
    from spindoctor.training.sft import resolve_config

    overrides = dict(cfg.sft.overrides)
    probe = deep_merge(cfg.probe, overrides.pop("probe", {}))
    return resolve_config(cfg.sft.preset, base=str(base), out=str(out), seed=cfg.seed, threads=cfg.threads,
                          probe=probe, **overrides)


def rl_config(cfg: StudyConfig, start: str | Path | None = None):
    """The PPOConfig / GRPORunConfig of this study; with ``start``, the train/probe
    partition of the SFT run holding that checkpoint is inherited (no probe hand leaks into RL)."""
    from spindoctor.training.rl_config import Algo, Preset, build_config, inherit_sft_probes

    overrides = {"seed": cfg.seed, **cfg.rl.overrides}
    overrides["probe"] = deep_merge(cfg.probe, overrides.get("probe", {}))
    model, explicit = build_config(Algo(cfg.rl.algo), Preset(cfg.rl.preset), None, overrides)
    return inherit_sft_probes(model, Path(start), explicit - {"probe"}) if start is not None else model
