"""A tiny base checkpoint and an SFT run folder (three checkpoints, metrics, selection) built offline."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from tests.restore.conftest import make_pair

from spindoctor.probes import ProbeConfig

TINY_PROBE = ProbeConfig(n=6, max_new_tokens=6, batch_size=16)


def make_sft_run(root: Path) -> tuple[Path, Path]:
    """``root/base`` and ``root/sft`` (checkpoint-1..3 moving away from the base; peak 1, end 3)."""
    from safetensors.torch import load_file, save_file

    base, tuned = make_pair(root, n_layers=2)
    sft = root / "sft"
    start, stop = load_file(base / "model.safetensors"), load_file(tuned / "model.safetensors")
    for step in (1, 2, 3):
        ckpt = sft / f"checkpoint-{step}"
        shutil.copytree(tuned, ckpt)
        a = step / 3
        save_file({k: torch.lerp(v, stop[k], a).contiguous() for k, v in start.items()}, str(ckpt / "model.safetensors"),
                  metadata={"format": "pt"})
    rows = [{"stage": "sft", "step": s, "split": sp, "n": 6, "acc": acc}
            for s, accs in ((1, (0.2, 0.5)), (2, (0.4, 0.4)), (3, (0.6, 0.1))) for sp, acc in zip(("id", "ood"), accs, strict=True)]
    (sft / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (sft / "selection.json").write_text(json.dumps({"peak": {"step": 1, "path": str(sft / "checkpoint-1")},
                                                    "end": {"step": 3, "path": str(sft / "checkpoint-3")}}))
    return base, sft


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    torch.set_num_threads(1)
    return make_sft_run(tmp_path_factory.mktemp("arena"))
