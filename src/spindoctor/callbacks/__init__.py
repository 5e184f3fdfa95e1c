"""Trainer callbacks: spindoctor's probes and drift inside any Hugging Face / TRL trainer.

Public API (docs/design.md, "Callbacks")::

    from spindoctor.callbacks import OODProbeCallback, DriftCallback

    trainer = SFTTrainer(..., callbacks=[OODProbeCallback("runs/mine"), DriftCallback("runs/mine")])

- :class:`OODProbeCallback` (:mod:`spindoctor.callbacks.probe`): ID/OOD probes on a
  schedule, rows in ``metrics.jsonl``, the numbers in the trainer's logs, a
  checkpoint at each new OOD peak. ``spindoctor sft`` runs on it.
- :class:`DriftCallback` (:mod:`spindoctor.callbacks.drift`): top-k principal
  angles and mean ``|ds/s|`` per matrix kind against the base, rows in
  ``drift.jsonl``, the numbers in the trainer's logs.
- :func:`save_checkpoint` (:mod:`spindoctor.callbacks.checkpoint`): a probed checkpoint folder.

Importing this package does not import transformers; naming a callback class does.
"""

from __future__ import annotations

from typing import Any

from spindoctor.callbacks.checkpoint import save_checkpoint

__all__ = ["DriftCallback", "OODProbeCallback", "save_checkpoint"]


def __getattr__(name: str) -> Any:
    if name == "OODProbeCallback":
        from spindoctor.callbacks.probe import OODProbeCallback

        return OODProbeCallback
    if name == "DriftCallback":
        from spindoctor.callbacks.drift import DriftCallback

        return DriftCallback
    raise AttributeError(f"module 'spindoctor.callbacks' has no attribute {name!r}")
