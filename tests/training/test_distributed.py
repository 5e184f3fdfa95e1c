"""``spindoctor rl`` on 2 CPU processes over gloo (``torch.distributed.run``, which sets the
environment accelerate reads): the same command runs, each process plays its own episodes, and
the two replicas end with identical weights. (``accelerate launch --num_processes 2 --cpu``
started a single process with accelerate 1.16, so the test asserts the world size it ran with.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from spindoctor.io import read_jsonl


def test_two_processes_keep_identical_replicas(tiny_ckpt, tmp_path, free_port):
    config = tmp_path / "ppo.yaml"
    config.write_text(yaml.safe_dump(dict(
        fmt="compact", max_turns=1, temperature=1.0, max_new_tokens=8, episodes_per_step=8, epochs=2,
        minibatches=2, grad_accum_steps=2, lr=1e-3, max_grad_norm=1.0, probe_every=0,
    )))
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port),
           "-m", "spindoctor.cli", "rl", "--from", str(tiny_ckpt), "--algo", "ppo",
           "--out", str(out), "--config", str(config), "--steps", "2", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = json.loads((out / "done.json").read_text())
    assert done["processes"] == 2
    assert done["replica_max_abs_diff"] == 0.0
    rows = read_jsonl(out / "train.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["episodes"] == 8 for r in rows)  # 4 episodes on each of the 2 processes
    assert (out / "checkpoint-2" / "model.safetensors").exists()
