"""Benchmark: solvability-table build time for both rules, and verifier throughput.

Prints, side by side in one run on the same machine and thread:
* the time to build the exact solvability table from empty caches, for the
  value range of each rule (face10: values 1..10; face11: values 1..13);
* checks/s of ``judge_formula`` (tokenise, parse, exact Fractions, multiset and
  reward) beside a naive checker that float-``eval``s the formula, as the
  reference does. The naive checker runs only on formulas this script builds
  itself; spindoctor never evaluates text.
Last line: one JSON object (docs/design.md, "Engineering decisions").
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter

from spindoctor.game.rewards import judge_formula, solution_surfaces
from spindoctor.game.solver import reachable, solvable_table, solve

_INTS = re.compile(r"\d+")


def naive_float_check(formula: str, values: tuple[int, ...]) -> bool:
    """The reference-style checker: regex the numbers, float eval the text."""
    left = formula.split("=")[0]
    if Counter(int(x) for x in _INTS.findall(left)) != Counter(values):
        return False
    try:
        return eval(left, {"__builtins__": {}}) == 24  # noqa: S307 - baseline on our own strings
    except (SyntaxError, ZeroDivisionError, TypeError):
        return False


def build_table_seconds(value_range: tuple[int, int]) -> float:
    reachable.cache_clear()
    solvable_table.cache_clear()
    start = time.perf_counter()
    solvable_table(value_range, 4, 24)
    return time.perf_counter() - start


def make_workload(n: int, seed: int = 0) -> list[tuple[str, tuple[int, ...]]]:
    """Half correct formulas, half corrupted ones (wrong value, misuse, illegal)."""
    rng = random.Random(seed)
    table = solvable_table()
    hands = [v for v, ok in table.items() if ok]
    work = []
    while len(work) < n:
        values = rng.choice(hands)
        formula = rng.choice(solve(values))
        kind = rng.randrange(4)
        if kind == 1:
            formula = formula.replace("+", "-", 1) if "+" in formula else formula + "+1"
        elif kind == 2:
            formula = formula + "*" + str(values[0])
        elif kind == 3:
            formula = formula.replace("(", "x", 1) if "(" in formula else "-" + formula
        work.append((formula + "=24", values))
    return work


def checks_per_second(fns: dict, work, repeats: int = 5) -> dict[str, float]:
    """Best-of-``repeats`` checks/s of each checker, timed alternately so load drifts hit both."""
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for formula, values in work:
                fn(formula, values)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: len(work) / t for name, t in best.items()}


def main() -> None:
    t_face10 = build_table_seconds((1, 10))
    t_face11 = build_table_seconds((1, 13))
    work = make_workload(20_000)
    for formula, values in work[:2000]:  # the two checkers agree on correctness
        assert judge_formula(formula, values, judge="float").correct == naive_float_check(formula, values)
    solution_surfaces.cache_clear()
    rates = checks_per_second({"ours": lambda f, v: judge_formula(f, v), "naive": naive_float_check}, work)
    ours, naive = rates["ours"], rates["naive"]
    print(f"table build: face10 {t_face10:.3f} s, face11 {t_face11:.3f} s")
    print(f"verifier: {ours:,.0f} checks/s exact; naive float eval {naive:,.0f} checks/s")
    print(json.dumps({
        "bench": "game",
        "ratio": {"verifier_vs_naive_eval": round(ours / naive, 3)},
        "seconds": {"table_face10": round(t_face10, 4), "table_face11": round(t_face11, 4)},
        "checks_per_s": {"verifier": round(ours), "naive_eval": round(naive)},
        "goals": {"table_build_s_max": 1.0, "verifier_checks_per_s_min": 50_000},
    }))


if __name__ == "__main__":
    main()
