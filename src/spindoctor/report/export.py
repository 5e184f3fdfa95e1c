"""Publish a built report as small files for a repository (docs/design.md, "Evidence").

``export_report(run, dest)`` copies what a reader of the results needs and
nothing heavy: ``summary.md``, ``tables/*.csv``, the report's figures and the
per-stage PNGs (drift of base -> SFT end, the three sweeps, the arena, the toy),
and writes ``README.md`` with the provenance: the command that reproduces the
run, the resolved config, the spindoctor version and git commit, the machine
and the stage wall times. The self-contained ``index.html`` (a megabyte or
more of embedded images) stays in the run folder. ``dest`` is one flat folder of plain files written as one
set (:func:`spindoctor.io.atomic_dir`); it may only be absent, empty or a
previous export, whose ``export.json`` lists the files it wrote (the only ones
replaced).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

from spindoctor import __version__
from spindoctor.errors import UserError
from spindoctor.io import atomic_dir, foreign_entries

EXPORT_MARKER = "export.json"
# (source relative to the run folder, name in the export's figures/)
STAGE_FIGURES = [
    ("drift/base__sft-end/singular_values.png", "drift_singular_values.png"),
    ("drift/base__sft-end/principal_angles.png", "drift_principal_angles.png"),
    ("drift/base__sft-end/heatmap_angle.png", "drift_heatmap_angle.png"),
    ("restore/layers/sweep.png", "sweep_layers.png"),
    ("restore/ranks/sweep.png", "sweep_ranks.png"),
    ("restore/impose/sweep.png", "sweep_impose.png"),
    ("arena/arena.png", "arena.png"),
    ("toy/toy.png", "toy.png"),
]


def git_commit(path: Path) -> str | None:
    """The commit of the git checkout holding ``path`` (with ``+dirty`` for local changes), or None."""
    try:
        head = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def machine() -> dict:
    """The machine a run is published from: OS, CPU, cores, memory, Python, torch."""
    memory = None
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import torch

        torch_version = torch.__version__
        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover - torch is a dependency
        torch_version, cuda = None, None
    return {"os": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "memory_gib": None if memory is None else round(memory, 1),
            "python": platform.python_version(), "torch": torch_version, "gpu": cuda}


def check_dest(dest: Path) -> list[str]:
    """The files of a previous export in ``dest`` (``[]`` when absent or empty); UserError for a file or a
    non-empty folder holding anything a previous export did not write."""
    if dest.exists() and not dest.is_dir():
        raise UserError(f"export folder {dest} exists and is not a folder")
    if not dest.is_dir() or not any(dest.iterdir()):
        return []
    try:
        owned = [str(f) for f in json.loads((dest / EXPORT_MARKER).read_text())["files"]] + [EXPORT_MARKER]
    except (OSError, ValueError, KeyError, TypeError):
        owned = []
    if not owned or foreign_entries(dest, owned):
        raise UserError(f"export folder {dest} exists and is not a previous export (no {EXPORT_MARKER} listing "
                        "its files); choose a new or empty folder")
    return owned


def export_report(run: str | Path, dest: str | Path, command: str | None = None) -> dict:
    """Copy ``run``'s built report (summary, tables, figures) into ``dest`` with its provenance.

    Parameters
    ----------
    run : a study run folder whose report was built (``report/summary.md`` exists)
    dest : the export folder (absent, empty or a previous export)
    command : the command line that made the run (default: rebuilt from its config name)

    Returns
    -------
    dict : the provenance written to ``export.json``.
    """
    run, dest = Path(run), Path(dest)
    summary = run / "report" / "summary.md"
    if not summary.is_file():
        raise UserError(f"{run} has no built report (report/summary.md); run `spindoctor report {run}` first")
    owned = check_dest(dest)
    markers = {p.stem: json.loads(p.read_text()) for p in sorted((run / ".stages").glob("*.json"))}
    config = (run / "config.yaml").read_text() if (run / "config.yaml").is_file() else ""
    import yaml

    name = (yaml.safe_load(config) or {}).get("name", "organism") if config else "organism"
    info = {"run": str(run), "command": command or f"spindoctor study --config {name} --out {run}",
            "spindoctor": __version__, "commit": git_commit(Path(__file__).parent), "machine": machine(),
            "exported": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "stage_seconds": {k: round(float(m.get("seconds", 0)), 1) for k, m in markers.items()}}
    sources = [(summary, "summary.md")] + [(p, p.name) for p in sorted((run / "report" / "tables").glob("*.csv"))]
    sources += [(p, p.name) for p in sorted((run / "report" / "figures").glob("*.png"))]
    sources += [(run / src, name) for src, name in STAGE_FIGURES if (run / src).is_file()]
    with atomic_dir(dest, owned=owned) as tmp:
        for source, name in sources:
            shutil.copy2(source, tmp / name)
        if config:
            (tmp / "config.yaml").write_text(config, encoding="utf-8")
        info["files"] = sorted([p.name for p in tmp.iterdir()] + ["README.md"])
        (tmp / "README.md").write_text(provenance_markdown(info), encoding="utf-8")
        (tmp / EXPORT_MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def provenance_markdown(info: dict) -> str:
    """README.md of an export: how the results were made, then where they are."""
    m = info["machine"]
    lines = ["# Results: provenance", "",
             f"- command: `{info['command']}`",
             f"- exported with spindoctor {info['spindoctor']}, commit `{info['commit'] or 'unknown'}` "
             "(the stages ran with the code of their own time; see the run's config.yaml)",
             f"- machine: {m['os']}, {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, "
             f"Python {m['python']}, torch {m['torch']}" + (f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU"),
             f"- exported {info['exported']} from `{info['run']}`", "",
             "Stage wall times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in info["stage_seconds"].items()), "",
             "`summary.md` holds the findings table (each finding's verdict with its 95% interval), Figure 1 and "
             "the triage; the `.csv` files are the report's tables, the `.png` files its figures, `config.yaml` "
             "the resolved config of the run."]
    return "\n".join(lines) + "\n"
