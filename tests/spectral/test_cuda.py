"""The CUDA paths (skipped without a GPU): drift factorises on the GPU and gives the CPU's
metrics; probes and restoration sweeps run a model that lives on the GPU."""

from __future__ import annotations

import math

import pytest
import torch

from spindoctor.spectral import drift

from .test_checkpoints import save_pair, tiny_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# Metrics compared between devices; angles in radians (float32 tolerance of DriftResult.meta).
COMPARED = ["ds_rel_mean_abs", "angle_u_mean", "angle_v_mean", "k0.25_u_mean", "k0.5_v_mean"]


@pytest.mark.parametrize("dtype, tol", [("float32", 2e-3), ("float64", 1e-8)], ids=["fp32", "fp64"])
def test_cuda_drift_matches_cpu(tmp_path, dtype, tol):
    ref, tuned = save_pair(tiny_model("llama"), tmp_path)
    cpu = drift(ref, tuned, device="cpu", dtype=dtype, cache_dir=None, figures=False)
    gpu = drift(ref, tuned, device="cuda", dtype=dtype, cache_dir=None, figures=False)
    assert gpu.meta["device"] == "cuda"
    for a, b in zip(cpu.rows, gpu.rows, strict=True):
        assert a["name"] == b["name"]
        # the weights are float32 whatever the factor dtype: norms differ in the 8th digit between devices
        assert math.isclose(a["rel_update"], b["rel_update"], rel_tol=1e-6)
        for key in COMPARED:
            assert math.isclose(a[key], b[key], rel_tol=tol, abs_tol=tol), (a["name"], key, a[key], b[key])


def test_probe_runs_a_model_on_the_gpu(tmp_path):
    from spindoctor.models.load import load_causal_lm
    from spindoctor.models.organism import (
        OrganismConfig,
        build_model,
        build_tokenizer,
        save_organism,
    )
    from spindoctor.probes import ProbeConfig, probe_model

    tok = build_tokenizer()
    tiny = OrganismConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    path = save_organism(build_model(tiny, tok, seed=0), tok, tmp_path / "org")
    cfg = ProbeConfig(n=16, batch_size=8)
    on_cpu = probe_model(*load_causal_lm(path), cfg)
    model, tok = load_causal_lm(path, device="auto")
    assert model.device.type == "cuda"
    on_gpu = probe_model(model, tok, cfg)
    for split in ("id", "ood"):
        assert on_gpu[split].n == 16
        assert on_gpu[split].loss == pytest.approx(on_cpu[split].loss, rel=1e-3)
