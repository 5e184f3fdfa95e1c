"""The config of an RL run (PPO or GRPO): preset, then a YAML file, then overrides.

Library code shared by ``spindoctor rl`` (:mod:`spindoctor.training.cli`) and
the study (:mod:`spindoctor.study.config`). Imports nothing heavy: validating
a config needs no torch.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from spindoctor.errors import UserError, first_error
from spindoctor.models.checkpoints import CONFIG_FILE


class Algo(StrEnum):
    ppo = "ppo"
    grpo = "grpo"


class Preset(StrEnum):
    reference = "reference"
    organism = "organism"


def build_config(algo: Algo, preset: Preset, config_file: Path | None, overrides: dict[str, Any]):
    """``(config, fields set beyond the preset)``: preset, then the YAML file, then every
    override that is not None, validated by the algorithm's pydantic model."""
    from pydantic import ValidationError

    if algo is Algo.ppo:
        from spindoctor.training.ppo_config import PRESETS
        from spindoctor.training.ppo_config import PPOConfig as Model
    else:
        from spindoctor.training.grpo import PRESETS
        from spindoctor.training.grpo import GRPORunConfig as Model
    fields = dict(PRESETS[preset.value])
    if config_file is not None:
        if not config_file.is_file():
            raise UserError(f"config file not found: {config_file}")
        fields.update(yaml.safe_load(config_file.read_text()) or {})
    fields.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Model(**fields), set(fields) - set(PRESETS[preset.value])
    except ValidationError as err:
        where, msg = first_error(err)
        raise UserError(f"bad {algo.value} setting {where or 'config'}: {msg}") from None


def inherit_sft_probes(cfg, ckpt: Path, explicit: set[str]):
    """Use the probe set-up of the SFT run that holds ``ckpt`` (``<run>/config.yaml``).

    RL must train on the same train partition (``probe_fraction``) and be probed
    with the same probe sets as SFT, or the curves are not comparable and probe
    hands leak into RL. Fields in ``explicit`` (set in ``--config`` or by flags) win.
    """
    sft_cfg = ckpt.parent / CONFIG_FILE
    if not sft_cfg.is_file():
        return cfg
    data = yaml.safe_load(sft_cfg.read_text()) or {}
    update = {}
    if "probe_fraction" in data and "probe_fraction" not in explicit:
        update["probe_fraction"] = float(data["probe_fraction"])
    if isinstance(data.get("probe"), dict) and "probe" not in explicit:
        update["probe"] = {**data["probe"], **cfg.probe}
    return cfg.model_copy(update=update) if update else cfg
