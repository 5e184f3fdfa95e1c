"""Atomic file writes: write to a temporary name in the same folder, then rename.

docs/design.md, "Run folder": a crash never leaves a half-written file under the
final name.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Collection, Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _file_mode() -> int:
    """The mode a plain ``open(..., "w")`` would give: 0o666 less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    ``mkstemp`` creates the file private (0600); it is given the usual mode
    before the rename, so outputs are as readable as any other file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if Path(tmp).exists():
            os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | Path, owned: Collection[str] = ()):
    """Yield a new, empty temporary folder beside ``path``; on success it replaces ``path`` whole.

    The temporary name is unique (``tempfile.mkdtemp`` in the same parent) and the
    folder is removed if the block raises, so ``path`` ends up either untouched or
    holding exactly what the block wrote. ``path`` may be absent, an empty folder,
    or a folder holding only plain files named in ``owned`` (the files its writer
    produces): those are the only files ever deleted. Anything else there raises
    ``FileExistsError`` and leaves ``path`` and the new files' folder untouched
    (the new one is removed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        _swap_in(tmp, path, frozenset(owned))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def foreign_entries(path: Path, owned: Collection[str]) -> list[str]:
    """Names in folder ``path`` that are not plain files named in ``owned``."""
    return sorted(p.name for p in path.iterdir() if p.name not in owned or p.is_symlink() or not p.is_file())


def _swap_in(tmp: Path, path: Path, owned: frozenset[str]) -> None:
    """Rename ``tmp`` onto ``path``; a previous ``path`` is moved aside, then only its ``owned`` files deleted."""
    if not path.exists() and not path.is_symlink():
        os.rename(tmp, path)
        return
    if path.is_symlink() or not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder")
    foreign = foreign_entries(path, owned)
    if foreign:
        raise FileExistsError(f"{path} holds files this command did not write: {', '.join(foreign[:3])}")
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.rename(path, aside / path.name)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(aside / path.name, path)
        aside.rmdir()
        raise
    for name in owned:
        (aside / path.name / name).unlink(missing_ok=True)
    try:
        (aside / path.name).rmdir()
        aside.rmdir()
    except OSError:  # a file appeared meanwhile: never delete it
        warnings.warn(f"kept files that appeared in the previous {path} under {aside}", stacklevel=4)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | Path, obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Write one JSON object per line atomically; return the number of rows."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one JSON line (used for metrics logs; each line is written whole)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSON-lines file, skipping a torn last line left by a crash."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def rows_to_csv(rows: Iterable[dict], fields: list[str]) -> str:
    """CSV text of ``rows`` with the fixed columns ``fields`` (missing keys empty, extra keys left out)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k) for k in fields})
    return buf.getvalue()
