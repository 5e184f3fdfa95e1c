"""Hand-by-hand comparison of two probes of the same hands (docs/design.md, "Evidence").

A probe row (``metrics.jsonl``, ``ProbeResult.to_dict()``) keeps ``per_hand``:
the ordered hands' digest, a 0/1 string of correctness and each hand's mean
NLL per token. Two rows with the same digest answered the same hands in the
same order, so their per-hand differences give paired intervals
(:mod:`spindoctor.stats`); rows of different hands cannot be paired and are
refused.
"""

from __future__ import annotations

import numpy as np

from spindoctor.stats import paired_difference, recovered_share


def per_hand_arrays(row: dict, what: str = "correct") -> np.ndarray:
    """One probe row's per-hand ``correct`` (0/1), ``episode_correct``, ``reward`` or ``loss``, float64 (n,).

    Raises
    ------
    ValueError
        The row has no per-hand record of ``what`` (probes written before
        per-hand records, or ``loss`` off).
    """
    hands = row.get("per_hand") or {}
    value = hands.get(what)
    if value is None:
        raise ValueError(f"probe row (split {row.get('split')}, step {row.get('step')}) has no per-hand {what!r}")
    if isinstance(value, str):
        return np.frombuffer(value.encode(), dtype=np.uint8).astype(np.float64) - ord("0")
    if any(v is None for v in value):
        raise ValueError(f"probe row (split {row.get('split')}, step {row.get('step')}) has hands with no {what!r}")
    return np.asarray(value, dtype=np.float64)


def _check_paired(*rows: dict) -> None:
    digests = {(row.get("per_hand") or {}).get("digest") for row in rows}
    if None in digests:
        raise ValueError("a probe row has no per-hand record; it cannot be paired")
    if len(digests) > 1:
        raise ValueError("probe rows answered different hands (per-hand digests differ); they cannot be paired")


def compare_probes(before: dict, after: dict, *, seed: int = 0) -> dict:
    """Paired change from ``before`` to ``after`` on the same hands of one split.

    Parameters
    ----------
    before, after : dict
        Probe rows of the same split with equal ``per_hand["digest"]``.
    seed : int
        Seed of the bootstrap resampling.

    Returns
    -------
    dict
        ``{"n", "acc": PairedDiff dict, "reward", "loss", "episode_acc"}``,
        the last three PairedDiff dicts or None where the rows lack them;
        differences are ``after - before`` (accuracy as a fraction, reward in
        the game's points, loss in nats per token: negative is better).
    """
    _check_paired(before, after)
    out: dict = {"n": int(per_hand_arrays(before).size)}
    out["acc"] = paired_difference(per_hand_arrays(before), per_hand_arrays(after), seed=seed).to_dict()
    for key, what in (("reward", "reward"), ("loss", "loss"), ("episode_acc", "episode_correct")):
        try:
            a, b = per_hand_arrays(before, what), per_hand_arrays(after, what)
        except ValueError:
            out[key] = None
            continue
        out[key] = paired_difference(a, b, seed=seed).to_dict()
    return out


def recovered(tuned: dict, point: dict, reference: dict, *, seed: int = 0) -> dict:
    """Share of the reference-to-tuned loss that ``point`` wins back, for accuracy and loss proxy.

    Parameters
    ----------
    tuned, point, reference : dict
        Probe rows of one split on the same hands: the degraded model (SFT
        end), the candidate (a restored model, an RL run) and the model it
        degraded from.

    Returns
    -------
    dict
        ``{"acc": Share dict, "loss": Share dict or None}`` (see
        :class:`spindoctor.stats.Share`; the loss share is computed on the
        negated loss, so 1 means the point's loss equals the reference's).
    """
    _check_paired(tuned, point, reference)
    out = {"acc": recovered_share(*(per_hand_arrays(r) for r in (tuned, point, reference)), seed=seed).to_dict()}
    try:
        losses = [-per_hand_arrays(r, "loss") for r in (tuned, point, reference)]
    except ValueError:
        out["loss"] = None
    else:
        out["loss"] = recovered_share(*losses, seed=seed).to_dict()
    return out
