"""Drift metrics against independent float64 computations, invariants and degenerate inputs."""

import math

import numpy as np
import pytest
import torch

from spindoctor.spectral.metrics import (
    best_match,
    energy_split,
    per_index_angles,
    principal_angles,
    resolve_k,
    snap_k,
    tie_groups,
)
from spindoctor.spectral.rotate import givens_rotate
from spindoctor.spectral.run import matrix_metrics
from spindoctor.spectral.svd import Factorization, factorize, sign_fix
from spindoctor.spectral.tensors import parse_name

# Stated tolerances (radians): self-comparison and known rotations, per factor dtype.
ANGLE_TOL = {"float32": 1e-3, "float64": 1e-6}
SHAPES = [(24, 24), (40, 16), (16, 40)]
SHAPE_IDS = ["square", "tall", "wide"]


def spectrum_matrix(m, n, seed=0, s=None):
    """W = U diag(s) V^T with orthonormal U, V (numpy float64) and distinct s unless given."""
    rng = np.random.default_rng(seed)
    r = min(m, n)
    U, _ = np.linalg.qr(rng.standard_normal((m, r)))
    V, _ = np.linalg.qr(rng.standard_normal((n, r)))
    s = np.linspace(3.0, 0.5, r) if s is None else np.asarray(s, dtype=float)
    return torch.from_numpy((U * s) @ V.T)


def overlaps(f_ref, f_t):
    return f_ref.U.T @ f_t.U, f_ref.Vh @ f_t.Vh.T


def row_for(W_ref, W_t, dtype, ks=(0.25, 0.5, 1.0), method="auto"):
    fa, fb = factorize(W_ref, dtype, method), factorize(W_t, dtype, method)
    return matrix_metrics(parse_name("model.layers.0.self_attn.q_proj.weight"), W_ref.float(), W_t.float(),
                          fa, fb, list(ks), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("t", [0.003, 0.1, 0.7, 1.5], ids=lambda t: f"t={t}")
def test_givens_rotation_gives_angle_t_and_same_singular_values(dtype, shape, t):
    m, n = shape
    W = spectrum_matrix(m, n)
    r = min(m, n)
    a, b = 1, r - 2  # plane of u_1 and u_{r-2}
    W2 = givens_rotate(W, t, a, b)
    row, spec = row_for(W, W2, dtype, ks=[a + 1, b])
    tol = ANGLE_TOL[dtype]
    assert torch.allclose(spec["s_ref"].double(), spec["s_tuned"].double(), rtol=1e-5 if dtype == "float32" else 1e-12)
    ang_u = spec["angle_u"].double()
    assert abs(ang_u[a] - t) < tol and abs(ang_u[b] - t) < tol
    others = torch.cat([ang_u[:a], ang_u[a + 1 : b], ang_u[b + 1 :]])
    assert float(others.max()) < tol
    assert float(spec["angle_v"].max()) < tol  # R acts on the left only
    # top-(a+1) subspace holds u_a but not u_b: one principal angle t, the rest 0
    pa = spec[f"pa_u_k{a + 1}"].double()
    assert abs(pa.max() - t) < tol and float(torch.cat([pa[:-1], pa.new_zeros(1)]).max()) < tol
    assert row[f"k{b}_u_max"] == pytest.approx(t, abs=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_matrix_against_itself_is_zero(dtype, shape):
    W = spectrum_matrix(*shape, seed=3)
    row, spec = row_for(W, W.clone(), dtype)
    tol = ANGLE_TOL[dtype]
    for key, val in spec.items():
        if key.startswith(("angle", "best", "pa_")):
            assert float(val.max()) < tol, key
    assert row["ds_max_abs"] == 0 and row["rel_update"] == 0
    assert math.isnan(row["diag_share"])  # dW == 0: the split is undefined, not 0 or 1


def numpy_principal_angles(A, B):
    """Independent float64 reference (SciPy's subspace_angles recipe, in numpy)."""
    QA, QB = np.linalg.qr(A)[0], np.linalg.qr(B)[0]
    M = QA.T @ QB
    cos = np.linalg.svd(M, compute_uv=False)
    sin = np.linalg.svd(QB - QA @ M, compute_uv=False)
    theta = np.where(cos**2 >= 0.5, np.arcsin(np.clip(sin[::-1][: len(cos)], 0, 1)), np.arccos(np.clip(cos, 0, 1)))
    return np.sort(theta)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("k", [1, 5, 12])
def test_principal_angles_match_float64_reference(dtype, shape, k):
    W = spectrum_matrix(*shape, seed=1)
    W2 = W + 0.05 * spectrum_matrix(*shape, seed=2, s=np.linspace(1, 0.1, min(shape)))
    fa, fb = factorize(W, dtype), factorize(W2, dtype)
    Ua, _, Vha = np.linalg.svd(W.numpy(), full_matrices=False)
    Ub, _, Vhb = np.linalg.svd(W2.numpy(), full_matrices=False)
    M_u, M_v = overlaps(fa, fb)
    r = min(shape)
    got_u = principal_angles(M_u, k, complete=r == shape[0]).double().numpy()
    got_v = principal_angles(M_v, k, complete=r == shape[1]).double().numpy()
    tol = 5 * ANGLE_TOL[dtype]
    np.testing.assert_allclose(got_u, numpy_principal_angles(Ua[:, :k], Ub[:, :k]), atol=tol)
    np.testing.assert_allclose(got_v, numpy_principal_angles(Vha[:k].T, Vhb[:k].T), atol=tol)
    # per-index angles against arccos|<u_i, u'_i>| in float64
    ref = np.arccos(np.clip(np.abs(np.sum(Ua * Ub, axis=0)), 0, 1))
    g = tie_groups(fa.S, 1e-10)
    got = per_index_angles(M_u, g, complete=r == shape[0]).double().numpy()
    np.testing.assert_allclose(got, ref, atol=math.sqrt(ANGLE_TOL[dtype]) if dtype == "float32" else 1e-6)


def test_sign_flips_do_not_fake_rotation():
    W = spectrum_matrix(20, 30, seed=4)
    f = factorize(W, "float64")
    signs = torch.tensor([(-1.0) ** i for i in range(f.rank)], dtype=torch.float64)
    g = Factorization(f.U * signs, f.S, f.Vh * signs[:, None], "svd")
    M_u, M_v = overlaps(f, g)
    groups = tie_groups(f.S, 1e-10)
    assert float(per_index_angles(M_u, groups, True).max()) < 1e-6
    assert float(per_index_angles(M_v, groups, False).max()) < 1e-6
    assert float(principal_angles(M_v, 7, False).max()) < 1e-6
    assert float(best_match(M_u)[0].max()) < 1e-6


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_permutation_within_ties_does_not_fake_rotation(dtype):
    s = [5.0, 3.0, 3.0, 3.0, 2.0, 1.0]
    W = spectrum_matrix(10, 6, seed=5, s=s)
    f = factorize(W, dtype)
    # another valid SVD of the same W: mix the tied block with an orthogonal Q (a permutation + rotation)
    Q = torch.tensor([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=f.U.dtype)
    Q = Q @ torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0)).to(f.U.dtype))[0]
    U2, Vh2 = f.U.clone(), f.Vh.clone()
    U2[:, 1:4], Vh2[1:4] = f.U[:, 1:4] @ Q, Q.T @ f.Vh[1:4]
    g = Factorization(U2, f.S, Vh2, "svd")
    assert torch.allclose((g.U * g.S) @ g.Vh, W.to(g.U.dtype), atol=1e-5)
    M_u, M_v = overlaps(f, g)
    groups = tie_groups(f.S, 1e-5)
    assert groups.tolist() == [0, 1, 1, 1, 2, 3]
    assert float(per_index_angles(M_u, groups, False).max()) < ANGLE_TOL[dtype]
    assert float(per_index_angles(M_v, groups, True).max()) < ANGLE_TOL[dtype]
    k = snap_k(2, groups)  # k=2 would cut the tie; it moves to the end of the group
    assert k == 4
    assert float(principal_angles(M_u, k, False).max()) < ANGLE_TOL[dtype]


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_gram_route_matches_float64_svd(shape):
    W = spectrum_matrix(*shape, seed=6, s=np.geomspace(100, 0.1, min(shape)))
    W = W.float().double()  # the float32 input is the matrix being factorised
    f = factorize(W.float(), "float32", "gram")
    assert f.method == "gram"
    U, S, Vh = np.linalg.svd(W.numpy(), full_matrices=False)
    np.testing.assert_allclose(f.S.double().numpy(), S, rtol=1e-6)
    cos_u = np.abs(np.sum(f.U.double().numpy() * U, axis=0))
    cos_v = np.abs(np.sum(f.Vh.double().numpy() * Vh, axis=1))
    assert np.arccos(np.clip(cos_u, 0, 1)).max() < ANGLE_TOL["float32"]
    assert np.arccos(np.clip(cos_v, 0, 1)).max() < ANGLE_TOL["float32"]
    assert torch.allclose((f.U.double() * f.S.double()) @ f.Vh.double(), W, atol=1e-4)


def test_sign_convention_is_deterministic():
    W = spectrum_matrix(12, 9, seed=7)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    a = sign_fix(U, Vh)
    b = sign_fix(-U, -Vh)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    idx = a[0].abs().argmax(0)
    assert bool((a[0][idx, torch.arange(a[0].shape[1])] > 0).all())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "W",
    [torch.zeros(6, 4), torch.outer(torch.arange(1.0, 7), torch.ones(4)), torch.randn(1, 8), torch.randn(8, 1)],
    ids=["zero", "rank1", "row", "column"],
)
def test_degenerate_matrices(dtype, W):
    row, spec = row_for(W, W.clone(), dtype, ks=[0.5, 1.0])
    assert row["rel_update"] == 0
    assert all(math.isfinite(float(v.max())) for v in spec.values())
    f = factorize(W, dtype)
    assert torch.allclose((f.U.double() * f.S.double()) @ f.Vh.double(), W.double(), atol=1e-5)


def test_energy_split_diagonal_and_rotational():
    W = spectrum_matrix(10, 8, seed=8)
    f = factorize(W, "float64")
    dW_diag = (f.U * torch.tensor([0.1] * 8, dtype=torch.float64)) @ f.Vh  # rescales s only
    d, rot = energy_split(f.U, f.Vh, dW_diag)
    assert d == pytest.approx(1.0, abs=1e-12) and rot == pytest.approx(0.0, abs=1e-12)
    dW_rot = 0.1 * torch.outer(f.U[:, 0], f.Vh[1])  # couples u_0 with v_1: off-diagonal
    d, rot = energy_split(f.U, f.Vh, dW_rot)
    assert d == pytest.approx(0.0, abs=1e-12) and rot == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    "spec,r,expected",
    [(0.25, 576, 144), (0.5, 192, 96), (1.0, 7, 7), (0.01, 10, 1), (64, 32, 32), (3, 10, 3)],
    ids=["quarter", "half", "full", "tiny-fraction", "count-clipped", "count"],
)
def test_resolve_k(spec, r, expected):
    assert resolve_k(spec, r) == expected


def test_randomized_topk_reports_error():
    W = spectrum_matrix(60, 40, seed=9, s=np.geomspace(10, 0.01, 40))
    f = factorize(W.float(), "float32", "randomized", rank=8)
    assert f.rank == 8 and f.error is not None
    exact = float(np.sqrt(np.sum(np.geomspace(10, 0.01, 40)[8:] ** 2) / np.sum(np.geomspace(10, 0.01, 40) ** 2)))
    assert f.error == pytest.approx(exact, rel=1e-2)  # the residual is the tail energy
    np.testing.assert_allclose(f.S.numpy(), np.geomspace(10, 0.01, 40)[:8], rtol=1e-3)


def test_energy_split_from_overlaps_matches_direct():
    from spindoctor.spectral.metrics import energy_split_from_overlaps

    W = spectrum_matrix(12, 20, seed=10)
    W2 = W + 0.05 * spectrum_matrix(12, 20, seed=11)
    fa, fb = factorize(W, "float64"), factorize(W2, "float64")
    M_u, M_v = overlaps(fa, fb)
    dW = W2 - W
    direct = energy_split(fa.U, fa.Vh, dW)
    via = energy_split_from_overlaps(M_u, M_v, fa.S, fb.S, float(dW.square().sum()))
    assert via == pytest.approx(direct, abs=1e-10)
