"""Both callbacks in a TRL SFTTrainer on 2 CPU processes over gloo (``torch.distributed.run``).

Only the main process probes, measures and writes; the other waits at the barrier and both
end with identical weights. A probe that fails on the main process ends the run instead of
leaving the other process waiting. The subprocess timeout is a guard against a hang, not a
measurement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from spindoctor.io import read_jsonl

SCRIPT = Path(__file__).with_name("ddp_train.py")
ROOT = Path(__file__).resolve().parents[2]


def launch(model_dir: Path, out: Path, port: int, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(SCRIPT), str(model_dir), str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def test_two_processes_probe_and_measure_once(tiny16_dir, tmp_path, free_port):
    out = tmp_path / "ddp"
    proc = launch(tiny16_dir, out, free_port)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert (ranks[0]["probe_rows"], ranks[0]["drift_rows"], ranks[0]["peaks"]) == (6, 10, [0])
    assert (ranks[1]["probe_rows"], ranks[1]["drift_rows"], ranks[1]["peaks"]) == (0, 0, [])
    assert ranks[0]["weights"] == ranks[1]["weights"]  # the replicas stayed in step
    probes = read_jsonl(out / "metrics.jsonl")
    assert [(r["step"], r["split"]) for r in probes] == [(s, sp) for s in (0, 2, 4) for sp in ("id", "ood")]
    drift = read_jsonl(out / "drift.jsonl")
    assert [r["step"] for r in drift if r["kind"] == "all"] == [2, 4]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-0", "checkpoint-2", "checkpoint-4"]


def test_a_failing_probe_on_the_main_process_ends_the_run(tiny16_dir, tmp_path, free_port):
    out = tmp_path / "ddp"
    proc = launch(tiny16_dir, out, free_port, "2")
    assert proc.returncode != 0
    assert "probe failed at step 2" in proc.stderr + proc.stdout
    assert not (out / "rank-1.json").exists()
