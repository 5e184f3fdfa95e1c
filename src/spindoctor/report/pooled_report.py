"""The pooled report of a multi-seed study: report/index.html, summary.md, tables/*.csv.

docs/design.md, "Run folder" (the multi-seed folder) and "Evidence" (the
pooling rule, :mod:`spindoctor.report.pooled`). Each seed's findings come from
its own run folder (:func:`~spindoctor.report.data.load_run`,
:func:`~spindoctor.report.findings.findings_table`); the pooled table comes
first, then each seed's headline verdicts with a link to that seed's report.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from spindoctor import __version__
from spindoctor.io import atomic_write_text
from spindoctor.report.build import fmt_stat, to_csv
from spindoctor.report.data import load_run
from spindoctor.report.findings import finding_verdicts, findings_table
from spindoctor.report.pooled import RULE, pool_findings


def spread(row: dict) -> str:
    """The seed-to-seed range of a pooled row's estimates, in its unit."""
    if row.get("spread_min") is None:
        return ""
    def one(x):
        return fmt_stat({"estimate": x, "lo": None, "hi": None, "unit": row["unit"]})
    return f"{one(row['spread_min'])} to {one(row['spread_max'])}"


def cell(text) -> str:
    """Text for a Markdown table cell (``|``, as in ``|ds/s|``, escaped)."""
    return str(text).replace("|", "\\|")


def load_seeds(seed_dirs: dict[int, Path]) -> dict[int, dict]:
    """{seed: {"dir", "findings", "markers", "figure1"}} read from each seed's run folder."""
    out = {}
    for seed, run in sorted(seed_dirs.items()):
        data = load_run(run)
        out[seed] = {"dir": Path(run), "findings": findings_table(data), "markers": data["markers"],
                     "figure1": data["figure1"]}
    return out


def pooled_markdown(name: str, pooled: list[dict], seeds: dict[int, dict]) -> str:
    """summary.md of the pooled report: pooled headlines, every pooled measure, each seed's headlines."""
    lines = [f"# spindoctor study: {name}, {len(seeds)} seeds ({', '.join(map(str, seeds))})", "",
             "## Findings pooled over seeds", "", RULE, "",
             "| # | claim | paper | pooled headline [95% CI] | seeds | spread | per seed | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for n, row in finding_verdicts(pooled).items():
        lines.append(f"| {n} | {cell(row['claim'])} | {cell(row['paper'])} | {cell(row['measure'])}: {fmt_stat(row)} | {row['k']} | "
                     f"{spread(row)} | {row['seed_verdicts']} | **{row['verdict']}** |")
    lines += ["", "| # | measure | pooled [95% CI] | spread | per seed | predicted | verdict | note |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in pooled:
        note = " ".join(x for x in (row["note"], row["resolve"] or "") if x)
        lines.append(f"| {row['finding']} | {cell(row['measure'])} | {fmt_stat(row)} | {spread(row)} | {row['seed_verdicts']} "
                     f"| {row['predicted']} | {row['verdict']} | {cell(note)} |")
    for seed, s in seeds.items():
        lines += ["", f"## Seed {seed} (`{s['dir']}`, report: `{s['dir'] / 'report' / 'index.html'}`)", "",
                  "| # | headline [95% CI] | verdict |", "| --- | --- | --- |"]
        lines += [f"| {n} | {cell(r['measure'])}: {fmt_stat(r)} | {r['verdict']} |"
                  for n, r in finding_verdicts(s["findings"]).items()]
        times = [f"{k} {m.get('seconds', 0):.0f}" for k, m in s["markers"].items()]
        total = sum(m.get("seconds", 0) for m in s["markers"].values())
        lines += ["", f"Stage wall times (s): {', '.join(times)}; total {total:.0f}"]
    return "\n".join(lines) + "\n"


def build_pooled_report(parent: str | Path, seed_dirs: dict[int, Path], name: str = "") -> dict:
    """Write ``<parent>/report/``; return {"index", "seeds", "pooled": {finding: headline row}}."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    parent, out = Path(parent), Path(parent) / "report"
    seeds = load_seeds(seed_dirs)
    pooled = pool_findings({s: v["findings"] for s, v in seeds.items()})
    heads = finding_verdicts(pooled)
    links = {s: os.path.relpath(v["dir"] / "report" / "index.html", out) for s, v in seeds.items()}
    env = Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("pooled.html.j2").render(
        name=name or parent.name, run=str(parent), built=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        version=__version__, rule=RULE, pooled=pooled, heads=heads, seeds=seeds, links=links,
        finding_verdicts=finding_verdicts, fmt_stat=fmt_stat, spread=spread,
        stages=list(dict.fromkeys(k for v in seeds.values() for k in v["markers"])))
    atomic_write_text(out / "index.html", html)
    tables = {"findings_pooled.csv": pooled,
              "stage_times.csv": [{"seed": s, "stage": k, "seconds": m.get("seconds")}
                                  for s, v in seeds.items() for k, m in v["markers"].items()]}
    tables.update({f"findings_seed-{s}.csv": v["findings"] for s, v in seeds.items()})
    for fname, rows in tables.items():
        atomic_write_text(out / "tables" / fname, to_csv(rows))
    atomic_write_text(out / "summary.md", pooled_markdown(name or parent.name, pooled, seeds))
    return {"index": str(out / "index.html"), "seeds": list(seeds),
            "pooled": {n: {k: r[k] for k in ("measure", "estimate", "lo", "hi", "k", "seed_verdicts", "verdict")}
                       for n, r in heads.items()}}
