"""Overlay the logs of two (or more) training runs: loss vs step and vs wall-clock, tokens/s, HellaSwag.

    python scripts/plot_runs.py out/gpt2-124m-jax out/gpt2-124m-torch --out runs.png
    python scripts/plot_runs.py a/train_log.csv b/train_log.csv --labels "lr 6e-4" "lr 1e-3" --out lr.png

Each input is a run folder of scripts/train.py or its train_log.csv. Wall-clock is the summed step
times (dt_ms), so evaluations and checkpoints do not count (jaxgpt/common/plots.py). Prints one
summary line per run. Exit 0, 1 bad input (nothing written), 2 usage.
"""

from __future__ import annotations

import argparse
import sys

from jaxgpt.common.plots import plot_runs


def fmt(v, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders or train_log.csv files (two or more)")
    p.add_argument("--labels", nargs="+", default=None, help="one legend label per run (default: the paths)")
    p.add_argument("--out", default="runs.png", help="the PNG to write (default runs.png)")
    a = p.parse_args()
    if len(a.runs) < 2:
        p.error("pass at least two runs to overlay")
    try:
        summary = plot_runs(a.runs, a.out, a.labels)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    for label, s in summary.items():
        print(f"{label}: step {s['step']}, loss {s['loss']:.4f}, val {fmt(s['val_loss'], '.4f')}, "
              f"{fmt(s['tok_per_s'], ',.0f')} tok/s (median), {s['train_seconds']:.1f} s training, "
              f"HellaSwag {fmt(s['hellaswag_acc_norm'], '.4f')}")
    print(f"wrote {a.out}")
