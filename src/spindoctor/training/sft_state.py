"""The exact training state of ``spindoctor sft`` at a probe step, saved and restored without pickle.

docs/design.md, "Run folder" (SFT resume states). transformers' ``Trainer`` resumes
from its own checkpoint folder (``resume_from_checkpoint``): it reads the
``TrainerState`` JSON (global step, log history), rebuilds the optimizer and
scheduler, skips the batches already consumed (``skip_first_batches``; the
sampler is seeded by the data seed and the epoch) and restores the RNG states
after fetching the first new batch, as an uninterrupted run would have them.
Its optimizer, scheduler and RNG files are pickles (``torch.save``), so
:func:`resumable_trainer` keeps that machinery and swaps only the file
formats, by overriding the trainer's five checkpoint hooks:

- ``_save_checkpoint`` writes ``resume-<step>/`` (:func:`save_state`): the optimizer
  (``checkpoints.save_optimizer``: ``optimizer.safetensors`` + ``optimizer.json``),
  ``trainer_state.json`` (the trainer's own JSON), ``resume.safetensors`` (torch
  CPU/CUDA generator states, the loss accumulator) and ``resume.json`` (schema,
  step, the checkpoint's ``probe.json`` digest, parameters with shapes and dtypes,
  scheduler state, python and numpy generator states, the loss-window counters);
- ``_load_from_checkpoint`` does nothing (the model was loaded from ``checkpoint-<step>``);
- ``_load_optimizer_and_scheduler`` and ``_load_rng_state`` read those files;
- ``_load_scaler`` does nothing (no fp16 scaler: SFT trains in fp32 or bf16).

The trainer also accumulates the logged loss between logging steps (and TRL its
token accuracy, entropy and token count); a probe step need not be a logging
step, so those accumulators are saved and put back when training begins
(:class:`SFTStateCallback`), and the resumed ``train.jsonl`` equals the
uninterrupted one. The callback asks the trainer to save (``should_save``) at
the resume steps, after the step's log; step 0's state is written when training
begins. One process only: under several processes no state is written.
These hooks are private methods of transformers 5 / TRL 1; the resume tests compare
a resumed run with an uninterrupted one bit for bit, so a change there fails them.
"""

from __future__ import annotations

import copy
import random
import time
import warnings
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from spindoctor.errors import UserError
from spindoctor.io import atomic_write_json
from spindoctor.models.checkpoints import (
    PROBE_FILE,
    RESUME_FILE,
    RESUME_TENSORS_FILE,
    TRAINER_STATE_FILE,
    checkpoint_path,
    load_optimizer,
    remove_resume_states,
    resume_path,
    save_optimizer,
    writing_resume_state,
)
from spindoctor.training.sft_resume import SCHEMA, ST_DTYPES, ResumePoint, file_sha256

_CLASSES: dict[type, type] = {}


class SFTStateCallback(TrainerCallback):
    """Saves the SFT trainer's state at ``steps`` and puts a :class:`ResumePoint`'s state back.

    Parameters
    ----------
    out : the run folder (``resume-<step>/`` beside ``checkpoint-<step>/``, which the probe
        callback has written by then)
    steps : the steps whose state is saved (the probe steps but the last)
    point : the state to resume from (None: a fresh run)
    """

    def __init__(self, out: str | Path, steps: list[int], point: ResumePoint | None = None) -> None:
        self.out, self.steps, self.point = Path(out), set(steps), point
        self.trainer: Any = None
        self._start = time.perf_counter()
        self._warned = False

    def bind(self, trainer: Any) -> SFTStateCallback:
        """Attach to ``trainer`` (built by :func:`resumable_trainer`); returns ``self``."""
        self.trainer = trainer
        trainer.spindoctor_state = self
        return self

    def seconds(self) -> float:
        """Training seconds of the run so far (those before the resume point included)."""
        return (self.point.seconds if self.point else 0.0) + time.perf_counter() - self._start

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()
        if self.point is not None:
            restore_loop(self.trainer, self.point)
        elif state.global_step == 0 and 0 in self.steps:
            self.save()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.steps:
            control.should_save = True  # the trainer logs this step, then calls _save_checkpoint

    def save(self) -> None:
        """Write the state of the trainer's current step (main process of a single-process run)."""
        args = self.trainer.args
        if args.world_size > 1:
            if not self._warned:
                warnings.warn("SFT resume states are written in single-process runs only; this run has none",
                              stacklevel=2)
                self._warned = True
            return
        if self.trainer.state.is_world_process_zero:
            save_state(self.trainer, self.out, self.seconds())

    def load_optimizer_and_scheduler(self) -> None:
        trainer, meta = self.trainer, self.point.meta
        if param_records(trainer) != meta["params"]:
            raise UserError(f"{self.point.folder}: the trainer's parameters differ from those of the resume state")
        load_optimizer(trainer.optimizer, self.point.folder)
        trainer.lr_scheduler.load_state_dict(copy.deepcopy(meta["scheduler"]))

    def load_rng(self) -> None:
        from safetensors.torch import load_file

        set_rng(self.point.meta["rng"], load_file(str(self.point.folder / RESUME_TENSORS_FILE)))


def resumable_trainer(base: type) -> type:
    """``base`` (TRL's ``SFTTrainer``) with its checkpoint hooks writing and reading resume states
    (module docstring); bind an :class:`SFTStateCallback` to each instance."""
    if base not in _CLASSES:
        class Resumable(base):  # type: ignore[valid-type, misc]
            spindoctor_state: SFTStateCallback

            def _save_checkpoint(self, model, trial):
                self.spindoctor_state.save()

            def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
                """The model was loaded from the state's checkpoint-<step>."""

            def _load_optimizer_and_scheduler(self, checkpoint):
                if checkpoint is not None:
                    self.spindoctor_state.load_optimizer_and_scheduler()

            def _load_rng_state(self, checkpoint):
                if checkpoint is not None:
                    self.spindoctor_state.load_rng()

            def _load_scaler(self, checkpoint):
                """No gradient scaler (fp32 or bf16)."""

        Resumable.__name__ = Resumable.__qualname__ = f"Resumable{base.__name__}"
        _CLASSES[base] = Resumable
    return _CLASSES[base]


def save_state(trainer: Any, out: Path, seconds: float) -> Path:
    """Write ``resume-<step>/`` for the trainer's current step, then delete every other resume state."""
    import torch
    from safetensors.torch import save_file

    step = trainer.state.global_step
    ckpt = checkpoint_path(out, step)
    rng_meta, tensors = get_rng()
    loop_meta, loss = loop_state(trainer)
    meta = {"schema": SCHEMA, "step": step, "checkpoint": ckpt.name,
            "checkpoint_probe_sha256": file_sha256(ckpt / PROBE_FILE), "seconds": seconds,
            "params": param_records(trainer), "scheduler": _plain(trainer.lr_scheduler.state_dict(), "scheduler"),
            "rng": rng_meta, "loop": loop_meta, "torch": torch.__version__}
    with writing_resume_state(out, step) as tmp:
        save_optimizer(trainer.optimizer, tmp)
        trainer.state.save_to_json(str(tmp / TRAINER_STATE_FILE))
        save_file({**tensors, "loop.tr_loss": loss}, str(tmp / RESUME_TENSORS_FILE))
        atomic_write_json(tmp / RESUME_FILE, meta)
    remove_resume_states(out, keep=step)
    return resume_path(out, step)


def param_records(trainer: Any) -> list[dict]:
    """The optimizer's parameters in its order: ``{"name", "shape", "dtype"}`` (safetensors dtype names)."""
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    return [{"name": names.get(id(p), "?"), "shape": list(p.shape), "dtype": ST_DTYPES.get(str(p.dtype), str(p.dtype))}
            for group in trainer.optimizer.param_groups for p in group["params"]]


def loop_state(trainer: Any) -> tuple[dict, Any]:
    """The loss-window accumulators of the training loop (JSON part, the loss sum tensor)."""
    meta = {"globalstep_last_logged": trainer._globalstep_last_logged,
            "total_loss_scalar": trainer._total_loss_scalar, "current_flos": trainer.current_flos}
    if hasattr(trainer, "_metrics"):  # TRL: per-step token accuracy, entropy, ... averaged at each log
        meta["trl_metrics"] = {k: list(v) for k, v in trainer._metrics["train"].items()}
        meta["trl_total_train_tokens"] = trainer._total_train_tokens
    return meta, trainer._tr_loss.detach().to("cpu").reshape(()).clone()


def restore_loop(trainer: Any, point: ResumePoint) -> None:
    """Put the saved loss-window accumulators back (the trainer has just reset them)."""
    from safetensors.torch import load_file

    loop = point.meta["loop"]
    loss = load_file(str(point.folder / RESUME_TENSORS_FILE))["loop.tr_loss"]
    trainer._tr_loss = loss.to(trainer._tr_loss.device)
    trainer._globalstep_last_logged = loop["globalstep_last_logged"]
    trainer._total_loss_scalar = loop["total_loss_scalar"]
    trainer.current_flos = loop["current_flos"]
    if "trl_metrics" in loop:
        trainer._metrics["train"].clear()
        trainer._metrics["train"].update({k: list(v) for k, v in loop["trl_metrics"].items()})
        trainer._total_train_tokens = loop["trl_total_train_tokens"]


def get_rng() -> tuple[dict, dict]:
    """(python and numpy generator states as JSON, torch CPU and CUDA generator states as tensors)."""
    import numpy as np
    import torch

    version, state, gauss = random.getstate()
    kind, key, pos, has_gauss, cached = np.random.get_state()
    meta = {"python": {"version": version, "state": list(state), "gauss_next": gauss},
            "numpy": {"kind": kind, "key": [int(k) for k in key], "pos": int(pos), "has_gauss": int(has_gauss),
                      "cached_gaussian": float(cached)}}
    tensors = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return meta, tensors


def set_rng(meta: dict, tensors: dict) -> None:
    """Inverse of :func:`get_rng`; CUDA states are set when as many devices are present as were saved."""
    import numpy as np
    import torch

    py, npy = meta["python"], meta["numpy"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    np.random.set_state((npy["kind"], np.asarray(npy["key"], dtype=np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(tensors["rng.torch_cpu"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")),
                                       key=lambda k: int(k.rsplit(".", 1)[1]))]
    if torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    elif cuda or torch.cuda.is_available():
        warnings.warn(f"SFT resume: {len(cuda)} CUDA generator states saved, {torch.cuda.device_count()} devices "
                      "now; the CUDA generators are not restored", stacklevel=2)


def _plain(obj: Any, where: str) -> Any:
    """``obj`` when it is JSON data (dicts, lists, numbers, strings, None); TypeError naming ``where`` otherwise."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, list | tuple):
        return [_plain(v, where) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in obj.items()}
    raise TypeError(f"{where} holds a {type(obj).__name__}, which a resume state cannot store as JSON")
