"""The run folder's checkpoint layout, in one place (docs/design.md, "Run folder").

A trainer's run folder holds ``checkpoint-<step>/`` folders (Hugging Face
safetensors checkpoints), ``metrics.jsonl`` (probe rows), ``train.jsonl``
(trainer rows), ``config.yaml`` (the resolved config, written first) and
``done.json`` (written last); an unfinished SFT run also holds its latest
resume state ``resume-<step>/`` (:mod:`spindoctor.training.sft_resume`).
Every other module asks this one for those names: the path of a step, the
steps present, the last one, whether a folder is a checkpoint, and how to
write one atomically (a unique temporary folder, renamed into place when
whole, removed when writing fails). Optimizer state is
stored as safetensors plus JSON, never pickled.

Only what this code wrote is ever deleted (docs/design.md, "Run folder"): an
existing ``checkpoint-<step>`` is replaced only when it holds nothing but the
files a checkpoint writer makes (:data:`CHECKPOINT_FILES`), and stale temporary
folders are recognised by the exact name the writer gives them (:data:`TEMP_RE`).

Nothing here imports torch at module level.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import warnings
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from spindoctor.errors import UserError
from spindoctor.io import atomic_write_json

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
TRAIN_LOG_FILE = "train.jsonl"
DONE_FILE = "done.json"
PROBE_FILE = "probe.json"
SELECTION_FILE = "selection.json"
DRIFT_FILE = "drift.jsonl"  # rows of spindoctor.callbacks.DriftCallback
TENSORBOARD_DIR = "tensorboard"  # event files of `spindoctor sft --report-to tensorboard`
OPTIMIZER_FILE = "optimizer.safetensors"
OPTIMIZER_GROUPS_FILE = "optimizer.json"
TRAINER_STATE_FILE = "trainer_state.json"  # PPO's own state; an SFT resume state's transformers TrainerState
RESUME_FILE = "resume.json"  # an SFT resume state: what it resumes and the JSON-able state
RESUME_TENSORS_FILE = "resume.safetensors"  # an SFT resume state: RNG states and the loss accumulator

_PREFIX = "checkpoint-"
_STEP_RE = re.compile(r"^checkpoint-(\d+)$")
_RESUME_PREFIX = "resume-"
_RESUME_RE = re.compile(r"^resume-(\d+)$")
# The temporary folder of a checkpoint or SFT resume state being written:
# ``.checkpoint-<step>.<8 chars>.tmp``, ``.resume-<step>.<8 chars>.tmp``.
# The writer makes hex tokens; older versions used tempfile.mkdtemp's [a-z0-9_]{8}, also matched.
TEMP_RE = re.compile(r"^\.(checkpoint|resume)-\d+\.[a-z0-9_]{8}\.tmp$")
# Every file a checkpoint writer puts in a checkpoint folder: save_pretrained of the model
# and tokenizer (transformers 4.x and 5.x names), probe.json (sft), the value head,
# optimizer state and trainer_state.json (ppo; also an SFT resume state's, with resume.json and
# resume.safetensors), selection.json. Sharded weights match _SHARD_RE.
CHECKPOINT_FILES = frozenset({
    "config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "chat_template.jinja", "chat_template.json", "vocab.json", "vocab.txt", "merges.txt",
    "tokenizer.model", "spiece.model", PROBE_FILE, SELECTION_FILE, OPTIMIZER_FILE, OPTIMIZER_GROUPS_FILE,
    "value_head.safetensors", TRAINER_STATE_FILE, RESUME_FILE, RESUME_TENSORS_FILE,
})
_SHARD_RE = re.compile(r"^model-\d+-of-\d+\.safetensors$")
# Every file of an SFT resume state folder ``resume-<step>/`` (training.sft_resume writes them).
RESUME_STATE_FILES = frozenset({OPTIMIZER_FILE, OPTIMIZER_GROUPS_FILE, TRAINER_STATE_FILE, RESUME_FILE,
                                RESUME_TENSORS_FILE})


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    """The folder of step ``step`` in ``run_dir`` (whether or not it exists)."""
    return Path(run_dir) / f"{_PREFIX}{int(step)}"


def checkpoint_step(path: str | Path) -> int | None:
    """The step of a checkpoint folder's name (``checkpoint-40`` -> 40), None for other names."""
    match = _STEP_RE.match(Path(path).name)
    return int(match.group(1)) if match else None


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every ``checkpoint-<step>`` folder in ``run_dir``, in step order."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(step, p) for p in run_dir.iterdir() if p.is_dir() and (step := checkpoint_step(p)) is not None]
    return sorted(found)


def last_checkpoint_step(run_dir: str | Path) -> int:
    """The highest checkpoint step in ``run_dir`` (0 when there is none)."""
    return max((step for step, _ in list_checkpoints(run_dir)), default=0)


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """The folder of the highest checkpoint step in ``run_dir`` (None when there is none)."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def has_checkpoints(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds any ``checkpoint-<step>`` folder."""
    return bool(list_checkpoints(run_dir))


def is_complete(folder: str | Path) -> bool:
    """Whether ``folder`` holds a whole HF checkpoint (``config.json`` and safetensors weights)."""
    folder = Path(folder)
    return (folder / "config.json").exists() and any(folder.glob("*.safetensors"))


def check_checkpoint(path: str | Path, need_config: bool = False) -> Path:
    """``path`` as a Path; raise :class:`UserError` unless it is a folder holding safetensors
    weights (and, with ``need_config``, a ``config.json``). Pickle checkpoints are never loaded."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"checkpoint folder not found: {path}")
    if not any(path.glob("*.safetensors")):
        raise UserError(f"no *.safetensors weights in {path} (pickle checkpoints are not loaded)")
    if need_config and not (path / "config.json").exists():
        raise UserError(f"no config.json in {path}: not a Hugging Face checkpoint")
    return path


def foreign_checkpoint_entries(folder: str | Path, extra: Collection[str] = ()) -> list[str]:
    """Names in ``folder`` that are not plain files a checkpoint writer makes (or named in ``extra``)."""
    return sorted(p.name for p in Path(folder).iterdir()
                  if p.is_symlink() or not p.is_file()
                  or not (p.name in CHECKPOINT_FILES or p.name in extra or _SHARD_RE.match(p.name)))


def _check_replaceable(final: Path) -> None:
    """Raise :class:`UserError` unless ``final`` is absent or a folder of checkpoint files only."""
    if not final.exists() and not final.is_symlink():
        return
    if final.is_symlink() or not final.is_dir():
        raise UserError(f"{final} exists and is not a checkpoint folder; move it away")
    foreign = foreign_checkpoint_entries(final)
    if foreign:
        raise UserError(f"{final} holds files no checkpoint writer makes ({', '.join(foreign[:3])}); "
                        "it is not replaced: move it away")


def _new_temp_folder(final: Path, suffix: str = ".tmp") -> Path:
    """Create and return ``.<final name>.<8 hex>.tmp`` beside ``final`` (plain mkdir mode)."""
    for _ in range(100):
        tmp = final.parent / f".{final.name}.{secrets.token_hex(4)}{suffix}"
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {final}")


def _swap_in(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` onto ``final``; a previous ``final`` (checked again) loses only checkpoint files."""
    if not final.exists() and not final.is_symlink():
        tmp.rename(final)
        return
    _check_replaceable(final)
    aside = _new_temp_folder(final, ".old")
    final.rename(aside / final.name)
    try:
        tmp.rename(final)
    except BaseException:
        (aside / final.name).rename(final)
        aside.rmdir()
        raise
    old = aside / final.name
    for name in set(p.name for p in old.iterdir()) - set(foreign_checkpoint_entries(old)):
        (old / name).unlink(missing_ok=True)
    try:
        old.rmdir()
        aside.rmdir()
    except OSError:  # a file appeared meanwhile: never delete it
        warnings.warn(f"kept files that appeared in the previous {final} under {aside}", stacklevel=4)


@contextmanager
def writing_folder(final: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``final`` (named to match :data:`TEMP_RE` for a
    checkpoint); on success it replaces ``final`` (renamed into place), on any error it is
    removed and ``final`` is left as it was. An existing ``final`` holding anything but
    checkpoint files is refused (:class:`UserError`) before the block runs."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _check_replaceable(final)
    tmp = _new_temp_folder(final)
    try:
        yield tmp
        _swap_in(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def writing_checkpoint(run_dir: str | Path, step: int) -> Iterator[Path]:
    """:func:`writing_folder` for ``checkpoint-<step>`` of ``run_dir``."""
    with writing_folder(checkpoint_path(run_dir, step)) as tmp:
        yield tmp


def remove_partial_checkpoints(run_dir: str | Path) -> None:
    """Delete temporary checkpoint and resume-state folders a killed writer left in ``run_dir``
    (names matching :data:`TEMP_RE` only: a user's ``.checkpoint-notes`` is kept)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    for stale in run_dir.iterdir():
        if TEMP_RE.match(stale.name) and stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)


# ---------------------------------------------------------------- SFT resume states
def resume_path(run_dir: str | Path, step: int) -> Path:
    """The SFT resume state of step ``step`` in ``run_dir``: ``resume-<step>/`` (beside ``checkpoint-<step>/``)."""
    return Path(run_dir) / f"{_RESUME_PREFIX}{int(step)}"


def list_resume_states(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every ``resume-<step>`` folder in ``run_dir``, in step order."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir()
             if p.is_dir() and not p.is_symlink() and (m := _RESUME_RE.match(p.name))]
    return sorted(found)


@contextmanager
def writing_resume_state(run_dir: str | Path, step: int) -> Iterator[Path]:
    """:func:`writing_folder` for ``resume-<step>`` of ``run_dir``."""
    with writing_folder(resume_path(run_dir, step)) as tmp:
        yield tmp


def remove_resume_states(run_dir: str | Path, keep: int | None = None) -> None:
    """Delete the ``resume-<step>`` folders of ``run_dir`` except ``keep``'s; one holding a file
    no writer makes is kept, with a warning."""
    for step, folder in list_resume_states(run_dir):
        if step == keep:
            continue
        foreign = sorted(p.name for p in folder.iterdir()
                         if p.is_symlink() or not p.is_file() or p.name not in RESUME_STATE_FILES)
        if foreign:
            warnings.warn(f"kept {folder}: it holds files no resume-state writer makes ({', '.join(foreign[:3])})",
                          stacklevel=2)
            continue
        shutil.rmtree(folder)


# ---------------------------------------------------------------- optimizer state (no pickle)
def save_optimizer(optimizer: Any, folder: str | Path) -> None:
    """Write an optimizer's state as ``optimizer.safetensors`` (tensors) + ``optimizer.json`` (groups)."""
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    state = optimizer.state_dict()
    tensors = {}
    for pid, slots in state["state"].items():
        for name, value in slots.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{pid}.{name}"] = tensor.detach().contiguous().cpu()
    save_file(tensors, str(folder / OPTIMIZER_FILE))
    atomic_write_json(folder / OPTIMIZER_GROUPS_FILE, {"param_groups": state["param_groups"]})


def load_optimizer(optimizer: Any, folder: str | Path) -> None:
    """Inverse of :func:`save_optimizer`."""
    from safetensors.torch import load_file

    folder = Path(folder)
    tensors = load_file(str(folder / OPTIMIZER_FILE))
    state: dict[int, dict] = {}
    for key, tensor in tensors.items():
        pid, _, name = key.partition(".")
        state.setdefault(int(pid), {})[name] = tensor
    groups = json.loads((folder / OPTIMIZER_GROUPS_FILE).read_text())["param_groups"]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
