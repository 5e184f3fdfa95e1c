"""lm-evaluation-harness tasks (`game export --lm-eval`): the files, the folder rules, the judge,
and lm_eval's own run agreeing hand by hand with `spindoctor probe` (docs/design.md,
"lm-evaluation-harness"). The lm_eval runs are skipped when lm_eval is not installed."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from spindoctor.cli import main
from spindoctor.errors import UserError
from spindoctor.game.formats import render_response
from spindoctor.io import read_jsonl
from spindoctor.probes.core import ProbeConfig, hands_digest
from spindoctor.probes.lmeval import (
    MARKER_FILE,
    export_lm_eval,
    output_files,
    process_results,
    task_name,
)
from spindoctor.probes.sets import gold_formula, probe_hands

N = 8  # hands per split in the lm_eval runs


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory):
    """An export of 12 hands per split with the probe's other defaults."""
    folder = tmp_path_factory.mktemp("lmeval") / "tasks"
    export_lm_eval(folder, ProbeConfig(n=12))
    return folder


@pytest.mark.parametrize("fmt", ["paper", "compact"], ids=["paper", "compact"])
@pytest.mark.parametrize("split", ["id", "ood"], ids=["id", "ood"])
def test_docs_are_the_probe_hands_in_probe_order(tasks_dir, fmt, split):
    docs = read_jsonl(tasks_dir / f"{task_name(fmt, split)}.jsonl")
    hands = probe_hands(split, 12, 0)
    assert [d["cards"] for d in docs] == [[str(c) for c in h.cards] for h in hands]
    assert {d["format"] for d in docs} == {fmt} and [d["index"] for d in docs] == list(range(12))
    marker = json.loads((tasks_dir / MARKER_FILE).read_text())
    assert marker["digests"][split] == hands_digest(hands)
    yaml_text = (tasks_dir / f"{task_name(fmt, split)}.yaml").read_text()
    assert f"max_gen_toks: {ProbeConfig(fmt=fmt).new_tokens()}\n" in yaml_text
    assert "  until: []\n" in yaml_text and json.dumps(str(tasks_dir / f"{task_name(fmt, split)}.jsonl")) in yaml_text


def test_the_folder_holds_exactly_the_export(tasks_dir):
    assert sorted(p.name for p in tasks_dir.iterdir()) == sorted(output_files())


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param("gold", {"acc": 1.0, "reward": 5.0, "well_formed": 1.0, "values_acc": 1.0}, id="gold-answer"),
        pytest.param(" 1 1 1 1|1+1+1+1", {"acc": 0.0, "reward": -3.0, "well_formed": 1.0, "values_acc": 0.0},
                     id="wrong-numbers-and-value"),
        pytest.param("no answer at all", {"acc": 0.0, "reward": -3.0, "well_formed": 0.0, "values_acc": 0.0},
                     id="no-formula"),
    ],
)
def test_process_results_judges_compact_answers(tasks_dir, answer, expected):
    doc = read_jsonl(tasks_dir / "generalpoints_compact_id.jsonl")[0]
    assert process_results(doc, [doc["gold"] if answer == "gold" else answer]) == expected


def test_process_results_reads_the_ood_rule_of_a_paper_doc(tasks_dir):
    doc = next(d for d in read_jsonl(tasks_dir / "generalpoints_ood.jsonl")
               if any(c[:-1] in ("J", "Q", "K") for c in d["cards"]))
    hand = probe_hands("ood", 12, 0)[doc["index"]]
    id_rule_values = render_response("paper", hand.cards, "face10", gold_formula(hand, 0))
    assert process_results(doc, [doc["gold"]])["acc"] == 1.0
    assert process_results(doc, [id_rule_values])["values_acc"] == 0.0


def test_a_previous_export_is_replaced_and_pycache_left_alone(tmp_path):
    folder = tmp_path / "tasks"
    export_lm_eval(folder, ProbeConfig(n=3))
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "utils.cpython-311.pyc").write_bytes(b"x")
    counts = export_lm_eval(folder, ProbeConfig(n=2))
    assert set(counts.values()) == {2}
    assert (folder / "__pycache__" / "utils.cpython-311.pyc").read_bytes() == b"x"


@pytest.mark.parametrize("case", ["foreign-file", "our-names-without-marker", "file-not-folder"])
def test_folders_not_made_by_the_export_are_refused_untouched(tmp_path, case):
    folder = tmp_path / "tasks"
    if case == "file-not-folder":
        folder.write_text("mine")
    else:
        folder.mkdir()
        (folder / ("notes.txt" if case == "foreign-file" else "utils.py")).write_text("mine")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(UserError):
        export_lm_eval(folder, ProbeConfig(n=2))
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--lm-eval", "{d}", "--format", "compact"], id="format-with-lm-eval"),
        pytest.param(["--lm-eval", "{d}", "--out", "{d}2"], id="both-folders"),
        pytest.param([], id="no-folder"),
        pytest.param(["--lm-eval", "{d}", "--probe-fraction", "1.5"], id="bad-probe-fraction"),
        pytest.param(["--lm-eval", "{f}"], id="foreign-folder"),
    ],
)
def test_bad_export_flags_exit_2_with_one_line(tmp_path, capsys, args):
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    argv = [a.format(d=tmp_path / "tasks", f=tmp_path / "foreign") for a in args]
    code, _, err = run(capsys, "game", "export", *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "tasks").exists()


def test_cli_export_writes_the_tasks_without_torch(tmp_path):
    folder = tmp_path / "tasks"
    code = ("import sys, json; from spindoctor.cli import main; "
            f"rc = main(['game', 'export', '--lm-eval', {str(folder)!r}, '--n-probe', '3', '--json']); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["files"] == {f"{task_name(f, s)}.jsonl": 3
                                                for f in ("paper", "compact") for s in ("id", "ood")}


# ---- lm_eval's own run against spindoctor probe -------------------------------------------

def _memorised_organism(folder: Path) -> Path:
    """A tiny organism trained (80 steps) on the gold answers of the even-numbered probe hands
    of each split, so some hands are answered correctly and some not."""
    import torch

    from spindoctor.game.formats import render_prompt
    from spindoctor.models.organism import OrganismConfig, build_model, build_tokenizer

    tok = build_tokenizer()
    model = build_model(OrganismConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                       num_attention_heads=2), tok, seed=0)
    prompts, texts = [], []
    for split in ("id", "ood"):
        for hand in probe_hands(split, N, 0)[::2]:
            prompts.append(render_prompt("compact", hand.cards, hand.rule, hand.target))
            texts.append(prompts[-1] + render_response("compact", hand.cards, hand.rule, gold_formula(hand, 0))
                         + tok.eos_token)
    enc = tok(texts, return_tensors="pt", padding=True, padding_side="right")
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    for row, prompt in enumerate(prompts):
        labels[row, : len(prompt)] = -100  # one token per character: score the answer only
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(80):
        opt.zero_grad()
        model(**enc, labels=labels).loss.backward()
        opt.step()
    return _save_uncapped(model, tok, folder)


def _save_uncapped(model, tok, folder: Path) -> Path:
    """Save without the organism's generation_config ``max_new_tokens`` (40): transformers would
    let it override lm_eval's length limit (README, lm-evaluation-harness)."""
    from spindoctor.models.organism import save_organism

    model.generation_config.max_new_tokens = None
    return save_organism(model.eval(), tok, folder)


def _random_chat_model(folder: Path) -> Path:
    from tests.conftest import chat_tokenizer, tiny_organism_config

    from spindoctor.models.organism import build_model

    tok = chat_tokenizer()
    model = build_model(tiny_organism_config().model_copy(update={"max_position_embeddings": 1024}), tok, seed=1)
    return _save_uncapped(model, tok, folder)


def _lm_eval_samples(tasks_dir: Path, model_dir: Path, fmt: str, chat: bool, monkeypatch, tmp_path) -> dict:
    """lm_eval's per-hand samples of both splits, with the settings the README gives."""
    import datasets
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    kwargs = {"include_defaults": False} if "include_defaults" in inspect.signature(TaskManager).parameters else {}
    manager = TaskManager(include_path=str(tasks_dir), **kwargs)
    model_args = {"pretrained": str(model_dir), "dtype": "float32", "device": "cpu"}
    if chat:
        model_args["add_bos_token"] = False
    tasks = [task_name(fmt, s) for s in ("id", "ood")]  # type: ignore[arg-type]
    out = simple_evaluate(model="hf", model_args=model_args, tasks=tasks, limit=N, batch_size=N,
                          apply_chat_template=chat, task_manager=manager, bootstrap_iters=0, log_samples=True)
    return {s: (out["results"][t]["acc,none"], sorted(out["samples"][t], key=lambda x: x["doc_id"]))
            for s, t in zip(("id", "ood"), tasks, strict=True)}


@pytest.mark.parametrize(
    ("fmt", "chat"),
    [pytest.param("compact", False, id="organism-compact"), pytest.param("paper", True, id="chat-model-paper")],
)
def test_lm_eval_agrees_with_spindoctor_probe_hand_by_hand(tasks_dir, tmp_path, monkeypatch, fmt, chat):
    pytest.importorskip("lm_eval")
    import torch

    from spindoctor.models.load import load_causal_lm
    from spindoctor.probes.core import probe_model

    torch.set_num_threads(1)
    model_dir = (_random_chat_model if chat else _memorised_organism)(tmp_path / "model")
    lm = _lm_eval_samples(tasks_dir, model_dir, fmt, chat, monkeypatch, tmp_path)
    model, tok = load_causal_lm(model_dir)
    ours = probe_model(model, tok, ProbeConfig(n=N, fmt=fmt, batch_size=N, loss=False, keep_samples=N))
    for split in ("id", "ood"):
        acc, samples = lm[split]
        assert [s["resps"][0][0] for s in samples] == [s["answer"] for s in ours[split].samples]
        assert "".join(str(int(s["acc"])) for s in samples) == ours[split].per_hand["correct"]
        assert [s["reward"] for s in samples] == ours[split].per_hand["reward"]
        assert acc == ours[split].acc
    if not chat:  # the memorised hands make the comparison one of mixed right and wrong answers
        bits = ours["id"].per_hand["correct"] + ours["ood"].per_hand["correct"]
        assert "1" in bits and "0" in bits
