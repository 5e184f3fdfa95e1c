"""Probe sets (disjoint, reproducible), scoring accounts, golden loss, batched generation."""

from __future__ import annotations

import math

import pytest

from spindoctor.game.formats import render_response
from spindoctor.probes import ProbeConfig, metrics_row, probe_hands, probe_model, train_hands
from spindoctor.probes.sets import gold_formula


@pytest.mark.parametrize("fraction", [0.3, 0.5], ids=["f0.3", "f0.5"])
def test_probe_sets_are_disjoint_from_train_and_reproducible(fraction):
    train = {h.key for h in train_hands("id", 0, probe_fraction=fraction)}
    for split in ("id", "ood"):
        probe = probe_hands(split, None, 0, probe_fraction=fraction)
        assert len({h.key for h in probe}) == len(probe)  # one hand per key
        assert not train & {h.key for h in probe}
        assert [h.cards for h in probe_hands(split, 50, 0, probe_fraction=fraction)] == [h.cards for h in probe[:50]]
    other_seed = probe_hands("id", None, 1, probe_fraction=fraction)
    assert {h.key for h in other_seed} == {h.key for h in probe_hands("id", None, 0, probe_fraction=fraction)}


def test_default_probe_sets_hold_500_hands_per_split():
    assert len(probe_hands("id", None, 0)) >= 500  # probe_fraction 0.5
    assert len(probe_hands("ood", None, 0)) >= 500  # every eligible OOD hand
    assert all(h.rule == "face11" and any(c.rank > 10 for c in h.cards) for h in probe_hands("ood", 20, 0))


def test_scoring_accounts_with_a_known_answer_sheet(tiny_organism_dir, monkeypatch):
    """Half the hands answered with gold, a quarter with wrong values, a quarter with junk."""
    from spindoctor.models.load import load_causal_lm
    from spindoctor.probes import core

    model, tok = load_causal_lm(tiny_organism_dir)
    cfg = ProbeConfig(splits=["ood"], n=40, loss=False)
    hands = probe_hands("ood", 40, 0)

    def fake_generate(model, tokenizer, prompts, **kw):
        out = []
        for i, h in enumerate(hands):
            gold = render_response("compact", h.cards, h.rule, gold_formula(h, 0))
            if i % 4 == 2:  # face cards read as 10: the rule misread
                gold = " " + " ".join(str(min(v, 10)) for v in h.values) + "|1+1"
            out.append(gold if i % 4 < 3 else "junk")
        return out

    monkeypatch.setattr(core, "generate_texts", fake_generate)
    res = probe_model(model, tok, cfg)["ood"]
    assert res.n == 40 and res.acc == 0.5
    assert res.acc_se == pytest.approx(math.sqrt(0.25 / 40))
    assert res.well_formed == 0.75 and res.values_acc == 0.5
    row = metrics_row("sft", 7, res)
    assert {k: row[k] for k in ("stage", "step", "split", "n", "acc")} == {"stage": "sft", "step": 7, "split": "ood", "n": 40, "acc": 0.5}
    assert {"acc_se", "loss", "time", "well_formed", "values_acc"} <= set(row)


def test_loss_of_uniform_model_is_log_vocab(tiny_organism_dir):
    """Zero lm_head: every next-token distribution is uniform, so the loss is ln V exactly."""
    import torch

    from spindoctor.models.load import load_causal_lm

    model, tok = load_causal_lm(tiny_organism_dir)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    model.train()
    res = probe_model(model, tok, ProbeConfig(n=12, max_new_tokens=4))
    assert model.training  # mode restored
    for split in ("id", "ood"):
        assert res[split].loss == pytest.approx(math.log(len(tok)), rel=1e-6)
        assert res[split].loss_tokens > 12 * 10
        assert res[split].acc == 0.0 and res[split].well_formed == 0.0


def test_batched_left_padded_generation_matches_one_by_one(tiny_organism_dir):
    from spindoctor.models.generate import generate_texts
    from spindoctor.models.load import load_causal_lm

    model, tok = load_causal_lm(tiny_organism_dir)
    prompts = ["R10 J 5 2 2 =24:", "R11 10 A 3 =9:", "R10 K K K K =40:", "R11 A:"]
    batched = generate_texts(model, tok, prompts, max_new_tokens=12, batch_size=4)
    single = [generate_texts(model, tok, [p], max_new_tokens=12, batch_size=1)[0] for p in prompts]
    assert batched == single


def test_paper_format_with_chat_template_and_episodes(tiny_chat_dir):
    from spindoctor.models.load import load_causal_lm

    model, tok = load_causal_lm(tiny_chat_dir)
    cfg = ProbeConfig(fmt="paper", n=4, max_new_tokens=6, max_turns=2, batch_size=4)
    res = probe_model(model, tok, cfg)
    for split in ("id", "ood"):
        assert res[split].n == 4 and res[split].episode_acc is not None
        assert math.isfinite(res[split].loss) and res[split].loss > 0


def test_probe_cli_json_and_bad_splits(tiny_organism_dir, capsys):
    import json

    from spindoctor.cli import main

    assert main(["probe", str(tiny_organism_dir), "--n", "5", "--splits", "ood", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ood"]["n"] == 5 and "id" not in out
    assert main(["probe", str(tiny_organism_dir), "--splits", "train"]) == 2
    assert main(["probe", "/nonexistent/ckpt"]) == 2


def test_watch_probes_each_new_checkpoint_once(tiny_organism_dir, tmp_path):
    import os
    import shutil

    from spindoctor.cli import main
    from spindoctor.io import read_jsonl

    for step in (3, 7):
        dst = tmp_path / f"checkpoint-{step}"
        shutil.copytree(tiny_organism_dir, dst)
        for f in dst.iterdir():  # look finished (the watcher skips folders written in the last 2 s)
            os.utime(f, (f.stat().st_atime - 10, f.stat().st_mtime - 10))
    (tmp_path / "checkpoint-9").mkdir()  # no weights yet: skipped
    args = ["probe", "--watch", str(tmp_path), "--once", "--n", "3", "--splits", "id", "--json"]
    assert main(args) == 0
    assert main(args) == 0  # second scan: nothing new
    rows = read_jsonl(tmp_path / "probe_metrics.jsonl")
    assert [(r["stage"], r["step"], r["split"]) for r in rows] == [("watch", 3, "id"), ("watch", 7, "id")]


@pytest.mark.parametrize("args, field", [
    (["organism", "pretrain", "--out", "{tmp}/base", "--steps", "0"], "PretrainConfig setting steps"),
    (["sft", "--base", "{tmp}/b", "--out", "{tmp}/sft", "--batch-size", "0"], "SFTRunConfig setting batch_size"),
], ids=["pretrain-steps-0", "sft-batch-0"])
def test_out_of_range_flags_exit_2_with_one_line(args, field, tmp_path, capsys):
    from spindoctor.cli import main

    assert main([a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0]
    assert not list(tmp_path.iterdir())  # nothing written


def test_progress_reports_each_phase_to_completion(tiny_chat_dir):
    from spindoctor.models.load import load_causal_lm

    model, tok = load_causal_lm(tiny_chat_dir)
    seen: dict[str, list[tuple[int, int]]] = {}
    cfg = ProbeConfig(fmt="paper", n=5, max_new_tokens=4, max_turns=2, batch_size=2, loss_batch_size=2)
    probe_model(model, tok, cfg, progress=lambda phase, done, total: seen.setdefault(phase, []).append((done, total)))
    assert {"id answers", "id loss", "ood answers", "ood loss"} <= set(seen)
    assert any(phase.endswith("turn 2") for phase in seen)  # no 5-card hand is solved by a random model
    for phase, ticks in seen.items():
        dones = [d for d, _ in ticks]
        assert dones == sorted(dones) and dones[-1] == ticks[-1][1], phase
    assert len(seen["id answers"]) == 3  # 5 prompts in batches of 2
