"""``spindoctor arena``: a run with --json, and one line with exit 2 on bad input."""

import json

import pytest

from spindoctor.cli import main


def _argv(base, sft, out, *extra):
    return ["arena", str(base), str(sft), "--out", str(out), "--n", "6", "--max-new-tokens", "6",
            "--batch-size", "16", *extra]


def test_cli_json_run(sft_run, tmp_path, capsys):
    base, sft = sft_run
    code = main(_argv(base, sft, tmp_path / "a", "--methods", "wise-ft,dg-threshold", "--grid", "wise-ft=0.5",
                      "--json", "--write", "ckpt-interp:0.5"))
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["label"] for r in out["rows"]] == ["sft end", "base", "sft peak", "wise-ft 0.5", "dg-threshold 1",
                                                 "ckpt-interp 0.5"]
    assert out["written"]["label"] == "ckpt-interp 0.5" and (tmp_path / "a-model" / "README.md").is_file()
    saved = json.loads((tmp_path / "a" / "arena.json").read_text())["config"]
    assert saved["probe"]["n"] == 6 and saved["id_tolerance"] == 0.02  # ArenaConfig filled the rest


@pytest.mark.parametrize("extra,message", [
    (["--methods", "magic"], "unknown method 'magic'"),
    (["--grid", "wise-ft=2"], "bad grid value 2.0 for wise-ft"),
    (["--grid", "wise-ft"], "--grid must be METHOD=V1,V2"),
    (["--write", "soup"], "write must be METHOD:KNOB"),
    (["--write-best", "--write", "soup:1"], "not both"),
])
def test_cli_bad_input_is_one_line(sft_run, tmp_path, capsys, extra, message):
    base, sft = sft_run
    assert main(_argv(base, sft, tmp_path / "a", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "a").exists()


def test_cli_refuses_a_foreign_out_and_mismatched_models(sft_run, tmp_path, capsys):
    from tests.restore.conftest import make_pair

    base, sft = sft_run
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "keep.txt").write_text("mine")
    assert main(_argv(base, sft, tmp_path / "a")) == 2
    assert "not an arena output" in capsys.readouterr().err
    other, _ = make_pair(tmp_path / "o", n_layers=3)
    capsys.readouterr()  # the fixture's own save messages
    assert main(_argv(other, sft, tmp_path / "b")) == 2
    err = capsys.readouterr().err.strip()
    assert "mismatched architectures" in err and len(err.splitlines()) == 1
    assert main(["arena", str(base), "--out", str(tmp_path / "c")]) == 2
    assert "--peak and --end" in capsys.readouterr().err


def test_write_rl_adds_the_method():
    from spindoctor.arena.cli import _with_write

    assert _with_write(["wise-ft"], None, ("rl", "peak")) == (["wise-ft", "rl"], None)
    assert _with_write(["wise-ft"], None, ("soup", 1.0)) == (["wise-ft", "soup"], {"soup": [1.0]})


@pytest.mark.parametrize("case", ["corrupt-shard", "missing-shard", "config-not-json", "no-tokenizer"])
def test_cli_malformed_base_is_one_line(sft_run, tmp_path, capsys, case):
    from tests.models.malformed import make_malformed

    base, sft = sft_run
    bad = make_malformed(base, case, tmp_path / "bad")
    assert main(_argv(bad, sft, tmp_path / "a")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "a").exists()
