"""A probed checkpoint: weights, tokenizer and the probe rows of its step.

The checkpoint folder of a run (docs/design.md, "Run folder"): ``checkpoint-<step>/``
written atomically by :func:`spindoctor.models.checkpoints.writing_checkpoint`,
safetensors only, the step's probe rows in the weights' metadata
(``spindoctor_probe``) and in ``probe.json`` beside the resolved ``ProbeConfig``
and the parameter dtype. ``spindoctor sft`` and
:class:`spindoctor.callbacks.OODProbeCallback` write their checkpoints here.

Nothing here imports torch or transformers at module level.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spindoctor.io import atomic_write_json
from spindoctor.models.checkpoints import PROBE_FILE, checkpoint_path, writing_checkpoint


def save_checkpoint(
    model: Any, tokenizer: Any, out: Path, step: int, probe_rows: list[dict], probe_config: dict | None = None
) -> Path:
    """Write the checkpoint of ``step`` atomically and return its folder.

    Parameters
    ----------
    model : a transformers ``PreTrainedModel`` (``save_pretrained`` with safetensors)
    tokenizer : its tokenizer or processor (``save_pretrained``)
    out : the run folder; the checkpoint is ``out/checkpoint-<step>``
    step : the optimizer step
    probe_rows : the metrics rows of this step (one per split), stored in the file
        metadata under ``spindoctor_probe`` and in ``probe.json``
    probe_config : the resolved ``ProbeConfig`` (JSON form) that made the rows, so RL
        from this checkpoint can reuse them as its step 0
        (:func:`spindoctor.training.rl_common.reusable_probe_rows`)
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    with writing_checkpoint(out, step) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for path in tmp.glob("*.safetensors"):
            with safe_open(str(path), framework="pt") as fh:
                meta = dict(fh.metadata() or {})
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
            meta["spindoctor_probe"] = json.dumps(probe_rows)
            save_file(tensors, str(path), metadata=meta)
        atomic_write_json(tmp / PROBE_FILE, {"step": step, "rows": probe_rows, "probe_config": probe_config,
                                             "model_dtype": str(next(model.parameters()).dtype)})
    return checkpoint_path(out, step)
