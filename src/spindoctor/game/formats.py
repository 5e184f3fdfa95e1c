"""Prompt formats and their response parsers.

* ``paper``: the reference prompt, byte-exact (docs/design.md, GeneralPoints;
  the SFTvsRL environment, Zhai et al.), sent as one user turn through the
  model's chat template with no system prompt. The response is a JSON-like
  object; :func:`parse_paper_response` tries ``json.loads`` on the ``{...}``
  span first and falls back to a regex on ``"formula": "..."`` or ``'...'``
  (any spacing; the value ends at the quote that opened it). The reference
  judge uses the reference's own, stricter extraction instead
  (:func:`spindoctor.game.reference.reference_formula`).
* ``compact``: a short format for the character-level model organism:
  prompt ``R10 J 5 2 2 =24:`` (rule marker R10 or R11, the cards, the target),
  completion `` 10 5 2 2|10*2+2+2`` style: the card values under the stated
  rule, then ``|`` and the formula. Listing the values first lets a probe
  separate "misread the rule" from "cannot compute with these values".

Both formats are versioned (:data:`FORMAT_VERSION`) so that old reports stay
comparable when a format changes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from spindoctor.game.cards import Card, Rule, hand_values

FormatName = Literal["paper", "compact"]
FORMATS: tuple[FormatName, ...] = ("paper", "compact")
FORMAT_VERSION = {"paper": 1, "compact": 1}

FACE_CARD_MSG = {
    "face10": "'J', 'Q', and 'K' count as '10'.",
    "face11": "'J', 'Q', and 'K' count as '11', '12', and '13' respectively.",
}

# The reference text, verbatim; {face_card_msg} ends with a period, so the
# rendered prompt reads "'10'., and" (a quirk of the reference, kept).
PAPER_TEMPLATE = """
[Task Description]
You are an expert 24 points card game player. You will receive a set of 4 cards.
Note that {face_card_msg}, and each card must be used once.
Your goal is to output a formula that evaluates to 24 using numbers from the cards and operators such as '+', '-', '*', '/', '(', ')', and '='.

[Input]
Cards: {cards}

[Output]
{{
  "cards": [x, y, z, w], where {face_card_msg},
  "number": [a, b, c, d], where a, b, c, and d are the numbers on the cards,
  "formula": 'an equation that equals 24',
}}

"""

# The value closes with the quote that opened it: an apostrophe inside a
# double-quoted value is part of the formula (and makes it illegal), not its end.
_FORMULA_RE = re.compile(r"""["']formula["']\s*:\s*(?:"([^"\n]*)"|'([^'\n]*)')""")
_MAX_RESPONSE_CHARS = 20_000
_CARD_VALUE = re.compile(r"[0-9]{1,3}")  # ASCII only: isdigit() is true for "²", int() rejects it


@dataclass(frozen=True)
class ParsedResponse:
    """What a response says: the formula (left of '=' is judged) and the listed values."""

    formula: str | None
    numbers: tuple[int, ...] | None
    well_formed: bool


def paper_prompt(cards: tuple[Card, ...], rule: Rule, target: int = 24) -> str:
    """The reference prompt for a hand. Non-default targets and hand sizes substitute
    their numbers into the text (a documented extension; the 4-card, 24 text is exact)."""
    text = PAPER_TEMPLATE.format(
        face_card_msg=FACE_CARD_MSG[rule], cards=repr([c.label for c in cards])
    )
    if target != 24:
        text = text.replace("24 points", f"{target} points").replace("to 24", f"to {target}")
        text = text.replace("equals 24", f"equals {target}")
    if len(cards) != 4:
        text = text.replace("set of 4 cards", f"set of {len(cards)} cards")
    return text


def paper_response(cards: tuple[Card, ...], rule: Rule, formula: str, target: int = 24) -> str:
    """A gold response in the reference's JSON shape."""
    return json.dumps(
        {
            "cards": [c.label for c in cards],
            "number": list(hand_values(cards, rule)),
            "formula": f"{formula}={target}",
        }
    )


def parse_paper_response(text: str) -> ParsedResponse:
    """Extract the formula from a paper-format response; never raises."""
    if not isinstance(text, str):
        return ParsedResponse(None, None, False)
    text = text[:_MAX_RESPONSE_CHARS]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            obj = json.loads(text[start : end + 1])
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("formula"), str):
            nums = obj.get("number")
            numbers = (
                tuple(nums)
                if isinstance(nums, list) and all(type(x) is int for x in nums)
                else None
            )
            return ParsedResponse(obj["formula"], numbers, True)
    match = _FORMULA_RE.search(text)
    if match:
        formula = match.group(1) if match.group(1) is not None else match.group(2)
        return ParsedResponse(formula, None, False)
    return ParsedResponse(None, None, False)


def compact_prompt(cards: tuple[Card, ...], rule: Rule, target: int = 24) -> str:
    """``R10 J 5 2 2 =24:`` (R10 = face10, R11 = face11)."""
    marker = "R10" if rule == "face10" else "R11"
    return f"{marker} {' '.join(c.label for c in cards)} ={target}:"


def compact_response(cards: tuple[Card, ...], rule: Rule, formula: str) -> str:
    """`` 10 5 2 2|formula``: values under the rule, then the formula."""
    return " " + " ".join(str(v) for v in hand_values(cards, rule)) + "|" + formula


def parse_compact_response(text: str) -> ParsedResponse:
    """Split a compact response into listed values and formula; never raises."""
    if not isinstance(text, str):
        return ParsedResponse(None, None, False)
    line = text[:_MAX_RESPONSE_CHARS].split("\n", 1)[0]
    if "|" not in line:
        return ParsedResponse(None, None, False)
    head, _, formula = line.partition("|")
    parts = head.split()
    ok = parts and all(_CARD_VALUE.fullmatch(p) for p in parts)
    numbers = tuple(int(p) for p in parts) if ok else None
    return ParsedResponse(formula.strip(), numbers, numbers is not None)


def render_prompt(fmt: FormatName, cards: tuple[Card, ...], rule: Rule, target: int = 24) -> str:
    """The prompt text of a hand in format ``fmt``."""
    return paper_prompt(cards, rule, target) if fmt == "paper" else compact_prompt(cards, rule, target)


def render_response(
    fmt: FormatName, cards: tuple[Card, ...], rule: Rule, formula: str, target: int = 24
) -> str:
    """A gold response for a hand in format ``fmt``."""
    if fmt == "paper":
        return paper_response(cards, rule, formula, target)
    return compact_response(cards, rule, formula)


def parse_response(fmt: FormatName, text: str) -> ParsedResponse:
    """Parse a model response in format ``fmt``; never raises."""
    return parse_paper_response(text) if fmt == "paper" else parse_compact_response(text)
