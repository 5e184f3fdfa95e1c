"""``spindoctor game ...``: the benchmark on its own. Imports no torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from spindoctor.errors import UserError
from spindoctor.game.cards import check_rule, hand_values, parse_card, parse_cards
from spindoctor.game.deal import SPLITS, Hand, deal_hands
from spindoctor.game.episodes import judge_response
from spindoctor.game.formats import FORMATS
from spindoctor.game.partial import MAX_HAND_CARDS
from spindoctor.game.reference import REFERENCE_MAX_CARDS
from spindoctor.game.rewards import judge_formula
from spindoctor.game.solver import solve
from spindoctor.game.verdict import JUDGES

app = typer.Typer(help="The GeneralPoints benchmark: deal, solve, check, stats, export.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


def _emit(obj: dict, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(obj) if as_json else text)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise UserError(f"--{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


@app.command()
def deal(
    split: Annotated[str, typer.Option(help="id (face10 rule) or ood (face11, always a face card).")] = "id",
    n: Annotated[int, typer.Option(help="Number of hands.")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same hands.")] = 0,
    partition: Annotated[str, typer.Option(help="train, probe or all.")] = "all",
    target: int = 24,
    cards: Annotated[int, typer.Option("--cards", help="Cards per hand.")] = 4,
    as_json: JsonOpt = False,
) -> None:
    """Deal seeded, solvable, de-duplicated hands as the reference deals them."""
    _check_choice("split", split, SPLITS)
    _check_choice("partition", partition, ("train", "probe", "all"))
    if cards < 2 or cards > 6:
        raise UserError(f"--cards must be in 2..6, got {cards}")
    hands = deal_hands(split, n, seed, partition=partition, target=target, n_cards=cards)  # type: ignore[arg-type]
    rows = [h.to_dict() for h in hands]
    text = "\n".join(f"{' '.join(r['cards']):<16} values {r['values']}  rule {r['rule']}" for r in rows)
    _emit({"split": split, "seed": seed, "hands": rows}, as_json, text)


@app.command(name="solve")
def solve_cmd(
    cards: Annotated[list[str], typer.Argument(help="Cards, e.g. K 5 2 4.")],
    rule: Annotated[str, typer.Option(help="face10 (ID) or face11 (OOD).")] = "face10",
    target: int = 24,
    show_all: Annotated[bool, typer.Option("--all", help="List every distinct solution.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Solve a hand exactly: distinct solutions as canonical formulas."""
    rule_ = check_rule(rule)
    hand = tuple(parse_card(c) for c in cards)
    if len(hand) > 6:
        raise UserError("at most 6 cards")
    values = hand_values(hand, rule_)
    solutions = solve(tuple(sorted(values)), target)
    shown = list(solutions) if show_all else list(solutions[:1])
    obj = {"cards": [c.label for c in hand], "values": list(values), "rule": rule_, "target": target,
           "solvable": bool(solutions), "n_solutions": len(solutions), "solutions": shown}
    if not solutions:
        text = f"{values}: no solution makes {target}"
    else:
        text = "\n".join(f"{s}={target}" for s in shown)
        if not show_all and len(solutions) > 1:
            text += f"\n({len(solutions)} distinct solutions; --all lists them)"
    _emit(obj, as_json, text)


@app.command()
def check(
    cards: Annotated[str, typer.Option(help="Comma-separated cards, e.g. K,5,2,4.")],
    answer: Annotated[str, typer.Option(help="The formula or the model's whole answer.")],
    rule: Annotated[str, typer.Option(help="face10 (ID) or face11 (OOD).")] = "face10",
    target: int = 24,
    fmt: Annotated[str, typer.Option("--format", help="formula, paper or compact.")] = "formula",
    judge: Annotated[str, typer.Option(
        help="exact (default), float (the same rules, float values) or reference "
             "(the SFTvsRL environment's verdicts and rewards, up to 4 cards).")] = "exact",
    as_json: JsonOpt = False,
) -> None:
    """Verify an answer: correct?, reward, exact value, reasons."""
    rule_ = check_rule(rule)
    _check_choice("format", fmt, ("formula",) + FORMATS)
    _check_choice("judge", judge, JUDGES)
    hand = parse_cards(cards)
    if len(hand) > MAX_HAND_CARDS:
        raise UserError(f"--cards takes at most {MAX_HAND_CARDS} cards, got {len(hand)}")
    if judge == "reference" and len(hand) > REFERENCE_MAX_CARDS:
        raise UserError(f"--judge reference takes at most {REFERENCE_MAX_CARDS} cards, got {len(hand)}")
    values = hand_values(hand, rule_)
    if fmt == "formula":
        formula: str | None = answer
        verdict = judge_formula(answer, values, target, judge)  # type: ignore[arg-type]
    else:
        formula, verdict = judge_response(fmt, answer, Hand(hand, rule_, target), judge)  # type: ignore[arg-type]
    obj = {**verdict.to_dict(), "formula": formula, "judge": judge}
    obj.update({"cards": [c.label for c in hand], "card_values": list(values), "rule": rule_, "target": target})
    shown = "correct" if obj["correct"] else obj["status"]
    text = f"{shown}  reward {obj['reward']:+g}  value {obj['value']}"
    if obj["reasons"]:
        text += "\n" + "\n".join(f"- {r}" for r in obj["reasons"])
    _emit(obj, as_json, text)


@app.command()
def stats(
    rule: Annotated[str, typer.Option(help="face10, face11 or both.")] = "both",
    target: int = 24,
    cards: Annotated[int, typer.Option("--cards", help="Cards per hand.")] = 4,
    as_json: JsonOpt = False,
) -> None:
    """Multisets, solvable counts, and the solvable probability of a deal."""
    from spindoctor.game.stats import game_stats

    rules = ("face10", "face11") if rule == "both" else (check_rule(rule),)
    if cards < 2 or cards > 5:
        raise UserError(f"--cards must be in 2..5, got {cards}")
    rows = [game_stats(r, target, cards) for r in rules]  # type: ignore[arg-type]
    lines = []
    for s in rows:
        lines.append(
            f"{s['rule']}: {s['solvable_value_multisets']}/{s['value_multisets']} value multisets, "
            f"{s['solvable_rank_multisets']}/{s['rank_multisets']} rank multisets make {target}; "
            f"P(solvable) ID draw {s['p_solvable_id_draw']:.4f}, OOD draw {s['p_solvable_ood_draw']:.4f}"
        )
    _emit({"stats": rows}, as_json, "\n".join(lines))


@app.command()
def export(
    out: Annotated[Path | None, typer.Option(help="Output folder of the dataset exports.")] = None,
    lm_eval: Annotated[Path | None, typer.Option(
        "--lm-eval", help="Instead of --out: write lm-evaluation-harness tasks of `spindoctor probe`'s "
                          "hands into this folder (README, lm-evaluation-harness).")] = None,
    n_train: Annotated[int, typer.Option(help="Training hands (train partition, ID rule; --out only).")] = 500,
    n_probe: Annotated[int | None, typer.Option(
        help="Probe hands per split (--out: 200; --lm-eval: spindoctor probe's --n, 0 every eligible hand).")] = None,
    seed: int = 0,
    fmt: Annotated[str | None, typer.Option("--format", help="paper (default) or compact; --out only "
                                            "(--lm-eval writes both).")] = None,
    target: int = 24,
    probe_fraction: Annotated[float | None, typer.Option(
        help="Share of hand keys held out for probes (--out: 0.3; --lm-eval: spindoctor probe's).")] = None,
    parquet: Annotated[bool, typer.Option(help="Also write verl parquet files (needs pyarrow; --out only).")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Write SFT pairs, RL prompts, probe sets (jsonl) and verl parquet files, or (--lm-eval)
    lm-evaluation-harness tasks of the probe sets."""
    if (out is None) == (lm_eval is None):
        raise UserError("give either --out DIR or --lm-eval DIR")
    if lm_eval is not None:
        if fmt is not None:
            raise UserError("--format applies to --out only; --lm-eval writes both formats")
        _export_lm_eval(lm_eval, n_probe, seed, target, probe_fraction, as_json)
        return
    from spindoctor.game.export import export_all

    fmt = _check_choice("format", fmt or "paper", FORMATS)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    counts = export_all(out, n_train=n_train, n_probe=200 if n_probe is None else n_probe, seed=seed,
                        fmt=fmt,  # type: ignore[arg-type]
                        target=target, probe_fraction=0.3 if probe_fraction is None else probe_fraction,
                        parquet=parquet)
    text = "\n".join(f"{out / name}: {n} rows" for name, n in counts.items())
    _emit({"out": str(out), "files": counts}, as_json, text)


def _export_lm_eval(folder: Path, n: int | None, seed: int, target: int, probe_fraction: float | None,
                    as_json: bool) -> None:
    """``game export --lm-eval``: the probe sets of :class:`ProbeConfig` (unset options keep its
    defaults) as lm-evaluation-harness tasks (docs/design.md, "lm-evaluation-harness")."""
    from spindoctor.probes.core import ProbeConfig
    from spindoctor.probes.lmeval import check_lm_eval_dir, export_lm_eval

    values: dict = {"seed": seed, "target": target}
    if n is not None:
        values["n"] = n if n > 0 else None  # 0: every eligible hand, as `spindoctor probe --n 0`
    if probe_fraction is not None:
        values["probe_fraction"] = probe_fraction
    cfg = ProbeConfig(**values)
    check_lm_eval_dir(folder)  # refused before any hand is dealt
    counts = export_lm_eval(folder, cfg)
    text = "\n".join(f"{folder / name}: {rows} rows" for name, rows in counts.items())
    text += f"\nrun: lm_eval --include_path {folder} --tasks generalpoints ... (README, lm-evaluation-harness)"
    _emit({"lm_eval": str(folder), "files": counts}, as_json, text)
