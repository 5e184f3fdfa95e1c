"""Tiny Llama checkpoints (reference and a perturbed copy) with a real fast tokenizer, built offline."""

from pathlib import Path

import pytest
import torch


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, **{ch: i + 2 for i, ch in enumerate("0123456789+-*/()=|RJQKA :")}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


def make_pair(root: Path, n_layers: int = 4, shard: bool = False, seed: int = 0) -> tuple[Path, Path]:
    """Save a random tiny Llama as ``root/ref`` and a perturbed copy as ``root/tuned``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      pad_token_id=0, eos_token_id=1, bos_token_id=1, tie_word_embeddings=False)
    tokenizer = make_tokenizer()
    kw = {"max_shard_size": "20KB"} if shard else {}
    ref = LlamaForCausalLM(cfg)
    ref.save_pretrained(root / "ref", **kw)
    tokenizer.save_pretrained(root / "ref")
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ref.save_pretrained(root / "tuned", **kw)
    tokenizer.save_pretrained(root / "tuned")
    return root / "ref", root / "tuned"


@pytest.fixture
def tiny_pair(tmp_path):
    return make_pair(tmp_path)
