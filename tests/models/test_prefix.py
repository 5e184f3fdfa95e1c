"""The prober's shared-prefix path against its plain path: identical greedy answers, equal losses.

Models are tiny and random, built from configs: a Llama with grouped-query
attention (hidden 16, 2 layers) behind a chat-template tokenizer, and the
organism's architecture with its compact tokenizer and with the chat tokenizer
(docs/design.md, "Probes").
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from tests.conftest import chat_tokenizer

from spindoctor.models.prefix import (
    cache_kwarg,
    fast_path_supported,
    prefix_cache,
    shared_prefix_length,
)
from spindoctor.probes.core import ProbeConfig, probe_split


@pytest.mark.parametrize(
    "rows, limit, expected",
    [([[1, 2, 3, 4], [1, 2, 3, 5]], 10, 3), ([[1, 2, 3], [1, 2, 3]], 2, 2), ([[1, 2], [1, 3]], 10, 0),
     ([[7, 8, 9]], 2, 2), ([[1, 2, 3, 4], [1, 2]], 10, 2), ([[5, 6], [6, 5]], 10, 0)],
    ids=["diverge-at-3", "capped-by-limit", "below-minimum", "single-row", "short-row", "nothing-shared"],
)
def test_shared_prefix_length(rows, limit, expected):
    assert shared_prefix_length(rows, limit) == expected


def gqa_llama_dir(path):
    """A random Llama (hidden 16, 2 layers, 4 query heads on 2 KV heads) with a chat template."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = chat_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    torch.manual_seed(3)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def models(tiny_organism_dir, tiny_chat_dir, tmp_path_factory):
    from spindoctor.models.load import load_causal_lm

    gqa = gqa_llama_dir(tmp_path_factory.mktemp("gqa-llama"))
    return {name: load_causal_lm(path) for name, path in
            (("organism", tiny_organism_dir), ("organism-chat", tiny_chat_dir), ("gqa-llama", gqa))}


CASES = [
    ("organism", "compact", 1, 16), ("organism", "compact", 2, 5), ("organism-chat", "paper", 1, 16),
    ("gqa-llama", "paper", 1, 16), ("gqa-llama", "paper", 2, 4),
]


@pytest.mark.parametrize("name, fmt, turns, batch", CASES,
                         ids=["organism-compact", "organism-compact-episodes-small-batches", "organism-paper",
                              "gqa-llama-paper", "gqa-llama-paper-episodes-small-batches"])
def test_prefix_path_matches_plain_path(models, name, fmt, turns, batch):
    model, tok = models[name]
    cfg = ProbeConfig(splits=["ood"], n=12, fmt=fmt, max_new_tokens=12, batch_size=batch, loss_batch_size=batch,
                      max_turns=turns, keep_samples=12)
    plain = probe_split(model, tok, cfg, "ood", fast=False)
    fast = probe_split(model, tok, cfg, "ood", fast=True)
    assert [s["answer"] for s in fast.samples] == [s["answer"] for s in plain.samples]
    assert any(s["answer"] for s in plain.samples)  # the models do generate text
    assert fast.per_hand["correct"] == plain.per_hand["correct"]
    assert fast.per_hand.get("episode_correct") == plain.per_hand.get("episode_correct")
    assert fast.loss_tokens == plain.loss_tokens > 0
    assert fast.loss == pytest.approx(plain.loss, rel=1e-5)
    assert fast.per_hand["loss"] == pytest.approx(plain.per_hand["loss"], rel=1e-5, abs=2e-6)


def test_cache_grows_past_its_planned_capacity(models):
    """More positions than planned still give the plain forward's logits (the buffer doubles)."""
    model, _ = models["gqa-llama"]
    ids = torch.randint(5, 60, (1, 20))
    with torch.inference_mode():
        want = model(input_ids=ids.expand(3, -1)).logits[:, -8:]
        cache = prefix_cache(model, ids[0, :6].tolist(), 3, capacity=8, device=torch.device("cpu"))
        got = model(input_ids=ids[:, 6:].expand(3, -1), use_cache=True, **{cache_kwarg(model): cache}).logits[:, -8:]
    assert cache.get_seq_length() == 20
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("kind", ["sliding-window", "static-cache-config"], ids=["sliding-window", "static-cache"])
def test_models_the_prefix_path_cannot_serve_fall_back(kind):
    from transformers import GenerationConfig, LlamaConfig, MistralConfig

    if kind == "sliding-window":
        stub = SimpleNamespace(config=MistralConfig(num_hidden_layers=2, sliding_window=8), generation_config=None)
    else:
        stub = SimpleNamespace(config=LlamaConfig(num_hidden_layers=2),
                               generation_config=GenerationConfig(cache_implementation="static"))
    assert not fast_path_supported(stub)


@pytest.mark.parametrize("name, fmt, max_logits", [("organism", "compact", 2**28), ("gqa-llama", "paper", 2**28),
                                                   ("gqa-llama", "paper", 1)],
                         ids=["organism-compact", "gqa-llama-paper", "gqa-llama-paper-one-row-per-pass"])
def test_fast_probe_reads_the_loss_off_the_answer_caches(models, monkeypatch, name, fmt, max_logits):
    """On the prefix path the loss comes from the generation's prompt caches (no separate
    loss pass), and equals the plain path's; completions longer than the answers included."""
    import spindoctor.probes.core as core

    model, tok = models[name]
    cfg = ProbeConfig(splits=["ood"], n=10, fmt=fmt, max_new_tokens=6, batch_size=4, loss_max_logits=max_logits)
    plain = probe_split(model, tok, cfg, "ood", fast=False)

    def no_separate_pass(*args, **kwargs):
        raise AssertionError("the prefix path ran a separate loss pass")

    monkeypatch.setattr(core, "sequence_nll", no_separate_pass)
    fast = probe_split(model, tok, cfg, "ood", fast=True)
    assert fast.loss_tokens == plain.loss_tokens
    assert fast.per_hand["loss"] == pytest.approx(plain.per_hand["loss"], rel=1e-5, abs=2e-6)
    assert fast.per_hand["correct"] == plain.per_hand["correct"]
