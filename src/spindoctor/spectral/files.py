"""The files of a safetensors checkpoint: locating them, checking them, fingerprinting them.

:class:`spindoctor.spectral.tensors.Checkpoint` builds on this module. Everything
a malformed checkpoint can do wrong (a missing, truncated or corrupt shard, an
index that is not a JSON object or disagrees with its shards, a config.json that
is not an object) is a :class:`~spindoctor.errors.UserError` raised here, when
the checkpoint is opened, before any work starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path

from spindoctor.errors import UserError

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
MEMO_FILE = "fingerprints.json"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def read_json_object(path: Path, what: str) -> dict:
    """The JSON object in ``path``; UserError naming ``what`` if it is not valid JSON or not an object."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not a valid {what} ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path} is not a valid {what}: a JSON object is expected, got {type(doc).__name__}")
    return doc


def shard_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """``{tensor name: shape}`` of one safetensors file (header only); UserError if it is missing,
    truncated or corrupt."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return {name: tuple(fh.get_slice(name).get_shape()) for name in fh.keys()}  # noqa: SIM118
    except FileNotFoundError:
        raise UserError(f"{path} is missing") from None
    except Exception as exc:  # safetensors raises its own error types for corrupt or truncated files
        raise UserError(f"{path} is not a readable safetensors file ({exc})") from None


Located = tuple[list[Path], dict[str, Path], dict[str, tuple[int, ...]]]


def locate(path: Path) -> Located:
    """``(weight files, tensor name -> file, tensor name -> shape)`` of a checkpoint folder or
    ``.safetensors`` file.

    Every file is opened (headers only) and, for a sharded checkpoint, the index
    is checked against its shards: each listed tensor must be in the shard the
    index names.
    """
    if path.is_file():
        if path.suffix != ".safetensors":
            raise UserError(f"{path} is not a .safetensors file")
        shapes = shard_shapes(path)
        return [path], dict.fromkeys(shapes, path), shapes
    if (path / INDEX_FILE).is_file():
        return _locate_sharded(path)
    if (path / SINGLE_FILE).is_file():
        shapes = shard_shapes(path / SINGLE_FILE)
        return [path / SINGLE_FILE], dict.fromkeys(shapes, path / SINGLE_FILE), shapes
    hint = " (only safetensors is read, never pickle)" if any(path.glob("*.bin")) else ""
    raise UserError(f"{path} is not a checkpoint: no {SINGLE_FILE} or {INDEX_FILE}{hint}")


def _locate_sharded(path: Path) -> Located:
    index_path = path / INDEX_FILE
    weight_map = read_json_object(index_path, "safetensors index").get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map or not all(
        isinstance(k, str) and isinstance(v, str) and v and "/" not in v and v not in (".", "..")
        for k, v in weight_map.items()
    ):
        raise UserError(f"{index_path} is not a valid safetensors index: 'weight_map' must map tensor names "
                        "to shard file names in the same folder")
    mapping = {k: path / v for k, v in weight_map.items()}
    missing = sorted({f.name for f in mapping.values() if not f.is_file()})
    if missing:
        raise UserError(f"{path}: shard(s) listed in the index are missing: {', '.join(missing)}")
    files = sorted(set(mapping.values()))
    held = {f: shard_shapes(f) for f in files}
    for name, f in mapping.items():
        if name not in held[f]:
            raise UserError(f"{index_path} disagrees with its shards: {name!r} is not in {f.name}")
    return files, mapping, {name: held[f][name] for name, f in mapping.items()}


def read_config(path: Path) -> dict:
    """config.json beside the weights as a dict (``{}`` when there is none)."""
    folder = path if path.is_dir() else path.parent
    cfg = folder / "config.json"
    return read_json_object(cfg, "config.json") if cfg.is_file() else {}


def _read_memo(memo_path: Path) -> dict[str, str]:
    """The fingerprint memo; a malformed one is ignored (with a warning) and rebuilt.

    The memo only saves re-reading weight files: any entry that is not a 64-hex
    digest is dropped, so a damaged memo costs one re-hash, never a wrong fingerprint.
    """
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        warnings.warn(f"{memo_path} is unreadable ({type(exc).__name__}); rebuilding it", stacklevel=3)
        return {}
    if not isinstance(memo, dict):
        warnings.warn(f"{memo_path} is not a JSON object; rebuilding it", stacklevel=3)
        return {}
    good = {k: v for k, v in memo.items() if isinstance(v, str) and _HEX64.fullmatch(v)}
    if len(good) != len(memo):
        warnings.warn(f"{memo_path}: dropped {len(memo) - len(good)} malformed entries", stacklevel=3)
    return good


def file_digest(f: Path, memo_dir: Path | None) -> str:
    """SHA-256 of one file's bytes, memoised in ``memo_dir/fingerprints.json`` by path, size, inode, mtime."""
    st = f.stat()
    key = f"{os.path.realpath(f)}|{st.st_size}|{st.st_ino}|{st.st_mtime_ns}"
    memo_path = memo_dir / MEMO_FILE if memo_dir else None
    memo = _read_memo(memo_path) if memo_path else {}
    if key in memo:
        return memo[key]
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        while chunk := fh.read(1 << 24):
            h.update(chunk)
    digest = h.hexdigest()
    if memo_path:
        from spindoctor.io import atomic_write_json

        memo[key] = digest
        atomic_write_json(memo_path, memo)
    return digest
