"""Run under ``accelerate launch --num_processes 2 --cpu``: a TRL SFTTrainer with both callbacks.

Usage: ``ddp_train.py MODEL_DIR OUT [FAIL_AT]``. Each process writes ``OUT/rank-<r>.json``
(its callbacks' rows and peaks, a digest of its weights). With ``FAIL_AT``, probing raises
on the main process at that step (the others must not be left waiting).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: tests.callbacks.conftest


def main(model_dir: str, out: str, fail_at: int | None) -> None:
    import torch
    from tests.callbacks.conftest import sft_trainer

    import spindoctor.probes.core as core
    from spindoctor.callbacks import DriftCallback, OODProbeCallback

    torch.set_num_threads(1)
    real = core.probe_model

    def probe_model(model, tokenizer, cfg, progress=None):
        if fail_at is not None and probe.done and max(probe.done) == fail_at:
            raise RuntimeError(f"probe failed at step {fail_at}")
        return real(model, tokenizer, cfg, progress)

    core.probe_model = probe_model
    probe = OODProbeCallback(out, {"n": 6, "max_new_tokens": 8}, every=2, save="every")
    drift = DriftCallback(out, every=2)
    trainer = sft_trainer(Path(model_dir), Path(out) / "trainer", [probe, drift], steps=4)
    trainer.train()
    digest = hashlib.sha256()
    for p in trainer.model.parameters():
        digest.update(p.detach().cpu().numpy().tobytes())
    rank = trainer.args.process_index
    (Path(out) / f"rank-{rank}.json").write_text(json.dumps({
        "probe_rows": len(probe.rows), "drift_rows": len(drift.rows), "peaks": probe.peaks,
        "world": trainer.args.world_size, "weights": digest.hexdigest()}))
    if torch.distributed.is_initialized():  # a gloo group left to interpreter exit can abort rank 0
        torch.distributed.barrier()          # ("terminate called without an active exception")
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
