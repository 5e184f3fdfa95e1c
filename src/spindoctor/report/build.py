"""Build the report of a study run: report/index.html (self-contained), summary.md, tables/*.csv."""

from __future__ import annotations

import base64
import math
import time
from pathlib import Path

from spindoctor import __version__
from spindoctor.errors import UserError
from spindoctor.io import atomic_write_text, rows_to_csv
from spindoctor.report.data import load_run
from spindoctor.report.figures import plot_recoverability, plot_training_curves
from spindoctor.report.findings import finding_verdicts, findings_table
from spindoctor.report.glossary import GLOSSARY
from spindoctor.report.triage import recoverability_rows, triage

LIMITS = [
    "One controlled task (GeneralPoints), one OOD axis (the face-card rule); the study itself covered two "
    "model families and PPO only.",
    "The organism is a ~1M-parameter character-level model trained from scratch; its numbers show the "
    "shape of the findings, not the levels of 7B models.",
    "Probe accuracies are single greedy attempts on this run's probe sets; the published numbers use "
    "5-turn episodes on 234 hands. Every accuracy carries its SE: differences under 2 SE are noise.",
    "Rotation of singular vectors is shown to matter (restoration, impose), not shown to be the only "
    "mechanism of forgetting or recovery.",
    "Restoration changes one set of matrices at a time; interactions between layers are not measured.",
]
SWEEP_TITLES = {"layers": "Figure 5: restoration by layer block", "ranks": "Figure 6: restoration by rank",
                "impose": "Figure 7: SFT directions imposed on the RL model"}


def data_uri(path: Path | None) -> str | None:
    """A PNG embedded as a data URI (the report is one self-contained file)."""
    if path is None or not Path(path).exists():
        return None
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def pct(x) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def num(x, digits: int = 3) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def fmt_stat(row: dict) -> str:
    """A findings row's estimate and interval in its unit (percentage points for fractions)."""
    est, lo, hi, unit = row["estimate"], row["lo"], row["hi"], row["unit"]
    if est is None:
        return "n/a"
    scale, suffix, digits = (100, " pp", 1) if unit == "fraction" else ((100, "%", 0) if unit == "share" else (1, "", 3))
    text = f"{scale * est:+.{digits}f}{suffix}"
    return text if lo is None or hi is None else f"{text} [{scale * lo:+.{digits}f}, {scale * hi:+.{digits}f}]"


def interval(row: dict, key: str, percent: bool) -> str:
    """A sweep row's paired column ``key`` (``<key>_est``, ``_lo``, ``_hi``) as text."""
    est, lo, hi = (row.get(f"{key}_{part}") for part in ("est", "lo", "hi"))
    if est is None:
        return ""
    f = (lambda x: f"{100 * x:+.1f}") if percent else (lambda x: f"{x:+.3f}")
    return f(est) + ("" if lo is None or hi is None else f" [{f(lo)}, {f(hi)}]")


def flat(row: dict) -> dict:
    """A row without its nested per-hand and paired records (tables hold the flat columns)."""
    return {k: v for k, v in row.items() if k not in ("per_hand", "paired")}


def to_csv(rows: list[dict]) -> str:
    """CSV of ``rows`` with every key any row has, in first-seen order ("" for no rows)."""
    return rows_to_csv(rows, list(dict.fromkeys(k for r in rows for k in r))) if rows else ""


def _degrees(radians: float | None) -> float | None:
    return None if radians is None else math.degrees(radians)


def drift_table(drift: dict) -> tuple[list[dict], list[str]]:
    """One row per drift pair from its metrics.json summary; angles converted from radians to degrees."""
    rows, ks = [], []
    for pair, d in drift.items():
        overall = d["metrics"].get("summary", {}).get("overall", {})
        row = {"pair": pair.replace("__", " -> "), "n": d["metrics"].get("n_matrices")}
        for key in ("rel_update", "ds_rel_mean_abs", "rot_share"):
            row[key] = overall.get(key)
        row["angle_u_mean"] = _degrees(overall.get("angle_u_mean"))
        for key, value in overall.items():
            if key.startswith("k") and key.endswith("_u_mean"):
                label = key[: -len("_u_mean")]
                row[label] = _degrees(value)
                if label not in ks:
                    ks.append(label)
        rows.append(row)
    return rows, ks


def build_report(run: str | Path) -> dict:
    """Write the report of ``run``; return {"index": path, "sections": [...]}."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    run = Path(run)
    if not (run / "config.yaml").exists():
        raise UserError(f"{run} is not a study run folder (no config.yaml)")
    data = load_run(run)
    out = run / "report"
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    rec = recoverability_rows(data)
    figs = {
        "curves": data_uri(plot_training_curves(data["sft"], data["selection"], figdir / "sft_curves.png",
                                                "SFT on the ID rule: ID and OOD probes")),
        "recover": data_uri(plot_recoverability(rec, figdir / "rl_recoverability.png")),
        "toy": data_uri(run / "toy" / "toy.png"),
        "arena": data_uri(run / "arena" / "arena.png"),
        "rl_curves": [(start, data_uri(plot_training_curves(pts, None, figdir / f"rl_{start}.png",
                                                            f"RL from the SFT {start} checkpoint")))
                      for start, pts in data["rl"].items() if pts],
    }
    drift_rows, drift_ks = drift_table(data["drift"])
    drift_figs = [{"pair": pair.replace("__", " -> "),
                   "figs": [u for u in (data_uri(d["dir"] / f) for f in ("singular_values.png", "principal_angles.png",
                                                                       "heatmap_angle.png")) if u]}
                  for pair, d in data["drift"].items() if pair in ("base__sft-end", "sft-end__rl-end")]
    sweeps = [{"kind": kind, "title": SWEEP_TITLES.get(kind, kind), "fig": data_uri(s["dir"] / "sweep.png"),
               "rows": s.get("rows", [])}
              for kind, s in sorted(data["sweeps"].items(), key=lambda kv: list(SWEEP_TITLES).index(kv[0])
                                    if kv[0] in SWEEP_TITLES else len(SWEEP_TITLES))]
    triage_items = triage(data)
    findings = findings_table(data)
    env = Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("template.html.j2").render(
        name=data["config"].get("name", run.name), run=str(run), built=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        version=__version__, triage=triage_items, figure1=data["figure1"], published=data["published"],
        selection=data["selection"], figs=figs, drift_rows=drift_rows, drift_ks=drift_ks, drift_figs=drift_figs,
        sweeps=sweeps, sweep_reference=data["config"].get("sweeps", {}).get("reference", "peak"),
        recover=rec, toy=data["toy"], glossary=GLOSSARY, limits=LIMITS,
        stage_times=list(data["markers"].items()), pct=pct, num=num, findings=findings, fmt_stat=fmt_stat,
        interval=interval, arena=data.get("arena"),
    )
    atomic_write_text(out / "index.html", html)
    tables = {"figure1.csv": data["figure1"], "sft_curve.csv": data["sft"], "rl_recoverability.csv": rec,
              "drift_summary.csv": drift_rows, "findings.csv": findings,
              "arena.csv": [flat(r) for r in (data.get("arena") or {}).get("rows", [])],
              "stage_times.csv": [{"stage": k, "seconds": m["seconds"]} for k, m in data["markers"].items()]}
    for kind, s in data["sweeps"].items():
        tables[f"sweep_{kind}.csv"] = [flat(r) for r in s.get("rows", [])]
    for name, rows in tables.items():
        atomic_write_text(out / "tables" / name, to_csv(rows))
    atomic_write_text(out / "summary.md", summary_markdown(data, triage_items, rec, findings))
    return {"index": str(out / "index.html"), "triage": [t["symptom"] for t in triage_items if t["applies"]]}


def findings_markdown(findings: list[dict]) -> list[str]:
    """The findings table (headline verdicts, then every measure) as Markdown lines."""
    lines = ["## Findings (verdict: the 95% interval against 0, in the paper's direction)", "",
             "| # | claim | paper | this run (headline) [95% CI] | verdict |", "| --- | --- | --- | --- | --- |"]
    for n, row in finding_verdicts(findings).items():
        lines.append(f"| {n} | {row['claim']} | {row['paper']} | {row['measure']}: {fmt_stat(row)} | **{row['verdict']}** |")
    lines += ["", "| # | measure | this run [95% CI] | predicted | verdict | note |", "| --- | --- | --- | --- | --- | --- |"]
    for row in findings:
        note = " ".join(x for x in (row["note"], row["resolve"] or "") if x)
        lines.append(f"| {row['finding']} | {row['measure']} | {fmt_stat(row)} | {row['predicted']} | {row['verdict']} | {note} |")
    return lines + [""]


def summary_markdown(data: dict, triage_items: list[dict], rec: list[dict], findings: list[dict] | None = None) -> str:
    """The report's findings, headline numbers and triage as Markdown."""
    lines = [f"# spindoctor study: {data['config'].get('name', '')}", ""]
    lines += findings_markdown(findings or [])
    lines += ["## Figure 1 (this run)", "",
             "| model | step | ID acc | OOD acc |", "| --- | --- | --- | --- |"]
    for r in data["figure1"]:
        lines.append(f"| {r['model']} | {r['step']} | {pct(r['id_acc'])} ± {pct(r['id_acc_se'])} | "
                     f"{pct(r['ood_acc'])} ± {pct(r['ood_acc_se'])} |")
    lines += ["", "## Triage", ""]
    for t in triage_items:
        lines.append(f"- **{t['symptom']}** ({'applies' if t['applies'] else 'does not apply'}): "
                     f"{t['evidence']} Action: {t['action']}")
    if rec:
        lines += ["", "## RL recoverability", "", "| start | SFT step | OOD before | OOD after |", "| --- | --- | --- | --- |"]
        lines += [f"| {r['start']} | {r['sft_step']} | {pct(r['ood_before'])} | {pct(r['ood_after'])} |" for r in rec]
    lines += ["", "## Stage wall times (s)", ""]
    lines += [f"- {k}: {m['seconds']:.0f}" for k, m in data["markers"].items()]
    return "\n".join(lines) + "\n"
