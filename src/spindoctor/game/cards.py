"""Cards, ranks, suits and the face-card rules of GeneralPoints.

Reference behaviour (docs/design.md, GeneralPoints; SFTvsRL, Zhai et al.): ranks A, 2..10, J, Q,
K; suits H, S, D, C; A = 1, 2..10 at face value, and the face-card rule decides
J/Q/K: ``face10`` (the in-distribution rule) counts each as 10, ``face11`` (the
out-of-distribution rule) counts J = 11, Q = 12, K = 13.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from spindoctor.errors import UserError

Rule = Literal["face10", "face11"]
RULES: tuple[Rule, ...] = ("face10", "face11")
ID_RULE: Rule = "face10"
OOD_RULE: Rule = "face11"

RANK_LABELS: tuple[str, ...] = ("A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K")
SUITS: tuple[str, ...] = ("H", "S", "D", "C")
FACE_RANKS: tuple[int, ...] = (11, 12, 13)

_LABEL_TO_RANK = {label: i + 1 for i, label in enumerate(RANK_LABELS)}
_LABEL_TO_RANK["1"] = 1
_LABEL_TO_RANK["11"] = 11
_LABEL_TO_RANK["12"] = 12
_LABEL_TO_RANK["13"] = 13
_LABEL_TO_RANK["T"] = 10


def check_rule(rule: str) -> Rule:
    """Return ``rule`` if it names a rule, else raise :class:`UserError`."""
    if rule not in RULES:
        raise UserError(f"unknown rule {rule!r}; expected one of {', '.join(RULES)}")
    return rule  # type: ignore[return-value]


def rank_value(rank: int, rule: Rule) -> int:
    """Value of a rank (1..13) under a rule: face cards are 10, or 11/12/13."""
    if not 1 <= rank <= 13:
        raise ValueError(f"rank must be in 1..13, got {rank}")
    if rank >= 11 and check_rule(rule) == "face10":
        return 10
    return rank


@dataclass(frozen=True, order=True)
class Card:
    """One playing card: ``rank`` in 1..13 (A = 1, J = 11, Q = 12, K = 13), ``suit`` in H/S/D/C."""

    rank: int
    suit: str = "H"

    def __post_init__(self) -> None:
        if not 1 <= self.rank <= 13:
            raise ValueError(f"rank must be in 1..13, got {self.rank}")
        if self.suit not in SUITS:
            raise ValueError(f"suit must be one of {SUITS}, got {self.suit!r}")

    @property
    def label(self) -> str:
        """The rank as printed on the card: 'A', '2'..'10', 'J', 'Q', 'K'."""
        return RANK_LABELS[self.rank - 1]

    def value(self, rule: Rule) -> int:
        """The card's number under ``rule``."""
        return rank_value(self.rank, rule)

    def __str__(self) -> str:
        return f"{self.label}{self.suit}"


def parse_card(text: str) -> Card:
    """Parse 'K', 'KH', '10S', 'a', '1', 'Td' into a :class:`Card` (suit defaults to H).

    Raises :class:`UserError` with the bad text when it names no card.
    """
    raw = text.strip().upper()
    suit = "H"
    if len(raw) >= 2 and raw[-1] in SUITS and raw[:-1] in _LABEL_TO_RANK:
        raw, suit = raw[:-1], raw[-1]
    if raw not in _LABEL_TO_RANK:
        raise UserError(f"not a card: {text!r} (ranks A,2..10,J,Q,K; optional suit H,S,D,C)")
    return Card(_LABEL_TO_RANK[raw], suit)


def parse_cards(text: str) -> tuple[Card, ...]:
    """Parse a comma- or space-separated list of cards, e.g. 'K,5,2,4'."""
    parts = [p for p in text.replace(",", " ").split() if p]
    if not parts:
        raise UserError("no cards given")
    return tuple(parse_card(p) for p in parts)


def hand_values(cards: tuple[Card, ...] | list[Card], rule: Rule) -> tuple[int, ...]:
    """The numbers of a hand under ``rule``, in card order."""
    return tuple(c.value(rule) for c in cards)


def rank_key(cards: tuple[Card, ...] | list[Card]) -> tuple[int, ...]:
    """The sorted ranks of a hand: the multiset that identifies a hand for de-duplication."""
    return tuple(sorted(c.rank for c in cards))
