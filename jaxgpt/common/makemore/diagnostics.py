"""The lectures' training diagnostics (lecture 3, "visualizing the health of the network"), framework-free.

Either framework's trainer hands over numpy arrays (`Trainer.probe`: every tanh layer's output
and d loss / d output, every parameter and its gradient, on one training batch; parameter
snapshots around an optimiser step), and everything shown is computed here, once, in float64:

- forward activations of each tanh layer: mean, std and the saturated fraction |t| > 0.97 (a unit
  stuck in a flat tail of tanh passes almost no gradient), with their histograms;
- the gradient reaching each tanh layer's output: mean, std, histogram;
- each weight matrix's gradient (2-D parameters, as the lecture): mean, std and the
  gradient-to-data ratio std(grad) / std(weight);
- the update-to-data ratio log10(std(W_after - W_before) / std(W_before)) of every weight matrix
  over training, with the lecture's rule of thumb of about 1e-3 (-3 on the plot). The update is
  what the optimiser really applied (lr * grad for plain SGD, as the lecture computes it).

A `Recorder` collects one run's figures per framework; `plot` draws one or two recorders (JAX solid,
torch dashed: on the same weights and batches the curves should lie on top of each other).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

SATURATED = 0.97  # |tanh| above this is "saturated" (lecture 3)
GUIDE_LOG10 = -3.0  # update-to-data ratio of about 1e-3: the lecture's healthy learning rate
HIST_BINS = 60


def _std(x: np.ndarray) -> float:
    return float(np.asarray(x, np.float64).std(ddof=1)) if np.size(x) > 1 else 0.0  # torch's .std() is unbiased


def tanh_stats(acts: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per tanh layer: mean, std and saturated fraction of its output."""
    out = {}
    for name, a in acts.items():
        a = np.asarray(a, np.float64)
        out[name] = {"mean": float(a.mean()), "std": _std(a), "saturated": float((np.abs(a) > SATURATED).mean())}
    return out


def grad_stats(grads: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per tanh layer: mean and std of d loss / d output."""
    return {k: {"mean": float(np.asarray(g, np.float64).mean()), "std": _std(g)} for k, g in grads.items()}


def weight_grad_stats(params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per weight matrix (2-D parameter): gradient mean, std and grad:data ratio std(grad) / std(weight)."""
    out = {}
    for k, p in params.items():
        if np.ndim(p) != 2:
            continue
        g = np.asarray(grads[k], np.float64)
        out[k] = {"mean": float(g.mean()), "std": _std(g), "grad_data": _std(g) / max(_std(p), 1e-30)}
    return out


def update_ratios(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> dict[str, float]:
    """Per weight matrix: log10(std(after - before) / std(before)); -inf when nothing moved."""
    out = {}
    for k, p in before.items():
        if np.ndim(p) != 2:
            continue
        u = _std(np.asarray(after[k], np.float64) - np.asarray(p, np.float64))
        out[k] = math.log10(u / max(_std(p), 1e-30)) if u > 0 else -math.inf
    return out


def histogram(x: np.ndarray, lo: float, hi: float, bins: int = HIST_BINS) -> tuple[list[float], list[float]]:
    """(bin centres, density) of x over [lo, hi]: the lecture's torch.histogram(t, density=True)."""
    dens, edges = np.histogram(np.asarray(x, np.float64).ravel(), bins=bins, range=(lo, hi), density=True)
    return ((edges[:-1] + edges[1:]) / 2).tolist(), dens.tolist()


def _range(arrays: list[np.ndarray]) -> tuple[float, float]:
    m = max((float(np.abs(a).max()) for a in arrays if np.size(a)), default=1.0)
    return -m or -1.0, m or 1.0


def snapshot(probe: dict[str, dict[str, np.ndarray]], ranges: dict[str, tuple[float, float]] | None = None
             ) -> dict[str, Any]:
    """Every statistic of one probe (Trainer.probe), histograms included.

    `ranges` (from another framework's snapshot) pins the histogram ranges, so two frameworks' histograms
    share their bins and can be compared bin by bin.
    """
    ranges = dict(ranges or {})
    ranges.setdefault("act", (-1.0, 1.0))
    ranges.setdefault("act_grad", _range(list(probe["act_grad"].values())))
    weights = {k: g for k, g in probe["grads"].items() if np.ndim(probe["params"][k]) == 2}
    ranges.setdefault("weight_grad", _range(list(weights.values())))
    return {
        "tanh": tanh_stats(probe["act"]),
        "tanh_grad": grad_stats(probe["act_grad"]),
        "weight_grad": weight_grad_stats(probe["params"], probe["grads"]),
        "hist": {"act": {k: histogram(a, *ranges["act"]) for k, a in probe["act"].items()},
                 "act_grad": {k: histogram(g, *ranges["act_grad"]) for k, g in probe["act_grad"].items()},
                 "weight_grad": {k: histogram(g, *ranges["weight_grad"]) for k, g in weights.items()}},
        "ranges": ranges,
    }


class Recorder:
    """One framework's diagnostics of one run: probe snapshots by label and the update ratios by step."""

    def __init__(self, framework: str) -> None:
        self.framework = framework
        self.snapshots: dict[str, dict[str, Any]] = {}  # label ("init", "final") -> snapshot + "step"
        self.updates: dict[str, list[tuple[int, float]]] = {}  # weight name -> [(step, log10 ratio)]

    def snap(self, label: str, step: int, probe: dict[str, dict[str, np.ndarray]],
             ranges: dict[str, tuple[float, float]] | None = None) -> None:
        self.snapshots[label] = {"step": step, **snapshot(probe, ranges)}

    def update(self, step: int, before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> None:
        for k, r in update_ratios(before, after).items():
            self.updates.setdefault(k, []).append((step, r))

    def to_dict(self) -> dict[str, Any]:
        return {"framework": self.framework, "snapshots": self.snapshots, "updates": self.updates}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()))


def measure_steps(start: int, end: int, dense: int = 1000, every: int = 100) -> list[int]:
    """The steps whose update ratio is measured: each of the first `dense` (as the lecture), then every `every`."""
    return [s for s in range(start, end) if s < dense or s % every == 0]


# ---- plots ----------------------------------------------------------------------------------------
_STYLE = {"jax": "-", "torch": "--"}


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)


def plot(recorders: list[Recorder], out_dir: str | Path, title: str = "") -> list[Path]:
    """Write the four PNGs (activations, activation_gradients, weight_gradients, update_ratios) to `out_dir`.

    One recorder: its curves. Two (JAX and torch on the same weights and batches): overlaid, JAX
    solid and torch dashed, legends from the first, titles giving the largest difference of any statistic.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    first = recorders[0]
    labels = list(first.snapshots)
    both = " and ".join(r.framework for r in recorders)
    paths = []

    def panels(key: str, stat_key: str, fmt, fname: str, what: str) -> None:
        fig, axes = plt.subplots(1, len(labels), figsize=(6.5 * len(labels), 4), squeeze=False)
        for ax, label in zip(axes[0], labels):
            for rec in recorders:
                snap = rec.snapshots[label]
                for i, (name, (x, y)) in enumerate(snap["hist"][key].items()):
                    st = snap[stat_key][name]
                    lab = fmt(name, st) if rec is first else None
                    ax.plot(x, y, _STYLE.get(rec.framework, "-"), color=f"C{i}", lw=1, label=lab)
            ax.set(title=f"{what}, {label} (step {first.snapshots[label]['step']})", xlabel="value", ylabel="density")
            _legend(ax)
        fig.suptitle(f"{title} {what} ({both}{'; JAX solid, torch dashed' if len(recorders) > 1 else ''})", fontsize=9)
        fig.tight_layout()
        paths.append(_save(fig, out_dir / fname))
        plt.close(fig)

    panels("act", "tanh", lambda n, s: f"{n}: mean {s['mean']:+.2f} std {s['std']:.2f} saturated {100 * s['saturated']:.1f}%",
           "activations.png", "tanh activations")
    panels("act_grad", "tanh_grad", lambda n, s: f"{n}: mean {s['mean']:+.2e} std {s['std']:.2e}",
           "activation_gradients.png", "gradient at the tanh outputs")
    panels("weight_grad", "weight_grad",
           lambda n, s: f"{n}: std {s['std']:.2e} grad:data {s['grad_data']:.2e}", "weight_gradients.png",
           "weight gradients")

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for rec in recorders:
        for i, (name, series) in enumerate(rec.updates.items()):
            steps, r = zip(*series) if series else ((), ())
            ax.plot(steps, r, _STYLE.get(rec.framework, "-"), color=f"C{i}", lw=0.8, label=name if rec is first else None)
    ax.axhline(GUIDE_LOG10, color="k", ls=":", lw=1, label="1e-3 (rule of thumb)")
    ax.set(xlabel="step", ylabel="log10(update std / weight std)",
           title=f"{title} update-to-data ratio of each weight matrix ({both})")
    _legend(ax)
    fig.tight_layout()
    paths.append(_save(fig, out_dir / "update_ratios.png"))
    plt.close(fig)
    return paths


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(path.name + ".tmp.png")  # a reader never sees half a PNG
    fig.savefig(tmp, dpi=90)
    tmp.replace(path)
    return path


def max_difference(a: Recorder, b: Recorder) -> float:
    """The largest absolute difference between two recorders' scalar statistics (update ratios included)."""
    diffs = [0.0]
    for label, sa in a.snapshots.items():
        sb = b.snapshots[label]
        for group in ("tanh", "tanh_grad", "weight_grad"):
            for name, stats in sa[group].items():
                diffs += [abs(v - sb[group][name][k]) for k, v in stats.items()]
    for name, series in a.updates.items():
        diffs += [abs(x - y) for (_, x), (_, y) in zip(series, b.updates[name]) if math.isfinite(x) and math.isfinite(y)]
    return max(diffs)
