"""Write one arena point as a complete HF checkpoint with a model card (docs/design.md, "Arena").

The weights are the point's state dict exactly as the arena probed it (the SFT
end's stored dtypes), written shard by shard in the end's layout; config,
tokenizer and generation files come from the end (its probe record, optimizer
and trainer files do not). ``README.md`` is a model card: YAML front matter
(``base_model``, ``base_model_relation: merge``, tags, a ``model-index`` with
this run's ID and OOD results) and the recipe. ``arena_point.json`` records
the recipe and the files written. The folder is written as one set
(:func:`spindoctor.io.atomic_dir`); an existing one must be empty or a previous
arena checkpoint (only the files its record lists are deleted).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from spindoctor import __version__
from spindoctor.errors import UserError
from spindoctor.io import atomic_dir

POINT_RECORD = "arena_point.json"
CARD = "README.md"
_SKIP = {CARD, POINT_RECORD, "probe.json", "restore.json", "optimizer.json", "trainer_state.json"}


def owned_files(out: Path) -> list[str]:
    """Files a previous arena checkpoint wrote into ``out``; ``[]`` when absent or empty; UserError otherwise."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"--model-out {out} exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return []
    try:
        files = json.loads((out / POINT_RECORD).read_text(encoding="utf-8"))["files"]
        assert isinstance(files, list) and all(isinstance(f, str) for f in files)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        raise UserError(f"--model-out {out} exists and is not an arena checkpoint (no {POINT_RECORD}); "
                        "choose a new or empty folder") from None
    return sorted({*files, POINT_RECORD})


def model_card(row: dict, record: dict, name: str) -> str:
    """The README.md text: YAML front matter (model-index with the row's ID/OOD results) and the recipe."""
    import yaml

    cfg = record["config"]
    metrics = []
    for split, rule in (("id", "face10 (J, Q, K count 10)"), ("ood", "face11 (J, Q, K count 11, 12, 13)")):
        if row.get(f"{split}_acc") is None:
            continue
        metrics.append({"task": {"type": "text-generation", "name": "GeneralPoints (make 24)"},
                        "dataset": {"type": "generalpoints", "name": f"GeneralPoints {split.upper()}, rule {rule}"},
                        "metrics": [{"type": "accuracy", "value": round(row[f"{split}_acc"], 4),
                                     "name": f"{split.upper()} accuracy (greedy, n={row['probes'][split]['n']})"}]})
    front = {"base_model": cfg["base"], "base_model_relation": "merge",
             "tags": ["spindoctor", "recovery-arena", row["method"]],
             "model-index": [{"name": name, "results": metrics}]}
    recipe = {"method": row["method"], "knob": row["knob"], "sources": row["sources"],
              "matrices": cfg["matrices"], "restore_mode": cfg["restore_mode"],
              "spindoctor_version": __version__, "probe": cfg["probe"]}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "",
             f"# {name}", "",
             f"Written by `spindoctor arena` (recovery arena): the point **{row['label']}**.", "",
             "| split | accuracy | +- SE | loss proxy |", "| --- | --- | --- | --- |"]
    for split in ("id", "ood"):
        if row.get(f"{split}_acc") is not None:
            loss = row.get(f"{split}_loss")
            lines.append(f"| {split.upper()} | {row[f'{split}_acc']:.4f} | {row[f'{split}_acc_se']:.4f} | "
                         f"{'' if loss is None else f'{loss:.4f}'} |")
    lines += ["", "## Recipe", "", "```json", json.dumps(recipe, indent=2), "```", ""]
    if isinstance(row["knob"], int | float):
        peak = f" --peak {cfg['peak']}" if cfg.get("peak") else ""
        lines += ["Reproduce (same probe settings):", "", "```bash",
                  f"spindoctor arena {cfg['base']} --end {cfg['end']}{peak} --out ARENA_DIR "
                  f"--methods {row['method']} --matrices {cfg['matrices']} --n {cfg['probe']['n']} "
                  f"--write {row['method']}:{row['knob']:g} --model-out MODEL_DIR", "```", ""]
    return "\n".join(lines)


def write_point(state: dict, end_dir: str, out: str | Path, row: dict, record: dict) -> dict:
    """Write ``state`` (stored names and dtypes) as a checkpoint in ``out`` with its card; return its record."""
    from safetensors.torch import save_file

    from spindoctor.spectral.tensors import INDEX_FILE, Checkpoint

    out = Path(out)
    owned = owned_files(out)
    end = Checkpoint(end_dir)
    try:
        with atomic_dir(out, owned=owned) as tmp:
            for shard in end.files:
                names = [n for n, f in end.weight_map.items() if f == shard]
                save_file({n: state[n].contiguous() for n in names}, str(tmp / shard.name), metadata={"format": "pt"})
            if (end.path / INDEX_FILE).exists():
                shutil.copy2(end.path / INDEX_FILE, tmp / INDEX_FILE)
            for item in end.path.iterdir():
                if item.is_file() and item.suffix != ".safetensors" and item.name != INDEX_FILE \
                        and item.name not in _SKIP and not item.name.startswith(("optimizer", "value_head", ".")):
                    shutil.copy2(item, tmp / item.name)
            (tmp / CARD).write_text(model_card(row, record, out.name), encoding="utf-8")
            point = {"spindoctor_version": __version__, "method": row["method"], "knob": row["knob"],
                     "label": row["label"], "sources": row["sources"], "end": str(end.path.resolve()),
                     "results": {k: row.get(k) for k in ("id_acc", "ood_acc", "id_loss", "ood_loss")},
                     "files": sorted({p.name for p in tmp.iterdir()} | {POINT_RECORD})}
            (tmp / POINT_RECORD).write_text(json.dumps(point, indent=2) + "\n", encoding="utf-8")
    except FileExistsError as exc:
        raise UserError(str(exc)) from None
    return point
