"""``spindoctor study`` (the main job) and ``spindoctor report RUN_DIR``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated

import typer

from spindoctor.errors import UserError


def study(
    config: Annotated[str, typer.Option(help="Shipped preset (organism, smollm2-135m, qwen2.5-7b, llama-3.2-11b) or a .yaml path.")] = "organism",
    out: Annotated[Path | None, typer.Option(help="Run folder (default runs/<config name>, runs/<name>-quick with --quick).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A miniature of every stage (about 2 minutes).")] = False,
    restart: Annotated[bool, typer.Option("--restart", help="Delete what the study wrote in the run folder first "
                                          "instead of resuming it (any other file stays).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary, no progress.")] = False,
) -> None:
    """Run the whole playbook: base -> SFT (+probes) -> select -> RL -> drift -> restoration -> toy -> report.

    Rerunning skips finished stages whose settings did not change, reruns those whose settings
    (or input stages) changed, and resumes an interrupted one. --out must be absent, empty or a study run.
    """
    from transformers.utils import logging as hf_logging

    from spindoctor.study.config import load_study_config
    from spindoctor.study.pipeline import run_study
    from spindoctor.study.runfolder import StudyNotice

    cfg = load_study_config(config, quick=quick)
    run = out or Path("runs") / (cfg.name + ("-quick" if quick else ""))
    if run.exists() and not run.is_dir():
        raise UserError(f"--out {run} exists and is not a folder")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    with warnings.catch_warnings():  # the study's notices (a stage rerun, files kept): one line each
        warnings.simplefilter("always", StudyNotice)
        warnings.showwarning = _one_line(warnings.showwarning)
        markers = run_study(cfg, run, progress=not as_json, restart=restart)
    report = run / "report" / "index.html"
    if as_json:
        typer.echo(json.dumps({"run": str(run), "report": str(report),
                               "stages": {k: v["seconds"] for k, v in markers.items()}}))
        return
    _print_summary(run, markers)


def _one_line(show):
    """A ``warnings.showwarning`` printing StudyNotice as one ``warning:`` line, others as ``show`` does."""
    from spindoctor.study.runfolder import StudyNotice

    def showwarning(message, category, *args, **kwargs):
        if issubclass(category, StudyNotice):
            typer.echo(f"warning: {message}", err=True)
        else:
            show(message, category, *args, **kwargs)
    return showwarning


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
    run: Annotated[Path, typer.Argument(help="A study run folder (runs/NAME).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """(Re)build report/index.html, summary.md and tables/*.csv of a study run."""
    from spindoctor.report.build import build_report

    if not run.is_dir():
        raise UserError(f"run folder not found: {run}")
    result = build_report(run)
    typer.echo(json.dumps(result) if as_json else f"report: {result['index']}")
