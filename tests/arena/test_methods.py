"""The arena's weight-space methods: identities, golden values from float64 numpy, bad inputs."""

import numpy as np
import pytest
import torch

from spindoctor.arena.methods import (
    check_states,
    dg_omega,
    dg_rank,
    dg_threshold,
    interpolate,
    keep_top_r,
    matrix_state,
    soup,
    wise_ft,
)


def _state(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.randn(6, 4, generator=g), "a.bias": torch.randn(6, generator=g),
            "b.weight": torch.randn(3, 6, generator=g) * 1e-3}


def _bitwise(x: torch.Tensor, y: torch.Tensor) -> bool:
    return x.dtype == y.dtype and torch.equal(x.view(torch.int32), y.view(torch.int32))


def test_wise_ft_ends_are_bitwise():
    base, end = _state(0), _state(1)
    base["a.bias"][0] = -0.0  # a lerp would turn -0.0 into 0.0: a = 0 must not
    for a, want in ((0, base), (1, end), (0.0, base), (1.0, end)):
        got = wise_ft(base, end, a)
        assert all(_bitwise(got[k], want[k]) for k in want)


def test_wise_ft_and_interpolate_golden():
    base, end = _state(0), _state(1)
    for fn in (wise_ft, interpolate):
        got = fn(base, end, 0.3)
        for k in base:
            gold = 0.7 * base[k].double().numpy() + 0.3 * end[k].double().numpy()
            assert got[k].dtype == torch.float32
            np.testing.assert_allclose(got[k].numpy(), gold, rtol=1e-6, atol=1e-7)


def test_soup_of_one_is_that_checkpoint_and_golden():
    s = _state(2)
    one = soup([s])
    assert all(_bitwise(one[k], s[k]) for k in s)
    states = [_state(i) for i in range(3)]
    got = soup(states)
    for k in s:
        gold = np.mean([st[k].double().numpy() for st in states], axis=0)
        np.testing.assert_allclose(got[k].numpy(), gold.astype(np.float32), rtol=0, atol=0)


def test_dg_omega_values():
    assert dg_omega(1.0) == pytest.approx(2.86, abs=0.01)  # 4/sqrt(3) * sqrt(median MP) ~ 2.858
    assert dg_omega(0.5) == pytest.approx(0.56 / 8 - 0.95 / 4 + 0.91 + 1.43)
    with pytest.raises(ValueError, match="beta"):
        dg_omega(0.0)


def _low_rank_plus_noise(m, n, r, noise, seed=0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, r)))
    V, _ = np.linalg.qr(rng.standard_normal((n, r)))
    dW = (U * np.linspace(10, 5, r)) @ V.T + noise * rng.standard_normal((m, n))
    base = rng.standard_normal((m, n))
    return torch.tensor(base, dtype=torch.float32), torch.tensor(base + dW, dtype=torch.float32)


@pytest.mark.parametrize("r,shape", [(3, (64, 48)), (1, (40, 40)), (5, (32, 96))])
def test_dg_threshold_keeps_the_planted_rank(r, shape):
    W_base, W_end = _low_rank_plus_noise(*shape, r, noise=0.01)
    dW = (W_end.double() - W_base.double()).numpy()
    s = np.linalg.svd(dW, compute_uv=False)
    assert dg_rank(s, shape) == r
    got = dg_threshold(W_base, W_end)
    assert np.linalg.matrix_rank((got.double() - W_base.double()).numpy(), tol=1e-3) == r


def test_dg_threshold_golden_against_numpy():
    W_base, W_end = _low_rank_plus_noise(30, 20, 4, noise=0.05, seed=3)
    dW = W_end.double().numpy() - W_base.double().numpy()
    U, s, Vh = np.linalg.svd(dW, full_matrices=False)
    beta = 20 / 30
    tau = (0.56 * beta**3 - 0.95 * beta**2 + 1.82 * beta + 1.43) * np.median(s)
    k = int((s > tau).sum())
    gold = W_base.double().numpy() + (U[:, :k] * s[:k]) @ Vh[:k]
    got = dg_threshold(W_base, W_end)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), gold, rtol=1e-5, atol=1e-5)


def test_keep_top_r_full_rank_returns_end_and_zero_returns_base():
    W_base, W_end = _low_rank_plus_noise(12, 8, 2, noise=0.1)
    np.testing.assert_allclose(keep_top_r(W_base, W_end, 8).numpy(), W_end.numpy(), atol=1e-5)
    np.testing.assert_allclose(keep_top_r(W_base, W_end, 99).numpy(), W_end.numpy(), atol=1e-5)
    np.testing.assert_allclose(keep_top_r(W_base, W_end, 0).numpy(), W_base.numpy(), atol=0)
    U, s, Vh = np.linalg.svd(W_end.double().numpy() - W_base.double().numpy(), full_matrices=False)
    gold = W_base.double().numpy() + (U[:, :2] * s[:2]) @ Vh[:2]
    np.testing.assert_allclose(keep_top_r(W_base, W_end, 2).numpy(), gold, atol=1e-5)


def test_mismatches_name_the_tensor():
    base, end = _state(0), _state(1)
    end["b.weight"] = torch.zeros(3, 5)
    with pytest.raises(ValueError, match="'b.weight'"):
        wise_ft(base, end, 0.5)
    del end["b.weight"]
    with pytest.raises(ValueError, match="'b.weight' is missing from end"):
        interpolate(base, end, 0.5)
    with pytest.raises(ValueError, match="'b.weight'"):
        soup([base, end])
    with pytest.raises(ValueError, match="empty"):
        soup([])
    with pytest.raises(ValueError, match="shape"):
        dg_threshold(torch.zeros(3, 4), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="r must be"):
        keep_top_r(torch.zeros(3, 4), torch.zeros(3, 4), -1)
    with pytest.raises(ValueError, match="a must be"):
        wise_ft(base, _state(1), float("nan"))
    with pytest.raises(ValueError, match="'a.bias' is not a matrix"):
        matrix_state(base, _state(1), ["a.bias"], dg_threshold)
    with pytest.raises(ValueError, match="empty"):
        check_states({})


def test_matrix_state_keeps_other_tensors_of_the_end():
    base, end = _state(0), _state(1)
    got = matrix_state(base, end, ["a.weight"], lambda b, e: keep_top_r(b, e, 0))
    assert torch.equal(got["a.bias"], end["a.bias"]) and torch.equal(got["b.weight"], end["b.weight"])
    torch.testing.assert_close(got["a.weight"], base["a.weight"])
