"""Load a local HF causal LM + tokenizer safely (safetensors only, no remote code by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spindoctor.errors import UserError


def load_causal_lm(path: str | Path, trust_remote_code: bool = False, device: str = "cpu") -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a local checkpoint folder, float32, eval mode, on ``device``
    (``auto``: CUDA when present; trainers that place the model themselves keep ``cpu``).

    Raises :class:`UserError` when the folder is missing or holds no
    ``*.safetensors`` weights (pickle checkpoints are never loaded).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise UserError(f"checkpoint folder not found: {path}")
    if not any(path.glob("*.safetensors")):
        raise UserError(f"no *.safetensors weights in {path} (pickle checkpoints are not loaded)")
    if not (path / "config.json").exists():
        raise UserError(f"no config.json in {path}: not a Hugging Face checkpoint")
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
