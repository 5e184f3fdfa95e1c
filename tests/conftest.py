"""Shared test settings and tiny offline models.

Hypothesis profile sized for the 2-core CI machine; session fixtures for the
models/, probes/ and training/ tests: tiny random causal LMs with
character-level tokenizers, built from configs (nothing from a hub). torch is
imported inside the fixtures only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")

CHARS = list("0123456789AJQKR =:|+-*/()\n,.")


def tiny_organism_config():
    from spindoctor.models.organism import OrganismConfig

    return OrganismConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


@pytest.fixture
def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for ``torch.distributed.run --master_port``)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def isolated_cache(tmp_path_factory, monkeypatch):
    """Keep the solution cache of a test out of the user's home."""
    monkeypatch.setenv("SPINDOCTOR_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def tiny_organism_dir(tmp_path_factory):
    """A randomly initialised tiny organism saved as an HF folder."""
    import torch

    from spindoctor.models.organism import build_model, build_tokenizer, save_organism

    torch.set_num_threads(1)
    tok = build_tokenizer()
    model = build_model(tiny_organism_config(), tok, seed=0)
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
    from spindoctor.models.organism import build_model, save_organism

    tok = chat_tokenizer()
    model = build_model(tiny_organism_config().model_copy(update={"max_position_embeddings": 1024}), tok, seed=1)
    return save_organism(model, tok, tmp_path_factory.mktemp("tiny-chat"))


def char_tokenizer():
    """A character-level fast tokenizer over the compact format's alphabet."""
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3}
    for ch in CHARS:
        vocab[ch] = len(vocab)
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    tok.padding_side = "left"
    return tok


def tiny_model(vocab_size: int, seed: int = 0, hidden: int = 32, layers: int = 2):
    """A random LlamaForCausalLM small enough to train in seconds on a CPU."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)


def save_tiny(path: Path, seed: int = 0, hidden: int = 32) -> Path:
    tok = char_tokenizer()
    model = tiny_model(len(tok), seed, hidden)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A saved tiny random model + tokenizer folder (safetensors)."""
    return save_tiny(tmp_path_factory.mktemp("tiny") / "ckpt")
