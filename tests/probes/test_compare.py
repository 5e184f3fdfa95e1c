"""Per-hand probe records and the paired comparison of two probes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spindoctor.probes import ProbeConfig, metrics_row, probe_hands, probe_model
from spindoctor.probes.compare import compare_probes, per_hand_arrays, recovered
from spindoctor.probes.core import hands_digest
from spindoctor.stats import paired_difference


def row(correct: str, loss=None, digest="d1", split="ood") -> dict:
    return {"split": split, "step": 0, "per_hand": {"digest": digest, "correct": correct, "loss": loss}}


def test_probe_keeps_per_hand_records_that_add_up(tiny_organism_dir):
    from spindoctor.models.load import load_causal_lm

    model, tok = load_causal_lm(tiny_organism_dir)
    cfg = ProbeConfig(n=16, max_new_tokens=6, max_turns=2)
    res = probe_model(model, tok, cfg)
    for split, result in res.items():
        hands = result.per_hand
        assert hands["digest"] == hands_digest(probe_hands(split, 16, 0))
        assert len(hands["correct"]) == 16 and set(hands["correct"]) <= {"0", "1"}
        assert hands["correct"].count("1") / 16 == result.acc
        assert len(hands["reward"]) == 16 and sum(hands["reward"]) / 16 == pytest.approx(result.reward)
        assert hands["episode_correct"].count("1") / 16 == result.episode_acc
        assert len(hands["loss"]) == 16 and all(x > 0 for x in hands["loss"])
        back = metrics_row("sft", 3, result)
        assert per_hand_arrays(back, "loss").shape == (16,)


def test_per_hand_losses_weight_to_the_probe_loss(tiny_organism_dir):
    """Per-hand means times their token counts sum to the token-weighted probe loss."""
    from spindoctor.game.formats import render_response
    from spindoctor.models.generate import completion_token_ids, sequence_nll, teacher_forced_nll
    from spindoctor.models.load import load_causal_lm
    from spindoctor.probes.sets import gold_formula

    model, tok = load_causal_lm(tiny_organism_dir)
    hands = probe_hands("id", 9, 0)
    seqs = [completion_token_ids(tok, [{"role": "user", "content": "R10 5 5 5 1 =24:"}],
                                 render_response("compact", h.cards, h.rule, gold_formula(h, 0))) for h in hands]
    per = sequence_nll(model, tok, seqs, 4, 2**20)
    total, count = teacher_forced_nll(model, tok, seqs, 2, 2**20)
    assert sum(c for _, c in per) == count
    assert sum(n for n, _ in per) == pytest.approx(total, rel=1e-6)
    assert [c for _, c in per] == [len(ids) - begin for ids, begin in seqs]


def test_compare_probes_matches_stats_on_the_arrays():
    before = row("0011001100", [0.5] * 10)
    after = row("0111011100", [0.4] * 9 + [0.6])
    got = compare_probes(before, after)
    want = paired_difference(per_hand_arrays(before), per_hand_arrays(after))
    assert got["n"] == 10
    assert got["acc"]["estimate"] == pytest.approx(0.2) == want.estimate
    assert got["acc"]["discordant"] == [0, 2]
    assert got["loss"]["estimate"] == pytest.approx((9 * -0.1 + 0.1) / 10)
    assert got["episode_acc"] is None and got["reward"] is None


def test_compare_refuses_rows_of_other_hands_or_without_records():
    with pytest.raises(ValueError, match="different hands"):
        compare_probes(row("01", digest="a"), row("01", digest="b"))
    with pytest.raises(ValueError, match="no per-hand record"):
        compare_probes({"split": "id", "step": 1}, row("01"))


def test_compare_without_loss_reports_accuracy_only():
    got = compare_probes(row("0101"), row("1111"))
    assert got["loss"] is None and got["acc"]["estimate"] == 0.5


def test_recovered_share_of_accuracy_and_loss():
    rng = np.random.default_rng(0)
    ref_bits = (rng.random(300) < 0.6).astype(int)
    tuned_bits = ref_bits * (rng.random(300) < 0.3)
    half = np.where(np.arange(300) % 2 == 0, ref_bits, tuned_bits)
    as_str = lambda bits: "".join(map(str, bits))  # noqa: E731
    ref_loss, tuned_loss = rng.random(300) * 0.2 + 0.3, rng.random(300) * 0.2 + 0.6
    got = recovered(row(as_str(tuned_bits), list(tuned_loss)), row(as_str(half), list((ref_loss + tuned_loss) / 2)),
                    row(as_str(ref_bits), list(ref_loss)))
    assert 0.3 < got["acc"]["estimate"] < 0.7 and got["acc"]["lo"] < got["acc"]["estimate"] < got["acc"]["hi"]
    assert got["loss"]["estimate"] == pytest.approx(0.5)
    assert math.isclose(got["loss"]["lo"], 0.5, abs_tol=0.05)
