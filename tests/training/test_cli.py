"""``spindoctor rl`` argument handling and selection.json reading (no training here)."""

from __future__ import annotations

import json

import pytest

from spindoctor.cli import main
from spindoctor.errors import UserError
from spindoctor.training.select import read_selection


def test_read_selection_of_the_sft_selector(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the selector writes paths relative to the working folder
    sft = tmp_path / "run" / "sft"
    (sft / "checkpoint-40").mkdir(parents=True)
    (sft / "checkpoint-90").mkdir(parents=True)
    selection = {
        "rule": "text", "window": 3, "z": 2.0, "shape": "peak then decline",
        "early": {"step": 90, "path": "checkpoint-90"},
        "peak": {"step": 40, "ood_acc": 0.3, "path": "run/sft/checkpoint-40", "reason": "highest"},
        "end": {"step": 200, "ood_acc": 0.1, "path": None, "reason": "last"},
        "middle": {"step": 40, "ood_acc": 0.3, "path": str(sft / "checkpoint-40"), "reason": "halfway"},
        "curve": [{"step": 40}, {"step": 200}],
    }
    (sft / "selection.json").write_text(json.dumps(selection))
    got = read_selection(sft / "selection.json")
    assert [(label, p.resolve()) for label, p in got] == [
        ("early", sft / "checkpoint-90"), ("peak", sft / "checkpoint-40"), ("end", sft / "checkpoint-200")]


@pytest.mark.parametrize(
    "text, message",
    [("not json", "not valid JSON"), ('{"rule": "x", "window": 3}', "names no checkpoints"), ("[1]", "not a selection")],
    ids=["not-json", "no-checkpoints", "not-object"],
)
def test_read_selection_rejects_bad_files(tmp_path, text, message):
    path = tmp_path / "selection.json"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        read_selection(path)


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "exactly one of --from"),
        (["--from", "A", "--from-selection", "B"], "exactly one of --from"),
        (["--from", "A"], "--out is required"),
        (["--from", "/nonexistent/ckpt", "--out", "OUT"], "checkpoint folder not found"),
        (["--from", "/nonexistent/ckpt", "--out", "OUT", "--lr", "-1"], "bad ppo setting lr"),
        (["--from", "/nonexistent/ckpt", "--out", "OUT", "--algo", "grpo", "--steps", "0"], "bad grpo setting steps"),
    ],
    ids=["no-start", "two-starts", "no-out", "missing-ckpt", "negative-lr", "zero-steps"],
)
def test_bad_arguments_exit_2_with_one_line(capsys, tmp_path, args, message):
    args = [str(tmp_path / a) if a == "OUT" else a for a in args]
    assert main(["rl", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_rl_inherits_the_sft_runs_probe_setup(tmp_path):
    from spindoctor.training.ppo import PPOConfig
    from spindoctor.training.rl_config import inherit_sft_probes

    sft = tmp_path / "sft"
    (sft / "checkpoint-50").mkdir(parents=True)
    (sft / "config.yaml").write_text("probe_fraction: 0.5\nprobe:\n  n: 500\n  probe_fraction: 0.5\n")
    cfg = PPOConfig(probe={"n": 100})
    got = inherit_sft_probes(cfg, sft / "checkpoint-50", explicit=set())
    assert got.probe_fraction == 0.5 and got.probe == {"n": 100, "probe_fraction": 0.5}
    kept = inherit_sft_probes(cfg, sft / "checkpoint-50", explicit={"probe_fraction", "probe"})
    assert kept.probe_fraction == cfg.probe_fraction and kept.probe == {"n": 100}
    assert inherit_sft_probes(cfg, tmp_path / "elsewhere", set()) is cfg
