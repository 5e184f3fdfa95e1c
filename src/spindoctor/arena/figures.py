"""The arena chart: ID accuracy on x, OOD accuracy on y (docs/design.md, "Arena")."""

from __future__ import annotations

from pathlib import Path

COLORS = {"wise-ft": "tab:blue", "ckpt-interp": "tab:cyan", "soup": "tab:green", "dg-threshold": "tab:purple",
          "keep-top-r": "tab:pink", "restore": "tab:red", "rl": "tab:orange", "baseline": "black"}


def plot_arena(rows: list[dict], curve: list[dict], front: list[int], path: str | Path) -> None:
    """Every point with +- SE error bars, coloured by method; the SFT curve through its checkpoints
    (grey, step order); the Pareto front as a dashed line through its points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    if curve:
        xs, ys = [c["id_acc"] for c in curve], [c["ood_acc"] for c in curve]
        ax.plot(xs, ys, "-", color="0.7", lw=1, zorder=1, label="SFT curve (checkpoints)")
        ax.scatter(xs, ys, s=8, color="0.6", zorder=1)
    seen = set()
    for row in rows:
        if row.get("id_acc") is None or row.get("ood_acc") is None:
            continue
        method = row["method"]
        ax.errorbar(row["id_acc"], row["ood_acc"], xerr=row.get("id_acc_se") or 0, yerr=row.get("ood_acc_se") or 0,
                    fmt="s" if method == "baseline" else "o", ms=5, capsize=2, color=COLORS.get(method, "tab:gray"),
                    label=None if method in seen else method, zorder=3)
        seen.add(method)
        ax.annotate(row["label"], (row["id_acc"], row["ood_acc"]), fontsize=6, xytext=(3, 3),
                    textcoords="offset points")
    pts = sorted((rows[i]["id_acc"], rows[i]["ood_acc"]) for i in front)
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "--", color="k", lw=0.8, zorder=2, label="Pareto front")
    ax.set_xlabel("ID accuracy (greedy)")
    ax.set_ylabel("OOD accuracy (greedy)")
    ax.set_title("Recovery arena: every repair scored on the same probe hands", fontsize=10)
    ax.legend(fontsize=7, frameon=False, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
