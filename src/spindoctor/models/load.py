"""Load a local HF causal LM + tokenizer safely (safetensors only, no remote code by default).

:func:`check_model_folder` is the cheap guard every model-loading command runs
before any work (docs/design.md, "CLI contract"): a malformed checkpoint is one
:class:`~spindoctor.errors.UserError` line (exit 2), never a traceback from
transformers after outputs were started. It reads JSON and safetensors headers
only, through the drift engine's checked reader (:mod:`spindoctor.spectral.files`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spindoctor.errors import UserError
from spindoctor.models.checkpoints import check_checkpoint

# Any one of these makes a folder's tokenizer loadable by AutoTokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


def check_model_folder(path: str | Path, tokenizer: bool = True, trust_remote_code: bool = False) -> Path:
    """``path`` as a Path once it looks loadable; raise :class:`UserError` (one line) otherwise.

    Checks, reading no weights: a folder with ``config.json`` (a JSON object naming a
    ``model_type`` transformers knows, unless ``trust_remote_code``) and safetensors
    weights whose headers parse, whose files are as long as their headers say, and
    whose index (if sharded) agrees with its shards; with ``tokenizer``, tokenizer files
    (``tokenizer_config.json``, if present, a JSON object).
    """
    from spindoctor.spectral.files import locate, read_json_object

    path = check_checkpoint(path, need_config=True)
    config = read_json_object(path / "config.json", "config.json")
    _check_model_type(path, config, trust_remote_code)
    locate(path)
    if tokenizer:
        if not any((path / name).is_file() for name in TOKENIZER_FILES):
            raise UserError(f"no tokenizer in {path} (none of {', '.join(TOKENIZER_FILES)}): "
                            "this command needs the checkpoint's tokenizer")
        if (path / "tokenizer_config.json").exists():
            read_json_object(path / "tokenizer_config.json", "tokenizer_config.json")
    return path


def _check_model_type(path: Path, config: dict, trust_remote_code: bool) -> None:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise UserError(f"{path / 'config.json'} names no model_type: not a Hugging Face model config")
    if model_type in CONFIG_MAPPING_NAMES or trust_remote_code:
        return
    custom = " (its auto_map names custom code, which runs only with trust_remote_code)" if "auto_map" in config else ""
    raise UserError(f"{path}: model type {model_type!r} is unknown to this transformers{custom}")


def load_causal_lm(path: str | Path, trust_remote_code: bool = False, device: str = "cpu") -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a local checkpoint folder, float32, eval mode, on ``device``
    (``auto``: CUDA when present; trainers that place the model themselves keep ``cpu``).

    Raises :class:`~spindoctor.errors.UserError` (a ValueError) when the folder fails
    :func:`check_model_folder` (pickle checkpoints are never loaded), when ``device``
    is absent, or when transformers cannot build the model or tokenizer from it.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = check_model_folder(path, tokenizer=True, trust_remote_code=trust_remote_code)
    target = None
    if device != "cpu":
        from spindoctor.devices import resolve_device

        target = resolve_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises many types for a bad tokenizer folder
        raise UserError(f"cannot load the tokenizer of {path} ({_first_line(exc)})") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, use_safetensors=True, trust_remote_code=trust_remote_code, dtype=torch.float32
        )
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise UserError(f"cannot load the model in {path} ({_first_line(exc)})") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    if target is not None:
        model.to(target)
    return model, tokenizer


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
