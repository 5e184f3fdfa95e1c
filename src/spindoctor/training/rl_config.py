"""The config of an RL run (PPO or GRPO): preset, then a YAML file, then overrides.

Library code shared by ``spindoctor rl`` (:mod:`spindoctor.training.cli`) and
the study (:mod:`spindoctor.study.config`). Imports nothing heavy: validating
a config needs no torch.

RL from an SFT checkpoint continues that SFT run (docs/design.md, "RL"): it uses
the run's prompt format, train/probe partition and probe sets.
:func:`resolve_rl_config` reads them from the run's ``config.yaml`` (or the
checkpoint's ``probe.json``), picks the preset that fits the format (``organism``
for compact, ``reference`` for paper) when none is asked for, and refuses, before
any work, an asked preset or ``fmt`` whose format is not the one SFT trained on.
A start without SFT metadata (a plain HF model) keeps the ``reference`` preset.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from spindoctor.errors import UserError, first_error
from spindoctor.models.checkpoints import CONFIG_FILE, PROBE_FILE


class Algo(StrEnum):
    ppo = "ppo"
    grpo = "grpo"


class Preset(StrEnum):
    reference = "reference"
    organism = "organism"


# The prompt format each preset trains on, and the preset that fits an SFT run's format.
PRESET_FORMAT = {Preset.reference: "paper", Preset.organism: "compact"}
FORMAT_PRESET = {fmt: preset for preset, fmt in PRESET_FORMAT.items()}


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
        try:
            loaded = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise UserError(f"--config {config_file} is not a readable YAML file ({type(exc).__name__})") from None
        if not isinstance(loaded, dict):
            raise UserError(f"--config {config_file} is not a YAML mapping of config fields")
        fields.update(loaded)
    fields.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Model(**fields), set(fields) - set(PRESETS[preset.value])
    except ValidationError as err:
        where, msg = first_error(err)
        raise UserError(f"bad {algo.value} setting {where or 'config'}: {msg}") from None


def _sft_run_config(ckpt: Path) -> tuple[dict, Path] | None:
    """The config of the run holding ``ckpt`` (``<run>/config.yaml``) and its path; None if absent.
    A file that is not a YAML mapping is a :class:`UserError`, not a traceback."""
    path = ckpt.parent / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{path} (the config of the run holding {ckpt.name}) is not valid YAML "
                        f"({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} (the config of the run holding {ckpt.name}) is not a YAML mapping")
    return data, path


def sft_format(ckpt: Path) -> tuple[str, Path] | None:
    """``(format, file that records it)`` of the SFT run that produced ``ckpt``; None without metadata.

    Read from the run's ``config.yaml`` (``fmt``), else from the checkpoint's own
    ``probe.json`` (``probe_config.fmt``, written by SFT with every checkpoint).
    """
    found = _sft_run_config(ckpt)
    if found is not None and found[0].get("fmt") in FORMAT_PRESET:
        return found[0]["fmt"], found[1]
    import json

    probe = ckpt / PROBE_FILE
    try:
        doc = json.loads(probe.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    fmt = (doc.get("probe_config") or {}).get("fmt") if isinstance(doc, dict) else None
    return (fmt, probe) if fmt in FORMAT_PRESET else None


def resolve_rl_config(algo: Algo, preset: Preset | None, config_file: Path | None, overrides: dict[str, Any],
                      ckpt: Path | None):
    """``(config, explicit fields, note)`` of an RL run from ``ckpt``: :func:`build_config` with the preset
    that fits the start's SFT format, then :func:`inherit_sft_probes`. ``note`` says which preset and
    format were chosen and why.

    Raises
    ------
    UserError
        When ``preset`` (or ``fmt`` in the config file / overrides) gives another format than the
        one the start checkpoint was fine-tuned on.
    """
    found = sft_format(ckpt) if ckpt is not None else None
    chosen = preset or (FORMAT_PRESET[found[0]] if found else Preset.reference)
    cfg, explicit = build_config(algo, chosen, config_file, overrides)
    if found is None:
        why = "as asked" if preset else "the default: the start has no SFT config.yaml or probe.json"
        note = f"preset {chosen.value}, format {cfg.fmt} ({why})"
    else:
        fmt, source = found
        if cfg.fmt != fmt:
            what = "fmt in the config" if "fmt" in explicit else f"--preset {chosen.value}"
            raise UserError(f"{what} trains on the {cfg.fmt} format, but {ckpt} was fine-tuned on the {fmt} "
                            f"format ({source}); use --preset {FORMAT_PRESET[fmt].value} or leave --preset unset")
        how = "asked for; it matches" if preset else "chosen from"
        note = f"preset {chosen.value}, format {fmt} ({how} the SFT run's format in {source})"
    if ckpt is not None:
        cfg = inherit_sft_probes(cfg, ckpt, explicit)
    return cfg, explicit, note


def inherit_sft_probes(cfg, ckpt: Path, explicit: set[str]):
    """Use the probe set-up of the SFT run that holds ``ckpt`` (``<run>/config.yaml``).

    RL must train on the same train partition (``probe_fraction``) and be probed
    with the same probe sets as SFT, or the curves are not comparable and probe
    hands leak into RL. Fields in ``explicit`` (set in ``--config`` or by flags) win.
    """
    found = _sft_run_config(ckpt)
    if found is None:
        return cfg
    data = found[0]
    update = {}
    if "probe_fraction" in data and "probe_fraction" not in explicit:
        update["probe_fraction"] = float(data["probe_fraction"])
    if isinstance(data.get("probe"), dict) and "probe" not in explicit:
        update["probe"] = {**data["probe"], **cfg.probe}
    return cfg.model_copy(update=update) if update else cfg
