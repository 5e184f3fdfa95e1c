"""The study's run folder: how it identifies itself, what the study owns in it, ``--restart``.

docs/design.md, "Run folder". A study run folder holds ``.spindoctor-study.json``
(schema ``spindoctor.study-run/1``), written when the study claims an absent or
empty folder; a folder written before that marker existed is recognised by
``config.yaml`` beside ``.stages/``. Any other non-empty folder is refused.

A multi-seed study folder (``--seeds``) holds the same marker with schema
``spindoctor.study-seeds/1`` (the config name, the seeds of the latest run and
every ``seed-<s>/`` folder the study created), one study run folder per seed and
the pooled ``report/``.

Inside a run folder, a stage's folder (``base/``, ``sft/``, ``rl/``, ...) is the study's when
``.stages/started/<stage>.json`` or ``.stages/<stage>.json`` exists: the study writes
the first before it creates the folder. Only such folders, the study's own files and
its temporary files are ever deleted; anything else is kept and named in a warning.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import warnings
from pathlib import Path

from spindoctor.errors import UserError
from spindoctor.io import atomic_write_json

STUDY_MARKER = ".spindoctor-study.json"
SCHEMA = "spindoctor.study-run/1"
SEEDS_SCHEMA = "spindoctor.study-seeds/1"
SEED_DIR = "seed-{}"
REPORT = "report"
CONFIG = "config.yaml"
MARKERS = ".stages"
CACHE = ".cache"
# The folders each stage writes (select writes sft/selection.json; drift and the sweeps share .cache/svd).
STAGE_DIRS: dict[str, tuple[str, ...]] = {
    "base": ("base",), "sft": ("sft",), "select": (), "rl": ("rl",), "drift": ("drift",),
    "sweeps": ("restore",), "arena": ("arena",), "toy": ("toy",), "report": ("report",),
}
CACHE_STAGES = ("drift", "sweeps", "arena")
_KNOWN = (STUDY_MARKER, CONFIG, MARKERS, CACHE, *(d for dirs in STAGE_DIRS.values() for d in dirs))
_TEMP = re.compile(r"^\.(" + "|".join(re.escape(n) for n in _KNOWN) + r")\..+\.tmp$")


class StudyNotice(UserWarning):
    """A one-line notice of the study: a finished stage rerun, entries ``--restart`` kept."""


def marker(run: Path, stage: str) -> Path:
    """``.stages/<stage>.json``: the stage finished (wall time, summary, fingerprint)."""
    return Path(run) / MARKERS / f"{stage}.json"


def started(run: Path, stage: str) -> Path:
    """``.stages/started/<stage>.json``: the study started this stage (and owns its folders)."""
    return Path(run) / MARKERS / "started" / f"{stage}.json"


def read_json(path: Path) -> dict | None:
    """A JSON object file, or None when it is missing or not one."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _is_new(run: Path) -> bool:
    """Whether ``run`` is absent or an empty folder; UserError when it is not a folder."""
    if run.exists() != run.is_dir() or (run.is_symlink() and not run.exists()):
        raise UserError(f"--out {run} exists and is not a folder")
    return not run.exists() or not any(run.iterdir())


def marker_schema(run: Path) -> str | None:
    """The schema the study marker of ``run`` names ("" when unreadable); None without a marker."""
    if not (Path(run) / STUDY_MARKER).exists():
        return None
    return str((read_json(Path(run) / STUDY_MARKER) or {}).get("schema", ""))


def classify(run: Path) -> str:
    """``new`` (absent or empty), ``study`` (has the marker) or ``legacy``; UserError for anything else."""
    if _is_new(run):
        return "new"
    schema = marker_schema(run)
    if schema is not None:
        if schema.startswith("spindoctor.study-seeds/"):
            raise UserError(f"--out {run} is a multi-seed study folder: pass --seeds, or choose another --out")
        if not schema.startswith("spindoctor.study-run/"):
            raise UserError(f"{run / STUDY_MARKER} is not a study run marker; choose another --out")
        return "study"
    if (run / CONFIG).is_file() and (run / MARKERS).is_dir():
        return "legacy"
    raise UserError(f"--out {run} exists, is not empty and is not a study run folder "
                    f"(no {STUDY_MARKER}); choose another --out")


def claim(run: Path) -> None:
    """Create ``run`` if needed and write the study marker (kept if already there)."""
    run.mkdir(parents=True, exist_ok=True)
    if not (run / STUDY_MARKER).exists():
        atomic_write_json(run / STUDY_MARKER, {"schema": SCHEMA, "created": _now()})


def owns(run: Path, stage: str) -> bool:
    """Whether the study started (or finished) ``stage`` in ``run``, so its folders are the study's."""
    return started(run, stage).is_file() or marker(run, stage).is_file()


def foreign_stage_dirs(run: Path, stage: str) -> list[Path]:
    """The stage's folders that exist, hold something and are not the study's."""
    if owns(run, stage):
        return []
    return [run / d for d in STAGE_DIRS[stage] if (run / d).exists() and not _empty_dir(run / d)]


def _empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def check_stage_dirs(run: Path, stage: str) -> None:
    """Refuse (UserError) a stage whose folder holds files the study did not write."""
    foreign = foreign_stage_dirs(run, stage)
    if foreign:
        raise UserError(f"{foreign[0]} was not written by this study (no {started(run, stage).relative_to(run)}); "
                        "move it away or choose another --out")


def clear_stage(run: Path, stage: str) -> None:
    """Delete the stage's folders before it starts over (only when they are the study's)."""
    check_stage_dirs(run, stage)
    for d in STAGE_DIRS[stage]:
        _remove(run / d)


def _remove(path: Path) -> None:
    """Delete a folder the study wrote; a link (the study never makes one) loses only the link."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def restart(run: Path) -> list[str]:
    """Delete what the study wrote in ``run``; return (and warn about) the entries kept."""
    kept = []
    for stage, dirs in STAGE_DIRS.items():
        if owns(run, stage):
            for d in dirs:
                _remove(run / d)
        else:
            kept += [d for d in dirs if (run / d).exists()]
    if any(owns(run, s) for s in CACHE_STAGES):
        _remove(run / CACHE / "svd")
    if _empty_dir(run / CACHE):
        (run / CACHE).rmdir()
    for entry in run.iterdir():
        if _TEMP.match(entry.name):
            _remove(entry)
    _remove(run / MARKERS)
    (run / CONFIG).unlink(missing_ok=True)
    return _warn_kept(run, sorted(set(kept) | {p.name for p in run.iterdir()} - {STUDY_MARKER}))


def _warn_kept(run: Path, kept: list[str]) -> list[str]:
    """One warning line naming the entries ``--restart`` kept in ``run``; returns them."""
    if kept:
        warnings.warn(f"--restart kept {len(kept)} entr{'y' if len(kept) == 1 else 'ies'} of {run} "
                      f"the study did not write: {', '.join(kept[:5])}{' ...' if len(kept) > 5 else ''}",
                      StudyNotice, stacklevel=3)
    return kept


def classify_seeds(parent: Path) -> str:
    """``new`` (absent or empty) or ``seeds`` (a multi-seed study folder); UserError for anything else."""
    if _is_new(parent):
        return "new"
    schema = marker_schema(parent)
    if schema is not None and schema.startswith("spindoctor.study-seeds/"):
        return "seeds"
    if (schema or "").startswith("spindoctor.study-run/") or (parent / MARKERS).is_dir():
        raise UserError(f"--out {parent} is a single-seed study run folder: run it without --seeds, "
                        "or choose another --out")
    raise UserError(f"--out {parent} exists, is not empty and is not a multi-seed study folder "
                    f"(no {STUDY_MARKER}); choose another --out")


def seed_dir(parent: Path, seed: int) -> Path:
    """``<parent>/seed-<seed>``: one seed's study run folder."""
    return Path(parent) / SEED_DIR.format(seed)


def owned_seeds(parent: Path) -> list[int]:
    """The seeds whose folder the study created in a multi-seed folder (its marker's ``seed_dirs``)."""
    found = read_json(Path(parent) / STUDY_MARKER) or {}
    return sorted(int(s) for s in found.get("seed_dirs", []) if isinstance(s, int) and s >= 0)


def claim_seeds(parent: Path, config: str, seeds: list[int]) -> None:
    """Create ``parent`` if needed and write its marker: the config name, these seeds, the seed folders owned."""
    parent.mkdir(parents=True, exist_ok=True)
    old = read_json(parent / STUDY_MARKER) or {}
    kept = [s for s in owned_seeds(parent) if seed_dir(parent, s).exists()]
    atomic_write_json(parent / STUDY_MARKER, {"schema": SEEDS_SCHEMA, "created": old.get("created") or _now(),
                                              "config": config, "seeds": list(seeds),
                                              "seed_dirs": sorted(set(kept) | set(seeds))})


def restart_seeds(parent: Path) -> list[str]:
    """Delete what the study wrote in a multi-seed folder; return (and warn about) the entries kept.

    Each seed folder the study created is restarted like a run folder (:func:`restart`)
    and removed when only its marker is left; the pooled ``report/`` and the study's
    temporary files go. The caller checks every seed folder's stages first.
    """
    for seed in owned_seeds(parent):
        run = seed_dir(parent, seed)
        if run.is_dir() and not run.is_symlink() and marker_schema(run) is not None:
            restart(run)
            if {p.name for p in run.iterdir()} <= {STUDY_MARKER}:
                _remove(run)
    _remove(parent / REPORT)
    for entry in parent.iterdir():
        if _TEMP.match(entry.name):
            _remove(entry)
    return _warn_kept(parent, sorted({p.name for p in parent.iterdir()} - {STUDY_MARKER}
                                     - {SEED_DIR.format(s) for s in owned_seeds(parent)}))
