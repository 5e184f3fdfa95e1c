"""Figures of the restoration sweeps, in the spirit of the paper's Figures 5, 6 and 7."""

from __future__ import annotations

from pathlib import Path

TITLES = {
    "layers": "Restoring singular directions by layer block (cf. paper Fig. 5)",
    "ranks": "Restoring the top-k singular directions of every layer (cf. paper Fig. 6)",
    "impose": "RL model with SFT directions imposed (cf. paper Fig. 7)",
}


def plot_sweep(rows: list[dict], kind: str, path: str | Path) -> None:
    """Bars of ID and OOD accuracy (+- SE) per point, with the baselines as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    base = {r["point"]: r for r in rows if r.get("kind") == "baseline"}
    points = [r for r in rows if r.get("kind") != "baseline"]
    x = np.arange(len(points))
    fig, ax = plt.subplots(figsize=(max(5.5, 1.1 * len(points) + 2), 3.6))
    names = {"reference": "reference", "tuned": "tuned"}
    if kind == "impose":
        names = {"reference": "SFT (source of directions)", "tuned": "RL as trained"}
    for offset, split, color in ((-0.2, "id", "tab:blue"), (0.2, "ood", "tab:orange")):
        acc = [r.get(f"{split}_acc") or 0.0 for r in points]
        se = [r.get(f"{split}_acc_se") or 0.0 for r in points]
        ax.bar(x + offset, acc, 0.38, yerr=se, capsize=3, color=color, label=split.upper())
        for key, style in (("tuned", "--"), ("reference", ":")):
            value = base.get(key, {}).get(f"{split}_acc")
            if value is not None:
                ax.axhline(value, color=color, ls=style, lw=1, label=f"{split.upper()} {names[key]}")
    ax.set_xticks(x, [r["point"] for r in points], rotation=20, ha="right")
    ax.set_ylabel("accuracy")
    ax.set_title(TITLES.get(kind, kind), fontsize=10)
    ax.legend(fontsize=7, frameon=False, ncol=3, loc="upper left", bbox_to_anchor=(0, -0.28))
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
