"""Runs side by side: any two (or more) train_log.csv of scripts/train.py overlaid in one figure.

Framework-free (matplotlib, no display). What scripts/plot_runs.py runs. Four panels: train loss
(line) and val loss (markers) against the step, the same against wall-clock training time (the
summed step times dt_ms: evaluations and checkpoints are not in it, the first step's compilation
is, so a JAX curve starts later by its compile time), tokens per second
against the step, and HellaSwag acc_norm against the step (when a run logged it).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from jaxgpt.common.runlog import read_log

LOG = "train_log.csv"


def log_path(run: str | Path) -> Path:
    """A train_log.csv, or a run folder holding one; FileNotFoundError naming what was expected."""
    p = Path(run)
    if p.is_dir():
        p = p / LOG
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found; pass a run folder of scripts/train.py (it holds {LOG}) or the CSV itself")
    return p


def load_run(run: str | Path) -> list[dict[str, float]]:
    """A run's log rows; a CSV without the training log's columns is a ValueError."""
    p = log_path(run)
    rows = read_log(p)
    if not any("loss" in r for r in rows):
        raise ValueError(f"{p} has no training rows (column 'loss'); is it a {LOG} of scripts/train.py?")
    return rows


def summarize(rows: list[dict[str, float]]) -> dict:
    """Last step, final train/val loss, median tok/s, training seconds, last HellaSwag of one run."""
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val_loss" in r]
    hs = [r for r in rows if "hellaswag_acc_norm" in r]
    tps = [r["tok_per_s"] for r in train if "tok_per_s" in r]
    return {"step": int(train[-1]["step"]), "loss": train[-1]["loss"], "val_loss": val[-1]["val_loss"] if val else None,
            "tok_per_s": statistics.median(tps) if tps else None,
            "train_seconds": sum(r.get("dt_ms", 0.0) for r in train) / 1e3,
            "hellaswag_acc_norm": hs[-1]["hellaswag_acc_norm"] if hs else None}


def plot_runs(runs: list[str | Path], out: str | Path, labels: list[str] | None = None) -> dict[str, dict]:
    """Overlay the runs' logs in `out` (PNG); {label: summary}. Every input is read before anything is written."""
    if len(runs) < 2:
        raise ValueError(f"pass at least two runs to overlay, got {len(runs)}")
    labels = labels or [str(r) for r in runs]
    if len(labels) != len(runs):
        raise ValueError(f"{len(labels)} labels for {len(runs)} runs; pass one label per run")
    logs = [load_run(r) for r in runs]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(12, 8))
    for i, (label, rows) in enumerate(zip(labels, logs, strict=True)):
        c = f"C{i}"
        train = [r for r in rows if "loss" in r]
        clock, t = [], 0.0
        for r in train:
            t += r.get("dt_ms", 0.0) / 1e3
            clock.append(t)
        at = {r["step"]: s for r, s in zip(train, clock, strict=True)}
        val = [r for r in rows if "val_loss" in r]
        ax[0, 0].plot([r["step"] for r in train], [r["loss"] for r in train], c=c, lw=0.8, label=f"{label} train")
        ax[0, 0].plot([r["step"] for r in val], [r["val_loss"] for r in val], "o--", c=c, ms=4, label=f"{label} val")
        ax[0, 1].plot(clock, [r["loss"] for r in train], c=c, lw=0.8, label=label)
        # an evaluation at step s comes after s steps: the clock of the last step before it
        ax[0, 1].plot([at.get(r["step"] - 1, 0.0) for r in val], [r["val_loss"] for r in val], "o--", c=c, ms=4)
        tps = [r for r in train if "tok_per_s" in r]
        ax[1, 0].plot([r["step"] for r in tps], [r["tok_per_s"] for r in tps], c=c, lw=0.8, label=label)
        hs = [r for r in rows if "hellaswag_acc_norm" in r]
        ax[1, 1].plot([r["step"] for r in hs], [r["hellaswag_acc_norm"] for r in hs], "o-", c=c, label=label)
    ax[0, 0].set(xlabel="step", ylabel="loss (nats/token)", title="loss vs step (lines: train, markers: val)")
    ax[0, 1].set(xlabel="training time (s, summed step times)", ylabel="loss (nats/token)", title="loss vs wall-clock")
    ax[1, 0].set(xlabel="step", ylabel="tokens / s", title="throughput")
    ax[1, 1].set(xlabel="step", ylabel="acc_norm", title="HellaSwag" if any(
        "hellaswag_acc_norm" in r for rows in logs for r in rows) else "HellaSwag (not logged by these runs)")
    for a in ax.flat:
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)
    return {label: summarize(rows) for label, rows in zip(labels, logs, strict=True)}
