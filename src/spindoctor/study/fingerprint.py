"""Per-stage settings fingerprints: which finished stages a changed config invalidates.

docs/design.md, "Run folder": each stage's marker records a hash of the resolved
settings that stage depends on and of its input stages' fingerprints. A stage whose
fingerprint still matches is skipped; one whose fingerprint differs is rerun, and
so is everything downstream of it (a changed SFT changes the fingerprints of
select, RL, drift, the sweeps and the report, not those of base or the toy).

Settings that only change how fast a stage runs (``threads``, ``workers``,
``device``, the cache folder) are left out: changing them never reruns a stage.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from spindoctor.study.config import (
    StudyConfig,
    arena_config,
    drift_config,
    rl_config,
    select_settings,
    sft_config,
    sweep_config,
)

EXECUTION_ONLY = frozenset({"threads", "workers", "device", "cache_dir"})

# Each stage's input stages (the stages whose outputs it reads), in pipeline order.
UPSTREAM: dict[str, tuple[str, ...]] = {
    "base": (),
    "sft": ("base",),
    "select": ("sft",),
    "rl": ("sft", "select"),
    "drift": ("base", "sft", "select", "rl"),
    "sweeps": ("base", "sft", "select", "rl"),
    "arena": ("base", "sft", "select", "rl", "sweeps"),
    "toy": (),
    "report": ("base", "sft", "select", "rl", "drift", "sweeps", "arena", "toy"),
}


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json") if hasattr(model, "model_dump") else model


def _strip(obj: Any) -> Any:
    """``obj`` without the execution-only keys, at every depth."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in EXECUTION_ONLY}
    if isinstance(obj, (list, tuple)):
        return [_strip(v) for v in obj]
    return obj


def stage_settings(cfg: StudyConfig) -> dict[str, Any]:
    """The resolved settings each stage depends on (paths the study chooses are placeholders)."""
    from spindoctor.models.organism_pretrain import PretrainConfig

    if cfg.base.path:
        base = {"path": str(Path(cfg.base.path).resolve())}
    else:
        base = {"pretrain": _dump(PretrainConfig(**{"seed": cfg.seed, **cfg.base.pretrain}))}
    sweeps = [_dump(sweep_config(cfg, kind, "<ref>", "<tuned>", None)) for kind in ("layers", "ranks", "impose")]
    return {
        "base": base,
        "sft": _dump(sft_config(cfg, "<base>", "<sft>")),
        "select": select_settings(cfg),
        "rl": {"algo": cfg.rl.algo, "preset": cfg.rl.preset, "starts": list(cfg.rl.starts),
               "config": _dump(rl_config(cfg))},
        "drift": _dump(drift_config(cfg, None)),
        "sweeps": {"reference": cfg.sweeps.reference, "impose_start": cfg.sweeps.impose_start, "configs": sweeps},
        "arena": _dump(arena_config(cfg, "<base>", "<sft>", "<peak>", "<end>", "<run>", None)),
        "toy": {"seed": cfg.seed},
        "report": {},
    }


def stage_fingerprints(cfg: StudyConfig) -> dict[str, str]:
    """{stage: 16 hex digits of SHA-256 over its settings and its input stages' fingerprints}."""
    settings = stage_settings(cfg)
    fps: dict[str, str] = {}
    for name, inputs in UPSTREAM.items():
        payload = {"stage": name, "settings": _strip(settings[name]), "inputs": {u: fps[u] for u in inputs}}
        text = json.dumps(payload, sort_keys=True, default=str)
        fps[name] = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return fps


def saved_fingerprints(raw: Any) -> dict[str, str] | None:
    """Fingerprints of a saved ``config.yaml`` mapping; None when it no longer loads."""
    from pydantic import ValidationError

    if not isinstance(raw, dict):
        return None
    try:
        return stage_fingerprints(StudyConfig.model_validate(raw))
    except (ValidationError, ValueError, TypeError):
        return None
