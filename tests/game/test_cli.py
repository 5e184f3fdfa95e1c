"""The game CLI: JSON fields, exit codes, and no torch on its path."""

import json
import subprocess
import sys

import pytest

from spindoctor.cli import main


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_check_json_fields(capsys):
    code, out, _ = run(capsys, "game", "check", "--cards", "3,3,8,8", "--rule", "face10",
                       "--answer", "8/(3-8/3)", "--json")
    obj = json.loads(out)
    assert code == 0
    assert {"correct", "reward", "value", "reasons"} <= obj.keys()
    assert obj["correct"] is True and obj["reward"] == 5.0 and obj["value"] == "24"


def test_check_paper_answer(capsys):
    answer = '{"cards": ["K", "5", "2", "4"], "number": [13, 5, 2, 4], "formula": "13+5+2+4=24"}'
    code, out, _ = run(capsys, "game", "check", "--cards", "K,5,2,4", "--rule", "face11",
                       "--answer", answer, "--format", "paper", "--json")
    assert code == 0 and json.loads(out)["correct"] is True


@pytest.mark.parametrize(
    ("args", "reward"),
    [
        pytest.param(["--cards", "K,5,2,4", "--answer", "(10-5+2)*4-4=²"], -2.0, id="superscript-after-equals"),
        pytest.param(["--cards", "K,5,2,4", "--format", "compact", "--answer", " ²|(10-5+2)*4-4"], -2.0,
                     id="superscript-in-compact-values"),
        pytest.param(["--cards", "1,2,3,4,5,6", "--answer", "(1+2"], 1.0, id="six-card-prefix"),
        pytest.param(["--cards", "3,8,A,A", "--answer", "3*8*1*1 = 24", "--judge", "reference"], -3.0,
                     id="reference-blank"),
        pytest.param(["--cards", "3,3,8,8", "--answer", "8/(3-8/3)", "--judge", "reference"], 0.0,
                     id="reference-float-miss"),
        pytest.param(["--cards", "3,8,A,A", "--format", "paper", "--answer", '"formula": "3*8*1*1\'=24"'], -3.0,
                     id="apostrophe-in-formula"),
    ],
)
def test_check_regressions(capsys, args, reward):
    code, out, err = run(capsys, "game", "check", *args, "--json")
    assert code == 0 and not err and json.loads(out)["reward"] == reward


def test_solve_all_json(capsys):
    code, out, _ = run(capsys, "game", "solve", "3", "3", "8", "8", "--all", "--json")
    obj = json.loads(out)
    assert code == 0 and obj["solutions"] == ["8/(3-8/3)"] and obj["solvable"]


def test_solve_face11(capsys):
    code, out, _ = run(capsys, "game", "solve", "K", "K", "K", "K", "--rule", "face11", "--json")
    assert code == 0 and json.loads(out)["solvable"] is False


def test_deal_json_is_reproducible(capsys):
    first = run(capsys, "game", "deal", "--split", "ood", "--n", "4", "--seed", "7", "--json")[1]
    second = run(capsys, "game", "deal", "--split", "ood", "--n", "4", "--seed", "7", "--json")[1]
    assert first == second and len(json.loads(first)["hands"]) == 4


def test_stats_json(capsys):
    code, out, _ = run(capsys, "game", "stats", "--rule", "face11", "--json")
    stats = json.loads(out)["stats"][0]
    assert code == 0 and stats["solvable_value_multisets"] == 1362 and stats["value_multisets"] == 1820


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["game", "check", "--cards", "X,1,2,3", "--answer", "1"], id="bad-card"),
        pytest.param(["game", "check", "--cards", "1,2,3,4", "--answer", "1", "--rule", "face9"], id="bad-rule"),
        pytest.param(["game", "check", "--cards", "1,2,3,4", "--answer", "1", "--format", "xml"], id="bad-format"),
        pytest.param(["game", "check", "--cards", "1,2,3,4", "--answer", "1", "--judge", "eval"], id="bad-judge"),
        pytest.param(["game", "check", "--cards", "1,2,3,4,5", "--answer", "1", "--judge", "reference"],
                     id="reference-judge-five-cards"),
        pytest.param(["game", "check", "--cards", "1,2,3,4,5,6,7", "--answer", "(1+2"], id="seven-cards"),
        pytest.param(["game", "deal", "--split", "train"], id="bad-split"),
        pytest.param(["game", "deal", "--n", "5000"], id="too-many-hands"),
        pytest.param(["game", "solve"], id="missing-argument"),
        pytest.param(["game", "deal", "--n", "abc"], id="not-an-integer"),
        pytest.param(["game", "nope"], id="unknown-command"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, args):
    code, _, err = run(capsys, *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_export_cli(capsys, tmp_path):
    code, out, _ = run(capsys, "game", "export", "--out", str(tmp_path / "d"), "--n-train", "5",
                       "--n-probe", "5", "--no-parquet", "--json")
    assert code == 0 and json.loads(out)["files"]["sft_train.jsonl"] == 5


def test_game_commands_do_not_import_torch():
    code = (
        "import sys; from spindoctor.cli import main; "
        "rc = main(['game', 'solve', '3', '3', '8', '8']); "
        "assert rc == 0; assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_console_script_exit_code():
    proc = subprocess.run([sys.executable, "-m", "spindoctor.cli", "game", "check", "--cards", "Z",
                           "--answer", "1"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error:")
