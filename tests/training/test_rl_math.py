"""The RL maths against hand-worked tensors and an independent float64 computation."""

from __future__ import annotations

import math

import pytest
import torch

from spindoctor.training.rl_math import (
    action_logprob,
    clipped_policy_loss,
    clipped_value_loss,
    cosine_lr,
    explained_variance,
    explained_variance_from_moments,
    formula_start,
    gae,
    kl_to_reference,
    masked_mean_var,
    mean_var_from_moments,
    prefix_token_weights,
    whiten,
)


def gae_reference(rewards, values, n_played, gamma, lam):
    """Independent float64 GAE: explicit discounted sums of TD errors (no recursion)."""
    adv = [0.0] * len(rewards)
    for t in range(n_played):
        total = 0.0
        for k in range(t, n_played):
            v_next = values[k + 1] if k + 1 < n_played else 0.0
            delta = rewards[k] + gamma * v_next - values[k]
            total += (gamma * lam) ** (k - t) * delta
        adv[t] = total
    return adv


# ---------------------------------------------------------------- GAE
def test_gae_hand_worked_two_turns():
    # delta_1 = 5 - 1 = 4; delta_0 = -1 + 0.9 * 1 - 0.5 = -0.6; A_0 = -0.6 + 0.855 * 4 = 2.82
    adv, ret = gae(torch.tensor([[-1.0, 5.0]]), torch.tensor([[0.5, 1.0]]), torch.tensor([[1, 1]]), 0.9, 0.95)
    assert adv.tolist()[0] == pytest.approx([2.82, 4.0])
    assert ret.tolist()[0] == pytest.approx([3.32, 5.0])


@pytest.mark.parametrize(
    "n_played", [1, 2, 3, 5], ids=["single-turn", "two-turns", "three-turns", "all-five"]
)
def test_gae_matches_float64_reference(n_played):
    g = torch.Generator().manual_seed(n_played)
    rewards = torch.randn(1, 5, generator=g, dtype=torch.float64) * 3
    values = torch.randn(1, 5, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1] * n_played + [0] * (5 - n_played)])
    adv, ret = gae(rewards, values, mask, 0.9, 0.95)
    expected = gae_reference(rewards[0].tolist(), values[0].tolist(), n_played, 0.9, 0.95)
    assert adv[0].tolist() == pytest.approx(expected, abs=1e-12)
    assert ret[0, :n_played].tolist() == pytest.approx((adv + values)[0, :n_played].tolist())
    assert adv[0, n_played:].abs().sum() == 0 and ret[0, n_played:].abs().sum() == 0


def test_gae_single_turn_is_reward_minus_value():
    r, v = torch.tensor([[5.0], [-3.0]]), torch.tensor([[1.5], [-1.0]])
    adv, ret = gae(r, v, torch.ones(2, 1), 0.9, 0.95)
    assert adv.flatten().tolist() == pytest.approx([3.5, -2.0])
    assert ret.flatten().tolist() == pytest.approx([5.0, -3.0])


def test_gae_lambda_one_gamma_one_is_monte_carlo():
    r, v = torch.tensor([[-1.0, -2.0, 5.0]]), torch.tensor([[0.3, 0.1, 0.2]])
    adv, ret = gae(r, v, torch.ones(1, 3), 1.0, 1.0)
    assert ret[0].tolist() == pytest.approx([2.0, 3.0, 5.0])


@pytest.mark.parametrize(
    "mask, shape_ok",
    [([[0, 1]], True), ([[1, 0, 1]], True), ([[1, 1]], False)],
    ids=["gap-first", "gap-middle", "shape-mismatch"],
)
def test_gae_rejects_bad_input(mask, shape_ok):
    m = torch.tensor(mask)
    r = torch.zeros(m.shape) if shape_ok else torch.zeros(1, 3)
    with pytest.raises(ValueError):
        gae(r, torch.zeros(m.shape), m)


# ---------------------------------------------------------------- whitening
def test_whiten_hand_worked():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 100.0])
    mask = torch.tensor([1, 1, 1, 1, 0])
    out = whiten(x, mask)
    std = math.sqrt(5.0 / 3.0)  # unbiased std of 1, 2, 3, 4
    assert out.tolist() == pytest.approx([(v - 2.5) / (std + 1e-5) for v in (1, 2, 3, 4)] + [0.0], rel=1e-6)
    kept = out[:4].double()
    assert kept.mean().item() == pytest.approx(0.0, abs=1e-7)
    assert kept.std().item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("x", [[2.0, 2.0, 2.0], [7.0]], ids=["constant", "single"])
def test_whiten_degenerate_gives_zeros(x):
    assert whiten(torch.tensor(x)).abs().max().item() == 0.0


def test_moments_match_direct_statistics():
    x = torch.tensor([0.5, -1.0, 2.0, 4.0, 3.5], dtype=torch.float64)
    mean, var, n = masked_mean_var(x)
    m2, v2 = mean_var_from_moments(n, x.sum().item(), (x**2).sum().item())
    assert (m2, v2) == pytest.approx((mean, var))
    assert mean_var_from_moments(0, 0.0, 0.0) == (0.0, 0.0)


# ---------------------------------------------------------------- losses
def test_clipped_policy_loss_hand_worked():
    logp_new = torch.log(torch.tensor([1.2, 0.8, 1.05])).requires_grad_()
    adv = torch.tensor([1.0, 1.0, -2.0])
    loss, stats = clipped_policy_loss(logp_new, torch.zeros(3), adv, clip=0.1)
    # min(1.2, 1.1) = 1.1; min(0.8, 0.9) = 0.8; min(-2.1, -2.1) = -2.1 -> loss = -(-0.2 / 3)
    assert loss.item() == pytest.approx(0.2 / 3, rel=1e-6)
    assert stats["clipfrac"].item() == pytest.approx(2 / 3)
    loss.backward()
    # clipped sample has no gradient; d/dlogp of -rho A / 3 is -rho A / 3
    assert logp_new.grad.tolist() == pytest.approx([0.0, -0.8 / 3, 2.1 / 3], rel=1e-5)


def test_clipped_policy_loss_on_policy_is_minus_mean_advantage():
    adv = torch.tensor([0.5, -1.5, 2.0])
    loss, stats = clipped_policy_loss(torch.zeros(3), torch.zeros(3), adv)
    assert loss.item() == pytest.approx(-adv.mean().item())
    assert stats["approx_kl"].item() == 0.0 and stats["clipfrac"].item() == 0.0


def test_clipped_value_loss_hand_worked():
    v_new = torch.tensor([0.5, 0.05])
    # sample 1: max((0.5-1)^2, (0.1-1)^2) = 0.81; sample 2: (0.05-1)^2 = 0.9025
    loss = clipped_value_loss(v_new, torch.zeros(2), torch.ones(2), clip=0.1)
    assert loss.item() == pytest.approx(0.5 * (0.81 + 0.9025) / 2)


def test_kl_to_reference_hand_worked_and_zero():
    logp = torch.log(torch.tensor([[0.5, 0.9]]))
    ref = torch.log(torch.tensor([[0.25, 0.1]]))
    mask = torch.tensor([[1.0, 0.0]])
    # q = log(0.25 / 0.5); exp(q) - q - 1 = 0.5 + log 2 - 1
    assert kl_to_reference(logp, ref, mask).item() == pytest.approx(0.5 + math.log(2) - 1, rel=1e-6)
    assert kl_to_reference(logp, logp, torch.ones(1, 2)).item() == 0.0


def test_action_logprob_weights_tokens():
    token_logp = torch.tensor([[-1.0, -2.0, -3.0, -4.0]])
    weights = torch.tensor([[0.5, 0.5, 1.0, 0.0]])
    assert action_logprob(token_logp, weights).item() == pytest.approx(-0.5 - 1.0 - 3.0)


@pytest.mark.parametrize(
    "fmt, response, start",
    [
        ("compact", " 10 5 2 2|10*2+2+2", 10),
        ("compact", " 10 5 2 2 no bar", None),
        ("paper", '{"cards": ["K"], "number": [10], "formula": "1+2=3"}', 33),
        ("paper", "no formula key", None),
    ],
    ids=["compact", "compact-no-bar", "paper", "paper-no-key"],
)
def test_formula_start(fmt, response, start):
    assert formula_start(fmt, response) == start


def test_prefix_token_weights():
    # tokens end at chars 3, 6, 10, 12; the formula starts at char 10
    assert prefix_token_weights([3, 6, 10, 12], 10, 0.5) == [0.5, 0.5, 0.5, 1.0]
    assert prefix_token_weights([3, 6], None, 0.5) == [1.0, 1.0]


def test_cosine_lr():
    assert cosine_lr(0, 100, 1.0) == pytest.approx(1.0)
    assert cosine_lr(50, 100, 1.0, floor=0.2) == pytest.approx(0.6)
    assert cosine_lr(100, 100, 1.0, floor=0.2) == pytest.approx(0.2)
    assert cosine_lr(0, 100, 1.0, warmup=4) == pytest.approx(0.25)


def test_explained_variance_matches_an_independent_numpy_computation():
    import numpy as np

    rng = np.random.default_rng(0)
    returns = rng.normal(size=50)
    values = returns + rng.normal(scale=0.5, size=50)
    expected = 1.0 - np.var(returns - values) / np.var(returns)  # CleanRL's formula
    got = explained_variance(torch.tensor(values, dtype=torch.float32), torch.tensor(returns, dtype=torch.float32))
    assert got == pytest.approx(expected, abs=1e-6)
    assert explained_variance(torch.tensor(returns), torch.tensor(returns)) == pytest.approx(1.0)
    mean = torch.full((50,), float(returns.mean()), dtype=torch.float64)
    assert explained_variance(mean, torch.tensor(returns)) == pytest.approx(0.0, abs=1e-12)


def test_explained_variance_from_summed_moments_equals_the_whole_buffer():
    g = torch.Generator().manual_seed(1)
    returns, values = torch.randn(40, generator=g, dtype=torch.float64), torch.randn(40, generator=g, dtype=torch.float64)

    def moments(r, v):
        e = r - v
        return [r.numel(), float(r.sum()), float(e.sum()), float((r**2).sum()), float((e**2).sum())]

    a, b = moments(returns[:13], values[:13]), moments(returns[13:], values[13:])  # two "processes"
    n, s_r, s_e, q_r, q_e = (x + y for x, y in zip(a, b, strict=True))
    assert explained_variance_from_moments(n, (s_r, s_e), (q_r, q_e)) == pytest.approx(
        explained_variance(values, returns), abs=1e-12)


def test_explained_variance_is_undefined_without_spread():
    assert explained_variance(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 3.0])) is None
    assert explained_variance(torch.tensor([1.0]), torch.tensor([2.0])) is None
    with pytest.raises(ValueError, match="shapes differ"):
        explained_variance(torch.zeros(3), torch.zeros(4))
