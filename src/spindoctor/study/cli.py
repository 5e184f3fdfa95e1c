"""``spindoctor study`` (the main job) and ``spindoctor report RUN_DIR``."""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from spindoctor.errors import UserError, one_line_warnings


def study(
    config: Annotated[str, typer.Option(help="Shipped preset (organism, smollm2-135m, qwen2.5-7b, llama-3.2-11b) or a .yaml path.")] = "organism",
    out: Annotated[Path | None, typer.Option(help="Run folder (default runs/<config name>, runs/<name>-quick with --quick).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A miniature of every stage (about 2 minutes).")] = False,
    restart: Annotated[bool, typer.Option("--restart", help="Delete what the study wrote in the run folder first "
                                          "instead of resuming it (any other file stays).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary, no progress.")] = False,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds (0,1,2): one study run per seed in "
                                              "OUT/seed-<s>/, then a pooled report in OUT/report/ "
                                              "(default OUT runs/<name>-seeds).")] = None,
) -> None:
    """Run the whole playbook: base -> SFT (+probes) -> select -> RL -> drift -> restoration -> toy -> report.

    Rerunning skips finished stages whose settings did not change, reruns those whose settings
    (or input stages) changed, and resumes an interrupted one. --out must be absent, empty or a study run
    (with --seeds: a multi-seed study folder).
    """
    from transformers.utils import logging as hf_logging

    from spindoctor.study.config import load_study_config
    from spindoctor.study.pipeline import run_study
    from spindoctor.study.runfolder import StudyNotice
    from spindoctor.study.seeds import parse_seeds, pooled_report, run_seeds

    seed_list = None if seeds is None else parse_seeds(seeds)
    cfg = load_study_config(config, quick=quick)
    run = out or Path("runs") / (cfg.name + ("-quick" if quick else "") + ("-seeds" if seed_list else ""))
    if run.exists() and not run.is_dir():
        raise UserError(f"--out {run} exists and is not a folder")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # --json: stdout holds only the summary (a trainer's own prints go to stderr while the stages run)
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    with warnings.catch_warnings(), quiet:  # the study's notices (a stage rerun, files kept): one line each
        warnings.simplefilter("always", StudyNotice)
        warnings.showwarning = one_line_warnings(warnings.showwarning, StudyNotice)
        if seed_list is not None:
            markers = run_seeds(cfg, run, seed_list, progress=not as_json, restart=restart, say=_say(as_json))
            result = pooled_report(run)
        else:
            markers = run_study(cfg, run, progress=not as_json, restart=restart)
    if seed_list is not None:
        return _seeds_summary(run, markers, result, as_json)
    report = run / "report" / "index.html"
    if as_json:
        typer.echo(json.dumps({"run": str(run), "report": str(report),
                               "stages": {k: v["seconds"] for k, v in markers.items()}}))
        return
    _print_summary(run, markers)


def _say(as_json: bool):
    """The progress printer of ``study --seeds`` (one stderr line per seed), None with --json."""
    from rich.console import Console

    console = Console(stderr=True)
    return None if as_json else lambda line: console.print(line, highlight=False, soft_wrap=True)


def _seeds_summary(parent: Path, markers: dict[int, dict], result: dict, as_json: bool) -> None:
    """``study --seeds``'s summary: per-seed stage times and pooled headlines (docs/design.md, "Run folder")."""
    from spindoctor.study.runfolder import seed_dir

    if as_json:
        typer.echo(json.dumps({"run": str(parent), "report": result["index"], "seeds": {
            str(s): {"run": str(seed_dir(parent, s)), "stages": {k: v["seconds"] for k, v in m.items()}}
            for s, m in markers.items()}, "pooled": result["pooled"]}))
        return
    _print_seeds_summary(markers, result)


def _print_seeds_summary(markers: dict[int, dict], result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    times = Table(title="stage wall times (s)", show_edge=False)
    times.add_column("stage")
    for seed in markers:
        times.add_column(f"seed {seed}", justify="right")
    for stage in dict.fromkeys(k for m in markers.values() for k in m):
        times.add_row(stage, *(f"{m[stage]['seconds']:.0f}" if stage in m else "" for m in markers.values()))
    times.add_row("total", *(f"{sum(v['seconds'] for v in m.values()):.0f}" for m in markers.values()))
    console.print(times)
    heads = Table(title="findings pooled over seeds (headline measure)", show_edge=False)
    for col in ("#", "measure", "seeds", "per seed", "verdict"):
        heads.add_column(col)
    for n, row in result["pooled"].items():
        heads.add_row(str(n), row["measure"], str(row["k"]), row["seed_verdicts"], row["verdict"])
    console.print(heads)
    console.print(f"report: [bold]{result['index']}[/bold]")


def _print_summary(run: Path, markers: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from spindoctor.report.data import load_run
    from spindoctor.report.triage import triage

    console = Console()
    times = Table(title="stages", show_edge=False)
    times.add_column("stage")
    times.add_column("wall time", justify="right")
    for name, m in markers.items():
        times.add_row(name, f"{m['seconds']:.0f} s")
    times.add_row("total", f"{sum(m['seconds'] for m in markers.values()):.0f} s")
    console.print(times)
    data = load_run(run)
    fig1 = Table(title="Figure 1 (this run): single greedy attempt, +-1 SE", show_edge=False)
    for col in ("model", "step", "ID acc", "OOD acc"):
        fig1.add_column(col, justify="left" if col == "model" else "right")
    for r in data["figure1"]:
        fig1.add_row(r["model"], str(r["step"]), f"{100 * r['id_acc']:.1f}% ± {100 * r['id_acc_se']:.1f}",
                     f"{100 * r['ood_acc']:.1f}% ± {100 * r['ood_acc_se']:.1f}")
    console.print(fig1)
    for t in triage(data):
        if t["applies"]:
            console.print(f"[bold]{t['symptom']}[/bold]: {t['evidence']} [green]{t['action']}[/green]")
    console.print(f"report: [bold]{run / 'report' / 'index.html'}[/bold]")


def report(
    run: Annotated[Path, typer.Argument(help="A study run folder or a multi-seed study folder (runs/NAME).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    export: Annotated[Path | None, typer.Option(
        "--export", help="Also copy summary.md, the tables and the figures (no HTML) with their provenance "
        "(command, commit, machine, stage times) into this folder, e.g. docs/results/NAME.")] = None,
) -> None:
    """(Re)build report/index.html, summary.md and tables/*.csv of a study run (pooled for a --seeds folder)."""
    from spindoctor.report.build import build_report
    from spindoctor.report.export import check_dest, export_report
    from spindoctor.study.runfolder import marker_schema
    from spindoctor.study.seeds import pooled_report

    if not run.is_dir():
        raise UserError(f"run folder not found: {run}")
    if export is not None:
        check_dest(export)  # before any work
    multi = (marker_schema(run) or "").startswith("spindoctor.study-seeds/")
    result = pooled_report(run) if multi else build_report(run)
    if export is not None:
        result["export"] = export_report(run, export)
    typer.echo(json.dumps(result) if as_json else f"report: {result['index']}"
               + (f"\nexported to {export}" if export is not None else ""))
