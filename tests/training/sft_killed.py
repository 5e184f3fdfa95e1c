"""Run ``spindoctor sft ARGS`` and SIGKILL this process at the end of optimizer step KILL_STEP.

Usage: ``sft_killed.py KILL_STEP ARGS...`` (the arguments of ``spindoctor sft``). The kill
comes from a trainer callback called after the probe callback, so the step's probe row
and checkpoint are on disk and its resume state is not: a real kill (no ``finally``,
no cleanup) at a deterministic point.
"""

from __future__ import annotations

import os
import signal
import sys


def main(kill_step: int, argv: list[str]) -> int:
    import torch
    from transformers import TrainerCallback

    import spindoctor.training.sft as sft
    from spindoctor.cli import main as cli

    torch.set_num_threads(1)

    class KillHere(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == kill_step:
                os.kill(os.getpid(), signal.SIGKILL)

    real = sft.run_sft
    sft.run_sft = lambda cfg, **kw: real(cfg, callbacks=[KillHere()], **kw)
    return cli(["sft", *argv])


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2:]))
