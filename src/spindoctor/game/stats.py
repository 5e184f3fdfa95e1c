"""Counts behind the benchmark: multisets, solvable shares, and deal probabilities."""

from __future__ import annotations

from itertools import combinations_with_replacement, product

from spindoctor.game.cards import FACE_RANKS, Rule, rank_value
from spindoctor.game.deal import is_solvable


def game_stats(rule: Rule, target: int = 24, n_cards: int = 4) -> dict:
    """Solvability statistics of ``rule``.

    Returns
    -------
    dict
        ``value_multisets`` / ``solvable_value_multisets``: distinct multisets of
        card values under the rule (face10 has values 1..10, face11 1..13);
        ``rank_multisets`` / ``solvable_rank_multisets``: the same over ranks
        1..13; ``p_solvable_id_draw``: probability that a reference ID draw
        (ranks i.i.d. uniform) is solvable under the rule, i.e. the acceptance
        rate of the ID deal; ``p_solvable_ood_draw``: the same for the OOD draw
        (one rank a face card), exact by enumeration.
    """
    values_of = {r: rank_value(r, rule) for r in range(1, 14)}
    value_sets = {tuple(sorted(values_of[r] for r in ranks))
                  for ranks in combinations_with_replacement(range(1, 14), n_cards)}
    solvable_values = {v for v in value_sets if is_solvable(v, target)}
    rank_sets = list(combinations_with_replacement(range(1, 14), n_cards))
    solvable_ranks = sum(tuple(sorted(values_of[r] for r in rs)) in solvable_values for rs in rank_sets)

    def ok(ranks: tuple[int, ...]) -> bool:
        return tuple(sorted(values_of[r] for r in ranks)) in solvable_values

    id_draws = list(product(range(1, 14), repeat=n_cards))
    ood_draws = [d + (f,) for d in product(range(1, 14), repeat=n_cards - 1) for f in FACE_RANKS]
    return {
        "rule": rule,
        "target": target,
        "n_cards": n_cards,
        "value_multisets": len(value_sets),
        "solvable_value_multisets": len(solvable_values),
        "rank_multisets": len(rank_sets),
        "solvable_rank_multisets": solvable_ranks,
        "p_solvable_id_draw": sum(map(ok, id_draws)) / len(id_draws),
        "p_solvable_ood_draw": sum(map(ok, ood_draws)) / len(ood_draws),
    }
