"""The organism: Auto-class loading, tokenizer round trip, corpus correctness, a few pretraining steps."""

from __future__ import annotations

import random

import pytest

from spindoctor.game.formats import parse_compact_response
from spindoctor.game.rewards import judge_formula
from spindoctor.models.organism import CHARS, count_parameters, save_organism
from spindoctor.models.organism_corpus import CorpusConfig, random_formula, sample_batch


def test_loads_through_auto_classes(tiny_organism_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_organism_dir, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(tiny_organism_dir)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not list(tiny_organism_dir.glob("*.bin"))
    text = "R11 K Q 10 A =24: 13 12 10 1|(13-1)*(12-10)"
    ids = tok(text)["input_ids"]
    assert len(ids) == len(text)  # one token per character, no BOS
    assert tok.decode(ids) == text
    assert tok.unk_token_id not in ids
    out = model(input_ids=torch.tensor([ids])).logits
    assert out.shape == (1, len(text), len(tok))


def test_prototype_size_is_about_a_million_parameters():
    from spindoctor.models.organism import OrganismConfig, build_model, build_tokenizer

    tok = build_tokenizer()
    n = count_parameters(build_model(OrganismConfig(), tok))
    assert 1.0e6 < n < 1.1e6  # the prototype size: about 1.06M
    assert len(tok) == 3 + len(CHARS)


def test_corpus_is_correct_and_leaves_the_band_out():
    cfg = CorpusConfig()
    pairs = sample_batch(cfg, random.Random(0), 400)
    targets = []
    for prompt, completion in pairs:
        assert prompt.startswith(("R10 ", "R11 "))
        if "=" not in prompt:  # value lookup
            assert "|" not in completion
            continue
        target = int(prompt.split("=")[1].rstrip(":"))
        targets.append(target)
        assert not cfg.band_lo <= target <= cfg.band_hi
        parsed = parse_compact_response(completion)
        assert parsed.well_formed
        assert judge_formula(parsed.formula, parsed.numbers, target).correct, (prompt, completion)
    assert len(set(targets)) > 20
    assert sample_batch(cfg, random.Random(0), 5) == pairs[:5]  # seeded


@pytest.mark.parametrize("values", [(1,), (3, 8), (0, 5, 5), (13, 13, 13, 13)], ids=["one", "two", "zero", "four"])
def test_random_formula_value_is_exact(values):
    from fractions import Fraction

    from spindoctor.game.verifier import evaluate, parse_formula

    rng = random.Random(1)
    for _ in range(50):
        drawn = random_formula(values, rng)
        if drawn is None:
            continue
        text, value = drawn
        assert evaluate(parse_formula(text).rpn) == Fraction(value)
        assert sorted(parse_formula(text).numbers) == sorted(values)


def test_pretrain_steps_change_weights_and_save(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from spindoctor.models.organism import OrganismConfig, build_model, build_tokenizer
    from spindoctor.models.organism_pretrain import PretrainConfig, pretrain

    tiny = OrganismConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    cfg = PretrainConfig(steps=3, batch_size=8, warmup_steps=1, log_every=1, threads=1, organism=tiny)
    summary = pretrain(cfg, tmp_path / "base", progress=False)
    assert len(summary["log"]) == 3 and all(r["loss"] == r["loss"] for r in summary["log"])
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    init = build_model(tiny, build_tokenizer(), seed=0)
    diff = sum(float((a - b).abs().sum()) for a, b in zip(trained.parameters(), init.parameters(), strict=True))
    assert diff > 0
    assert (tmp_path / "base" / "pretrain_config.yaml").exists()
    assert torch.isfinite(torch.tensor(summary["final_loss_ema"]))
    save_organism(trained, build_tokenizer(), tmp_path / "again")  # re-save works


def _tiny_pretrain_config():
    from spindoctor.models.organism import OrganismConfig
    from spindoctor.models.organism_pretrain import PretrainConfig

    tiny = OrganismConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    return PretrainConfig(steps=2, batch_size=8, warmup_steps=1, log_every=1, threads=1, eval_n=4, organism=tiny)


def _fill(out, kind):
    """An --out folder of one kind (see the ids of the tests below)."""
    if kind == "a-file":
        out.write_text("my notes")
        return
    if kind != "absent":
        out.mkdir()
    files = {"user-files": ["notes.txt"], "pretrain-files-and-a-user-file": ["pretrain_config.yaml", "notes.txt"],
             "model-files-without-pretrain-config": ["config.json", "tokenizer.json"],
             "killed-pretrain": ["pretrain_config.yaml", "pretrain_log.jsonl", "config.json"]}.get(kind, [])
    for name in files:
        (out / name).write_text('{"step": 99}\n' if name == "pretrain_log.jsonl" else "mine")
    if kind == "subfolder":
        (out / "pretrain_config.yaml").write_text("old")
        (out / "eval").mkdir()


@pytest.mark.parametrize("kind", ["user-files", "pretrain-files-and-a-user-file", "model-files-without-pretrain-config",
                                  "subfolder", "a-file"])
def test_pretrain_refuses_an_out_it_did_not_write_before_any_work(kind, tmp_path, capsys):
    from spindoctor.cli import main

    out = tmp_path / "base"
    _fill(out, kind)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code = main(["organism", "pretrain", "--out", str(out), "--steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--out" in err, err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("kind", ["absent", "empty", "killed-pretrain"])
def test_pretrain_writes_into_an_absent_empty_or_own_out(kind, tmp_path):
    from spindoctor.io import read_jsonl
    from spindoctor.models.organism_pretrain import OUTPUT_FILES, pretrain

    out = tmp_path / "base"
    _fill(out, kind)
    pretrain(_tiny_pretrain_config(), out, progress=False)
    assert [r["step"] for r in read_jsonl(out / "pretrain_log.jsonl")] == [1, 2]  # the old log is replaced
    assert {p.name for p in out.iterdir()} <= OUTPUT_FILES and (out / "model.safetensors").exists()


@pytest.mark.parametrize("pack_len", [48, 96, 400], ids=["one-per-row-mostly", "default-96", "all-in-one-row"])
def test_packed_batch_gives_the_padded_loss_and_logits(pack_len):
    """Packing is a layout change only: every sequence sees just itself, so the loss and each
    sequence's logits equal the right-padded batch's."""
    import random

    import torch

    from spindoctor.models.organism import OrganismConfig, build_model, build_tokenizer
    from spindoctor.models.organism_pretrain import encode_batch, pack_batch, training_loss

    tok = build_tokenizer()
    tiny = OrganismConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    model = build_model(tiny, tok, seed=0).eval()
    pairs = sample_batch(CorpusConfig(), random.Random(3), 12)
    with torch.no_grad():
        padded = training_loss(model, tok, pairs, pack_len=0)
        packed = training_loss(model, tok, pairs, pack_len=pack_len)
    assert abs(float(padded) - float(packed)) < 1e-5
    input_ids, position_ids, labels = pack_batch(tok, pairs, pack_len)
    assert int((labels != -100).sum()) == int((encode_batch(tok, pairs)[2] != -100).sum())
    starts = (position_ids == 0).nonzero().tolist()
    assert len(starts) == len(pairs)  # every sequence exactly once
    with torch.no_grad():
        logits = model(input_ids=input_ids, position_ids=position_ids, use_cache=False).logits
        for row, col in starts[:4]:
            run = position_ids[row, col:] == torch.arange(position_ids.shape[1] - col)
            n = int(run.all()) * len(run) or int((~run).int().argmax())  # to the next start or the row's end
            alone = model(input_ids=input_ids[row:row + 1, col:col + n], use_cache=False).logits
            assert torch.allclose(alone[0], logits[row, col:col + n], atol=1e-5)


def test_pack_batch_respects_the_row_length_and_isolates_long_sequences():
    from spindoctor.models.organism import build_tokenizer
    from spindoctor.models.organism_pretrain import pack_batch

    tok = build_tokenizer()
    pairs = [("R10 A 2 =3:", " 1 2|1+2"), ("R10 K Q J 10 =40:", " 10 10 10 10|10+10+10+10"), ("R10 A =1:", " 1|1")]
    input_ids, position_ids, labels = pack_batch(tok, pairs, pack_len=36)
    lengths = [len(tok(p + c + tok.eos_token)["input_ids"]) for p, c in pairs]
    assert lengths[0] + lengths[2] <= 36 < lengths[1]  # longer than a row: a row of its own, never split
    assert input_ids.shape == (2, lengths[1])
    assert int((position_ids[0] == 0).sum()) == 1
    assert input_ids.shape == position_ids.shape == labels.shape
