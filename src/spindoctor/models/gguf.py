"""Convert a GGUF file (llama.cpp format) to a Hugging Face safetensors checkpoint folder.

transformers reads GGUF through the optional ``gguf`` package and dequantizes
the weights, but the loaded model is marked quantized and refuses
``save_pretrained`` (measured with transformers 5.x). So :func:`import_gguf` writes the
dequantized state dict with safetensors itself, a clean ``config.json`` (no
quantization entry; tied embeddings stay tied and ``lm_head.weight`` is not
duplicated when ``tie_word_embeddings`` is set) and the tokenizer.
Nothing is fetched from a hub: the GGUF path is local.
"""

from __future__ import annotations

from pathlib import Path

from spindoctor.errors import UserError


def import_gguf(gguf_file: str | Path, out: str | Path, dtype: str = "float32") -> dict:
    """Write ``out/`` = model.safetensors + config.json + tokenizer files from ``gguf_file``.

    Parameters
    ----------
    gguf_file : path to a ``.gguf`` file
    out : output folder (created; existing files with the same names are replaced atomically)
    dtype : ``float32``, ``bfloat16`` or ``float16`` for the written weights

    Returns
    -------
    dict with ``out``, ``model_type``, ``n_tensors``, ``n_params``, ``tied``.
    """
    import importlib.util

    gguf_file, out = Path(gguf_file), Path(out)
    if not gguf_file.is_file():
        raise UserError(f"GGUF file not found: {gguf_file}")
    with open(gguf_file, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise UserError(f"{gguf_file} is not a GGUF file (bad magic)")
    if importlib.util.find_spec("gguf") is None:
        raise UserError("reading GGUF needs the optional gguf package: pip install 'spindoctor[gguf]'")
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from spindoctor.io import atomic_path

    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in dtypes:
        raise UserError(f"dtype must be one of {', '.join(dtypes)}, got {dtype!r}")
    folder, name = str(gguf_file.parent), gguf_file.name
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (ValueError, OSError, KeyError) as exc:
        raise UserError(f"transformers cannot read {gguf_file}: {str(exc).splitlines()[0]}") from exc
    config = model.config
    tied = bool(getattr(config, "tie_word_embeddings", False))
    state = {}
    for key, t in model.state_dict().items():
        if tied and key == "lm_head.weight":
            continue  # tied to the embeddings: transformers re-ties it on load
        state[key] = t.detach().to(dtypes[dtype]).contiguous().clone()
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    config.dtype = dtype
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "source": gguf_file.name})
    config.save_pretrained(out)
    try:
        AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(out)
    except (ValueError, OSError, KeyError) as exc:  # weights are still usable without a tokenizer
        (out / "TOKENIZER_MISSING.txt").write_text(f"tokenizer not converted: {exc}\n")
    return {"out": str(out), "model_type": config.model_type, "n_tensors": len(state),
            "n_params": int(sum(t.numel() for t in state.values())), "tied": tied}
