"""The rotation toy's figure (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

from spindoctor.toy.rotation import ToyResult


def plot_toy(result: ToyResult, path: str | Path) -> None:
    """Two panels: singular values of factor A before/after, and per-index angles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = range(1, len(result.s_A0) + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax1.plot(idx, result.s_A0, "o-", ms=3, label="before fine-tuning")
    ax1.plot(idx, result.s_A, "x--", ms=4, label="after")
    ax1.set(xlabel="index i", ylabel="singular value of A", title="Singular values barely move")
    ax1.legend(frameon=False)
    ax2.bar(idx, result.angles_A_deg, color="tab:red")
    ax2.set(xlabel="index i", ylabel="angle (deg)", title="Singular vectors rotate (most in the tail)")
    fig.suptitle(f"Two-factor linear model, task shift {result.task_rel_change:.0%}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
