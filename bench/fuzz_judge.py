"""Fuzz bench: a million hostile answers through the judge and every reward adapter.

Every answer goes through ``judge_formula`` in all three judge modes (exact,
float, reference) and through one adapter entry point, in turn: TRL
``trl_reward``, verl ``compute_score`` and OpenRLHF ``reward_func``, each with
the paper and the compact format and each judge named in the ground truth.
Answers are seeded: correct formulas and small edits of them (blanks,
leading zeros, apostrophes, unicode digits such as ``²`` or ``٨``, cut-offs),
loose tokens, random unicode, JSON-like wrappers with odd values, deep
nesting and inputs of up to 60,000 characters. Any exception, and any failure
the adapters' never-raise boundary logs, is counted; the goal is zero.

    .venv/bin/python bench/fuzz_judge.py [--answers 1000000] [--seed 0]

Last line: one JSON object (docs/design.md, Benchmarks).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from collections import Counter

from spindoctor.game.adapters import compute_score, ground_truth, reward_func, trl_reward
from spindoctor.game.deal import deal_hands
from spindoctor.game.formats import compact_response, paper_response
from spindoctor.game.rewards import judge_formula
from spindoctor.game.solver import solve

JUDGES = ("exact", "float", "reference")
FORMATS = ("paper", "compact")
ADAPTERS = ("trl", "verl", "openrlhf")
BATCH = 256
_NASTY = ["²", "①", "⑴", "٨", "３", "𝟑", "Ⅳ", "'", '"', " ", "\t", "\n", "=", "{", "}", ":", ",", "|", ".", "**",
          "x", "-", "(", ")", "0", "00", "1e3", "\\", "\u200b", "formula"]


class _Count(logging.Handler):
    """Counts the failures the adapters log at their never-raise boundary."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.n = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.n += 1


def _edit(rng: random.Random, text: str) -> str:
    at = rng.randrange(len(text) + 1)
    kind = rng.randrange(5)
    if kind == 0:
        return text[:at]
    if kind == 1:
        return text[:at] + rng.choice(_NASTY) + text[at:]
    if kind == 2:
        return text.replace(text[at - 1 : at] or "(", "0" + (text[at - 1 : at] or "("), 1)
    if kind == 3:
        return text + rng.choice(["=24", " = 24", "'=24", "=²", "=٨", "="])
    return "(" * rng.randint(1, 3) + text + ")" * rng.randint(0, 3)


def make_formula(rng: random.Random, values: tuple[int, ...], solutions: list[str]) -> str:
    """One formula-like string for a hand."""
    kind = rng.randrange(100)
    if kind < 25 and solutions:
        return rng.choice(solutions) + rng.choice(["", "=24"])
    if kind < 60 and solutions:
        text = rng.choice(solutions)
        for _ in range(rng.randint(1, 3)):
            text = _edit(rng, text)
        return text
    if kind < 85:
        pool = [str(v) for v in values] + list("+-*/()") + _NASTY
        return "".join(rng.choice(pool) for _ in range(rng.randint(0, 24)))
    if kind < 95:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randint(0, 30)))
    if kind < 99:
        depth = rng.randint(100, 1500)
        return "(" * depth + rng.choice(solutions or ["1"]) + ")" * rng.randint(0, depth)
    return rng.choice(["9", "(", "٨", "1+", "²", '"formula": "']) * rng.randint(1000, 60_000)


def wrap(rng: random.Random, fmt: str, hand, formula: str) -> str:
    """The formula as a whole answer in ``fmt``, well formed or not."""
    kind = rng.randrange(6)
    if fmt == "compact":
        if kind < 3:
            return compact_response(hand.cards, hand.rule, formula)
        return rng.choice([" ²|", " 10 5|", "", "|", " ٨ 1 2 3|"]) + formula
    if kind == 0:
        return paper_response(hand.cards, hand.rule, formula.split("=")[0])
    if kind == 1:
        return json.dumps({"cards": hand.labels, "formula": formula})
    if kind == 2:
        return 'Answer: {"formula": "' + formula + '"}'
    if kind == 3:
        return "\"formula\": '" + formula + "'"
    if kind == 4:
        return rng.choice(['{"formula": 24}', '{"formula": null}', '["formula"]', '{"formula": {"a": 1}}', formula])
    return '"formula":"' + formula + '"'


def _adapter_batch(adapter: str, answers: list[str], gts: list[str]) -> list[float]:
    if adapter == "trl":
        return trl_reward(prompts=["p"] * len(answers), completions=answers, ground_truth=gts)
    if adapter == "verl":
        return [compute_score("generalpoints_id", a, g) for a, g in zip(answers, gts, strict=True)]
    out = reward_func(queries=["P" + a for a in answers], prompts=["P"] * len(answers), labels=gts)
    return out["rewards"].tolist()


def run(n_answers: int, seed: int) -> dict:
    rng = random.Random(seed)
    hands = deal_hands("id", 24, seed) + deal_hands("ood", 24, seed)
    sols = [list(solve(tuple(sorted(h.values)))) for h in hands]
    gts = {(i, f, j): ground_truth(h, f, j) for i, h in enumerate(hands) for f in FORMATS for j in JUDGES}
    combos = [(a, f, j) for a in ADAPTERS for f in FORMATS for j in JUDGES]
    seconds: Counter = Counter()
    checks: Counter = Counter()
    errors: Counter = Counter()
    rewards: Counter = Counter()
    done = 0
    while done < n_answers:
        size = min(BATCH, n_answers - done)
        idx = [rng.randrange(len(hands)) for _ in range(size)]
        formulas = [make_formula(rng, hands[i].values, sols[i]) for i in idx]
        for judge in JUDGES:
            start = time.perf_counter()
            for i, formula in zip(idx, formulas, strict=True):
                try:
                    rewards[judge_formula(formula, hands[i].values, 24, judge).reward] += 1
                except Exception as err:  # noqa: BLE001 - what the bench counts
                    errors[f"judge-{judge}: {type(err).__name__}"] += 1
            seconds[f"judge_{judge}"] += time.perf_counter() - start
            checks[f"judge_{judge}"] += size
        adapter, fmt, judge = combos[(done // BATCH) % len(combos)]
        answers = [wrap(rng, fmt, hands[i], f) for i, f in zip(idx, formulas, strict=True)]
        start = time.perf_counter()
        try:
            _adapter_batch(adapter, answers, [gts[(i, fmt, judge)] for i in idx])
        except Exception as err:  # noqa: BLE001
            errors[f"{adapter}-{fmt}-{judge}: {type(err).__name__}"] += 1
        seconds[f"adapter_{adapter}"] += time.perf_counter() - start
        checks[f"adapter_{adapter}"] += size
        done += size
    return {"seconds": seconds, "checks": checks, "errors": errors, "rewards": rewards}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logged = _Count()
    logging.getLogger("spindoctor.game.adapters").addHandler(logged)
    logging.getLogger("spindoctor.game.adapters").propagate = False
    start = time.perf_counter()
    out = run(args.answers, args.seed)
    total = time.perf_counter() - start
    rates = {k: round(out["checks"][k] / out["seconds"][k]) for k in sorted(out["checks"])}
    n_checks = sum(out["checks"].values())
    n_errors = sum(out["errors"].values()) + logged.n
    print(f"{args.answers:,} answers, {n_checks:,} checks in {total:.1f} s: {n_errors} exceptions")
    for name, rate in rates.items():
        print(f"  {name:<18} {rate:>9,} checks/s")
    for name, count in out["errors"].most_common(10):
        print(f"  ERROR {name}: {count}")
    print(f"  rewards seen: {dict(sorted(out['rewards'].items()))}")
    print(json.dumps({
        "bench": "fuzz_judge",
        "ratio": {"exceptions_per_answer": n_errors / args.answers,
                  "reference_vs_exact_checks_per_s": round(rates["judge_reference"] / rates["judge_exact"], 3)},
        "seconds": {"total": round(total, 1), **{k: round(v, 2) for k, v in sorted(out["seconds"].items())}},
        "checks_per_s": {"all": round(n_checks / total), **rates},
        "answers": args.answers, "checks": n_checks, "exceptions": n_errors,
        "goals": {"answers_min": 1_000_000, "exceptions_max": 0},
    }))


if __name__ == "__main__":
    main()
