"""Figures of the restoration sweeps, in the spirit of the paper's Figures 5, 6 and 7."""

from __future__ import annotations

from pathlib import Path

TITLES = {
    "layers": "Restoring singular directions by layer block (cf. paper Fig. 5)",
    "ranks": "Restoring the top-k singular directions of every layer (cf. paper Fig. 6)",
    "impose": "RL model with SFT directions imposed (cf. paper Fig. 7)",
}


def plot_sweep(rows: list[dict], kind: str, path: str | Path) -> None:
    """Two panels per point, accuracy (+- SE) and the teacher-forced loss proxy, ID and OOD bars,
    with the baselines as horizontal lines (the loss proxy has power where accuracy sits near 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    base = {r["point"]: r for r in rows if r.get("kind") == "baseline"}
    points = [r for r in rows if r.get("kind") != "baseline"]
    x = np.arange(len(points))
    fig, axes = plt.subplots(1, 2, figsize=(2 * max(4.5, 0.9 * len(points) + 2), 3.8))
    names = {"reference": "reference", "tuned": "tuned"}
    if kind == "impose":
        names = {"reference": "SFT (source of directions)", "tuned": "RL as trained"}
    for ax, metric, label in ((axes[0], "acc", "accuracy"), (axes[1], "loss", "loss proxy (nats/token, lower is better)")):
        for offset, split, color in ((-0.2, "id", "tab:blue"), (0.2, "ood", "tab:orange")):
            values = [r.get(f"{split}_{metric}") or 0.0 for r in points]
            se = [r.get(f"{split}_acc_se") or 0.0 for r in points] if metric == "acc" else None
            ax.bar(x + offset, values, 0.38, yerr=se, capsize=3, color=color, label=split.upper())
            for key, style in (("tuned", "--"), ("reference", ":")):
                value = base.get(key, {}).get(f"{split}_{metric}")
                if value is not None:
                    ax.axhline(value, color=color, ls=style, lw=1, label=f"{split.upper()} {names[key]}")
        ax.set_xticks(x, [r["point"] for r in points], rotation=20, ha="right")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7, frameon=False, ncol=3, loc="upper left", bbox_to_anchor=(0, -0.28))
    fig.suptitle(TITLES.get(kind, kind), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
