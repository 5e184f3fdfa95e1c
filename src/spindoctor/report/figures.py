"""Report figures made from the run's numbers: training curves (Figure 2) and RL recoverability."""

from __future__ import annotations

from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    from spindoctor.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def plot_training_curves(points: list[dict], selection: dict | None, path: Path, title: str) -> Path | None:
    """Accuracy (+- SE band) and loss proxy against step for ID and OOD, selected steps marked."""
    if not points:
        return None
    plt = _plt()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.6))
    steps = [p["step"] for p in points]
    for split, color in (("id", "tab:blue"), ("ood", "tab:orange")):
        acc = [p.get(f"{split}_acc") for p in points]
        if all(a is None for a in acc):
            continue
        se = [p.get(f"{split}_acc_se") or 0.0 for p in points]
        acc = [a if a is not None else float("nan") for a in acc]
        ax_acc.plot(steps, acc, "o-", ms=3, color=color, label=split.upper())
        ax_acc.fill_between(steps, [a - s for a, s in zip(acc, se, strict=True)],
                            [a + s for a, s in zip(acc, se, strict=True)], color=color, alpha=0.2)
        loss = [p.get(f"{split}_loss") for p in points]
        if any(v is not None for v in loss):
            ax_loss.plot(steps, [v if v is not None else float("nan") for v in loss], "o-", ms=3, color=color,
                         label=f"{split.upper()} held-out gold loss")
    if selection:
        for name, style in (("peak", "-"), ("middle", "--"), ("end", ":")):
            if name in selection:
                for ax in (ax_acc, ax_loss):
                    ax.axvline(selection[name]["step"], color="grey", ls=style, lw=1)
        ax_acc.text(selection["peak"]["step"], ax_acc.get_ylim()[1], " OOD peak", va="top", fontsize=8)
    ax_acc.set(xlabel="step", ylabel="single-attempt accuracy", title="Accuracy (band: +-1 SE)")
    ax_loss.set(xlabel="step", ylabel="loss (nats/token)", title="Loss proxy")
    ax_acc.legend(frameon=False, fontsize=8)
    ax_loss.legend(frameon=False, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_recoverability(rows: list[dict], path: Path) -> Path | None:
    """Accuracy (left) and the loss proxy (right), ID and OOD, at each RL start and after RL,
    against the start's SFT step."""
    rows = [r for r in rows if r.get("ood_after") is not None]
    if not rows:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    steps = [r["sft_step"] for r in rows]
    for ax, metric, label in ((axes[0], "", "accuracy"), (axes[1], "_loss", "loss proxy (nats/token)")):
        for split, color in (("ood", "tab:orange"), ("id", "tab:blue")):
            before = [r.get(f"{split}{metric}_before") for r in rows]
            after = [r.get(f"{split}{metric}_after") for r in rows]
            if None in before or None in after:
                continue
            ax.plot(steps, before, "o--", color=color, alpha=0.6, label=f"{split.upper()} at the SFT checkpoint")
            ax.plot(steps, after, "s-", color=color, label=f"{split.upper()} after RL")
            for s, b, a in zip(steps, before, after, strict=True):
                ax.annotate("", xy=(s, a), xytext=(s, b), arrowprops={"arrowstyle": "->", "color": color, "lw": 1})
        for r in rows:
            ax.text(r["sft_step"], ax.get_ylim()[0], f" {r['start']}", fontsize=8, va="bottom")
        ax.set(xlabel="SFT step RL started from", ylabel=label)
    axes[0].set_title("How much does RL recover from each start?", fontsize=10)
    axes[0].legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
