"""The verdict of one answer and the reward table (docs/design.md, GeneralPoints).

The table is the reference environment's (SFTvsRL, Zhai et al., ``REWARD_FN``):
correct +5, partial +1, no solution / wrong value -1, wrong card recognition
-1.5 (vision variant only), numbers misused -2, illegal formula -3.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

REWARD_CORRECT = 5.0
REWARD_PARTIAL = 1.0
PENALTY_WRONG_VALUE = -1.0
PENALTY_NUMBERS = -2.0
PENALTY_ILLEGAL = -3.0
PENALTY_CARD_RECOGNITION = -1.5  # vision variant only; never produced by the text task

Judge = Literal["exact", "float", "reference"]
EXACT_JUDGE: Judge = "exact"
FLOAT_JUDGE: Judge = "float"
REFERENCE_JUDGE: Judge = "reference"
JUDGES: tuple[Judge, ...] = ("exact", "float", "reference")


@dataclass(frozen=True)
class Verdict:
    """The judgement of one formula.

    ``status`` is the worst outcome: correct, partial, wrong_value,
    numbers_misused or illegal. ``value`` is the exact value as a string
    ("24", "71/3"), the float the reference judge computed, or None when it
    has none. ``reasons`` are short phrases for the revision feedback ("You
    failed this trial because ...").
    """

    correct: bool
    reward: float
    status: str
    value: str | None
    reasons: tuple[str, ...] = field(default_factory=tuple)
    numbers: tuple[int, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["reasons"] = list(self.reasons)
        out["numbers"] = list(self.numbers)
        return out


def illegal(reason: str) -> Verdict:
    """An illegal answer (-3) with one reason."""
    return Verdict(False, PENALTY_ILLEGAL, "illegal", None, (reason,))


NO_FORMULA = illegal("no formula was found in the answer")
