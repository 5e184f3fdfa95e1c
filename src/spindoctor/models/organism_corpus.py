"""The organism's pretraining corpus: card arithmetic under BOTH face-card rules.

Design (what an earlier prototype showed; docs/design.md, "Training settings"), and why:

* **Both rules.** Every example states its rule (``R10`` = face10, ``R11`` =
  face11) and lists the card values under it before the formula, so the base
  learns to read the rule marker. SFT later trains only on ``R10``; the OOD
  probe asks ``R11`` questions the base has seen the *rule* for, but never the
  task.
* **Targets 1..48 with a band around 24 left out (16..32 by default).** The
  base knows how to make numbers from cards but has never been asked for 24
  (or its neighbours), so the early SFT steps teach something that transfers
  across rules ("how to reach 24"). When the base already knew target 24, the
  prototype's OOD accuracy only fell.
* **Sub-problems with 2 and 3 cards** (same target set) give the model many
  short, learnable arithmetic facts, which makes the base stronger on the
  4-card problems (the prototype base reached only 15-20% on non-24 targets).
* **Value lookups** (``R11 K 5 Q A:`` -> `` 13 5 12 1``) drill the rule alone.

Formulas are sampled, not searched: a random binary expression over the
hand's values is built with the exact solver's canonicalisation (sorted,
flattened operands; the style of :func:`spindoctor.game.solver.solve`), and
its exact value becomes the target when it is an allowed integer. Sampling
costs microseconds per example, while enumerating every solution of a hand
costs about 25 ms; the sampled formulas are correct by construction.
"""

from __future__ import annotations

import random
from fractions import Fraction
from itertools import islice

from pydantic import BaseModel, ConfigDict, Field

from spindoctor.game.cards import RULES, Card, Rule, hand_values
from spindoctor.game.formats import compact_prompt, compact_response

# Private helpers of the exact solver, reused so sampled formulas read exactly
# like the solver's canonical solutions (same flattening and operand order).
from spindoctor.game.solver import _combine_exprs, _leaf


class CorpusConfig(BaseModel):
    """What the pretraining corpus holds (fractions of examples and the target set)."""

    model_config = ConfigDict(extra="forbid")

    target_max: int = Field(48, ge=2, description="largest target")
    band_lo: int = Field(16, description="lowest target left out (the band around 24)")
    band_hi: int = Field(32, description="highest target left out")
    p_lookup: float = Field(0.1, ge=0, le=1, description="share of value-lookup examples")
    p_small: float = Field(0.25, ge=0, le=1, description="share of 2- and 3-card problems")
    flatten_below: int = Field(
        12, ge=1, description="keep a sampled target t < this with probability t/flatten_below "
        "(random formulas favour small values; this evens out the target mix)"
    )

    def allowed(self, target: Fraction) -> bool:
        """True when ``target`` is an integer in 1..target_max outside the band."""
        if target.denominator != 1:
            return False
        t = int(target)
        return 1 <= t <= self.target_max and not self.band_lo <= t <= self.band_hi


def _apply(k: int, a: Fraction, b: Fraction) -> Fraction | None:
    """The value of option ``k`` of the solver's ``_combine_exprs(a, b)`` (None: division by zero).

    Options in the solver's order: a+b, a-b, b-a, a*b, a/b, b/a.
    """
    if k == 0:
        return a + b
    if k == 1:
        return a - b
    if k == 2:
        return b - a
    if k == 3:
        return a * b
    if k == 4:
        return a / b if b != 0 else None
    return b / a if a != 0 else None


def random_formula(values: tuple[int, ...], rng: random.Random) -> tuple[str, Fraction] | None:
    """A random expression over ``values`` (see :func:`_random_value`), rendered canonically."""
    drawn = _random_value(values, rng)
    return None if drawn is None else (_render_choices(values, drawn[0]), drawn[1])


def _random_value(values: tuple[int, ...], rng: random.Random) -> tuple[list, Fraction] | None:
    """A random expression using each value once: pick two operands and one of the six
    combinations until one value is left.

    Returns
    -------
    (list of (i, j, option), Fraction) or None
        The choices (replayed by :func:`_render_choices` into the solver's
        canonical text) and the exact value; None when the draw divided by zero.
    """
    vals = [Fraction(v) for v in values]
    choices = []
    while len(vals) > 1:
        i, j = sorted(rng.sample(range(len(vals)), 2))
        k = rng.randrange(6)
        value = _apply(k, vals[i], vals[j])
        if value is None:
            return None
        # the solver's generator skips a division by zero, so its option index shifts
        choices.append((i, j, k - (k == 5 and vals[j] == 0)))
        vals = vals[:i] + vals[i + 1 : j] + vals[j + 1 :] + [value]
    return choices, vals[0]


def _render_choices(values: tuple[int, ...], choices: list[tuple[int, int, int]]) -> str:
    """Replay operand/option choices through the solver's canonical expression builder."""
    exprs = [_leaf(v) for v in values]
    for i, j, idx in choices:
        combined = next(islice(_combine_exprs(exprs[i], exprs[j]), idx, None))
        exprs = exprs[:i] + exprs[i + 1 : j] + exprs[j + 1 :] + [combined]
    return exprs[0].text


def lookup_example(cards: tuple[Card, ...], rule: Rule) -> tuple[str, str]:
    """``R11 K 5 Q A:`` -> `` 13 5 12 1`` (the card values under the rule)."""
    marker = "R10" if rule == "face10" else "R11"
    prompt = f"{marker} {' '.join(c.label for c in cards)}:"
    return prompt, " " + " ".join(str(v) for v in hand_values(cards, rule))


def sample_example(cfg: CorpusConfig, rng: random.Random, max_tries: int = 1000) -> tuple[str, str]:
    """One (prompt, completion) pair of the corpus; the completion has no EOS."""
    rule: Rule = rng.choice(RULES)
    u = rng.random()
    n_cards = 4 if u >= cfg.p_small + cfg.p_lookup else (rng.choice((2, 3)) if u >= cfg.p_lookup else 4)
    for _ in range(max_tries):
        cards = tuple(Card(rng.randint(1, 13)) for _ in range(n_cards))
        if u < cfg.p_lookup:
            return lookup_example(cards, rule)
        drawn = _random_value(hand_values(cards, rule), rng)
        if drawn is None or not cfg.allowed(drawn[1]):
            continue
        if drawn[1] < cfg.flatten_below and rng.random() * cfg.flatten_below > drawn[1]:
            continue
        formula, target = _render_choices(hand_values(cards, rule), drawn[0]), int(drawn[1])
        return compact_prompt(cards, rule, target), compact_response(cards, rule, formula)
    raise RuntimeError("corpus sampler found no allowed target; check band and target_max")


def sample_batch(cfg: CorpusConfig, rng: random.Random, n: int) -> list[tuple[str, str]]:
    """``n`` independent corpus examples."""
    return [sample_example(cfg, rng) for _ in range(n)]
