"""The arena's config: the one source of its defaults, saved with the results (docs/design.md, "Arena")."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from spindoctor.probes import ProbeConfig

# Every method, in the order points are run; the names used on the CLI, in tables and JSON.
METHODS = ("wise-ft", "ckpt-interp", "soup", "dg-threshold", "keep-top-r", "restore", "rl")
KNOBS = {  # what each method's grid values mean
    "wise-ft": "a: weight of the SFT end against the base, in [0, 1]",
    "ckpt-interp": "a: weight of the SFT end against the OOD-peak checkpoint, in [0, 1]",
    "soup": "w: checkpoints on each side of the OOD peak in the uniform average (integer >= 0)",
    "dg-threshold": "c: multiplier of the Donoho-Gavish threshold (> 0; 1 is the optimal threshold)",
    "keep-top-r": "r: update directions kept per matrix (count >= 1, or a fraction of the rank in (0, 1])",
    "restore": "k: top singular directions of every layer restored towards the base (count, or fraction)",
    "rl": "none: each RL run of the study (its last checkpoint) is one point",
}


def default_grids() -> dict[str, list[float]]:
    return {"wise-ft": [0.25, 0.5, 0.75], "ckpt-interp": [0.25, 0.5, 0.75], "soup": [1, 2],
            "dg-threshold": [1.0], "keep-top-r": [0.05, 0.25], "restore": [0.05, 0.25], "rl": []}


def check_grid(method: str, values: list[float]) -> list[float]:
    """``values`` when they are valid knobs of ``method``; ValueError naming the method otherwise."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
    if method == "rl":
        if values:
            raise ValueError("grid of rl must be empty (each RL run is one point)")
        return values
    if not values:
        raise ValueError(f"grid of {method} is empty")
    for v in values:
        ok = isinstance(v, int | float) and v == v and abs(v) != float("inf")
        if method in ("wise-ft", "ckpt-interp"):
            ok = ok and 0 <= v <= 1
        elif method == "soup":
            ok = ok and float(v).is_integer() and v >= 0
        elif method == "dg-threshold":
            ok = ok and v > 0
        else:  # keep-top-r, restore: a count >= 1 or a fraction in (0, 1]
            ok = ok and v > 0 and (v <= 1 or float(v).is_integer())
        if not ok:
            raise ValueError(f"bad grid value {v!r} for {method}: {KNOBS[method]}")
    return list(dict.fromkeys(values))


class ArenaConfig(BaseModel):
    """One arena run; every default lives here and the resolved config is saved in arena.json."""

    model_config = ConfigDict(extra="forbid")

    base: str = Field(description="the model before SFT (the reference of the recovered shares)")
    end: str = Field(description="the SFT end checkpoint (the model every point is compared with)")
    peak: str | None = Field(None, description="the OOD-peak SFT checkpoint (ckpt-interp, soup)")
    sft_run: str | None = Field(None, description="the SFT run folder (checkpoints for the soup, the SFT curve)")
    study: str | None = Field(None, description="a study run folder (its RL runs for the rl method)")
    methods: list[str] = Field(default_factory=lambda: [m for m in METHODS if m != "rl"],
                               description="methods to score, in this order")
    grids: dict[str, list[float]] = Field(default_factory=default_grids, description="knob values per method")
    matrices: str = Field("linear", description="matrix preset of dg-threshold, keep-top-r and restore")
    restore_mode: Literal["direction", "full"] = Field("direction", description="restore: keep tuned singular values or not")
    reference: Literal["base", "peak"] = Field(
        "base", description="the model whose OOD the recovered shares count as lost (base, or the OOD-peak checkpoint)")
    id_tolerance: float = Field(0.02, ge=0, le=1, description="largest ID accuracy cost of the best point (a fraction)")
    cache_dir: str | None = Field(None, description="factorisation cache of restore (a study passes its .cache/svd)")
    device: str = Field("cpu", description="device of the probed model (auto: CUDA when present)")
    probe: ProbeConfig = Field(default_factory=ProbeConfig, description="the ID/OOD probes of every point")

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("methods must list at least one method")
        for m in v:
            if m not in METHODS:
                raise ValueError(f"unknown method {m!r} (known: {', '.join(METHODS)})")
        return list(dict.fromkeys(v))

    @field_validator("grids")
    @classmethod
    def _valid_grids(cls, v: dict[str, list[float]]) -> dict[str, list[float]]:
        grids = default_grids()
        for method, values in v.items():
            grids[method] = check_grid(method, values)
        return grids

    @model_validator(mode="after")
    def _sources(self) -> ArenaConfig:
        needs_peak = [m for m in self.methods if m in ("ckpt-interp", "soup")]
        if needs_peak and self.peak is None:
            raise ValueError(f"{', '.join(needs_peak)} need the OOD-peak checkpoint (peak)")
        if self.reference == "peak" and self.peak is None:
            raise ValueError("reference peak needs the OOD-peak checkpoint (peak)")
        if "rl" in self.methods and self.study is None:
            raise ValueError("rl needs a study run folder (study)")
        return self


def parse_write(text: str) -> tuple[str, float | str]:
    """``"wise-ft:0.5"`` -> ``("wise-ft", 0.5)``; ``"rl:peak"`` -> ``("rl", "peak")``; ValueError otherwise."""
    method, sep, knob = text.partition(":")
    method, knob = method.strip(), knob.strip()
    if not sep or not knob:
        raise ValueError(f"write must be METHOD:KNOB (e.g. wise-ft:0.5), got {text!r}")
    if method == "rl":
        return method, knob
    try:
        value = float(knob)
    except ValueError:
        raise ValueError(f"bad knob {knob!r} in write {text!r}: {KNOBS.get(method, 'a number')}") from None
    check_grid(method, [value])
    return method, value
