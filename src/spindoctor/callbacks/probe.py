"""``OODProbeCallback``: ID/OOD probes inside any Hugging Face / TRL trainer.

One implementation for ``spindoctor sft`` and for a user's own trainer
(``SFTTrainer``, ``GRPOTrainer``, a plain ``Trainer``): at every scheduled step
it probes the model (:func:`spindoctor.probes.core.probe_model`), appends one
``metrics.jsonl`` row per split (:func:`spindoctor.probes.core.metrics_row`,
the row format of ``spindoctor sft``), logs the headline numbers through the
trainer so its ``report_to`` trackers get them, and saves a probed checkpoint
(:func:`spindoctor.callbacks.checkpoint.save_checkpoint`) at each new OOD peak,
at every probe, or never (docs/design.md, "Callbacks").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from spindoctor.callbacks.base import MainProcessCallback, checked_config
from spindoctor.callbacks.checkpoint import save_checkpoint
from spindoctor.errors import UserError
from spindoctor.io import append_jsonl
from spindoctor.models.checkpoints import METRICS_FILE
from spindoctor.probes.core import ProbeConfig, metrics_row

SaveRule = Literal["peak", "every", "none"]
LOGGED = ("acc", "acc_se", "loss", "well_formed", "values_acc", "reward", "episode_acc")  # scalars sent to trackers


def check_output_folders(out: Path, args: Any) -> None:
    """Refuse an ``out`` that is the trainer's own ``output_dir`` while the trainer saves checkpoints
    (both would write ``checkpoint-<step>`` folders there)."""
    save = getattr(args, "save_strategy", "no")
    if out.resolve() == Path(args.output_dir).resolve() and str(getattr(save, "value", save)) != "no":
        raise UserError(f"out {out} is the trainer's output_dir, which saves its own checkpoint-<step> folders; "
                        "give the callback another folder")


class OODProbeCallback(MainProcessCallback):
    """Probe ID and OOD accuracy on a schedule during training; keep the OOD-peak checkpoints.

    Schedule: with ``steps``, exactly those optimizer steps (0 = before the first
    step); otherwise step 0 (``at_start``), every ``every`` steps, and the last step
    (``at_end``, ``state.max_steps``). A step is probed once.

    At each probe, on the main process only (the others wait at a barrier):

    - one row per split of ``probe.splits`` is appended to ``out/metrics.jsonl``
      (``stage, step, split, n, acc, acc_se, loss, ...``; docs/design.md, "Run folder");
    - ``probe/<split>_<metric>`` scalars (``acc``, ``acc_se``, ``loss``,
      ``well_formed``, ``values_acc``, ``reward``) and ``probe/ood_best_acc``,
      ``probe/ood_best_step`` are logged through the trainer (``report_to`` trackers;
      TensorBoard shows them as ``train/probe/...``);
    - the checkpoint ``out/checkpoint-<step>/`` is written (safetensors, the rows in
      ``probe.json`` and the weights' metadata) when ``save`` says so.

    Peak rule (``save="peak"``): a probe is a new OOD peak when its OOD accuracy is
    strictly above the best earlier one by more than ``min_delta`` (the first
    probe is always a peak); ties keep the earlier checkpoint. Every peak's
    checkpoint is kept, so the candidates around the peak stay on disk
    (``peaks`` lists their steps; ``spindoctor select`` picks among probes).

    Parameters
    ----------
    out : folder of ``metrics.jsonl`` and the checkpoints (not the trainer's
        ``output_dir`` when the trainer saves checkpoints of its own)
    probe : what to probe and how (:class:`~spindoctor.probes.core.ProbeConfig`,
        or its fields as a dict); default ``ProbeConfig()``
    every : steps between probes when ``steps`` is not given
    steps : the exact probe steps (overrides ``every``, ``at_start``, ``at_end``)
    save : ``"peak"`` (new OOD peaks), ``"every"`` (every probe) or ``"none"``
    tokenizer : the tokenizer to probe with (default: the trainer's ``processing_class``)
    stage : the ``stage`` field of the rows (``sft``, ``rl``, ...)
    min_delta : accuracy margin of a new peak (0: any strict improvement)
    log : log the numbers through the trainer
    say : called with one line per probe (e.g. ``print``); None: silent

    Notes
    -----
    The model is probed as the trainer holds it (``model`` of the callback
    events: unwrapped from DDP). Sharded training (FSDP, DeepSpeed ZeRO-3) is not
    supported: only the main process probes. Each process group's timeout
    (``ddp_timeout``) bounds how long the others wait for a probe.
    """

    def __init__(
        self, out: str | Path, probe: ProbeConfig | dict | None = None, *, every: int = 50,
        steps: Iterable[int] | None = None, at_start: bool = True, at_end: bool = True,
        save: SaveRule = "peak", tokenizer: Any = None, stage: str = "sft", min_delta: float = 0.0,
        log: bool = True, say: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(log)
        self.out = Path(out)
        self.probe = probe if isinstance(probe, ProbeConfig) else checked_config(ProbeConfig, **(probe or {}))
        if save not in ("peak", "every", "none"):
            raise UserError(f"save must be peak, every or none, got {save!r}")
        if save == "peak" and "ood" not in self.probe.splits:
            raise UserError("save='peak' needs the ood split in probe.splits")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise UserError(f"every must be a whole number of steps >= 1, got {every!r}")
        if min_delta < 0:
            raise UserError(f"min_delta must be >= 0, got {min_delta}")
        self.steps = None if steps is None else _step_set(steps)
        self.every, self.at_start, self.at_end = every, at_start, at_end
        self.save, self.tokenizer, self.stage, self.min_delta, self.say = save, tokenizer, stage, min_delta, say
        self.done: set[int] = set()
        self.rows: list[dict] = []
        self.peaks: list[int] = []
        self.best: tuple[int, float] | None = None  # (step, OOD accuracy) of the current peak

    def due(self, step: int, max_steps: int | None = None) -> bool:
        """Whether ``step`` is a probe step (and not probed yet)."""
        if step in self.done:
            return False
        if self.steps is not None:
            return step in self.steps
        if step == 0:
            return self.at_start
        return step % self.every == 0 or (self.at_end and max_steps is not None and step == max_steps)

    def resume(self, rows: Iterable[dict]) -> None:
        """Continue a resumed run: the ``metrics.jsonl`` rows of this callback's stage written before
        the resume point mark their steps probed and replay the peak rule (``peaks``, ``best``)."""
        by_step: dict[int, list[dict]] = {}
        for row in rows:
            if row.get("stage") == self.stage:
                by_step.setdefault(int(row["step"]), []).append(row)
        for step, step_rows in sorted(by_step.items()):
            self.done.add(step)
            self.rows.extend(step_rows)
            self._update_peak(step, step_rows)

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        check_output_folders(self.out, args)
        if state.global_step == 0 and self.due(0):
            self._probe(args, state, control, model, processing_class)

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.due(state.global_step, state.max_steps):
            self._probe(args, state, control, model, processing_class)

    def _probe(self, args: Any, state: Any, control: Any, model: Any, processing_class: Any) -> None:
        step = state.global_step
        self.done.add(step)
        tokenizer = self.tokenizer if self.tokenizer is not None else processing_class
        if tokenizer is None:
            raise UserError("OODProbeCallback needs a tokenizer: pass tokenizer= or give the trainer a processing_class")
        self._on_main(args, state, lambda: self._probe_here(args, state, control, model, tokenizer, step))

    def _probe_here(self, args: Any, state: Any, control: Any, model: Any, tokenizer: Any, step: int) -> None:
        """Probe, write the rows, log, save the checkpoint (main process)."""
        from spindoctor.probes.core import probe_model

        results = probe_model(model, tokenizer, self.probe)
        rows = [metrics_row(self.stage, step, results[s]) for s in self.probe.splits]
        for row in rows:
            append_jsonl(self.out / METRICS_FILE, row)
        self.rows.extend(rows)
        peak = self._update_peak(step, rows)
        if self.save == "every" or (self.save == "peak" and peak):
            save_checkpoint(model, tokenizer, self.out, step, rows, self.probe.model_dump(mode="json"))
        self._log(self.scalars(rows), args, state, control)
        if self.say is not None:
            self.say(f"step {step:>4}  " + "  ".join(
                f"{r['split']} acc {r['acc']:.3f}±{r['acc_se']:.3f} loss "
                + ("-" if r["loss"] is None else f"{r['loss']:.3f}") for r in rows))

    def _update_peak(self, step: int, rows: list[dict]) -> bool:
        """Apply the peak rule to this probe's OOD row; True when it is a new peak."""
        ood = next((r for r in rows if r["split"] == "ood"), None)
        if ood is None:
            return False
        if self.best is not None and not ood["acc"] > self.best[1] + self.min_delta:
            return False
        self.best = (step, ood["acc"])
        self.peaks.append(step)
        return True

    def scalars(self, rows: list[dict]) -> dict[str, float]:
        """The numbers sent to the trackers: ``probe/<split>_<metric>`` and the OOD peak so far."""
        out = {f"probe/{r['split']}_{key}": float(r[key]) for r in rows for key in LOGGED
               if isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool)}
        if self.best is not None:
            out["probe/ood_best_acc"], out["probe/ood_best_step"] = float(self.best[1]), float(self.best[0])
        return out


def _step_set(steps: Iterable[int]) -> set[int]:
    out = set()
    for s in steps:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise UserError(f"steps must be whole numbers >= 0, got {s!r}")
        out.add(s)
    return out
