"""Step 6 of the selection rule: OOD accuracy at the floor hands the peak to the OOD loss proxy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spindoctor.cli import main
from spindoctor.report.triage import _reliability_row
from spindoctor.training.flat import accuracy_flat, loss_peak
from spindoctor.training.select import curve_from_metrics, ood_rows_by_step, select_from_curve

N = 200
STEPS = [0, 10, 20, 30, 40, 50, 60]


def bits(hands: set[int], n: int = N) -> str:
    return "".join("1" if i in hands else "0" for i in range(n))


def ood_row(step: int, correct: str, losses: list[float] | None) -> dict:
    acc = correct.count("1") / len(correct)
    return {"stage": "sft", "step": step, "split": "ood", "n": len(correct), "acc": acc,
            "acc_se": (acc * (1 - acc) / len(correct)) ** 0.5,
            "loss": None if losses is None else float(np.mean(losses)),
            "per_hand": {"digest": "same-hands", "correct": correct, "reward": [0.0] * len(correct),
                         "loss": losses}}


def loss_curve(dip_step: int = 30) -> dict[int, list[float]]:
    """Per-hand losses that fall to ``dip_step`` and climb after it, well beyond their noise."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.8, 1.2, N)
    return {s: list(base - 0.05 * (1 - abs(s - dip_step) / 30) + rng.normal(0, 0.005, N)) for s in STEPS}


def flat_rows(with_loss: bool = True) -> list[dict]:
    """Four right hands per step, different hands at each step: no pair is significant."""
    losses = loss_curve()
    return [ood_row(s, bits({4 * i + j for j in range(4)}), losses[s] if with_loss else None)
            for i, s in enumerate(STEPS)]


def moving_rows() -> list[dict]:
    """OOD accuracy 2% -> 15% -> 3%: the rise and the decline are both significant."""
    right = [4, 10, 24, 30, 20, 10, 6]
    losses = loss_curve(dip_step=60)  # the loss disagrees: it must not move the peak
    return [ood_row(s, bits(set(range(k))), losses[s]) for s, k in zip(STEPS, right, strict=True)]


def select(rows: list[dict]) -> dict:
    return select_from_curve(curve_from_metrics(rows), ood_rows=ood_rows_by_step(rows))


def test_flat_accuracy_selects_on_the_loss_proxy():
    sel = select(flat_rows())
    assert sel["signal"] == "loss"
    assert sel["peak"]["step"] == 30 and sel["end"]["step"] == 60
    assert sel["shape"] == "peak then decline" and sel["rise_z"] > 2 and sel["decline_z"] > 2
    # every step has the same accuracy, so the best step is the first: one test per other step
    assert sel["flatness"]["flat"] is True and sel["flatness"]["tests"] == len(STEPS) - 1
    assert "flat" in sel["why"] and "loss" in sel["why"] and "lowest OOD loss proxy" in sel["peak"]["reason"]
    assert 30 <= sel["middle"]["step"] <= 60


def test_moving_accuracy_keeps_the_accuracy_selection():
    rows = moving_rows()
    sel = select(rows)
    without = select_from_curve(curve_from_metrics(rows))  # the rule's steps 1-5 alone
    assert sel["signal"] == "accuracy" and "moves" in sel["why"]
    for key in ("shape", "rise_z", "decline_z"):
        assert sel[key] == without[key]
    assert [sel[k]["step"] for k in ("peak", "middle", "end")] == [without[k]["step"] for k in ("peak", "middle", "end")]
    assert sel["peak"]["step"] == 30 and sel["flatness"]["significant"]


@pytest.mark.parametrize(
    "rows, needle",
    [([{**r, "per_hand": None} for r in flat_rows()], "without per-hand correctness"),
     ([{**r, "per_hand": {**r["per_hand"], "digest": str(r["step"])}} for r in flat_rows()], "different hands"),
     (flat_rows(with_loss=False), "no per-hand OOD loss")],
    ids=["no-per-hand-records", "different-hands", "flat-but-no-loss"],
)
def test_without_the_evidence_accuracy_stays(rows, needle):
    sel = select(rows)
    assert sel["signal"] == "accuracy" and needle in sel["why"]


@pytest.mark.parametrize("discordant, flat", [(5, True), (6, False)],
                         ids=["5-discordant-p0.06-flat", "6-discordant-p0.03-moves"])
def test_flatness_is_mcnemar_at_five_percent(discordant, flat):
    rows = {0: ood_row(0, bits(set()), None), 10: ood_row(10, bits(set(range(discordant))), None)}
    assert accuracy_flat(rows)["flat"] is flat


def test_loss_peak_is_the_earliest_lowest_loss():
    same = [1.0] * N
    rows = {s: ood_row(s, bits(set()), same) for s in (0, 10, 20)}
    peak = loss_peak(rows)
    assert peak["step"] == 0 and peak["shape"] == "flat" and peak["rise_z"] == 0.0


def test_select_cli_and_report_say_which_signal(tmp_path, capsys):
    rows = flat_rows()
    for r in rows:
        (tmp_path / f"checkpoint-{r['step']}").mkdir()
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["select", str(tmp_path)]) == 0
    assert "signal: loss" in capsys.readouterr().out
    sel = json.loads((tmp_path / "selection.json").read_text())
    assert sel["signal"] == "loss" and sel["peak"]["step"] == 30
    assert "loss proxy" in _reliability_row(sel)["evidence"]
