"""Spectral null models: an independent numpy/scipy oracle, invariants, the 1/n diagonal share."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from spindoctor.spectral.null import (
    drift_summary,
    gaussian_update,
    haar_orthonormal,
    log_ratio,
    null_comparison,
    spectrum_update,
)


def oracle_summary(W: np.ndarray, dW: np.ndarray, k_frac: float) -> dict[str, float]:
    """The same three metrics with numpy's SVD and scipy's subspace angles (float64)."""
    U, S, Vh = np.linalg.svd(W, full_matrices=False)
    U2, S2, Vh2 = np.linalg.svd(W + dW, full_matrices=False)
    k = max(1, math.ceil(k_frac * S.size - 1e-9))
    ang_u = scipy.linalg.subspace_angles(U[:, :k], U2[:, :k])
    ang_v = scipy.linalg.subspace_angles(Vh[:k].T, Vh2[:k].T)
    diag = np.einsum("ir,ij,rj->r", U, dW, Vh)
    return {
        "ds_rel_mean_abs": float(np.abs((S2 - S) / S).mean()),
        "angle_topk_deg": math.degrees(0.5 * (ang_u.mean() + ang_v.mean())),
        "rot_share": 1 - float((diag**2).sum() / (dW**2).sum()),
    }


@pytest.mark.parametrize("shape", [(24, 24), (16, 40), (40, 16)], ids=["square", "wide", "tall"])
def test_drift_summary_matches_numpy_scipy_oracle(shape):
    rng = np.random.default_rng(0)
    W = rng.normal(size=shape)
    dW = 0.05 * rng.normal(size=shape)
    got = drift_summary(torch.from_numpy(W), torch.from_numpy(dW))
    want = oracle_summary(W, dW, 0.25)
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), key


def test_no_update_is_no_drift():
    W = torch.randn(12, 20, dtype=torch.float64)
    got = drift_summary(W, torch.zeros_like(W))
    assert got["ds_rel_mean_abs"] == 0
    assert got["angle_topk_deg"] < 1e-5
    assert math.isnan(got["rot_share"])


def test_update_along_the_reference_pairs_is_all_diagonal():
    gen = torch.Generator().manual_seed(1)
    U = haar_orthonormal(20, 20, gen)
    V = haar_orthonormal(20, 20, gen)
    s = torch.linspace(10, 1, 20, dtype=torch.float64)
    W = (U * s) @ V.T
    dW = (U * (0.01 * s)) @ V.T  # scales every singular value by 1.01: no rotation
    got = drift_summary(W, dW)
    assert got["rot_share"] == pytest.approx(0, abs=1e-12)
    assert got["ds_rel_mean_abs"] == pytest.approx(0.01)
    assert got["angle_topk_deg"] < 1e-5


def test_haar_columns_are_orthonormal_and_seeded():
    Q = haar_orthonormal(30, 7, torch.Generator().manual_seed(3))
    assert torch.allclose(Q.T @ Q, torch.eye(7, dtype=torch.float64), atol=1e-12)
    assert torch.equal(Q, haar_orthonormal(30, 7, torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="k <= m"):
        haar_orthonormal(3, 4, torch.Generator())


def test_nulls_keep_the_size_of_the_update():
    gen = torch.Generator().manual_seed(4)
    dW = torch.randn(18, 30, dtype=torch.float64) @ torch.diag(torch.linspace(1, 0.1, 30, dtype=torch.float64))
    fro = float(torch.linalg.vector_norm(dW))
    assert float(torch.linalg.vector_norm(gaussian_update((18, 30), fro, gen))) == pytest.approx(fro)
    null = spectrum_update(dW, gen)
    assert torch.allclose(torch.linalg.svdvals(null), torch.linalg.svdvals(dW), rtol=1e-10)


def test_gaussian_null_puts_about_one_nth_on_the_diagonal():
    gen = torch.Generator().manual_seed(5)
    n = 64
    W = torch.randn(n, n, dtype=torch.float64, generator=gen)
    dW = gaussian_update((n, n), 1.0, gen)
    diag_share = 1 - drift_summary(W, dW)["rot_share"]
    assert 0.3 / n < diag_share < 3 / n


def test_null_comparison_shapes_and_seed():
    gen = torch.Generator().manual_seed(6)
    W = torch.randn(16, 16, dtype=torch.float64, generator=gen)
    Wt = W + 0.02 * torch.randn(16, 16, dtype=torch.float64, generator=gen)
    one = null_comparison(W, Wt, draws=2, seed=9)
    assert set(one) == {"observed", "gaussian", "spectrum"}
    assert one == null_comparison(W, Wt, draws=2, seed=9)
    assert set(one["gaussian"]) >= {"ds_rel_mean_abs", "ds_rel_mean_abs_sd", "rot_share"}
    with pytest.raises(ValueError, match="draws"):
        null_comparison(W, Wt, draws=0)


@pytest.mark.parametrize(
    "obs,null,expected",
    [(1.0, 1.0, 0.0), (math.e, 1.0, 1.0), (0.0, 1.0, None), (1.0, float("nan"), None)],
    ids=["equal", "e-times", "zero", "nan"],
)
def test_log_ratio(obs, null, expected):
    got = log_ratio(obs, null)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_null_rows_and_summary_on_checkpoints(tmp_path):
    """A rotation-only update (W -> W R) against its nulls: singular values do not move at all, so
    the observed |ds/s| is far below both nulls' and the summary's interval says so."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from spindoctor.spectral.null import null_rows, summarize_null

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(tmp_path / "ref")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2 and "proj" in name:
                small = torch.linalg.matrix_exp(0.05 * (lambda a: a - a.T)(torch.randn(p.shape[1], p.shape[1])))
                p.copy_(p @ small)  # right rotation: same singular values, turned V
    model.save_pretrained(tmp_path / "tuned")
    rows = null_rows(tmp_path / "ref", tmp_path / "tuned", draws=2)
    assert len(rows) == 8 and {r["kind"] for r in rows} == {"q_proj", "k_proj", "v_proj", "down_proj"}
    assert all(r["ds_rel_mean_abs"] < 1e-5 < r["gaussian_ds_rel_mean_abs"] for r in rows)
    summary = summarize_null(rows)
    ds = summary["overall"]["gaussian_ds_rel_mean_abs"]
    assert ds["hi"] < 0 and ds["n"] == 8 and ds["ratio"] < 1e-3
    assert set(summary["by_layer"]) == {"0", "1"}
