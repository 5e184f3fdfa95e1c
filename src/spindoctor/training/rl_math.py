"""The maths of the RL stage as small pure functions (no models, no I/O).

Reference behaviour (the settings of the authors of Jin et al.,
arXiv:2508.16546; docs/design.md, "RL"): their PPO treats one whole response
as one action. Its log-probability is the sum of the token log-probabilities,
with the tokens written before the formula weighted 0.5; a value head scores the state (the prompt) from the
final hidden state of its last token; advantages come from GAE over the turns
of a revision episode (gamma 0.9, lambda 0.95) and are normalised over the
buffer; policy and value losses are clipped at 0.1; no KL penalty.

The tensor functions take and return torch tensors (:func:`formula_start`
reads text, :func:`cosine_lr` and the ``*_from_moments`` functions take
numbers); shapes and units are in the docstrings. ``B`` is a batch of episodes or actions, ``T`` the turns of an
episode, ``L`` the tokens of a response.
"""

from __future__ import annotations

import math
import re

import torch

_PAPER_FORMULA_KEY = re.compile(r"""["']formula["']""")


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"shapes differ: {shapes}")


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 0.9,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the turns of each episode.

    Parameters
    ----------
    rewards : (B, T) float
        Reward of each turn (reward units: the game's table, +5 .. -5).
    values : (B, T) float
        Value-head estimate of each turn's state, same units.
    mask : (B, T) bool or {0, 1}
        1 for turns that were played. Played turns must come first in a row
        (an episode stops after a correct answer or after its last turn); the
        state after an episode's last played turn is terminal (value 0).
    gamma, lam : float
        Discount per turn and GAE lambda (reference: 0.9, 0.95).

    Returns
    -------
    advantages, returns : (B, T) float
        ``A_t = sum_k (gamma lam)^k delta_{t+k}`` with
        ``delta_t = r_t + gamma V_{t+1} - V_t`` and ``returns = A + V``
        (Schulman et al. 2016, eq. 16); 0 on masked turns.
    """
    _check_same_shape(rewards=rewards, values=values, mask=mask)
    if rewards.dim() != 2:
        raise ValueError(f"expected (B, T) tensors, got shape {tuple(rewards.shape)}")
    m = mask.to(rewards.dtype)
    if bool((m[:, 1:] > m[:, :-1]).any()):
        raise ValueError("mask must hold the played turns first in each row")
    n_turns = rewards.shape[1]
    adv = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(n_turns)):
        # next_value and next_adv are 0 past the last played turn (terminal).
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv[:, t] = (delta + gamma * lam * next_adv) * m[:, t]
        next_value = values[:, t] * m[:, t]
        next_adv = adv[:, t]
    return adv, (adv + values) * m


def masked_mean_var(x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[float, float, int]:
    """Mean, unbiased variance and count of the entries of ``x`` where ``mask`` is set."""
    flat = x[mask.bool()] if mask is not None else x.reshape(-1)
    n = flat.numel()
    if n == 0:
        return 0.0, 0.0, 0
    mean = flat.double().mean().item()
    var = flat.double().var(unbiased=True).item() if n > 1 else 0.0
    return mean, var, n


def whiten(
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    mean: float | None = None,
    var: float | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Normalise advantages over the buffer: ``(x - mean) / (std + eps)``.

    Parameters
    ----------
    x : (...) float
    mask : (...) bool, optional
        Entries that count for the statistics; masked-out entries come back 0.
    mean, var : float, optional
        Statistics of the whole buffer (e.g. gathered over processes); computed
        from ``x`` and ``mask`` (unbiased variance) when not given.
    eps : float
        Added to the standard deviation (reference: 1e-5).

    Returns
    -------
    (...) float, same shape as ``x``: zero mean and unit (sample) standard
    deviation over the masked entries, up to ``eps``. A single entry, or all
    entries equal, give zeros.
    """
    if mean is None or var is None:
        mean, var, _ = masked_mean_var(x, mask)
    out = (x - mean) / (math.sqrt(max(var, 0.0)) + eps)
    return out * mask.to(x.dtype) if mask is not None else out


def action_logprob(token_logp: torch.Tensor, token_weight: torch.Tensor) -> torch.Tensor:
    """Log-probability of a whole response as one action.

    Parameters
    ----------
    token_logp : (B, L) float
        log pi(token | context) in nats for each response token.
    token_weight : (B, L) float
        0 on padding, 1 on formula tokens, the reference's 0.5 on the tokens
        written before the formula (see :func:`prefix_token_weights`).

    Returns
    -------
    (B,) float: ``sum_l w_l log pi_l`` in nats.
    """
    _check_same_shape(token_logp=token_logp, token_weight=token_weight)
    return (token_logp * token_weight).sum(dim=-1)


def clipped_policy_loss(
    logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, clip: float = 0.1
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate (Schulman et al. 2017, eq. 7), to minimise.

    Parameters
    ----------
    logp_new, logp_old, advantages : (B,) float
        Action log-probabilities (nats) under the current and the rollout
        policy, and the (normalised) advantages.
    clip : float
        epsilon of the ratio clip (reference: 0.1).

    Returns
    -------
    loss : () float
        ``-mean(min(rho A, clip(rho, 1-eps, 1+eps) A))`` with ``rho = exp(logp_new - logp_old)``.
    stats : dict
        ``clipfrac`` (share of actions whose ratio left the clip range) and
        ``approx_kl`` (mean of ``(rho - 1) - log rho``, >= 0), both detached.
    """
    _check_same_shape(logp_new=logp_new, logp_old=logp_old, advantages=advantages)
    log_ratio = logp_new - logp_old
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages
    loss = -torch.min(unclipped, clipped).mean()
    with torch.no_grad():
        stats = {
            "clipfrac": ((ratio - 1.0).abs() > clip).float().mean(),
            "approx_kl": ((ratio - 1.0) - log_ratio).mean(),
        }
    return loss, stats


def clipped_value_loss(
    v_new: torch.Tensor, v_old: torch.Tensor, returns: torch.Tensor, clip: float = 0.1
) -> torch.Tensor:
    """Clipped value loss, to minimise (reference: PPO with value clipping).

    Parameters
    ----------
    v_new, v_old, returns : (B,) float
        Current and rollout value estimates and the GAE returns (reward units).
    clip : float
        How far ``v_new`` may move from ``v_old`` before the clipped branch
        applies (reference: 0.1).

    Returns
    -------
    () float: ``0.5 * mean(max((v_new - R)^2, (v_old + clip(v_new - v_old) - R)^2))``.
    """
    _check_same_shape(v_new=v_new, v_old=v_old, returns=returns)
    v_clipped = v_old + torch.clamp(v_new - v_old, -clip, clip)
    return 0.5 * torch.max((v_new - returns) ** 2, (v_clipped - returns) ** 2).mean()


def kl_to_reference(
    logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Per-token KL(pi || pi_ref) estimate, averaged over response tokens.

    Uses the unbiased, non-negative estimator ``exp(q) - q - 1`` with
    ``q = ref_logp - logp`` (Schulman 2020, "k3"; TRL GRPO's ``beta`` term).

    Parameters
    ----------
    logp, ref_logp : (B, L) float
        Token log-probabilities (nats) under the policy and the frozen reference.
    mask : (B, L) {0, 1}
        Response tokens that count.

    Returns
    -------
    () float, in nats per token; 0 when the two policies agree.
    """
    _check_same_shape(logp=logp, ref_logp=ref_logp, mask=mask)
    q = ref_logp - logp
    per_token = torch.exp(q) - q - 1.0
    m = mask.to(logp.dtype)
    return (per_token * m).sum() / m.sum().clamp(min=1.0)


def formula_start(fmt: str, response: str) -> int | None:
    """Character offset where the formula part of a response begins, or None.

    ``compact``: just after the ``|`` of the first line; ``paper``: at the
    ``"formula"`` key. The reference weights the log-probability of the tokens
    before it by 0.5 (:func:`prefix_token_weights`).
    """
    if fmt == "compact":
        first_line = response.split("\n", 1)[0]
        bar = first_line.find("|")
        return bar + 1 if bar >= 0 else None
    match = _PAPER_FORMULA_KEY.search(response)
    return match.start() if match else None


def prefix_token_weights(char_ends: list[int], formula_start: int | None, weight: float) -> list[float]:
    """Weights of the response tokens: ``weight`` before the formula, 1 from it on.

    Parameters
    ----------
    char_ends : list of int
        End offset (in characters of the decoded response) of each token.
    formula_start : int or None
        Character offset where the formula begins; None when the response holds
        no formula, in which case every token weighs 1.
    weight : float
        Weight of the tokens that end at or before ``formula_start`` (reference: 0.5).
    """
    if formula_start is None:
        return [1.0] * len(char_ends)
    return [weight if end <= formula_start else 1.0 for end in char_ends]


def cosine_lr(step: int, total: int, base: float, warmup: int = 0, floor: float = 0.0) -> float:
    """Learning rate at optimiser ``step``: linear warm-up, then cosine from ``base`` to ``floor``."""
    if total <= 0:
        return base
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + 0.5 * (base - floor) * (1.0 + math.cos(math.pi * progress))


def mean_var_from_moments(n: float, total: float, total_sq: float) -> tuple[float, float]:
    """Mean and unbiased variance from a count, a sum and a sum of squares.

    Used to whiten advantages over the whole buffer when it is spread over
    processes: each process sums ``(n, sum x, sum x^2)``, an all-reduce adds them.
    """
    if n <= 0:
        return 0.0, 0.0
    mean = total / n
    var = (total_sq - n * mean * mean) / (n - 1) if n > 1 else 0.0
    return mean, max(var, 0.0)


def explained_variance_from_moments(n: float, sums: tuple[float, float], sums_sq: tuple[float, float]) -> float | None:
    """``1 - Var(returns - values) / Var(returns)`` from summed moments (processes add theirs).

    Parameters
    ----------
    n : number of (value, return) pairs
    sums : (sum of returns, sum of residuals returns - values)
    sums_sq : (sum of squared returns, sum of squared residuals)

    Returns
    -------
    float or None
        1 when the value head predicts every return, 0 when it does no better
        than the mean return, negative when worse; None when fewer than two
        pairs or the returns do not vary (undefined).
    """
    _, var_ret = mean_var_from_moments(n, sums[0], sums_sq[0])
    _, var_err = mean_var_from_moments(n, sums[1], sums_sq[1])
    if n < 2 or var_ret == 0.0:
        return None
    return 1.0 - var_err / var_ret


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float | None:
    """Explained variance of a value head's predictions ``values`` (N,) of ``returns`` (N,),
    as CleanRL logs it; see :func:`explained_variance_from_moments`."""
    _check_same_shape(values=values, returns=returns)
    ret, err = returns.double().flatten(), (returns - values).double().flatten()
    return explained_variance_from_moments(
        ret.numel(), (float(ret.sum()), float(err.sum())), (float((ret**2).sum()), float((err**2).sum()))
    )
