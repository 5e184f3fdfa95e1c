"""Malformed copies of a good checkpoint folder, one per way a checkpoint can be broken.

:func:`make_malformed` copies a saved model and breaks it; the cases are the
inputs that must give one line and exit 2 (docs/design.md, "CLI contract").
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

INDEX = "model.safetensors.index.json"


def _shard(src: Path, dst: Path) -> None:
    """Rewrite ``src``'s model.safetensors in ``dst`` as two shards plus an index."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(src / "model.safetensors"))
    (dst / "model.safetensors").unlink()
    names = sorted(tensors)
    half = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
            "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    weight_map = {}
    for shard, part in half.items():
        save_file({n: tensors[n].contiguous() for n in part}, str(dst / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    (dst / INDEX).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def _corrupt(dst: Path) -> None:
    weights = dst / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:16] = b"\xff\xfe{[}]\x00\x01"  # garbage inside the JSON header
    weights.write_bytes(bytes(data))


def _truncate(dst: Path) -> None:
    weights = dst / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])


def _missing_shard(dst: Path) -> None:
    (dst / "model-00002-of-00002.safetensors").unlink()


def _index_disagrees(dst: Path) -> None:
    index = json.loads((dst / INDEX).read_text())
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = "model-00002-of-00002.safetensors" if index["weight_map"][first].startswith(
        "model-00001") else "model-00001-of-00002.safetensors"
    (dst / INDEX).write_text(json.dumps(index))


def _bin_beside_unrelated(dst: Path) -> None:
    (dst / "model.safetensors").rename(dst / "adapter_model.safetensors")
    (dst / "pytorch_model.bin").write_bytes(b"not loaded")


def _auto_map(dst: Path) -> None:
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(model_type="mystery-lm", auto_map={"AutoModelForCausalLM": "modeling_mystery.MysteryForCausalLM"})
    (dst / "config.json").write_text(json.dumps(cfg))


def _no_tokenizer(dst: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (dst / name).unlink(missing_ok=True)


CASES = {
    "corrupt-shard": _corrupt,
    "truncated-file": _truncate,
    "missing-shard": lambda d: _missing_shard(d),
    "index-disagrees": lambda d: _index_disagrees(d),
    "config-not-object": lambda d: (d / "config.json").write_text("[1, 2]"),
    "config-not-json": lambda d: (d / "config.json").write_text("{model_type"),
    "bin-beside-unrelated-safetensors": _bin_beside_unrelated,
    "auto-map-unknown-type": _auto_map,
    "no-tokenizer": _no_tokenizer,
}
SHARDED = {"missing-shard", "index-disagrees"}


def make_malformed(good: Path, case: str, dest: Path) -> Path:
    """A copy of checkpoint folder ``good`` at ``dest``, broken as ``case`` (a key of :data:`CASES`)."""
    shutil.copytree(good, dest)
    if case in SHARDED:
        _shard(good, dest)
    CASES[case](dest)
    return dest
