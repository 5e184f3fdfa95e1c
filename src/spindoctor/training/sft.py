"""Supervised fine-tuning on the ID rule with ID/OOD probes (playbook steps 1 and 2).

Top to bottom: resolve the config (preset + overrides) and write
``config.yaml`` -> load the base (safetensors only) -> build the SFT data
(ID-rule hands of the *train* partition, one seeded gold solution per example;
docs/design.md, "Training settings") -> TRL ``SFTTrainer`` with a
completion-only loss -> :class:`spindoctor.callbacks.OODProbeCallback` that, at
every probe step (dense early), probes ID and OOD, appends the rows to
``metrics.jsonl``, logs them to the ``report_to`` trackers and saves the step's
checkpoint folder (:func:`spindoctor.callbacks.checkpoint.save_checkpoint`;
safetensors, probe numbers in the file metadata and in ``probe.json``) ->
``train.jsonl`` (trainer log) and ``done.json``.

The trainer's own checkpoint files are pickles, so it never writes them: at
the probe steps its save hook writes a resume state ``resume-<step>/`` instead
(optimizer, scheduler, RNG and trainer state as safetensors and JSON;
:mod:`spindoctor.training.sft_state`), and a rerun into the same folder with the
same config resumes from the newest one, bit for bit as if never stopped
(:mod:`spindoctor.training.sft_resume`). The checkpoints themselves are
weights-only safetensors, written to a temporary folder and renamed. The
trainer's ``output_dir`` is a scratch folder this command creates under a
unique name (``.trainer.<random>`` in the run folder) and deletes when
training ends, so a user's own ``.trainer/`` is never touched
(docs/design.md, "Run folder").
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from spindoctor.callbacks.checkpoint import save_checkpoint  # noqa: F401  (its old home: sft.save_checkpoint)
from spindoctor.errors import UserError
from spindoctor.game.deal import DEFAULT_SALT
from spindoctor.game.formats import FormatName, render_prompt, render_response
from spindoctor.io import atomic_write_json, atomic_write_jsonl, atomic_write_text
from spindoctor.models.checkpoints import (
    CONFIG_FILE,
    DONE_FILE,
    TENSORBOARD_DIR,
    TRAIN_LOG_FILE,
    remove_resume_states,
)
from spindoctor.probes.core import ProbeConfig
from spindoctor.probes.sets import (
    DEFAULT_PROBE_FRACTION,
    flush_solution_cache,
    solutions,
    train_hands,
)


class SFTRunConfig(BaseModel):
    """Every knob of ``spindoctor sft`` (saved as ``config.yaml`` in the run folder)."""

    model_config = ConfigDict(extra="forbid")

    base: str = Field(..., description="base checkpoint folder (HF, safetensors)")
    out: str = Field(..., description="run folder, e.g. runs/NAME/sft")
    preset: Literal["organism", "chat"] = Field("organism", description="where the defaults came from")
    seed: int = Field(0, description="seeds the data order, gold choice and trainer")
    fmt: FormatName = Field("compact", description="prompt format (compact: organism; paper: chat models)")
    steps: int = Field(400, ge=1, description="optimizer steps")
    batch_size: int = Field(32, ge=1, description="examples per optimizer step (per process)")
    grad_accum_steps: int = Field(
        1, ge=1, description="micro-batches per optimizer step: each holds batch_size / grad_accum_steps examples"
    )
    lr: float = Field(5e-4, gt=0, description="peak learning rate")
    lr_scheduler: str = Field("cosine", description="transformers scheduler name")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="share of steps warming up (reference: 3%)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_length: int = Field(128, ge=8, description="longest training sequence in tokens")
    probe_every: int = Field(50, ge=1, description="steps between probes after the dense phase")
    dense_until: int = Field(50, ge=0, description="probe densely up to this step")
    dense_every: int = Field(5, ge=1, description="steps between probes in the dense phase")
    probe_fraction: float = Field(DEFAULT_PROBE_FRACTION, gt=0, lt=1, description="train/probe partition share")
    salt: str = Field(DEFAULT_SALT, description="partition salt")
    probe: ProbeConfig = Field(default_factory=ProbeConfig, description="probe settings")
    report_to: list[str] = Field(default_factory=lambda: ["none"], description="tensorboard, wandb, mlflow, ...")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: the CPUs not busy at the start, at most 2)")
    bf16: bool = Field(False, description="bf16 autocast (TRL's default is on; slow on most CPUs)")
    gradient_checkpointing: bool = Field(False, description="recompute activations (TRL's default is on)")
    trust_remote_code: bool = Field(False, description="allow custom model code")


    @model_validator(mode="after")
    def _micro_batches_divide(self) -> SFTRunConfig:
        if self.batch_size % self.grad_accum_steps:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of grad_accum_steps {self.grad_accum_steps}")
        return self


PRESETS: dict[str, dict[str, Any]] = {
    # organism: batch 32, 400 steps; lr 1e-3 (docs/organism-ablation.md: seed-0 base, held-out
    # ID 28.2% -> 35.2% at the end, OOD peak 6% falling to 0.2% instead of 2.6%)
    "organism": {"fmt": "compact", "lr": 1e-3, "batch_size": 32, "steps": 400, "max_length": 128},
    # small real chat models with the reference prompt (paper format)
    "chat": {"fmt": "paper", "lr": 1e-5, "batch_size": 16, "steps": 200, "max_length": 1024},
}


def resolve_config(preset: str | None = None, **overrides: Any) -> SFTRunConfig:
    """Preset values (None: :class:`SFTRunConfig`'s default preset), then every override that
    is not None; probe format and partition follow."""
    preset = preset or SFTRunConfig.model_fields["preset"].default
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    values = {**PRESETS[preset], "preset": preset}
    values.update({k: v for k, v in overrides.items() if v is not None})
    cfg = SFTRunConfig(**values)
    probe = cfg.probe.model_copy(update={"fmt": cfg.fmt, "probe_fraction": cfg.probe_fraction, "salt": cfg.salt})
    return cfg.model_copy(update={"probe": probe})


def probe_steps(cfg: SFTRunConfig) -> list[int]:
    """Probe schedule: step 0, every ``dense_every`` up to ``dense_until``, every
    ``probe_every`` after, and the last step."""
    steps = {0, cfg.steps}
    steps.update(range(cfg.dense_every, min(cfg.dense_until, cfg.steps) + 1, cfg.dense_every))
    steps.update(range(cfg.probe_every, cfg.steps + 1, cfg.probe_every))
    return sorted(s for s in steps if s <= cfg.steps)


def build_dataset_rows(cfg: SFTRunConfig, conversational: bool) -> list[dict]:
    """``steps * batch_size`` SFT examples: train-partition ID hands in seeded epochs,
    each with a seeded choice among its distinct solutions."""
    hands = train_hands("id", cfg.seed, probe_fraction=cfg.probe_fraction, salt=cfg.salt)
    if not hands:
        raise UserError("the train partition holds no ID hands; lower probe_fraction")
    rng = random.Random(f"sft-data|{cfg.seed}")
    rows: list[dict] = []
    while len(rows) < cfg.steps * cfg.batch_size:
        order = hands[:]
        rng.shuffle(order)
        for hand in order[: cfg.steps * cfg.batch_size - len(rows)]:
            formula = rng.choice(solutions(hand.values, hand.target))
            prompt = render_prompt(cfg.fmt, hand.cards, hand.rule, hand.target)
            completion = render_response(cfg.fmt, hand.cards, hand.rule, formula, hand.target)
            if conversational:
                rows.append({"prompt": [{"role": "user", "content": prompt}],
                             "completion": [{"role": "assistant", "content": completion}]})
            else:
                rows.append({"prompt": prompt, "completion": completion})
    flush_solution_cache()
    return rows


def make_probe_callback(cfg: SFTRunConfig, tokenizer: Any, out: Path, say: Any = print):
    """The :class:`~spindoctor.callbacks.OODProbeCallback` of ``spindoctor sft``: probes and a
    checkpoint at every step of :func:`probe_steps`, rows of stage ``sft`` in ``out``."""
    from spindoctor.callbacks.probe import OODProbeCallback

    return OODProbeCallback(out, cfg.probe, steps=probe_steps(cfg), save="every", tokenizer=tokenizer,
                            stage="sft", say=say)


def run_sft(cfg: SFTRunConfig, say: Any = print, resume: bool = True, callbacks: Sequence[Any] = ()) -> dict:
    """Run SFT as configured; returns the summary also written to ``done.json``.

    ``out`` may be new, or hold an unfinished run of the same config, which resumes from
    its newest usable resume state (``resume=False`` refuses it; a finished run, or one of
    another config, is refused either way: :func:`spindoctor.training.sft_resume.check_existing`).
    ``callbacks``: more trainer callbacks, called after the probe callback.
    """
    from datasets import Dataset

    from spindoctor.devices import set_torch_threads
    from spindoctor.models.load import load_causal_lm
    from spindoctor.training import sft_resume

    out = Path(cfg.out)
    point = sft_resume.find_point(out) if sft_resume.check_existing(cfg, out, resume) else None
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / CONFIG_FILE, yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    sft_resume.remove_stale_scratch(out)
    if point is not None:
        sft_resume.prepare(out, point, probe_steps(cfg), list(cfg.probe.splits))
        say(f"resuming from step {point.step} ({point.folder.name}, {point.checkpoint.name})")
    set_torch_threads(cfg.threads)
    model, tokenizer = load_causal_lm(cfg.base if point is None else point.checkpoint, cfg.trust_remote_code)
    conversational = bool(getattr(tokenizer, "chat_template", None)) and cfg.fmt == "paper"
    if cfg.fmt == "paper" and not conversational:
        say("note: the tokenizer has no chat template; paper prompts are used as plain text")
    dataset = Dataset.from_list(build_dataset_rows(cfg, conversational))
    scratch = Path(tempfile.mkdtemp(prefix=".trainer.", dir=out))  # ours alone: deleted whole at the end
    try:
        seconds, log_history = _train(cfg, model, tokenizer, dataset, scratch, say, point, callbacks)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    atomic_write_jsonl(out / TRAIN_LOG_FILE, [r for r in log_history if "loss" in r])
    summary = {"steps": cfg.steps, "seconds": seconds, "probe_steps": probe_steps(cfg), "examples": len(dataset)}
    if point is not None:
        summary["resumed_from"] = point.step
    atomic_write_json(out / DONE_FILE, summary)
    remove_resume_states(out)  # a finished run needs none
    return summary


def keep_tensorboard_logs(trainer: Any, out: Path) -> None:
    """Point the trainer's TensorBoard writer at ``out/tensorboard`` (its default lies under the
    trainer's scratch ``output_dir``, deleted when training ends); a ``TENSORBOARD_LOGGING_DIR``
    the user set wins."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
            callback.logging_dir = str(out / TENSORBOARD_DIR)


def _train(cfg: SFTRunConfig, model: Any, tokenizer: Any, dataset: Any, scratch: Path, say: Any,
           point: Any = None, callbacks: Sequence[Any] = ()) -> tuple[float, list[dict]]:
    """TRL ``SFTTrainer`` with the probe callback and the resume-state keeper
    (:mod:`spindoctor.training.sft_state`), its ``output_dir`` in ``scratch``, resumed from
    ``point`` (a :class:`~spindoctor.training.sft_resume.ResumePoint`) when given; returns
    (training seconds of the whole run, the trainer's log history)."""
    import torch
    from trl import SFTConfig, SFTTrainer

    from spindoctor.training.sft_state import SFTStateCallback, resumable_trainer

    out = Path(cfg.out)
    args = SFTConfig(
        output_dir=str(scratch), max_steps=cfg.steps, per_device_train_batch_size=cfg.batch_size // cfg.grad_accum_steps,
        gradient_accumulation_steps=cfg.grad_accum_steps,
        learning_rate=cfg.lr, lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=int(round(cfg.warmup_ratio * cfg.steps)), weight_decay=cfg.weight_decay,
        logging_steps=max(1, min(10, cfg.steps // 20)), save_strategy="no", eval_strategy="no",
        report_to=cfg.report_to, seed=cfg.seed, data_seed=cfg.seed, use_cpu=not torch.cuda.is_available(),
        completion_only_loss=True, max_length=cfg.max_length, packing=False,
        dataloader_num_workers=0, disable_tqdm=False, bf16=cfg.bf16,
        activation_checkpointing=cfg.gradient_checkpointing,
    )
    probe = make_probe_callback(cfg, tokenizer, out, say)
    keeper = SFTStateCallback(out, [s for s in probe_steps(cfg) if s < cfg.steps], point)
    if point is not None:
        probe.resume(point.rows)
    trainer = resumable_trainer(SFTTrainer)(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                            callbacks=[probe, *callbacks, keeper])
    keeper.bind(trainer)
    keep_tensorboard_logs(trainer, out)
    trainer.train(resume_from_checkpoint=None if point is None else str(point.folder))
    return keeper.seconds(), trainer.state.log_history
