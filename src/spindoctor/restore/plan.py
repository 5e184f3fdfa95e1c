"""A restoration plan: the typed config of one edit, and the matrices it touches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spindoctor.errors import UserError
from spindoctor.restore.select import parse_layers
from spindoctor.spectral.tensors import PRESETS, paired_matrices

if TYPE_CHECKING:  # pragma: no cover
    from spindoctor.spectral.tensors import Checkpoint, MatrixInfo

EMBEDDING_KINDS = ("embed", "lm_head")


class RestorePlan(BaseModel):
    """What to restore. Every field is saved in the edit record of a restored checkpoint."""

    model_config = ConfigDict(extra="forbid")

    layers: str = Field("all", description="Layer spec: all, none, 0-9, 0,3,5-7, first:25%, last:25%, middle:50%.")
    matrices: str = Field("linear", description="Matrix preset of the drift engine: paper, attn, mlp, linear, all.")
    regex: str | None = Field(None, description="Keep only tensor names matching this regex (re.search).")
    embeddings: bool = Field(False, description="Also restore the token embeddings and lm_head.")
    k_top: int | float = Field(1.0, description="Leading singular indices from the reference: count or fraction of rank.")
    k_tail: int | float = Field(0, description="Trailing singular indices from the reference: count or fraction.")
    mode: Literal["direction", "full"] = Field(
        "direction", description="direction: keep tuned singular values; full: reference triplets on restored indices."
    )

    @field_validator("matrices")
    @classmethod
    def _known_preset(cls, v: str) -> str:
        if v not in PRESETS:
            raise ValueError(f"matrices must be one of {', '.join(PRESETS)}")
        return v

    @field_validator("k_top", "k_tail")
    @classmethod
    def _valid_k(cls, v: int | float) -> int | float:
        if v < 0 or (isinstance(v, float) and v > 1):
            raise ValueError("k must be a count >= 0 or a fraction in [0, 1]")
        return v


def n_layers_of(infos: list[MatrixInfo]) -> int:
    """Number of decoder layers, from the largest layer index among the tensors."""
    layers = [i.layer for i in infos if i.layer is not None]
    return max(layers) + 1 if layers else 0


def plan_matrices(ref: Checkpoint, tuned: Checkpoint, plan: RestorePlan) -> list[MatrixInfo]:
    """The matrices ``plan`` restores, checked to exist with equal shapes in both checkpoints."""
    every = paired_matrices(ref, tuned, "all", plan.regex)
    layers = set(parse_layers(plan.layers, n_layers_of(every)))
    kinds = PRESETS[plan.matrices]
    chosen = [
        i for i in every
        if (i.layer is not None and i.layer in layers and (kinds is None or i.kind in kinds))
        or (i.layer is None and plan.embeddings and i.kind in EMBEDDING_KINDS)
    ]
    if not chosen:
        raise UserError(f"the plan selects no matrix (layers {plan.layers!r}, matrices {plan.matrices!r})")
    return chosen
