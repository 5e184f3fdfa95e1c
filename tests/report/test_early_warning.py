"""The spectral early warning: the drift trace against the base, the OOD fall found by paired
tests, the rank correlations, and the leave-one-seed-out leads (hand-computed goldens)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tests.conftest import char_tokenizer, tiny_model

from spindoctor.cli import main
from spindoctor.report import early_warning as ew

N = 200  # hands per probe


def ood_row(step: int, correct: int, loss: float, n: int = N) -> dict:
    """An OOD probe row of ``n`` hands: the first ``correct`` right, every hand's NLL ``loss`` (+ small jitter)."""
    bits = "1" * correct + "0" * (n - correct)
    losses = [loss + 0.001 * (i % 7) for i in range(n)]
    return {"stage": "sft", "step": step, "split": "ood", "n": n, "acc": correct / n, "loss": float(np.mean(losses)),
            "per_hand": {"digest": "same-hands", "correct": bits, "loss": losses}}


# OOD accuracy 5% -> 15% (peak, step 10) -> 14% -> 2%; loss proxy falls to the peak, then rises
CURVE = [(0, 10, 0.50), (10, 30, 0.40), (20, 28, 0.40), (30, 4, 0.60)]


def write_run(root, name: str, scales: list[float]) -> tuple:
    """A study-shaped run: ``base/`` and ``sft/checkpoint-<step>`` = base + scale x a fixed update."""
    tok = char_tokenizer()
    base = tiny_model(len(tok), seed=0)
    run = root / name
    base.save_pretrained(run / "base")
    tok.save_pretrained(run / "base")
    update = tiny_model(len(tok), seed=1).state_dict()
    for (step, _, _), scale in zip(CURVE, scales, strict=True):
        model = tiny_model(len(tok), seed=0)
        with torch.no_grad():
            for name_, p in model.named_parameters():
                p.add_(scale * update[name_])
        model.save_pretrained(run / "sft" / f"checkpoint-{step}")
        tok.save_pretrained(run / "sft" / f"checkpoint-{step}")
    (run / "sft" / "metrics.jsonl").write_text("".join(json.dumps(ood_row(*c)) + "\n" for c in CURVE))
    return run


def test_fall_is_the_first_step_significantly_below_the_peak():
    rows = {step: ood_row(step, correct, loss) for step, correct, loss in CURVE}
    assert ew.fall_steps(rows) == {"peak": 10, "fall_acc": 30, "fall_loss": 30}


def test_ties_at_the_peak_keep_the_earlier_step():
    rows = {s: ood_row(s, c, 0.4) for s, c in [(0, 5), (5, 20), (10, 20), (15, 20)]}
    assert ew.fall_steps(rows)["peak"] == 5


@pytest.mark.parametrize("x, y", [([1, 2, 3, 4], [1, 3, 2, 4]), ([4, 1, 3, 2, 5], [10, 0, 7, 7, 9])],
                         ids=["permuted", "ties"])
def test_spearman_is_pearson_of_average_ranks(x, y):
    def ranks(v):  # average ranks, the oracle of Spearman's definition
        v = np.asarray(v, dtype=float)
        return np.array([np.mean(np.flatnonzero(np.sort(v) == a)) + 1 for a in v])

    assert ew.spearman(x, y) == pytest.approx(np.corrcoef(ranks(x), ranks(y))[0, 1])


@pytest.mark.parametrize("x, y", [([1, 2], [2, 1]), ([1, 1, 1], [1, 2, 3])], ids=["two-points", "constant"])
def test_spearman_is_none_when_undefined(x, y):
    assert ew.spearman(x, y) is None


def test_leads_take_each_threshold_from_the_other_seeds():
    traces = {"a": [{"step": s, ew.DRIFT_METRIC: d} for s, d in [(0, 0), (10, 2), (20, 4), (30, 6)]],
              "b": [{"step": s, ew.DRIFT_METRIC: d} for s, d in [(0, 0), (10, 1), (20, 3), (30, 5)]]}
    seeds = {"a": {"fall_acc": 30, "drift_at_fall_acc": 6.0}, "b": {"fall_acc": 20, "drift_at_fall_acc": 3.0}}
    leads = ew.leave_one_out_leads(seeds, traces, "fall_acc")
    # a: threshold 3.0 (b's drift at its fall) is reached at step 20, 10 steps before a falls;
    #    the clock's threshold is b's fall step 20: also 10 steps ahead
    assert leads["a"] == {"fall": 30, "drift_threshold": 3.0, "drift_warning": 20, "drift_lead": 10,
                          "step_threshold": 20, "step_warning": 20, "step_lead": 10}
    # b: threshold 6.0 is never reached; the clock (a's fall, step 30) warns 10 steps late
    assert leads["b"]["drift_warning"] is None and leads["b"]["drift_lead"] is None
    assert leads["b"]["step_lead"] == -10


def test_trace_starts_at_zero_and_grows_with_the_update(tmp_path):
    run = write_run(tmp_path, "seed-0", [0.0, 0.01, 0.02, 0.05])
    trace = ew.drift_trace(run)
    assert [r["step"] for r in trace] == [0, 10, 20, 30]
    assert trace[0][ew.DRIFT_METRIC] == pytest.approx(0.0, abs=1e-6)  # the base against itself
    angles = [r[ew.DRIFT_METRIC] for r in trace]
    assert angles == sorted(angles) and angles[-1] > angles[1] > 0
    summary = ew.seed_summary(run, trace)
    assert (summary["peak"], summary["fall_acc"], summary["drift_at_peak"]) == (10, 30, angles[1])


def test_two_seeds_give_leads_and_a_verdict_and_the_cli_writes_them(tmp_path, capsys):
    write_run(tmp_path / "multi", "seed-0", [0.0, 0.01, 0.02, 0.05])
    write_run(tmp_path / "multi", "seed-1", [0.0, 0.02, 0.04, 0.08])
    out = tmp_path / "ew"
    assert main(["early-warning", str(tmp_path / "multi"), "--out", str(out)]) == 0
    result = json.loads((out / "early_warning.json").read_text())
    assert set(result["seeds"]) == {"seed-0", "seed-1"}
    assert set(result["leads"]) == {"fall_acc", "fall_loss"}
    assert "seeds" in result["verdict"]
    assert "| seed-0 | 10 |" in (out / "early_warning.md").read_text()
    assert "OOD peak from: max OOD accuracy." in (out / "early_warning.md").read_text()


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "neither a study run"),
    (lambda p: (p / "plain").mkdir() or p / "plain", "neither a study run"),
], ids=["missing-folder", "not-a-run"])
def test_bad_runs_exit_2_with_one_line(tmp_path, capsys, make, message):
    assert main(["early-warning", str(make(tmp_path))]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_out_that_holds_files_is_refused(tmp_path, capsys):
    write_run(tmp_path, "seed-0", [0.0, 0.01, 0.02, 0.05])
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "notes.txt").write_text("mine")
    assert main(["early-warning", str(tmp_path / "seed-0"), "--out", str(tmp_path / "keep")]) == 2
    assert (tmp_path / "keep" / "notes.txt").read_text() == "mine"


def test_a_given_peak_replaces_the_accuracy_maximum():
    rows = {step: ood_row(step, correct, loss) for step, correct, loss in CURVE}
    # from step 0 (5%): step 10 is above, not below; step 30 (2%) is below on accuracy and loss
    assert ew.fall_steps(rows, peak=0) == {"peak": 0, "fall_acc": 30, "fall_loss": 30}
    with pytest.raises(ew.UserError, match="step 5"):
        ew.fall_steps(rows, peak=5)


@pytest.mark.parametrize("selection, peak, source", [
    (None, 10, "max OOD accuracy"),
    ({"peak": {"step": 20}, "signal": "loss"}, 20, "selection.json"),
], ids=["no-selection-max-accuracy", "selection-json-peak"])
def test_the_run_summary_takes_the_selected_peak(tmp_path, selection, peak, source):
    run = write_run(tmp_path, "seed-0", [0.0, 0.01, 0.02, 0.05])
    if selection is not None:
        (run / "sft" / "selection.json").write_text(json.dumps(selection))
    summary = ew.seed_summary(run, ew.drift_trace(run))
    assert (summary["peak"], summary["peak_from"]) == (peak, source)


def test_a_selection_without_a_peak_exits_2(tmp_path, capsys):
    run = write_run(tmp_path, "seed-0", [0.0, 0.01, 0.02, 0.05])
    (run / "sft" / "selection.json").write_text(json.dumps({"end": {"step": 30}}))
    assert main(["early-warning", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds no peak step" in err and len(err.splitlines()) == 1
