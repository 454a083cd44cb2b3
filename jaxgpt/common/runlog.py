"""What every training run shares, whatever the stage or framework: how it stops, exits and logs.

Framework-free; used by the GPT training loop (`jaxgpt/common/loop.py`) and by makemore's
trainer driver, so a user meets the same behaviour at every stage of the ladder:

- **Stopping.** SIGINT (Ctrl-C) and SIGTERM only set a flag (`stop_on_signal`): the loop finishes
  the step in flight, writes a checkpoint and exits with code 128 + the signal number (130 for
  Ctrl-C, 143 for SIGTERM), as shells and schedulers expect.
- **Divergence.** A non-finite loss stops the run with exit code 3 (`EXIT_DIVERGED`), leaving the
  last good checkpoint untouched.
- **Bad input** exits with 1 (2 for command-line usage errors), before anything is written.
- **Logs.** One CSV row per logged step (`CsvLog`, floats written with repr so they round-trip
  exactly) and a PNG of the curves (`plot_log`); a resumed run drops the rows it is about to redo.
"""

from __future__ import annotations

import contextlib
import csv
import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 1  # a file, folder or setting the user must fix; nothing was written
EXIT_USAGE = 2  # a command-line mistake (argparse's convention)
EXIT_DIVERGED = 3  # the loss became NaN/inf; the last good checkpoint is intact


def exit_code_for_signal(signum: int) -> int:
    """128 + N: the shell's convention for 'ended by signal N' (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)


class Stop(Exception):
    """An orderly stop (signal) or a failure (divergence), with the message and exit code for the CLI."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@contextlib.contextmanager
def stop_on_signal() -> Iterator[dict[str, int | None]]:
    """Within the block, SIGINT/SIGTERM set `flag["signal"]` instead of interrupting.

    The loop checks the flag between steps, so a step is never cut in half and the checkpoint it
    writes is consistent. The previous handlers come back afterwards, so a caller (a test, a
    notebook) keeps its own Ctrl-C behaviour.
    """
    flag: dict[str, int | None] = {"signal": None}

    def on_signal(signum: int, _frame: Any) -> None:
        flag["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class CsvLog:
    """A run's CSV log with fixed columns; rows may leave columns empty (e.g. val_loss rows)."""

    def __init__(self, path: str | Path, fields: Sequence[str]) -> None:
        self.path, self.fields = Path(path), tuple(fields)

    def start(self, resume_step: int = 0, keep: Callable[[dict[str, str]], bool] | None = None) -> None:
        """Start the file afresh, or (resume) keep only the rows before `resume_step`: the rest is redone.

        `keep(row)` keeps other rows too: e.g. the evaluation a run logged at its checkpoint's step,
        which the resumed run does not redo.
        """
        rows = []
        if resume_step and self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(float(r["step"])) < resume_step or (keep and keep(r))]
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, self.fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields).writerow({k: _fmt(row.get(k)) for k in self.fields})


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    return repr(v) if isinstance(v, float) else str(v)  # repr: floats round-trip exactly


def read_log(path: str | Path) -> list[dict[str, float]]:
    """The rows of a CsvLog file as {column: float}, empty cells left out."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]


def plot_log(csv_path: str | Path, png_path: str | Path, title: str = "") -> None:
    """Curves of a CsvLog: train/val loss, and lr + grad norm when logged; HellaSwag when present.

    matplotlib without a display; the PNG is written to a temp name and renamed, so a reader
    never sees half a file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(csv_path)
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val_loss" in r]
    hs = [r for r in rows if "hellaswag_acc_norm" in r]
    panels = 2 + bool(hs)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    axes[0].plot([r["step"] for r in train], [r["loss"] for r in train], label="train", lw=0.8)
    axes[0].plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="val")
    axes[0].set(xlabel="step", ylabel="loss (nats/token)", title=title or "loss")
    axes[0].legend()
    lr = [r for r in train if "lr" in r]
    axes[1].plot([r["step"] for r in lr], [r["lr"] for r in lr], label="lr")
    axes[1].set(xlabel="step", title="lr (left)" + (", grad norm (right)" if any("grad_norm" in r for r in train) else ""))
    norms = [r for r in train if "grad_norm" in r]
    if norms:
        ax2 = axes[1].twinx()
        ax2.plot([r["step"] for r in norms], [r["grad_norm"] for r in norms], c="C1", lw=0.5, label="grad norm")
    if hs:
        axes[2].plot([r["step"] for r in hs], [r["hellaswag_acc_norm"] for r in hs], "o-")
        axes[2].axhline(0.2955, ls="--", c="gray", label="GPT-2 124M (OpenAI)")
        axes[2].set(xlabel="step", ylabel="acc_norm", title="HellaSwag")
        axes[2].legend()
    fig.tight_layout()
    png_path = Path(png_path)
    tmp = png_path.with_name(png_path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(png_path)
