"""lm-evaluation-harness tasks of the probe sets (docs/design.md, "lm-evaluation-harness").

:func:`export_lm_eval` (``spindoctor game export --lm-eval DIR``) writes a task
folder that ``lm_eval --include_path DIR`` loads:

* ``generalpoints_id.yaml``, ``generalpoints_ood.yaml``: the ``paper`` format
  (tag ``generalpoints``); ``generalpoints_compact_id.yaml``,
  ``generalpoints_compact_ood.yaml``: the ``compact`` format of the
  character-level organism (tag ``generalpoints_compact``).
* one ``<task>.jsonl`` per task: the hands ``spindoctor probe`` deals for the
  same settings (:func:`spindoctor.probes.sets.probe_hands`), in probe order,
  so lm_eval's ``--limit k`` takes the hands ``spindoctor probe --n k`` takes.
  The YAMLs name them by absolute path (``dataset_path: json``).
* ``utils.py``: imports :func:`process_results`, which judges each answer with
  the same spindoctor functions as :func:`spindoctor.probes.core.probe_split`.
* ``.spindoctor-lmeval.json``: the folder's marker (settings, digests, files).

Generation is greedy with no stop string but the model's EOS and
``max_gen_toks`` = :meth:`ProbeConfig.new_tokens` (48 compact, 256 paper),
as in the probe. Nothing here imports torch or lm_eval.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from spindoctor.errors import UserError
from spindoctor.game.cards import check_rule, parse_card
from spindoctor.game.deal import SPLITS, Hand
from spindoctor.game.episodes import judge_response
from spindoctor.game.formats import (
    FORMAT_VERSION,
    FORMATS,
    FormatName,
    parse_response,
    render_prompt,
    render_response,
)
from spindoctor.io import atomic_write_json, atomic_write_jsonl, atomic_write_text
from spindoctor.probes.core import ProbeConfig, hands_digest
from spindoctor.probes.sets import flush_solution_cache, gold_formula, probe_hands

SCHEMA = "spindoctor.lm-eval/1"
MARKER_FILE = ".spindoctor-lmeval.json"
UTILS_FILE = "utils.py"
TAGS: dict[FormatName, str] = {"paper": "generalpoints", "compact": "generalpoints_compact"}
# Python writes the bytecode of utils.py here when lm_eval imports it; it is left alone.
TOLERATED = frozenset({"__pycache__"})

UTILS_TEXT = '''"""lm-evaluation-harness hooks of the GeneralPoints tasks (written by
`spindoctor game export --lm-eval`): each answer is judged by spindoctor's own
exact judge, so `acc` is `spindoctor probe`'s accuracy."""

from spindoctor.probes.lmeval import process_results  # noqa: F401
'''


def task_name(fmt: FormatName, split: str) -> str:
    """``generalpoints_<split>`` (paper) or ``generalpoints_compact_<split>`` (compact)."""
    return f"{TAGS[fmt]}_{split}"


def output_files() -> frozenset[str]:
    """Every file name :func:`export_lm_eval` writes (the marker included)."""
    names = {MARKER_FILE, UTILS_FILE}
    for fmt in FORMATS:
        for split in SPLITS:
            names |= {f"{task_name(fmt, split)}.yaml", f"{task_name(fmt, split)}.jsonl"}
    return frozenset(names)


def doc_row(hand: Hand, fmt: FormatName, split: str, index: int, seed: int) -> dict:
    """One lm_eval document: the prompt, a gold answer (``doc_to_target``; never scored)
    and the hand that :func:`process_results` judges against."""
    gold = render_response(fmt, hand.cards, hand.rule, gold_formula(hand, seed), hand.target)
    return {
        "index": index, "split": split, "format": fmt,
        "prompt": render_prompt(fmt, hand.cards, hand.rule, hand.target), "gold": gold,
        "cards": [str(c) for c in hand.cards], "rule": hand.rule, "target": hand.target,
    }


def doc_hand(doc: dict) -> Hand:
    """The hand of a document written by :func:`doc_row`."""
    return Hand(tuple(parse_card(c) for c in doc["cards"]), check_rule(doc["rule"]), int(doc["target"]))


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """lm_eval's per-document metrics of the first answer, judged as the probe judges it.

    Parameters
    ----------
    doc : a row of the task's jsonl (:func:`doc_row`)
    results : lm_eval's filtered responses; the first is the answer

    Returns
    -------
    dict
        ``acc`` (1.0 when the exact judge says correct), ``reward`` (the game
        reward), ``well_formed`` and ``values_acc`` (0/1), the per-hand terms of
        :class:`~spindoctor.probes.core.ProbeResult`'s means (docs/design.md, "Probes").
    """
    fmt = doc["format"]
    if fmt not in FORMATS:
        raise ValueError(f"doc format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    hand = doc_hand(doc)
    answer = results[0] if results else ""
    parsed = parse_response(fmt, answer)
    _, verdict = judge_response(fmt, answer, hand)
    values_ok = parsed.numbers is not None and tuple(parsed.numbers) == hand.values
    return {"acc": float(verdict.correct), "reward": float(verdict.reward),
            "well_formed": float(parsed.well_formed), "values_acc": float(values_ok)}


def task_yaml(fmt: FormatName, split: str, data_file: Path, max_gen_toks: int, settings: dict) -> str:
    """The task YAML of one format and split (strings quoted as JSON, a YAML subset)."""
    name = task_name(fmt, split)
    metrics = "".join(f"  - metric: {m}\n    aggregation: mean\n    higher_is_better: true\n"
                      for m in ("acc", "reward", "well_formed", "values_acc"))
    return (
        f"# Written by `spindoctor game export --lm-eval`: GeneralPoints {split.upper()} probe hands,\n"
        f"# {fmt} format. Settings: {json.dumps(settings, sort_keys=True)}\n"
        f"task: {name}\n"
        f"tag:\n  - {TAGS[fmt]}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {json.dumps(str(data_file))}\n"
        "test_split: test\n"
        "output_type: generate_until\n"
        "doc_to_text: prompt\n"
        "doc_to_target: gold\n"
        "generation_kwargs:\n"
        "  until: []\n"
        f"  max_gen_toks: {int(max_gen_toks)}\n"
        "  do_sample: false\n"
        "  temperature: 0.0\n"
        "process_results: !function utils.process_results\n"
        f"metric_list:\n{metrics}"
        f"metadata:\n  version: 1.0\n  format_version: {FORMAT_VERSION[fmt]}\n"
    )


def check_lm_eval_dir(out: str | Path) -> Path:
    """``out`` as a Path; :class:`UserError` unless it is absent, an empty folder, or a folder a
    previous export wrote (its marker, only :func:`output_files`, and ``__pycache__``)."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return out
    if out.is_symlink() or not out.is_dir():
        raise UserError(f"--lm-eval {out} exists and is not a folder")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return out
    owned = output_files()
    foreign = [name for name in entries if not (
        (name in owned and (out / name).is_file() and not (out / name).is_symlink())
        or (name in TOLERATED and (out / name).is_dir()))]
    if foreign or not _is_marker(out / MARKER_FILE):
        what = f"holds files this export does not write ({', '.join(foreign[:3])})" if foreign \
            else f"has no {MARKER_FILE} of a previous export"
        raise UserError(f"--lm-eval {out} is not empty and is not a previous `game export --lm-eval` "
                        f"folder: it {what}; choose another folder")
    return out


def _is_marker(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("schema") == SCHEMA


def export_lm_eval(out: str | Path, cfg: ProbeConfig | None = None) -> dict[str, int]:
    """Write the lm-evaluation-harness task folder of ``cfg``'s probe sets (both formats).

    Parameters
    ----------
    out : the task folder; absent, empty or a previous export (:func:`check_lm_eval_dir`)
    cfg : the probe settings whose hands are exported (``n``, ``seed``, ``target``,
        ``probe_fraction``, ``salt``, ``ood_partition``); its ``fmt`` is ignored, both
        formats are written. None: :class:`ProbeConfig`'s defaults, as ``spindoctor probe``.

    Returns
    -------
    dict
        Rows written per data file (``<task>.jsonl``).
    """
    cfg = cfg or ProbeConfig()
    out = check_lm_eval_dir(out).resolve()
    settings = {"n": cfg.n, "seed": cfg.seed, "target": cfg.target, "probe_fraction": cfg.probe_fraction,
                "salt": cfg.salt, "ood_partition": cfg.ood_partition}
    hands = {split: probe_hands(split, cfg.n, cfg.seed, target=cfg.target, probe_fraction=cfg.probe_fraction,
                                salt=cfg.salt, ood_partition=cfg.ood_partition) for split in SPLITS}
    max_gen = {fmt: cfg.model_copy(update={"fmt": fmt}).new_tokens() for fmt in FORMATS}
    out.mkdir(parents=True, exist_ok=True)
    marker = {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": settings,
              "max_gen_toks": max_gen, "digests": {s: hands_digest(h) for s, h in hands.items()},
              "tasks": [task_name(f, s) for f in FORMATS for s in SPLITS], "files": sorted(output_files())}
    atomic_write_json(out / MARKER_FILE, marker)  # claims the folder before any other file
    counts: dict[str, int] = {}
    try:
        for fmt in FORMATS:
            for split in SPLITS:
                name = task_name(fmt, split)
                rows = (doc_row(h, fmt, split, i, cfg.seed) for i, h in enumerate(hands[split]))
                counts[f"{name}.jsonl"] = atomic_write_jsonl(out / f"{name}.jsonl", rows)
                atomic_write_text(out / f"{name}.yaml",
                                  task_yaml(fmt, split, out / f"{name}.jsonl", max_gen[fmt], settings))
    finally:
        flush_solution_cache()
    atomic_write_text(out / UTILS_FILE, UTILS_TEXT)
    return counts
