"""``spindoctor sft`` resumes after a kill, bit for bit (docs/design.md, "Run folder": SFT resume states).

Each resumed run is compared with an uninterrupted run of the same config: every
``metrics.jsonl`` row (wall-clock ``time`` and ``seconds`` left out), every ``train.jsonl``
row and the weights of every checkpoint must be equal, not close. The base has
attention dropout, so training draws from torch's generator at every step and a
resume that did not restore it would differ; a probe step between logging steps
leaves the trainer's loss window open, which a resume must carry over.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spindoctor.cli import main
from spindoctor.errors import UserError
from spindoctor.io import read_jsonl
from spindoctor.probes import ProbeConfig
from spindoctor.training.sft import resolve_config, run_sft
from spindoctor.training.sft_resume import ResumeStateError, check_point, find_point

WALL_CLOCK = ("time", "seconds")
HERE = Path(__file__).resolve().parent


class Killed(Exception):
    """What the kill callbacks raise."""


def kill_at(step: int, event: str):
    """A trainer callback that stops the run at ``step``: at the end of the step (after its probe and
    checkpoint, before its resume state) or when the trainer logs the step's loss (``log``)."""
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if event == "step_end" and state.global_step == step:
                raise Killed(step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if event == "log" and state.global_step == step and "loss" in (logs or {}):
                raise Killed(step)

    return Kill()


@pytest.fixture(scope="module")
def dropout_base(tiny_organism_dir, tmp_path_factory) -> Path:
    """The tiny organism with attention dropout 0.2 (training draws random numbers every step)."""
    base = tmp_path_factory.mktemp("dropout") / "base"
    shutil.copytree(tiny_organism_dir, base)
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "attention_dropout": 0.2}))
    return base


def sft_config(base: Path, out: Path, accum: int = 1):
    """40 steps, probes at 0, 5, 10, 15, 30, 40; the trainer logs every 2 steps."""
    return resolve_config("organism", base=str(base), out=str(out), steps=40, batch_size=4, lr=1e-2,
                          grad_accum_steps=accum, dense_until=10, dense_every=5, probe_every=15, threads=1,
                          probe=ProbeConfig(n=4, max_new_tokens=6))


@pytest.fixture(scope="module")
def reference(dropout_base, tmp_path_factory):
    """Uninterrupted runs, one per grad_accum_steps, made on first use."""
    made: dict[int, Path] = {}

    def get(accum: int) -> Path:
        if accum not in made:
            out = tmp_path_factory.mktemp(f"reference-{accum}") / "sft"
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("SPINDOCTOR_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
                run_sft(sft_config(dropout_base, out, accum), say=lambda s: None)
            made[accum] = out
        return made[accum]

    return get


def quiet(text: str) -> None:
    """A ``say`` that prints nothing."""


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(str(f)).items()}


def max_weight_difference(ref: Path, out: Path) -> float:
    """The largest absolute difference of any weight of any checkpoint (the checkpoints must match)."""
    steps = sorted(p.name for p in ref.glob("checkpoint-*"))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == steps
    worst = 0.0
    for name in steps:
        a, b = weights(ref / name), weights(out / name)
        assert a.keys() == b.keys()
        worst = max([worst, *(float((a[k].double() - b[k].double()).abs().max()) for k in a)])
    return worst


def assert_same_run(ref: Path, out: Path) -> None:
    """``out`` (a resumed run) equals ``ref`` (an uninterrupted one): probe rows, trainer rows, weights."""
    def strip(rows):
        return [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in rows]

    assert strip(read_jsonl(out / "metrics.jsonl")) == strip(read_jsonl(ref / "metrics.jsonl"))
    assert read_jsonl(out / "train.jsonl") == read_jsonl(ref / "train.jsonl")
    assert max_weight_difference(ref, out) == 0.0
    done, ref_done = (json.loads((p / "done.json").read_text()) for p in (out, ref))
    assert {k: v for k, v in done.items() if k not in ("seconds", "resumed_from")} == \
        {k: v for k, v in ref_done.items() if k != "seconds"}
    left = sorted(p.name for p in out.iterdir() if p.name.startswith((".", "resume-")))
    assert left == []  # no resume state, scratch or temporary folder after a finished run


KILLS = {
    # id: (grad_accum_steps, kill step, where, the step it resumes from)
    "before-the-first-probe": (1, 2, "step_end", 0),
    "loss-window-open": (1, 7, "step_end", 5),
    "checkpoint-without-its-state": (1, 10, "log", 5),
    "grad-accumulation": (2, 17, "step_end", 15),
}


@pytest.mark.parametrize(("accum", "kill", "event", "resumes_at"), KILLS.values(), ids=KILLS.keys())
def test_a_killed_run_resumes_bit_for_bit(accum, kill, event, resumes_at, dropout_base, reference, tmp_path):
    out = tmp_path / "sft"
    cfg = sft_config(dropout_base, out, accum)
    with pytest.raises(Killed):
        run_sft(cfg, say=quiet, callbacks=[kill_at(kill, event)])
    assert [p.name for p in out.glob("resume-*")] == [f"resume-{resumes_at}"]  # only the newest is kept
    lines = []
    summary = run_sft(cfg, say=lines.append)
    assert summary["resumed_from"] == resumes_at
    assert lines[0] == f"resuming from step {resumes_at} (resume-{resumes_at}, checkpoint-{resumes_at})"
    assert_same_run(reference(accum), out)


def test_a_sigkilled_cli_run_resumes_bit_for_bit(dropout_base, tmp_path, capsys):
    """A real kill (SIGKILL, nothing cleaned up) of ``spindoctor sft``, then the same command again."""
    args = ["--base", str(dropout_base), "--steps", "40", "--batch-size", "4", "--lr", "1e-2", "--probe-n", "4",
            "--probe-every", "15", "--threads", "1"]
    ref, out = tmp_path / "ref", tmp_path / "sft"
    assert main(["sft", *args, "--out", str(ref), "--json"]) == 0
    proc = subprocess.run([sys.executable, str(HERE / "sft_killed.py"), "12", *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert [p.name for p in out.glob("resume-*")] == ["resume-10"] and list(out.glob(".trainer.*"))
    (out / ".checkpoint-15.deadbeef.tmp").mkdir()  # what a kill during a write leaves
    (out / ".resume-15.deadbeef.tmp").mkdir()
    capsys.readouterr()
    assert main(["sft", *args, "--out", str(out)]) == 0
    assert "resumed from step 10" in capsys.readouterr().out
    assert_same_run(ref, out)


@pytest.fixture(scope="module")
def killed_run(dropout_base, tmp_path_factory) -> Path:
    """A run killed at step 17 holding resume-15 and, as if killed before it could delete it, resume-5."""
    from transformers import TrainerCallback

    out = tmp_path_factory.mktemp("killed") / "sft"
    stash = out.parent / "stash"

    class KeepResume5(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 5:
                shutil.copytree(out / "resume-5", stash)

    with pytest.MonkeyPatch.context() as mp, pytest.raises(Killed):
        mp.setenv("SPINDOCTOR_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        run_sft(sft_config(dropout_base, out), say=quiet, callbacks=[KeepResume5(), kill_at(17, "step_end")])
    stash.rename(out / "resume-5")
    return out


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _rewrite_tensor(path: Path, change) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    key = next(k for k in sorted(tensors) if k.endswith("exp_avg"))
    tensors[key] = change(tensors[key])
    save_file(tensors, str(path))


DAMAGE = {
    "truncated-optimizer": (lambda s: _truncate(s / "optimizer.safetensors"), "damaged"),
    "missing-rng-file": (lambda s: (s / "resume.safetensors").unlink(), "resume.safetensors is missing"),
    "wrong-step": (lambda s: _edit_json(s / "resume.json", step=10), "not a resume state of step 15"),
    "trainer-state-step": (lambda s: _edit_json(s / "trainer_state.json", global_step=14), "not at step 15"),
    "shape-mismatch": (lambda s: _rewrite_tensor(s / "optimizer.safetensors", lambda t: t[..., :1].contiguous()),
                       "optimizer 0.exp_avg is"),
    "dtype-mismatch": (lambda s: _rewrite_tensor(s / "optimizer.safetensors", lambda t: t.half()), "F16"),
    "replaced-checkpoint": (lambda s: (s.parent / "checkpoint-15" / "probe.json").write_text("{}"),
                            "not the checkpoint this state was saved with"),
}


@pytest.mark.parametrize(("damage", "message"), DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_resume_state_is_refused_and_an_earlier_one_used(damage, message, killed_run, tmp_path):
    out = tmp_path / "sft"
    shutil.copytree(killed_run, out)
    assert check_point(out / "resume-15", 15).step == 15  # whole, it is trusted
    damage(out / "resume-15")
    with pytest.raises(ResumeStateError, match=message):
        check_point(out / "resume-15", 15)
    with pytest.warns(UserWarning, match="resume-15"):
        assert find_point(out).step == 5
    shutil.rmtree(out / "resume-5")
    with pytest.warns(UserWarning), pytest.raises(ResumeStateError, match="no usable resume state"):
        find_point(out)


def test_a_run_resumed_from_an_earlier_state_after_damage_is_still_exact(killed_run, dropout_base, reference,
                                                                         tmp_path):
    out = tmp_path / "sft"
    shutil.copytree(killed_run, out)
    _truncate(out / "resume-15" / "optimizer.safetensors")
    with pytest.warns(UserWarning, match="resume-15 is damaged"):
        summary = run_sft(sft_config(dropout_base, out), say=quiet)
    assert summary["resumed_from"] == 5
    assert_same_run(reference(1), out)


def _fake_run(cfg, done: bool = False) -> Path:
    """A run folder as a killed run leaves it before its first resume state (no training needed)."""
    out = Path(cfg.out)
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    (out / "metrics.jsonl").write_text(json.dumps({"stage": "sft", "step": 0, "split": "id"}) + "\n")
    if done:
        (out / "done.json").write_text("{}")
    return out


REFUSALS = {
    "no-resume": (["--no-resume"], False, "already holds an SFT run; choose another folder"),
    "other-config": (["--lr", "0.5"], False, "another config (fields lr)"),
    "other-probe": (["--probe-n", "5"], False, "another config (fields probe.n)"),
    "finished": ([], True, "already holds a finished SFT run"),
    "no-resume-state": ([], False, "no usable resume state"),
}


@pytest.mark.parametrize(("extra", "done", "message"), REFUSALS.values(), ids=REFUSALS.keys())
def test_an_existing_run_is_refused_with_one_line(extra, done, message, tiny_organism_dir, tmp_path, capsys):
    args = ["--base", str(tiny_organism_dir), "--steps", "4", "--batch-size", "2", "--probe-n", "4", "--threads", "1"]
    out = tmp_path / "sft"
    cfg = resolve_config(None, base=str(tiny_organism_dir), out=str(out), steps=4, batch_size=2, threads=1,
                         probe=ProbeConfig(n=4))
    _fake_run(cfg, done)
    before = sorted(p.name for p in out.iterdir())
    code = main(["sft", *args, *extra, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err
    assert sorted(p.name for p in out.iterdir()) == before  # refused before any work


def test_the_cli_names_a_skipped_state_in_one_warning_line(tiny_organism_dir, tmp_path, capsys):
    args = ["--base", str(tiny_organism_dir), "--steps", "4", "--batch-size", "2", "--probe-n", "4", "--threads", "1"]
    out = tmp_path / "sft"
    _fake_run(resolve_config(None, base=str(tiny_organism_dir), out=str(out), steps=4, batch_size=2, threads=1,
                             probe=ProbeConfig(n=4)))
    (out / "resume-2").mkdir()
    (out / "resume-2" / "resume.json").write_text("{")
    assert main(["sft", *args, "--out", str(out)]) == 2
    warning, error = capsys.readouterr().err.strip().split("\n")
    assert warning == "warning: SFT resume: resume-2: resume.safetensors is missing; trying an earlier resume state"
    assert error.startswith("error: out ") and "no usable resume state (resume-2: resume.safetensors" in error


def test_threads_and_trackers_may_change_on_resume(tiny_organism_dir, tmp_path):
    out = tmp_path / "sft"
    cfg = resolve_config(None, base=str(tiny_organism_dir), out=str(out), steps=4, batch_size=2, threads=1)
    _fake_run(cfg)
    other = cfg.model_copy(update={"threads": 2, "report_to": ["tensorboard"]})
    with pytest.raises(UserError, match="no usable resume state"):  # accepted as the same run, then no state
        run_sft(other, say=quiet)


def test_leftovers_of_a_writer_are_recognised_by_name_only(tmp_path):
    from spindoctor.models.checkpoints import TEMP_RE, remove_resume_states

    assert TEMP_RE.match(".resume-15.deadbeef.tmp") and TEMP_RE.match(".checkpoint-15.deadbeef.tmp")
    assert not TEMP_RE.match(".resume-notes") and not TEMP_RE.match("resume-15")
    for step in (5, 10, 15):
        (tmp_path / f"resume-{step}").mkdir()
        (tmp_path / f"resume-{step}" / "resume.json").write_text("{}")
    (tmp_path / "resume-10" / "notes.txt").write_text("mine")
    with pytest.warns(UserWarning, match="kept .*resume-10"):
        remove_resume_states(tmp_path, keep=15)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resume-10", "resume-15"]


def test_the_probe_callback_picks_up_its_steps_and_peak_from_the_written_rows(tmp_path):
    from spindoctor.callbacks import OODProbeCallback

    def row(step, split, acc, stage="sft"):
        return {"stage": stage, "step": step, "split": split, "acc": acc}

    probe = OODProbeCallback(tmp_path, {"n": 2}, steps=[0, 5, 10, 15], save="peak")
    probe.resume([row(0, "id", 0.1), row(0, "ood", 0.1), row(5, "id", 0.2), row(5, "ood", 0.3),
                  row(10, "id", 0.3), row(10, "ood", 0.2), row(10, "ood", 0.9, stage="rl")])
    assert probe.done == {0, 5, 10} and probe.peaks == [0, 5] and probe.best == (5, 0.3)
    assert not probe.due(10) and probe.due(15) and len(probe.rows) == 6
