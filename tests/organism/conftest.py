"""Tiny models for the organism / probe / SFT tests (built from configs; nothing from a hub)."""

from __future__ import annotations

import pytest

from spindoctor.models.organism import OrganismConfig, build_model, build_tokenizer, save_organism

TINY = OrganismConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep the solution cache of these tests out of the user's home."""
    monkeypatch.setenv("SPINDOCTOR_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def tiny_organism_dir(tmp_path_factory):
    """A randomly initialised tiny organism saved as an HF folder."""
    import torch

    torch.set_num_threads(1)
    tok = build_tokenizer()
    model = build_model(TINY, tok, seed=0)
    return save_organism(model, tok, tmp_path_factory.mktemp("tiny-organism"))


def chat_tokenizer():
    """A character-level tokenizer over printable ASCII with a real chat template string."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<unk>", "<|user|>", "<|assistant|>"]
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    core = Tokenizer(models.WordLevel({t: i for i, t in enumerate(specials + chars)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    tok.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|assistant|>"]})
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}\n"
        "{% else %}<|assistant|>{{ m['content'] }}<eos>\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    return tok


@pytest.fixture(scope="session")
def tiny_chat_dir(tmp_path_factory):
    """A tiny random Llama with a chat-template tokenizer (for the paper format)."""
    tok = chat_tokenizer()
    model = build_model(TINY.model_copy(update={"max_position_embeddings": 1024}), tok, seed=1)
    return save_organism(model, tok, tmp_path_factory.mktemp("tiny-chat"))
