"""Fixed, seeded ID and OOD probe sets, disjoint from every training hand.

* **ID** (face10, target 24): one hand per eligible key of the game's *probe*
  partition (:func:`spindoctor.game.deal.all_hands`), seeded order, suits and
  card order. Training data (SFT pairs, RL prompts) must come from the
  *train* partition with the same ``probe_fraction`` and ``salt``
  (:func:`train_hands`): the partition is a stable hash of the hand's key, so
  the two never share a hand whatever the seeds.
* **OOD** (face11, target 24): the ID-rule SFT data never holds a face11 key
  and the organism's pretraining never asks for target 24, so by default the
  OOD probe may use every eligible OOD hand (``ood_partition="all"``); choose
  ``"probe"`` when OOD hands are also trained on.

``probe_fraction`` defaults to 0.5 here (the game's default is 0.3): at 0.3 the
ID probe partition holds only 357 hands, fewer than the 500 per split the
study asks for; at 0.5 it holds about 600.

Gold solutions (for the teacher-forced loss proxy and for SFT targets) are a
seeded choice among the exact solver's distinct solutions; solving a hand
costs about 25 ms, so solutions are cached in memory and on disk
(``$SPINDOCTOR_CACHE``, default ``~/.cache/spindoctor``).
"""

from __future__ import annotations

import json
import os
import random
import threading
from functools import cache
from pathlib import Path

from spindoctor.game.deal import DEFAULT_SALT, Hand, Partition, Split, all_hands
from spindoctor.game.solver import solve
from spindoctor.io import atomic_write_json

DEFAULT_PROBE_FRACTION = 0.5
_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Where solution lists are cached (``$SPINDOCTOR_CACHE`` or ``~/.cache/spindoctor``)."""
    return Path(os.environ.get("SPINDOCTOR_CACHE", Path.home() / ".cache" / "spindoctor"))


@cache
def _disk_solutions() -> dict[str, list[str]]:
    path = cache_dir() / "solutions-v1.json"
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def solutions(values: tuple[int, ...], target: int = 24) -> tuple[str, ...]:
    """Every distinct solution of a hand (:func:`spindoctor.game.solver.solve`), cached."""
    key = f"{target}|{','.join(map(str, sorted(values)))}"
    table = _disk_solutions()
    if key not in table:
        table[key] = list(solve(tuple(sorted(values)), target))
    return tuple(table[key])


def flush_solution_cache() -> None:
    """Persist newly solved hands to the disk cache (atomic; best effort)."""
    with _LOCK:
        try:
            atomic_write_json(cache_dir() / "solutions-v1.json", _disk_solutions(), indent=0)
        except OSError:
            pass


def gold_formula(hand: Hand, seed: int) -> str:
    """A seeded choice among the hand's distinct solutions (same hand + seed: same formula)."""
    sols = solutions(hand.values, hand.target)
    if not sols:
        raise ValueError(f"hand {hand.labels} cannot make {hand.target} under {hand.rule}")
    rng = random.Random(f"{seed}|{hand.key}")
    return rng.choice(sols)


def probe_hands(
    split: Split,
    n: int | None,
    seed: int,
    *,
    target: int = 24,
    probe_fraction: float = DEFAULT_PROBE_FRACTION,
    salt: str = DEFAULT_SALT,
    ood_partition: Partition = "all",
) -> list[Hand]:
    """The first ``n`` hands (all when ``n`` is None) of the seeded probe set of ``split``."""
    partition: Partition = "probe" if split == "id" else ood_partition
    hands = all_hands(
        split, seed, target=target, partition=partition, probe_fraction=probe_fraction, salt=salt
    )
    return hands if n is None else hands[:n]


def train_hands(
    split: Split = "id",
    seed: int = 0,
    *,
    target: int = 24,
    probe_fraction: float = DEFAULT_PROBE_FRACTION,
    salt: str = DEFAULT_SALT,
) -> list[Hand]:
    """Every eligible hand of the train partition (one per key, seeded order): what SFT
    and RL may train on so that the probe sets stay held out."""
    return all_hands(
        split, seed, target=target, partition="train", probe_fraction=probe_fraction, salt=salt
    )
