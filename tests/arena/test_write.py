"""--write: the written checkpoint loads with AutoModelForCausalLM and reproduces the arena's probe numbers."""

import json

import pytest
import yaml
from tests.arena.conftest import TINY_PROBE

from spindoctor.arena.config import ArenaConfig, parse_write
from spindoctor.arena.run import resolve_sources, run_arena
from spindoctor.errors import UserError


def test_written_checkpoint_reproduces_the_arena(sft_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from spindoctor.probes import probe_model

    base, sft = sft_run
    peak, end = resolve_sources(str(sft), None, None)
    cfg = ArenaConfig(base=str(base), end=end, peak=peak, sft_run=str(sft), probe=TINY_PROBE,
                      methods=["wise-ft"], grids={"wise-ft": [0.5]})
    record = run_arena(cfg, tmp_path / "arena", progress=False, write=parse_write("wise-ft:0.5"),
                       model_out=tmp_path / "model")
    row = next(r for r in record["rows"] if r["label"] == "wise-ft 0.5")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model", use_safetensors=True).eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "model")
    again = probe_model(model, tok, TINY_PROBE)
    for split in ("id", "ood"):
        assert again[split].acc == row[f"{split}_acc"] and again[split].loss == row[f"{split}_loss"]
        assert again[split].per_hand == row["probes"][split]["per_hand"]
    text = (tmp_path / "model" / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["base_model_relation"] == "merge" and front["base_model"] == str(base)
    assert "wise-ft" in front["tags"] and len(front["model-index"][0]["results"]) == 2
    recipe = json.loads((tmp_path / "model" / "arena_point.json").read_text())
    assert recipe["method"] == "wise-ft" and recipe["knob"] == 0.5 and "probe.json" not in recipe["files"]
    # a rerun replaces its own checkpoint; a foreign folder is refused before any work
    run_arena(cfg, tmp_path / "arena", progress=False, write_best=True, model_out=tmp_path / "model")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("mine")
    with pytest.raises(UserError, match="not an arena checkpoint"):
        run_arena(cfg, tmp_path / "arena2", progress=False, write_best=True, model_out=tmp_path / "other")
    assert not (tmp_path / "arena2").exists()


def test_parse_write():
    assert parse_write("wise-ft:0.5") == ("wise-ft", 0.5)
    assert parse_write("rl:peak") == ("rl", "peak")
    for bad in ("wise-ft", "wise-ft:x", "wise-ft:3", "magic:1"):
        with pytest.raises(ValueError):
            parse_write(bad)
