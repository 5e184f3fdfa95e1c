"""Load a local HF causal LM + tokenizer safely (safetensors only, no remote code by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spindoctor.models.checkpoints import check_checkpoint


def load_causal_lm(path: str | Path, trust_remote_code: bool = False, device: str = "cpu") -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a local checkpoint folder, float32, eval mode, on ``device``
    (``auto``: CUDA when present; trainers that place the model themselves keep ``cpu``).

    Raises :class:`~spindoctor.errors.UserError` (a ValueError) when the folder is
    missing, holds no ``*.safetensors`` weights (pickle checkpoints are never
    loaded) or no ``config.json``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = check_checkpoint(path, need_config=True)
    model = AutoModelForCausalLM.from_pretrained(
        path, use_safetensors=True, trust_remote_code=trust_remote_code, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    if device != "cpu":
        from spindoctor.devices import resolve_device

        model.to(resolve_device(device))
    return model, tokenizer
