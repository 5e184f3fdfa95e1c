"""Tiny random causal LMs with a character-level tokenizer, built offline in the test."""

from __future__ import annotations

from pathlib import Path

import pytest

CHARS = list("0123456789AJQKR =:|+-*/()\n,.")


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


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread for RL tests: on a busy 2-core machine, two threads that
    oversubscribe the cores make tiny-model steps tens of times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A saved tiny random model + tokenizer folder (safetensors)."""
    return save_tiny(tmp_path_factory.mktemp("tiny") / "ckpt")
