"""What the callbacks share: logging through the trainer, work on the main process only.

Logging (docs/design.md, "Callbacks"): a transformers ``Trainer`` sends its logs
to the ``report_to`` trackers (TensorBoard, W&B, MLflow, ...) by calling
``on_log`` on every callback of its ``CallbackHandler``; ``Trainer.log`` does
exactly that after appending the row to ``state.log_history``. A callback is
not handed the trainer or the handler, so :class:`MainProcessCallback` finds
the handler that is calling it (the ``self`` of the ``CallbackHandler.call_event``
frame below its own) and does what ``Trainer.log`` does, without the extras a
trainer subclass may add to its own ``log`` (TRL merges and clears its running
averages there). :meth:`MainProcessCallback.bind` names the trainer explicitly
instead.

Processes: under ``accelerate launch`` / ``torchrun`` every process runs the
same callbacks at the same steps. The work (probing, drift, writing files)
runs on the world's main process; every process then waits at a barrier, so
the others resume training together with it. The barrier is reached on every
process even when the work raises, so a failure ends the run instead of
leaving the others waiting.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from transformers import TrainerCallback
from transformers.trainer_callback import CallbackHandler

from spindoctor.errors import UserError, first_error


def checked_config(model: Any, **fields: Any) -> Any:
    """``model(**fields)`` for a pydantic config model; a refused value is a :class:`UserError`
    naming the model, the field and the reason."""
    try:
        return model(**fields)
    except ValidationError as exc:
        where, why = first_error(exc)
        raise UserError(f"{model.__name__}: {where or 'value'}: {why}") from None


def wait_for_everyone(args: Any) -> None:
    """A barrier across the training processes (nothing in a single process).

    Parameters
    ----------
    args : the trainer's ``TrainingArguments`` (its accelerate ``distributed_state``
        when it has one, else ``torch.distributed`` when a process group is up)
    """
    state = getattr(args, "distributed_state", None)
    if state is not None:
        state.wait_for_everyone()
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


class MainProcessCallback(TrainerCallback):
    """A ``TrainerCallback`` whose work runs on the main process and whose numbers go to the trainer's logs."""

    def __init__(self, log: bool = True) -> None:
        self.log = log
        self._handler: CallbackHandler | None = None
        self._warned = False

    def bind(self, trainer: Any) -> MainProcessCallback:
        """Log through ``trainer``'s callback handler (found by itself otherwise); returns ``self``."""
        self._handler = trainer.callback_handler
        return self

    def _calling_handler(self, depth: int = 24) -> CallbackHandler | None:
        """The ``CallbackHandler`` whose ``call_event`` is on the stack and holds this callback."""
        frame = sys._getframe(1)
        for _ in range(depth):
            if frame is None:
                return None
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, CallbackHandler) and any(cb is self for cb in candidate.callbacks):
                return candidate
            frame = frame.f_back
        return None

    def _log(self, metrics: dict[str, float], args: Any, state: Any, control: Any) -> None:
        """Send scalar ``metrics`` to the trainer's log history and every callback's ``on_log``."""
        if not self.log or not metrics:
            return
        state.log_history.append({**metrics, "step": state.global_step})
        self._handler = self._handler or self._calling_handler()
        if self._handler is None:
            if not self._warned:
                warnings.warn(f"{type(self).__name__}: no trainer callback handler found; the numbers go to the "
                              "jsonl files only (call .bind(trainer) to log them)", stacklevel=2)
                self._warned = True
            return
        should_log = control.should_log  # the handler's on_log clears it: the trainer's own log of this step
        self._handler.on_log(args, state, control, dict(metrics))  # (and its cross-process loss gather) stays due
        control.should_log = should_log

    def _on_main(self, args: Any, state: Any, work: Callable[[], None]) -> None:
        """Run ``work`` on the world's main process, then wait for every process."""
        try:
            if state.is_world_process_zero:
                work()
        finally:
            wait_for_everyone(args)
