"""Write a restored checkpoint: a complete HF folder that transformers loads.

Everything but the weights (config, tokenizer files, generation config, chat
template, ...) is copied from the tuned checkpoint; the weights are written
shard by shard in the tuned checkpoint's layout (same shard names and index),
with the planned matrices restored and every other tensor copied unchanged, so
memory holds one shard at a time. ``restore.json`` records the reference, the
tuned checkpoint, their fingerprints and every plan parameter. The folder is
built under a temporary name and renamed into place when complete.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from spindoctor import __version__
from spindoctor.errors import UserError
from spindoctor.io import atomic_write_json
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
    from rich.progress import Progress
    from safetensors.torch import save_file

    ref, tuned = Checkpoint(ref_dir), Checkpoint(tuned_dir)
    if not tuned.path.is_dir():
        raise UserError(f"TUNED must be a checkpoint folder (config, tokenizer, weights): {tuned.path}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"out_dir {out} exists and is not empty")
    infos = {i.name: i for i in plan_matrices(ref, tuned, plan)}
    cache = FactorCache(cache_dir) if cache_dir else None
    fp_ref = ref.fingerprint(cache.root if cache else None)
    fp_tuned = tuned.fingerprint(cache.root if cache else None)
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    record_rows = []
    started = time.time()
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("restoring", total=len(infos))
        for shard in tuned.files:
            tensors = {}
            for name in [n for n, f in tuned.weight_map.items() if f == shard]:
                tensor = tuned.tensor(name)
                info = infos.get(name)
                if info is not None:
                    tensor, row = _restore_one(ref, tuned, info, plan, cache, dtype, device, fp_ref, fp_tuned)
                    record_rows.append(row)
                    bar.advance(task)
                tensors[name] = tensor.contiguous()
            save_file(tensors, str(tmp / shard.name), metadata={"format": "pt"})
    index = tuned.path / INDEX_FILE
    if index.exists():
        shutil.copy2(index, tmp / INDEX_FILE)
    _copy_non_weights(tuned.path, tmp)
    record = {
        "spindoctor_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - started, 3),
        "reference": str(ref.path.resolve()), "reference_fingerprint": fp_ref,
        "tuned": str(tuned.path.resolve()), "tuned_fingerprint": fp_tuned,
        "plan": plan.model_dump(), "factor_dtype": dtype, "matrices": record_rows,
    }
    atomic_write_json(tmp / EDIT_RECORD, record)
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return record


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
