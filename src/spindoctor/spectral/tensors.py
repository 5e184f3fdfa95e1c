"""Streaming safetensors checkpoints: tensor iteration, matrix selection, layer index.

Public API (directional restoration builds on it):

- :class:`Checkpoint` opens a Hugging Face checkpoint folder (``model.safetensors``
  or shards listed in ``model.safetensors.index.json``) or one ``.safetensors``
  file and reads one tensor at a time (``Checkpoint.matrix(name)``); nothing is
  unpickled and the whole model is never in memory.
- :func:`parse_name` gives a tensor's :class:`MatrixInfo`: layer index, matrix
  kind (``q_proj``, ``down_proj``, ``qkv`` ...) and whether it is stored as a
  GPT-2 ``Conv1D`` weight (``(in, out)``, transposed on read so every matrix is
  ``(out, in)`` like ``nn.Linear``).
- :func:`select_matrices` applies a preset (``paper``, ``attn``, ``mlp``,
  ``linear``, ``all``) and an optional regex to a checkpoint's names.
- :func:`paired_matrices` checks that two checkpoints are comparable (same
  architecture, same selected names, same shapes) and raises
  :class:`~spindoctor.errors.UserError` otherwise.

Names are parsed for Llama, Qwen2, Mistral, Gemma (``model.layers.N.self_attn.q_proj``),
GPT-2 (``transformer.h.N.attn.c_attn``) and nested multimodal models
(``language_model.model.layers.N...``, ``model.language_model.layers.N...``).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

from spindoctor.errors import UserError
from spindoctor.spectral.files import INDEX_FILE, SINGLE_FILE, file_digest, locate, read_config

__all__ = ["INDEX_FILE", "SINGLE_FILE", "PRESETS", "Checkpoint", "MatrixInfo", "paired_matrices", "parse_name",
           "select_matrices"]

# Presets: which matrix kinds each selects. "paper" is what Jin et al. analysed
# (arXiv:2508.16546; docs/design.md, "Spectral drift": q_proj, k_proj, v_proj, mlp.down_proj);
# GPT-2 fuses q, k, v into one c_attn matrix ("qkv").
ATTN_KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "qkv")
MLP_KINDS = ("gate_proj", "up_proj", "down_proj")
PRESETS: dict[str, tuple[str, ...] | None] = {
    "paper": ("q_proj", "k_proj", "v_proj", "qkv", "down_proj"),
    "attn": ATTN_KINDS,
    "mlp": MLP_KINDS,
    "linear": ATTN_KINDS + MLP_KINDS,
    "all": None,  # every 2-D weight, embeddings and lm_head included
}

_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")
# Module name (last component before ".weight") -> kind.
_KIND = {
    "q_proj": "q_proj", "k_proj": "k_proj", "v_proj": "v_proj", "o_proj": "o_proj",
    "gate_proj": "gate_proj", "up_proj": "up_proj", "down_proj": "down_proj",
    "c_attn": "qkv", "c_fc": "up_proj",
    "embed_tokens": "embed", "wte": "embed", "wpe": "pos_embed", "lm_head": "lm_head",
}
_CONV1D = re.compile(r"\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$")


@dataclass(frozen=True)
class MatrixInfo:
    """Where a weight matrix sits in the model.

    Attributes
    ----------
    name : str
        Tensor name in the checkpoint.
    layer : int or None
        Decoder block index, None for embeddings / lm_head / unknown.
    kind : str
        ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``, ``qkv``, ``gate_proj``,
        ``up_proj``, ``down_proj``, ``embed``, ``pos_embed``, ``lm_head`` or
        ``other:<module>``.
    component : str
        Name prefix before the block list (``model``, ``language_model.model``,
        ``transformer``, ``vision_tower...``); separates towers of multimodal models.
    conv1d : bool
        Stored as GPT-2 ``Conv1D`` ``(in, out)``; :meth:`Checkpoint.matrix` transposes it.
    """

    name: str
    layer: int | None
    kind: str
    component: str
    conv1d: bool


def parse_name(name: str) -> MatrixInfo:
    """Parse a tensor name into a :class:`MatrixInfo` (pure string work)."""
    conv1d = bool(_CONV1D.search(name))
    m = _LAYER.search(name)
    layer = int(m.group(1)) if m else None
    component = name[: m.start()] if m else name.rsplit(".", 2)[0] if name.count(".") >= 2 else ""
    parts = name.split(".")
    module = parts[-2] if len(parts) >= 2 and parts[-1] in ("weight", "bias") else parts[-1]
    if module == "c_proj":  # GPT-2: attn.c_proj is the output projection, mlp.c_proj the down projection
        kind = "o_proj" if ".attn." in name else "down_proj"
    else:
        kind = _KIND.get(module, f"other:{module}")
    return MatrixInfo(name=name, layer=layer, kind=kind, component=component, conv1d=conv1d)


class Checkpoint:
    """A safetensors checkpoint read one tensor at a time (never unpickled).

    Parameters
    ----------
    path : str or Path
        A folder holding ``model.safetensors`` or ``model.safetensors.index.json``
        plus shards, or a single ``.safetensors`` file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise UserError(f"checkpoint not found: {self.path}")
        # every header is read and checked here, so a malformed checkpoint fails before any work
        self.files, self.weight_map, self._shapes = locate(self.path)
        self.config = read_config(self.path)

    @property
    def model_type(self) -> str | None:
        """``model_type`` from config.json (None when there is no config)."""
        model_type = self.config.get("model_type")
        return model_type if isinstance(model_type, str) else None

    def names(self) -> list[str]:
        """Every tensor name, in file order."""
        return list(self.weight_map)

    def shape(self, name: str) -> tuple[int, ...]:
        """Stored shape of a tensor (before any Conv1D transpose)."""
        return self._shapes[name]

    def matrix_shape(self, name: str) -> tuple[int, int]:
        """``(out, in)`` shape of a 2-D weight after the Conv1D transpose."""
        shape = self._shapes.get(name)
        if shape is None or len(shape) != 2:
            raise UserError(f"tensor {name!r} in {self.path} is " + ("absent" if shape is None else f"{len(shape)}-D, not a matrix"))
        a, b = shape
        return (b, a) if parse_name(name).conv1d else (a, b)

    def tensor(self, name: str):
        """Read one tensor as stored (a torch tensor; only this tensor is loaded)."""
        import safetensors
        from safetensors import safe_open

        if name not in self.weight_map:
            raise UserError(f"tensor {name!r} not in checkpoint {self.path}")
        # Open per read: the mapping is released afterwards, so resident memory stays
        # near the tensors in use instead of growing with every page of the file read.
        try:
            with safe_open(str(self.weight_map[name]), framework="pt") as fh:
                return fh.get_tensor(name)
        except (OSError, safetensors.SafetensorError) as exc:  # changed on disk since it was opened
            raise UserError(f"cannot read {name!r} from {self.weight_map[name]} ({exc})") from None

    def matrix(self, name: str, check_finite: bool = True):
        """Read a 2-D weight as float32 ``(out, in)``, checking it is finite.

        ``check_finite=False`` leaves the check to the caller: a factorisation found
        in the content-keyed cache was made from these very bytes, already checked
        (:func:`spindoctor.spectral.svd.load_factorization` checks on a miss).

        Raises
        ------
        UserError
            If the tensor is not 2-D or holds NaN/Inf.
        """
        import torch

        t = self.tensor(name)
        if t.ndim != 2:
            raise UserError(f"tensor {name!r} in {self.path} is {t.ndim}-D, not a matrix")
        t = t.to(torch.float32)
        if parse_name(name).conv1d:
            t = t.T.contiguous()
        if check_finite:
            self.check_finite(name, t)
        return t

    def check_finite(self, name: str, t) -> None:
        """Raise :class:`UserError` when float32 matrix ``t`` (tensor ``name``) holds NaN or Inf."""
        import torch

        # One numpy reduction (single-threaded, cheap); the elementwise check runs only
        # when the sum is not finite (NaN/Inf, or an overflow of huge finite values).
        if not math.isfinite(float(t.numpy().sum(dtype="float64"))) and not bool(torch.isfinite(t).all()):
            raise UserError(f"tensor {name!r} in {self.path} holds NaN or Inf values")

    def fingerprint(self, memo_dir: Path | None = None) -> str:
        """Content fingerprint: SHA-256 over the bytes of every weight file.

        Hashing is memoised in ``memo_dir/fingerprints.json`` keyed by each file's
        real path, size, inode and mtime, so a warm rerun does not re-read the
        files; the fingerprint itself depends only on the bytes.
        """
        h = hashlib.sha256()
        for f in self.files:
            h.update(file_digest(f, memo_dir).encode())
        return h.hexdigest()


def select_matrices(ckpt: Checkpoint, preset: str = "paper", regex: str | None = None) -> list[MatrixInfo]:
    """Pick the 2-D weights a preset and an optional regex (``re.search``) select.

    Returns them ordered by (component, layer, kind, name); embeddings first.
    """
    if preset not in PRESETS:
        raise UserError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    try:
        pattern = re.compile(regex) if regex else None
    except re.error as exc:
        raise UserError(f"regex {regex!r} is not a valid regular expression ({exc})") from None
    kinds = PRESETS[preset]
    out = []
    for name in ckpt.names():
        if len(ckpt.shape(name)) != 2 or not name.endswith("weight"):
            continue
        info = parse_name(name)
        if kinds is not None and info.kind not in kinds:
            continue
        if pattern and not pattern.search(name):
            continue
        out.append(info)
    return sorted(out, key=lambda i: (i.component, -1 if i.layer is None else i.layer, i.kind, i.name))


def paired_matrices(
    ref: Checkpoint, tuned: Checkpoint, preset: str = "paper", regex: str | None = None
) -> list[MatrixInfo]:
    """Select matrices in ``ref`` and check ``tuned`` has each, with the same shape.

    Raises
    ------
    UserError
        Different ``model_type``, nothing selected, a missing tensor or a shape mismatch.
    """
    if ref.model_type and tuned.model_type and ref.model_type != tuned.model_type:
        raise UserError(
            f"architectures differ: {ref.path} is {ref.model_type}, {tuned.path} is {tuned.model_type}"
        )
    infos = select_matrices(ref, preset, regex)
    if not infos:
        raise UserError(f"no matrices in {ref.path} match preset {preset!r}" + (f" and regex {regex!r}" if regex else ""))
    tuned_names = set(tuned.names())
    missing = [i.name for i in infos if i.name not in tuned_names]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(f"tensor {missing[0]!r} is missing from {tuned.path}{more}")
    for i in infos:
        if ref.shape(i.name) != tuned.shape(i.name):
            raise UserError(
                f"shape mismatch for {i.name!r}: {ref.shape(i.name)} in {ref.path}, "
                f"{tuned.shape(i.name)} in {tuned.path}"
            )
    return infos
