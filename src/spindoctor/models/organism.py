"""The model organism: a tiny LlamaForCausalLM with a character-level tokenizer.

The organism is an ordinary Hugging Face checkpoint (``config.json``,
``model.safetensors``, ``tokenizer.json`` + ``tokenizer_config.json``,
``generation_config.json``), so ``AutoModelForCausalLM`` and ``AutoTokenizer``
load it from its folder and every other tool (probes, drift, restore, RL)
treats it exactly like a real checkpoint. Prototype size: hidden
128, 4 layers, 4 heads, MLP 512, about 1.06M parameters.

The vocabulary is one token per character of the game's ``compact`` format
(``R10 J 5 2 2 =24:`` -> `` 10 5 2 2|10*2+2+2``) plus ``<pad>``, ``<eos>`` and
``<unk>``. No BOS: prompts are short and always start with the rule marker.
Nothing here imports torch at module level (the CLI imports this module).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, EOS, UNK)
# Every character the compact format and the pretraining corpus use.
CHARS: tuple[str, ...] = tuple("0123456789AJQKR =:|+-*/()?,")


class OrganismConfig(BaseModel):
    """Architecture of the organism (a LlamaConfig subset); every field is saved with the model."""

    model_config = ConfigDict(extra="forbid")

    hidden_size: int = Field(128, ge=8, description="residual width")
    intermediate_size: int = Field(512, ge=8, description="MLP width")
    num_hidden_layers: int = Field(4, ge=1, description="decoder layers")
    num_attention_heads: int = Field(4, ge=1, description="attention heads (= KV heads)")
    max_position_embeddings: int = Field(128, ge=16, description="longest sequence in tokens")
    rope_theta: float = Field(10000.0, gt=0, description="RoPE base")
    tie_word_embeddings: bool = Field(False, description="share embedding and lm_head")


def build_tokenizer():
    """A character-level ``PreTrainedTokenizerFast`` (one token per character)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Every character is its own pre-token (spaces included); Fuse joins them back.
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, eos_token=EOS, unk_token=UNK,
        padding_side="left", model_max_length=128,
    )
    return tok


def build_model(cfg: OrganismConfig, tokenizer: Any, seed: int = 0):
    """A freshly initialised ``LlamaForCausalLM`` for ``tokenizer``'s vocabulary (float32)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_attention_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_theta=cfg.rope_theta,
        tie_word_embeddings=cfg.tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        do_sample=False, max_new_tokens=40,
    )
    return model


def count_parameters(model: Any) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_organism(model: Any, tokenizer: Any, out: str | Path) -> Path:
    """Save model (safetensors) and tokenizer into ``out`` (created)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
