"""Resuming ``spindoctor sft`` after a kill: which run folder may resume, and from which state.

docs/design.md, "Run folder" (SFT resume states). At every probe step but the
last, the SFT trainer writes ``resume-<step>/`` beside ``checkpoint-<step>/``
(:mod:`spindoctor.training.sft_state`: optimizer, scheduler, RNG, trainer
state and loss accumulators, safetensors and JSON only) and then deletes the
previous one. This module decides, before any work:

- whether ``out`` holds an SFT run at all (:func:`holds_run`), and whether it may
  be resumed (:func:`check_existing`): a finished run, ``resume=False`` or a
  config that differs from the saved ``config.yaml`` is refused with one line;
- from which state (:func:`find_point`): the newest ``resume-<step>/`` that passes
  :func:`check_point` (its files parse; step, checkpoint, optimizer shapes and dtypes
  agree), an unusable one skipped with a warning; none usable is an error;
- and it trims what a killed run wrote past that step (:func:`prepare`).

Nothing here imports torch at module level.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spindoctor.errors import UserError
from spindoctor.io import atomic_write_jsonl, read_jsonl
from spindoctor.models.checkpoints import (
    CONFIG_FILE,
    DONE_FILE,
    METRICS_FILE,
    OPTIMIZER_FILE,
    OPTIMIZER_GROUPS_FILE,
    PROBE_FILE,
    RESUME_FILE,
    RESUME_TENSORS_FILE,
    TRAINER_STATE_FILE,
    checkpoint_path,
    has_checkpoints,
    is_complete,
    list_resume_states,
    remove_partial_checkpoints,
)

SCHEMA = "spindoctor.sft-resume/1"
# Config keys that may change between a run and its resumption: where it runs, how many threads, trackers.
EXECUTION_KEYS = frozenset({"out", "threads", "report_to"})
# The trainer's scratch output_dir (tempfile.mkdtemp(prefix=".trainer.") in sft.run_sft) a killed run left.
SCRATCH_RE = re.compile(r"^\.trainer\.[a-z0-9_]{8}$")
# safetensors dtype names of torch dtypes (the resume state records parameters in these names)
ST_DTYPES = {"torch.float32": "F32", "torch.float16": "F16", "torch.bfloat16": "BF16", "torch.float64": "F64"}


class ResumeStateError(UserError):
    """A resume state that cannot be trusted (missing, damaged, or not of this run's checkpoint)."""


class ResumeWarning(UserWarning):
    """A resume state skipped for an earlier one (``spindoctor sft`` prints it as one ``warning:`` line)."""


@dataclass
class ResumePoint:
    """A checked resume state: ``resume-<step>/`` and the ``checkpoint-<step>/`` it continues from."""

    step: int
    folder: Path
    checkpoint: Path
    meta: dict
    rows: list[dict] = field(default_factory=list)  # metrics.jsonl rows up to ``step`` (set by prepare)

    @property
    def seconds(self) -> float:
        """Training seconds the run had spent when this state was saved."""
        return float(self.meta.get("seconds", 0.0))


def holds_run(out: Path) -> bool:
    """Whether ``out`` holds (part of) an SFT run: probe rows, checkpoints, resume states or ``done.json``."""
    return ((out / METRICS_FILE).exists() or (out / DONE_FILE).exists() or has_checkpoints(out)
            or bool(list_resume_states(out)))


def check_existing(cfg: Any, out: Path, resume: bool) -> bool:
    """Whether the run in ``out`` is to be resumed (False: ``out`` holds no run); raise
    :class:`UserError` for a finished run, for any run when ``resume`` is off, and for an
    unfinished run whose saved ``config.yaml`` differs from ``cfg`` (beyond :data:`EXECUTION_KEYS`)."""
    if not holds_run(out):
        return False
    if (out / DONE_FILE).exists():
        raise UserError(f"out {out} already holds a finished SFT run; choose another folder")
    if not resume:
        raise UserError(f"out {out} already holds an SFT run; choose another folder")
    diff = config_diff(out, cfg)
    if diff:
        raise UserError(f"out {out} holds an unfinished SFT run made with another config (fields {', '.join(diff)}); "
                        "rerun with its settings to resume it, or choose another folder")
    return True


def config_diff(out: Path, cfg: Any) -> list[str]:
    """The fields (``probe.n`` for nested ones) whose saved value in ``out/config.yaml`` differs from ``cfg``."""
    try:
        saved = yaml.safe_load((out / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"out {out} holds an SFT run without a readable {CONFIG_FILE} ({type(exc).__name__}); "
                        "choose another folder") from None
    if not isinstance(saved, dict):
        raise UserError(f"out {out}: {CONFIG_FILE} is not a mapping; choose another folder")
    now = yaml.safe_load(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    diff = []
    for key in sorted(set(saved) | set(now)):
        if key in EXECUTION_KEYS:
            continue
        old, new = saved.get(key), now.get(key)
        if key == "base" and isinstance(old, str) and isinstance(new, str):
            old, new = str(Path(old).resolve()), str(Path(new).resolve())
        if isinstance(old, dict) and isinstance(new, dict):
            diff += [f"{key}.{k}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        elif old != new:
            diff.append(key)
    return diff


def find_point(out: Path) -> ResumePoint:
    """The newest resume state of ``out`` that passes :func:`check_point`; each newer one that fails
    is named in a warning. Raise :class:`ResumeStateError` when none is usable."""
    reasons = []
    for step, folder in reversed(list_resume_states(out)):
        try:
            point = check_point(folder, step)
        except ResumeStateError as exc:
            reasons.append(str(exc))
            warnings.warn(f"SFT resume: {exc}; trying an earlier resume state", ResumeWarning, stacklevel=2)
            continue
        return point
    why = "; ".join(reasons) if reasons else "there is none (killed before its first one, or made by an older version)"
    raise ResumeStateError(f"out {out} holds an unfinished SFT run but no usable resume state ({why}); "
                           "choose another folder")


def usable(out: Path) -> bool:
    """Whether an SFT run in ``out`` can go on in place: no run there yet, a finished one, or a usable
    resume state (the study resumes its SFT stage only then; otherwise it starts over)."""
    if not holds_run(out) or (out / DONE_FILE).exists():
        return True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            find_point(out)
        except ResumeStateError:
            return False
    return True


def check_point(folder: Path, step: int) -> ResumePoint:
    """``folder`` (``resume-<step>``) as a :class:`ResumePoint` once it is whole and agrees with itself and
    with ``checkpoint-<step>``; raise :class:`ResumeStateError` naming the first problem."""
    try:
        return _check_point(folder, step)
    except ResumeStateError:
        raise
    except Exception as exc:  # a damaged file can fail in any of json, safetensors or our own reads
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ResumeStateError(f"{folder.name} is damaged ({type(exc).__name__}: {first})") from None


def _check_point(folder: Path, step: int) -> ResumePoint:
    def bad(why: str) -> ResumeStateError:
        return ResumeStateError(f"{folder.name}: {why}")

    for name in (RESUME_FILE, RESUME_TENSORS_FILE, TRAINER_STATE_FILE, OPTIMIZER_FILE, OPTIMIZER_GROUPS_FILE):
        if not (folder / name).is_file():
            raise bad(f"{name} is missing")
    meta = _json_object(folder / RESUME_FILE)
    if meta.get("schema") != SCHEMA or meta.get("step") != step:
        raise bad(f"{RESUME_FILE} is not a resume state of step {step} (schema {meta.get('schema')!r}, "
                  f"step {meta.get('step')!r})")
    ckpt = checkpoint_path(folder.parent, step)
    if not is_complete(ckpt) or not (ckpt / PROBE_FILE).is_file():
        raise bad(f"{ckpt.name} is missing or incomplete")
    if file_sha256(ckpt / PROBE_FILE) != meta.get("checkpoint_probe_sha256"):
        raise bad(f"{ckpt.name} is not the checkpoint this state was saved with (its {PROBE_FILE} differs)")
    if _json_object(folder / TRAINER_STATE_FILE).get("global_step") != step:
        raise bad(f"{TRAINER_STATE_FILE} is not at step {step}")
    if (meta.get("scheduler") or {}).get("last_epoch") != step:
        raise bad(f"the scheduler state is not at step {step}")
    _check_optimizer(folder, meta["params"], weight_headers(ckpt), step, bad)
    _check_tensors(folder, meta, bad)
    return ResumePoint(step, folder, ckpt, meta)


def _check_optimizer(folder: Path, params: list[dict], weights: dict, step: int, bad) -> None:
    """Optimizer groups and tensors against the recorded parameters, and those against the checkpoint."""
    from safetensors import safe_open

    groups = _json_object(folder / OPTIMIZER_GROUPS_FILE).get("param_groups")
    if not isinstance(groups, list) or sum(len(g["params"]) for g in groups) != len(params):
        raise bad(f"{OPTIMIZER_GROUPS_FILE} does not hold {len(params)} parameters")
    for p in params:
        if p["name"] in weights and weights[p["name"]] != (p["shape"], p["dtype"]):
            raise bad(f"parameter {p['name']} is {p['shape']} {p['dtype']} here, "
                      f"{weights[p['name']][0]} {weights[p['name']][1]} in the checkpoint")
    with safe_open(str(folder / OPTIMIZER_FILE), framework="pt") as fh:
        for key in fh.keys():  # noqa: SIM118 (safe_open has no __iter__)
            pid, _, slot = key.partition(".")
            if not pid.isdigit() or int(pid) >= len(params):
                raise bad(f"{OPTIMIZER_FILE} holds {key!r}, no parameter of the run")
            shape, dtype = fh.get_slice(key).get_shape(), fh.get_slice(key).get_dtype()
            param = params[int(pid)]
            if slot == "step":
                if shape not in ([], [1]) or float(fh.get_tensor(key).item()) > step:
                    raise bad(f"optimizer {key} is not a step count of at most {step}")
            elif (shape, dtype) != (param["shape"], param["dtype"]):
                raise bad(f"optimizer {key} is {shape} {dtype}, its parameter {param['name']} "
                          f"{param['shape']} {param['dtype']}")


def _check_tensors(folder: Path, meta: dict, bad) -> None:
    """The RNG states and the loss accumulator of ``resume.safetensors``, and the JSON RNG states."""
    from safetensors import safe_open

    with safe_open(str(folder / RESUME_TENSORS_FILE), framework="pt") as fh:
        found = {k: (fh.get_slice(k).get_shape(), fh.get_slice(k).get_dtype()) for k in fh.keys()}  # noqa: SIM118
    if found.get("loop.tr_loss") != ([], "F32"):
        raise bad(f"{RESUME_TENSORS_FILE} holds no float32 loss accumulator")
    rng = {k: v for k, v in found.items() if k.startswith("rng.")}
    if "rng.torch_cpu" not in rng or any(len(shape) != 1 or dtype != "U8" for shape, dtype in rng.values()):
        raise bad(f"{RESUME_TENSORS_FILE} holds no torch generator states")
    state = meta["rng"]
    if len(state["python"]["state"]) != 625 or len(state["numpy"]["key"]) != 624:
        raise bad("the python or numpy generator state has the wrong length")


def weight_headers(ckpt: Path) -> dict[str, tuple[list[int], str]]:
    """``{tensor: (shape, safetensors dtype)}`` of a checkpoint's weights (headers only)."""
    from safetensors import safe_open

    out = {}
    for path in sorted(ckpt.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118
                piece = fh.get_slice(key)
                out[key] = (list(piece.get_shape()), piece.get_dtype())
    return out


def prepare(out: Path, point: ResumePoint, probe_steps: list[int], splits: list[str]) -> None:
    """Trim ``metrics.jsonl`` to the rows up to ``point.step`` (kept in ``point.rows``) and delete the
    temporary folders a killed run left; raise :class:`UserError` when a probe row up to that step is
    missing (the resumed run would not write it again)."""
    path = out / METRICS_FILE
    rows = read_jsonl(path) if path.exists() else []
    kept = [r for r in rows if int(r.get("step", -1)) <= point.step]
    have = {(int(r["step"]), r.get("split")) for r in kept if r.get("stage") == "sft"}
    missing = [s for s in probe_steps if s <= point.step and any((s, sp) not in have for sp in splits)]
    if missing:
        raise UserError(f"{path} lacks probe rows of steps {missing[:5]} up to the resume step {point.step}; "
                        "cannot resume: choose another folder")
    if len(kept) != len(rows):
        atomic_write_jsonl(path, kept)
    point.rows = kept
    remove_partial_checkpoints(out)
    remove_stale_scratch(out)


def remove_stale_scratch(out: Path) -> None:
    """Delete the trainer scratch folders (``.trainer.<8 chars>``, :data:`SCRATCH_RE`) a killed run left."""
    if out.is_dir():
        for entry in out.iterdir():
            if SCRATCH_RE.match(entry.name) and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _json_object(path: Path) -> dict:
    obj = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(obj, dict):
        raise ValueError(f"{Path(path).name} is not a JSON object")
    return obj
