"""Study configs: every shipped preset loads and validates; bad configs fail at startup with one line."""

import pytest

from spindoctor.errors import UserError
from spindoctor.study.config import CONFIG_DIR, deep_merge, load_study_config

SHIPPED = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def test_the_four_presets_ship():
    assert {"organism", "smollm2-135m", "qwen2.5-7b", "llama-3.2-11b"} <= set(SHIPPED)


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_validates(name, quick):
    cfg = load_study_config(name, quick=quick)
    assert cfg.name == name


def test_quick_is_smaller_than_full():
    full, quick = load_study_config("organism"), load_study_config("organism", quick=True)
    assert quick.sft.overrides["steps"] < 400 and quick.probe["n"] < full.probe["n"]


@pytest.mark.parametrize(("text", "message"), [
    ("sft: {overrides: {steps: -3}}", "sft.overrides"),
    ("rl: {algo: a2c}", "rl.algo"),
    ("drift: {k: [2.5]}", "drift"),
    ("probe: {fmt: xml}", "probe"),
    ("nonsense: 1", "nonsense"),
    ("- a list", "mapping"),
    ("rl: {starts: [peak, step-x]}", "rl.starts"),
    ("rl: {starts: []}", "rl.starts"),
], ids=["negative-steps", "unknown-algo", "bad-k", "bad-format", "unknown-key", "not-a-mapping", "bad-start",
        "no-starts"])
def test_bad_configs_are_rejected_at_startup(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_study_config(str(path))


def test_unknown_preset_names_the_shipped_ones():
    with pytest.raises(UserError, match="organism"):
        load_study_config("gpt-17")


def test_deep_merge():
    assert deep_merge({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": 3}, "e": 4}) == {"a": {"b": 3, "c": 2}, "d": 1, "e": 4}


def test_rl_starts_take_sft_steps_for_a_recoverability_map(tmp_path):
    path = tmp_path / "map.yaml"
    path.write_text("rl: {starts: [peak, step-100, middle, step-300, end, peak]}")
    assert load_study_config(str(path)).rl.starts == ["peak", "step-100", "middle", "step-300", "end"]


def test_a_step_start_names_that_sft_checkpoint(tmp_path):
    from spindoctor.study.stages import Context

    cfg = load_study_config("organism", quick=True)
    (tmp_path / "sft" / "checkpoint-100").mkdir(parents=True)
    ctx = Context(cfg, tmp_path, False)
    assert ctx.sft_checkpoint("step-100") == tmp_path / "sft" / "checkpoint-100"
    with pytest.raises(UserError, match="no checkpoint of that step"):
        ctx.sft_checkpoint("step-7")


def test_a_moved_run_finds_its_selected_checkpoints(tmp_path):
    """selection.json records paths relative to the working folder of the time; a moved run uses its own."""
    import json

    from spindoctor.study.stages import Context

    cfg = load_study_config("organism", quick=True)
    (tmp_path / "sft" / "checkpoint-35").mkdir(parents=True)
    (tmp_path / "sft" / "selection.json").write_text(json.dumps({"peak": {"step": 35, "path": "runs/old/sft/checkpoint-35"}}))
    assert Context(cfg, tmp_path, False).sft_checkpoint("peak") == tmp_path / "sft" / "checkpoint-35"
