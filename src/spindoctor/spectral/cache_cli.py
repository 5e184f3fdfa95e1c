"""``spindoctor cache info|clear``: what the factorisation cache holds, and pruning it.

The cache (:class:`spindoctor.spectral.svd.FactorCache`) keeps the float32 factors of
every matrix drift, restore and sweeps factorised, about the size of the selected
weights per checkpoint (a 7B model's `all` matrices: some 38 GB), so it needs a way
to see and free it. Entries carry the checkpoint fingerprint, path and tensor name
in their metadata; the file mtime is their last use. Only files whose header marks
them as factor-cache entries are counted or removed; any other file in the cache's
layout is left alone and listed as ``skipped`` (docs/design.md, "Run folder").
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from spindoctor.errors import UserError

app = typer.Typer(help="The factorisation cache of drift, restore and sweeps: size, and pruning.",
                  no_args_is_help=True)

CacheOpt = Annotated[Path | None, typer.Option("--cache", help="Cache folder (default: as drift uses).")]


def _cache(folder: Path | None):
    from spindoctor.spectral.run import default_cache_dir
    from spindoctor.spectral.svd import FactorCache

    root = folder or default_cache_dir()
    if folder is not None and folder.exists() and not folder.is_dir():
        raise UserError(f"--cache {folder} exists and is not a folder")
    if folder is not None and not folder.is_dir():
        raise UserError(f"cache folder not found: {folder}")
    return FactorCache(root)


def group_entries(entries: list) -> list[dict]:
    """One row per checkpoint fingerprint (unlabelled entries together), largest first."""
    groups: dict[str | None, dict] = {}
    for e in entries:
        g = groups.setdefault(e.fingerprint, {"fingerprint": e.fingerprint, "checkpoints": set(), "entries": 0,
                                              "bytes": 0, "last_used": 0.0})
        g["entries"] += 1
        g["bytes"] += e.size
        g["last_used"] = max(g["last_used"], e.last_used)
        if e.checkpoint:
            g["checkpoints"].add(e.checkpoint)
    rows = [{**g, "checkpoints": sorted(g["checkpoints"])} for g in groups.values()]
    return sorted(rows, key=lambda r: -r["bytes"])


def _scan(fc) -> tuple[list, list[str]]:
    """(entries, paths of the skipped non-entry files) of an existing cache folder."""
    entries, skipped = fc.scan() if fc.root.is_dir() else ([], [])
    return entries, [str(p) for p in skipped]


def _say_skipped(skipped: list[str]) -> None:
    if skipped:
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        typer.echo(f"skipped {len(skipped)} file(s) that are not factor-cache entries (left alone): "
                   f"{', '.join(skipped[:3])}{more}")


@app.command("info")
def info(cache: CacheOpt = None, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Size of the cache, per checkpoint it holds factorisations of."""
    fc = _cache(cache)
    entries, skipped = _scan(fc)
    rows = group_entries(entries)
    total = sum(r["bytes"] for r in rows)
    if as_json:
        typer.echo(json.dumps({"cache": str(fc.root), "bytes": total, "entries": sum(r["entries"] for r in rows),
                               "checkpoints": rows, "skipped": skipped}))
        return
    typer.echo(f"{fc.root}: {total / 2**30:.2f} GiB in {sum(r['entries'] for r in rows)} factorisations")
    for r in rows:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["last_used"]))
        name = ", ".join(r["checkpoints"]) or "(no label: written before labels existed)"
        fp = (r["fingerprint"] or "-")[:12]
        typer.echo(f"  {r['bytes'] / 2**30:8.2f} GiB  {r['entries']:5d}  last used {used}  {fp}  {name}")
    _say_skipped(skipped)


@app.command("clear")
def clear(
    cache: CacheOpt = None,
    checkpoint: Annotated[list[Path] | None, typer.Option(
        "--checkpoint", help="Remove the factorisations of this checkpoint (its current content; repeatable).")] = None,
    older_than: Annotated[float | None, typer.Option(help="Remove entries not used for this many days.")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Remove every entry.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be removed.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Remove cached factorisations: of given checkpoints, unused for N days, or all (entries only:
    other files are skipped)."""
    from spindoctor.spectral.tensors import Checkpoint

    if sum([bool(checkpoint), older_than is not None, everything]) != 1:
        raise UserError("give exactly one of --checkpoint PATH, --older-than DAYS or --all")
    if older_than is not None and older_than < 0:
        raise UserError(f"--older-than must be >= 0 days, got {older_than}")
    fc = _cache(cache)
    entries, skipped = _scan(fc)
    if checkpoint:
        prints = {Checkpoint(p).fingerprint(fc.root) for p in checkpoint}
        chosen = [e for e in entries if e.fingerprint in prints]
    elif older_than is not None:
        cutoff = time.time() - older_than * 86400
        chosen = [e for e in entries if e.last_used < cutoff]
    else:
        chosen = entries
    size = sum(e.size for e in chosen)
    freed = 0 if dry_run else fc.remove(chosen)
    if as_json:
        typer.echo(json.dumps({"cache": str(fc.root), "entries": len(chosen), "bytes": size, "freed": freed,
                               "dry_run": dry_run, "skipped": skipped}))
        return
    verb = "would remove" if dry_run else "removed"
    typer.echo(f"{verb} {len(chosen)} factorisations ({size / 2**30:.2f} GiB) from {fc.root}")
    _say_skipped(skipped)
