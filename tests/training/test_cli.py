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


# ---------------------------------------------------------------- preset and format from the SFT run
def _sft_checkpoint(root, fmt: str | None, where: str = "config", ckpt_src=None):
    """``root/sft/checkpoint-10`` of an SFT run trained on ``fmt``, recorded in the run's
    config.yaml (``where="config"``) or only in the checkpoint's probe.json (``"probe"``)."""
    import shutil

    ckpt = root / "sft" / "checkpoint-10"
    if ckpt_src is not None:
        shutil.copytree(ckpt_src, ckpt)
    else:
        ckpt.mkdir(parents=True)
    if fmt is not None and where == "config":
        (root / "sft" / "config.yaml").write_text(f"fmt: {fmt}\npreset: organism\nprobe_fraction: 0.1\n")
    if fmt is not None and where == "probe":
        (ckpt / "probe.json").write_text(json.dumps({"step": 10, "rows": [], "probe_config": {"fmt": fmt}}))
    return ckpt


CHOICES = {
    # id: (sft format, where it is recorded, --preset, config fields, expected preset or error)
    "compact-run-default-is-organism": ("compact", "config", None, {}, "organism"),
    "compact-probe-json-default-is-organism": ("compact", "probe", None, {}, "organism"),
    "paper-run-default-is-reference": ("paper", "config", None, {}, "reference"),
    "plain-model-default-is-reference": (None, "config", None, {}, "reference"),
    "compact-run-organism-asked": ("compact", "config", "organism", {}, "organism"),
    "plain-model-organism-asked": (None, "config", "organism", {}, "organism"),
    "compact-run-reference-asked-refused": ("compact", "config", "reference", {}, "error"),
    "paper-run-organism-asked-refused": ("paper", "config", "organism", {}, "error"),
    "compact-run-config-fmt-paper-refused": ("compact", "config", None, {"fmt": "paper"}, "error"),
    "compact-run-reference-with-fmt-compact": ("compact", "config", "reference", {"fmt": "compact"}, "reference"),
}


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
@pytest.mark.parametrize("case", list(CHOICES.values()), ids=list(CHOICES))
def test_rl_preset_fits_the_sft_format(tmp_path, algo, case):
    import yaml

    from spindoctor.training.rl_config import Algo, Preset, resolve_rl_config

    fmt, where, asked, fields, expected = case
    ckpt = _sft_checkpoint(tmp_path, fmt, where)
    config_file = None
    if fields:
        config_file = tmp_path / "rl.yaml"
        config_file.write_text(yaml.safe_dump(fields))
    preset = Preset(asked) if asked else None
    if expected == "error":
        with pytest.raises(UserError, match="was fine-tuned on the") as info:
            resolve_rl_config(Algo(algo), preset, config_file, {}, ckpt)
        assert "\n" not in str(info.value)
        return
    cfg, _, note = resolve_rl_config(Algo(algo), preset, config_file, {}, ckpt)
    assert note.startswith(f"preset {expected}, format {cfg.fmt}")
    assert cfg.fmt == (fmt or {"organism": "compact", "reference": "paper"}[expected])
    if fmt == "compact" and not fields:
        assert cfg.max_new_tokens <= 64  # the organism preset, not the reference's 512


def _fake_train(calls):
    def train(cfg, ckpt, out, resume=True, show_progress=True):
        calls.append(cfg)
        return {"step": 0, "last": {}}
    return train


def test_rl_cli_prints_the_inherited_preset(capsys, tmp_path, tiny_organism_dir, monkeypatch):
    import spindoctor.training.ppo as ppo

    calls = []
    monkeypatch.setattr(ppo, "train", _fake_train(calls))
    ckpt = _sft_checkpoint(tmp_path, "compact", ckpt_src=tiny_organism_dir)
    assert main(["rl", "--from", str(ckpt), "--out", str(tmp_path / "rl")]) == 0
    out = capsys.readouterr().out
    assert "preset organism, format compact (chosen from the SFT run's format in" in out
    assert calls[0].fmt == "compact" and calls[0].max_turns == 1 and calls[0].probe_fraction == 0.1


def test_rl_cli_refuses_a_mismatching_preset_before_any_work(capsys, tmp_path, tiny_organism_dir, monkeypatch):
    import spindoctor.training.ppo as ppo

    calls = []
    monkeypatch.setattr(ppo, "train", _fake_train(calls))
    ckpt = _sft_checkpoint(tmp_path, "compact", ckpt_src=tiny_organism_dir)
    capsys.readouterr()
    assert main(["rl", "--from", str(ckpt), "--preset", "reference", "--out", str(tmp_path / "rl")]) == 2
    err = capsys.readouterr().err.strip()
    assert "fine-tuned on the compact format" in err and "--preset organism" in err and "\n" not in err
    assert not calls and not (tmp_path / "rl").exists()


@pytest.mark.parametrize("text", ["[1, 2]", "a: [", b"\xff\xfe"], ids=["not-a-mapping", "not-yaml", "not-utf8"])
@pytest.mark.parametrize("which", ["sft-run-config", "rl-config-file"])
def test_rl_bad_yaml_is_one_line(capsys, tmp_path, text, which):
    ckpt = _sft_checkpoint(tmp_path, None)
    path = ckpt.parent / "config.yaml" if which == "sft-run-config" else tmp_path / "rl.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    args = ["rl", "--from", str(ckpt), "--out", str(tmp_path / "rl")]
    assert main(args + (["--config", str(path)] if which == "rl-config-file" else [])) == 2
    err = capsys.readouterr().err.strip()
    assert "config" in err and "\n" not in err and not (tmp_path / "rl").exists()


def test_rl_out_that_is_a_file_is_refused(capsys, tmp_path, tiny_organism_dir):
    (tmp_path / "file").write_text("mine")
    assert main(["rl", "--from", str(tiny_organism_dir), "--out", str(tmp_path / "file")]) == 2
    assert "not a folder" in capsys.readouterr().err and (tmp_path / "file").read_text() == "mine"
