"""DriftCallback: the numbers of ``spindoctor drift``, rows per kind, base factorised once, bad input."""

from __future__ import annotations

import pytest
from tests.callbacks.conftest import sft_trainer

from spindoctor.callbacks import DriftCallback
from spindoctor.callbacks.drift import base_factors, drift_rows, kind_rows, select
from spindoctor.errors import UserError
from spindoctor.io import read_jsonl

KINDS = ["all", "down_proj", "k_proj", "q_proj", "v_proj"]


def nudged(model, seed: int = 0, scale: float = 0.05):
    """``model`` with seeded noise added to every weight matrix (in place), returned."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.add_(scale * torch.randn(p.shape, generator=gen))
    return model


@pytest.mark.parametrize("source", ["checkpoint", "model"], ids=["base-from-checkpoint", "base-from-model"])
def test_rows_are_the_numbers_of_spindoctor_drift(source, tiny16_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from spindoctor.spectral import drift

    model = AutoModelForCausalLM.from_pretrained(tiny16_dir)
    base = tiny16_dir if source == "checkpoint" else None
    infos = select(model, base, "paper", None)
    reference = base_factors(model, base, infos, "float32", None)
    nudged(model).save_pretrained(tmp_path / "tuned")
    rows = drift_rows(model, reference, infos, [0.25], "float32")
    expected = drift(tiny16_dir, tmp_path / "tuned", k=[0.25], cache_dir=None, workers=1, device="cpu").rows
    assert [r["name"] for r in rows] == [r["name"] for r in expected] and len(rows) == 8
    for got, want in zip(rows, expected, strict=True):
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == (pytest.approx(value, rel=1e-5, abs=1e-7) if isinstance(value, float) else value), key
    assert all(r["k0.25_u_mean"] > 0.01 and r["rel_update"] > 0.01 for r in rows)  # it did move


def test_kind_rows_average_the_matrices_of_each_kind():
    rows = [{"layer": i, "kind": kind, "rel_update": v, "ds_rel_mean_abs": v, "angle_u_mean": v, "angle_v_mean": v,
             "rot_share": v, "k0.25_u_mean": v, "k0.25_v_mean": v}
            for i, (kind, v) in enumerate([("q_proj", 1.0), ("q_proj", 3.0), ("k_proj", 5.0)])]
    out = {r["kind"]: r for r in kind_rows(rows, [0.25])}
    assert (out["all"]["n"], out["q_proj"]["n"], out["k_proj"]["n"]) == (3, 2, 1)
    assert (out["all"]["k0.25_u_mean"], out["q_proj"]["rel_update"], out["k_proj"]["ds_rel_mean_abs"]) == (3.0, 2.0, 5.0)


def test_in_a_trainer_at_saves_with_the_base_from_the_factor_cache(tiny16_dir, tmp_path):
    """Measured at the trainer's saves (steps 3 and 4 of 4); the base's 8 matrices are factorised once,
    into the cache, and a second run reads them back."""
    from tests.callbacks.test_probe_callback import Recorder

    cache = tmp_path / "cache"
    for run in ("first", "second"):
        out, recorder = tmp_path / run, Recorder()
        cb = DriftCallback(out, base=tiny16_dir, at_end=False, cache_dir=cache)
        trainer = sft_trainer(tiny16_dir, tmp_path / f"trainer-{run}", [cb, recorder], steps=4,
                              save_strategy="steps", save_steps=3)
        if run == "second":  # every base factor comes from the cache: factorising now would fail
            import spindoctor.spectral.svd as svd

            real, svd.factorize = svd.factorize, None
        try:
            trainer.train()
        finally:
            if run == "second":
                svd.factorize = real
        rows = read_jsonl(out / "drift.jsonl")
        assert [(r["step"], r["kind"]) for r in rows] == [(s, k) for s in (3, 4) for k in KINDS]
        assert [r["n"] for r in rows if r["step"] == 3] == [8, 2, 2, 2, 2]
        assert all(r["stage"] == "sft" and r["k0.25_u_mean"] > 0 and r["ds_rel_mean_abs"] > 0 for r in rows)
        logged = [(s, logs) for s, logs in recorder.logs if "drift/all/k0.25_u_mean" in logs]
        assert [s for s, _ in logged] == [3, 4]
        assert logged[0][1]["drift/q_proj/ds_rel_mean_abs"] == pytest.approx(rows[3]["ds_rel_mean_abs"])
    assert len(list(cache.glob("??/*.safetensors"))) == 8


def test_a_base_of_another_shape_is_refused(tiny16_dir, tiny_ckpt):
    from transformers import AutoModelForCausalLM

    with pytest.raises(UserError, match="differs between the base and the model"):
        select(AutoModelForCausalLM.from_pretrained(tiny16_dir), tiny_ckpt, "paper", None)


@pytest.mark.parametrize("kwargs,message", [
    ({"every": 0}, "every must be"),
    ({"k": [0]}, "DriftConfig: k"),
    ({"matrices": "everything"}, "DriftConfig: matrices"),
    ({"dtype": "float16"}, "DriftConfig: dtype"),
    ({"regex": "("}, "DriftConfig: regex"),
], ids=["every-zero", "k-zero", "unknown-preset", "half-precision", "broken-regex"])
def test_bad_input_is_a_user_error(kwargs, message, tmp_path):
    with pytest.raises(UserError, match=message):
        DriftCallback(tmp_path, **kwargs)
