"""Seeded dealing of ID and OOD hands, de-duplication and train/probe partitions.

Reference behaviour (docs/design.md, GeneralPoints; the SFTvsRL environment, Zhai et al.):

* ID deal: every rank uniform in 1..13, independently (duplicates and even
  identical cards occur), suits independent; redraw until the hand is
  solvable under the ID rule (``face10``).
* OOD deal: all ranks but one uniform in 1..13 plus one face card (11..13),
  shuffled, so every OOD hand holds a face card; redraw until solvable under
  the OOD rule (``face11``).

Hands are de-duplicated by (rule, target, multiset of ranks). Train and probe
hands never share a key: a key belongs to the probe partition when a stable
hash of it (BLAKE2b with a salt) falls below ``probe_fraction``. The partition
depends only on the key, not on the order of dealing, so any number of train
and probe deals with any seeds stay disjoint. Dealing for a partition is the
reference deal with one more rejection: keys of the other partition redraw.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import cache
from itertools import combinations_with_replacement
from typing import Literal

from spindoctor.errors import UserError
from spindoctor.game.cards import FACE_RANKS, ID_RULE, OOD_RULE, SUITS, Card, Rule, hand_values
from spindoctor.game.solver import can_make, solvable_table

Split = Literal["id", "ood"]
SPLITS: tuple[Split, ...] = ("id", "ood")
Partition = Literal["train", "probe", "all"]
DEFAULT_PROBE_FRACTION = 0.3
DEFAULT_SALT = "generalpoints-v1"
_MAX_DRAWS_PER_HAND = 10_000


def split_rule(split: str) -> Rule:
    """The rule in force for a split: ``id`` -> face10, ``ood`` -> face11."""
    if split == "id":
        return ID_RULE
    if split == "ood":
        return OOD_RULE
    raise UserError(f"unknown split {split!r}; expected id or ood")


@dataclass(frozen=True)
class Hand:
    """A dealt hand: its cards (in dealt order), the rule in force and the target."""

    cards: tuple[Card, ...]
    rule: Rule
    target: int = 24

    @property
    def values(self) -> tuple[int, ...]:
        return hand_values(self.cards, self.rule)

    @property
    def key(self) -> tuple[str, int, tuple[int, ...]]:
        """(rule, target, sorted ranks): what identifies a hand for de-duplication."""
        return (self.rule, self.target, tuple(sorted(c.rank for c in self.cards)))

    @property
    def labels(self) -> list[str]:
        return [c.label for c in self.cards]

    def to_dict(self) -> dict:
        return {
            "cards": [str(c) for c in self.cards],
            "labels": self.labels,
            "values": list(self.values),
            "rule": self.rule,
            "target": self.target,
        }


def is_solvable(values: tuple[int, ...], target: int = 24) -> bool:
    """Exact solvability, from the cached 4-card table when the hand fits it.

    Other sizes use :func:`can_make` directly (its sub-multiset cache grows as
    hands are seen), which for a few 5-card hands is far cheaper than the
    full 6188-entry table.
    """
    if target == 24 and len(values) == 4 and all(1 <= v <= 13 for v in values):
        return solvable_table((1, 13), 4, 24)[tuple(sorted(values))]
    return can_make(values, target)


def in_probe_partition(
    key: tuple, probe_fraction: float = DEFAULT_PROBE_FRACTION, salt: str = DEFAULT_SALT
) -> bool:
    """True when ``key`` belongs to the held-out probe partition (stable across runs)."""
    digest = hashlib.blake2b(f"{salt}|{key!r}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < probe_fraction


def _in_partition(key: tuple, partition: Partition, probe_fraction: float, salt: str) -> bool:
    if partition == "all":
        return True
    return in_probe_partition(key, probe_fraction, salt) == (partition == "probe")


def draw_ranks(split: Split, rng: random.Random, n_cards: int = 4) -> list[int]:
    """One reference draw of ranks (before the solvability check)."""
    if split == "id":
        return [rng.randint(1, 13) for _ in range(n_cards)]
    ranks = [rng.randint(1, 13) for _ in range(n_cards - 1)] + [rng.choice(FACE_RANKS)]
    rng.shuffle(ranks)
    return ranks


def deal_one(
    split: Split,
    rng: random.Random,
    *,
    target: int = 24,
    n_cards: int = 4,
    partition: Partition = "all",
    probe_fraction: float = DEFAULT_PROBE_FRACTION,
    salt: str = DEFAULT_SALT,
    exclude: frozenset | set = frozenset(),
) -> Hand:
    """Deal one solvable hand of ``split``, redrawing as the reference does.

    Raises :class:`UserError` when no eligible hand turns up in many draws.
    """
    rule = split_rule(split)
    for _ in range(_MAX_DRAWS_PER_HAND):
        ranks = draw_ranks(split, rng, n_cards)
        cards = tuple(Card(r, rng.choice(SUITS)) for r in ranks)
        hand = Hand(cards, rule, target)
        if hand.key in exclude or not _in_partition(hand.key, partition, probe_fraction, salt):
            continue
        if is_solvable(hand.values, target):
            return hand
    raise UserError(
        f"no eligible {split} hand in {_MAX_DRAWS_PER_HAND} draws "
        f"(target {target}, {n_cards} cards, partition {partition}): too few hands left"
    )


def deal_hands(
    split: Split,
    n: int,
    seed: int,
    *,
    target: int = 24,
    n_cards: int = 4,
    partition: Partition = "all",
    probe_fraction: float = DEFAULT_PROBE_FRACTION,
    salt: str = DEFAULT_SALT,
    unique: bool = True,
) -> list[Hand]:
    """Deal ``n`` hands of ``split`` reproducibly from ``seed``.

    With ``unique`` (default) no two hands share a key; asking for more unique
    hands than the partition holds raises :class:`UserError`.
    """
    if n < 0:
        raise UserError(f"n must be >= 0, got {n}")
    if not 0.0 <= probe_fraction <= 1.0:
        raise UserError(f"probe_fraction must be in [0, 1], got {probe_fraction}")
    if unique and n_cards == 4:  # larger hands: the draw limit below reports exhaustion
        available = count_eligible(split, target, n_cards, partition, probe_fraction, salt)
        if n > available:
            raise UserError(
                f"asked for {n} unique {split} hands but the {partition} partition holds {available}"
            )
    rng = random.Random(f"{seed}|{split}|{partition}")
    hands: list[Hand] = []
    seen: set = set()
    while len(hands) < n:
        hand = deal_one(
            split, rng, target=target, n_cards=n_cards, partition=partition,
            probe_fraction=probe_fraction, salt=salt, exclude=seen if unique else frozenset(),
        )
        seen.add(hand.key)
        hands.append(hand)
    return hands


@cache
def eligible_keys(
    split: Split,
    target: int = 24,
    n_cards: int = 4,
    partition: Partition = "all",
    probe_fraction: float = DEFAULT_PROBE_FRACTION,
    salt: str = DEFAULT_SALT,
) -> tuple[tuple, ...]:
    """Every key a deal of ``split`` can produce in ``partition``, sorted (cached)."""
    rule = split_rule(split)
    keys: list[tuple] = []
    for ranks in combinations_with_replacement(range(1, 14), n_cards):
        if split == "ood" and not any(r in FACE_RANKS for r in ranks):
            continue
        key = (rule, target, ranks)
        if not _in_partition(key, partition, probe_fraction, salt):
            continue
        values = tuple(Card(r).value(rule) for r in ranks)
        if is_solvable(values, target):
            keys.append(key)
    return tuple(keys)


def count_eligible(
    split: Split,
    target: int = 24,
    n_cards: int = 4,
    partition: Partition = "all",
    probe_fraction: float = DEFAULT_PROBE_FRACTION,
    salt: str = DEFAULT_SALT,
) -> int:
    """How many distinct keys :func:`eligible_keys` holds."""
    return len(eligible_keys(split, target, n_cards, partition, probe_fraction, salt))


def all_hands(
    split: Split,
    seed: int,
    *,
    target: int = 24,
    n_cards: int = 4,
    partition: Partition = "probe",
    probe_fraction: float = DEFAULT_PROBE_FRACTION,
    salt: str = DEFAULT_SALT,
) -> list[Hand]:
    """One hand per eligible key (seeded suits and card order, seeded shuffle):
    the largest probe set a partition allows."""
    rng = random.Random(f"{seed}|{split}|all")
    rule = split_rule(split)
    hands = []
    for _, _, ranks in eligible_keys(split, target, n_cards, partition, probe_fraction, salt):
        order = list(ranks)
        rng.shuffle(order)
        hands.append(Hand(tuple(Card(r, rng.choice(SUITS)) for r in order), rule, target))
    rng.shuffle(hands)
    return hands
