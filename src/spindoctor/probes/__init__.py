"""ID/OOD probes: seeded held-out probe sets, batched generation, accuracy +- SE, loss proxy.

Public API (the SFT callback and the RL trainers code against it)::

    from spindoctor.probes import ProbeConfig, ProbeResult, probe_model, metrics_row

Nothing here imports torch at module level.
"""

from spindoctor.probes.core import (
    ProbeConfig,
    ProbeResult,
    binomial_se,
    metrics_row,
    probe_model,
    probe_split,
)
from spindoctor.probes.sets import DEFAULT_PROBE_FRACTION, gold_formula, probe_hands, train_hands

__all__ = [
    "DEFAULT_PROBE_FRACTION",
    "ProbeConfig",
    "ProbeResult",
    "binomial_se",
    "gold_formula",
    "metrics_row",
    "probe_hands",
    "probe_model",
    "probe_split",
    "train_hands",
]
