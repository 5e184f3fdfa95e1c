"""Write a restored checkpoint: a complete HF folder that transformers loads.

Everything but the weights (config, tokenizer files, generation config, chat
template, ...) is copied from the tuned checkpoint; the weights are written
shard by shard in the tuned checkpoint's layout (same shard names and index),
with the planned matrices restored and every other tensor copied unchanged, so
memory holds one shard at a time. ``restore.json`` records the reference, the
tuned checkpoint, their fingerprints, every plan parameter and the files written.

The output is one set (docs/design.md, "Run folder"): it is built in a unique
temporary folder beside ``out`` (:func:`spindoctor.io.atomic_dir`), removed on any
failure, and replaces ``out`` whole when complete. An existing ``out`` must be
empty or a previous restore output (recognised by its ``restore.json``); only the
files that output lists are deleted. ``out`` may not be a file, the working
folder, an input folder or a folder above one; every check runs before any work.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from spindoctor import __version__
from spindoctor.errors import UserError
from spindoctor.io import atomic_dir
from spindoctor.restore.edit import restore_count, restore_matrix
from spindoctor.restore.plan import RestorePlan, plan_matrices
from spindoctor.spectral.svd import FactorCache, load_factorization
from spindoctor.spectral.tensors import INDEX_FILE, Checkpoint

EDIT_RECORD = "restore.json"


def _copy_non_weights(src: Path, dst: Path) -> None:
    for item in src.iterdir():
        if item.suffix == ".safetensors" or item.name in (INDEX_FILE, EDIT_RECORD) or item.name.startswith("."):
            continue
        if item.is_file():
            shutil.copy2(item, dst / item.name)


def previous_output_files(out: Path) -> list[str] | None:
    """The files a previous restore wrote into ``out`` (from its ``restore.json``), ``[]`` for an
    absent or empty folder, None when ``out`` is not a restore output."""
    if not out.is_dir() or not any(out.iterdir()):
        return []
    try:
        record = json.loads((out / EDIT_RECORD).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or not {"plan", "tuned", "reference"} <= set(record):
        return None
    files = record.get("files")
    if files is None:  # written before restore.json listed its files: every plain file is its own
        return sorted(p.name for p in out.iterdir() if p.is_file() and not p.is_symlink())
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return sorted({*files, EDIT_RECORD})


def _is_within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_out(out: Path, inputs: list[Path]) -> list[str]:
    """Refuse (UserError) an ``out`` restore may not replace; return the files it may delete there."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"--out {out} exists and is not a folder")
    where = Path(os.path.realpath(out))
    if _is_within(Path.cwd().resolve(), where):
        raise UserError(f"--out {out} is the working folder or a folder above it; choose a new folder")
    for src in inputs:
        if _is_within(src.resolve(), where):
            raise UserError(f"--out {out} is the input {src} or a folder above it; choose a new folder")
    owned = previous_output_files(out)
    if owned is None:
        raise UserError(f"--out {out} exists and is not a restore output (no {EDIT_RECORD}); "
                        "choose a new or empty folder")
    return owned


def restore_checkpoint(
    ref_dir: str | Path,
    tuned_dir: str | Path,
    out_dir: str | Path,
    plan: RestorePlan,
    cache_dir: str | Path | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Write ``out_dir``: the tuned checkpoint with ``plan`` applied; return the edit record."""
    ref, tuned = Checkpoint(ref_dir), Checkpoint(tuned_dir)
    if not tuned.path.is_dir():
        raise UserError(f"TUNED must be a checkpoint folder (config, tokenizer, weights): {tuned.path}")
    out = Path(out_dir)
    owned = check_out(out, [ref.path, tuned.path])
    if cache_dir is not None and Path(cache_dir).exists() and not Path(cache_dir).is_dir():
        raise UserError(f"--cache-dir {cache_dir} exists and is not a folder")
    if device != "cpu":
        from spindoctor.devices import resolve_device

        device = resolve_device(device)
    infos = {i.name: i for i in plan_matrices(ref, tuned, plan)}
    cache = FactorCache(cache_dir) if cache_dir else None
    fp_ref = ref.fingerprint(cache.root if cache else None)
    fp_tuned = tuned.fingerprint(cache.root if cache else None)
    started = time.time()
    try:
        with atomic_dir(out, owned=owned) as tmp:
            rows = _write_weights(tmp, ref, tuned, infos, plan, cache, dtype, device, (fp_ref, fp_tuned), progress)
            if (tuned.path / INDEX_FILE).exists():
                shutil.copy2(tuned.path / INDEX_FILE, tmp / INDEX_FILE)
            _copy_non_weights(tuned.path, tmp)
            record = {
                "spindoctor_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "seconds": round(time.time() - started, 3),
                "reference": str(ref.path.resolve()), "reference_fingerprint": fp_ref,
                "tuned": str(tuned.path.resolve()), "tuned_fingerprint": fp_tuned,
                "plan": plan.model_dump(), "factor_dtype": dtype, "matrices": rows,
                "files": sorted({p.name for p in tmp.iterdir()} | {EDIT_RECORD}),
            }
            (tmp / EDIT_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    except FileExistsError as exc:  # out changed while we worked: nothing was replaced
        raise UserError(str(exc)) from None
    return record


def _write_weights(tmp, ref, tuned, infos, plan, cache, dtype, device, fingerprints, progress) -> list[dict]:
    """Write every shard of ``tuned`` into ``tmp``, with the matrices in ``infos`` restored; return their rows."""
    from rich.progress import Progress
    from safetensors.torch import save_file

    rows = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("restoring", total=len(infos))
        for shard in tuned.files:
            tensors = {}
            for name in [n for n, f in tuned.weight_map.items() if f == shard]:
                tensor = tuned.tensor(name)
                info = infos.get(name)
                if info is not None:
                    tensor, row = _restore_one(ref, tuned, info, plan, cache, dtype, device, *fingerprints)
                    rows.append(row)
                    bar.advance(task)
                tensors[name] = tensor.contiguous()
            save_file(tensors, str(tmp / shard.name), metadata={"format": "pt"})
    return rows


def _restore_one(ref, tuned, info, plan, cache, dtype, device, fp_ref, fp_tuned):
    """Restore one matrix; return it in the stored orientation and dtype, plus its record row."""
    W = tuned.matrix(info.name, check_finite=False)  # checked by load_factorization on a miss
    f_ref, _ = load_factorization(ref, info.name, cache, dtype, device=device, fingerprint=fp_ref)
    f_tuned, _ = load_factorization(tuned, info.name, cache, dtype, device=device, fingerprint=fp_tuned, W=W)
    k_top = restore_count(plan.k_top, f_tuned.rank)
    k_tail = min(restore_count(plan.k_tail, f_tuned.rank), f_tuned.rank - k_top)
    new = restore_matrix(W, f_ref, f_tuned, k_top, k_tail, plan.mode)
    stored = tuned.tensor(info.name)
    new = new.T if info.conv1d else new
    row = {"name": info.name, "layer": info.layer, "kind": info.kind, "rank": f_tuned.rank,
           "k_top": k_top, "k_tail": k_tail}
    return new.to(stored.dtype).contiguous(), row
