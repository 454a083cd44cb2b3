"""Where a run's logged rows go: the CSV (always), TensorBoard event files, Weights & Biases.

Framework-free. The loop writes each row (a step's loss/lr/grad norm/speed, or an evaluation's val
loss/bits per byte/HellaSwag) once, to `Monitor.write`; every sink gets it:

- **CSV** (OUT_DIR/train_log.csv, jaxgpt/common/runlog.py `CsvLog`): always; the PNG is drawn from it.
- **TensorBoard** (OUT_DIR/tensorboard/, `tensorboard --logdir OUT_DIR`): through tensorboardX, a small
  pure-Python writer (`pip install tensorboardX`, or the `tensorboard` extra). On by default when it is
  installed; `--tensorboard=false` turns it off; requested but missing, the run warns once and goes on.
- **Weights & Biases** (`--wandb_project=NAME`): `wandb.init` in OUT_DIR/wandb, the run's config
  attached; `WANDB_MODE=offline` writes the run there for a later `wandb sync`. Missing package: a
  one-line error before training (`check_monitor`).

A resumed run starts every sink at its step: the CSV drops the rows it redoes, TensorBoard purges
events from that step on (`purge_step`), W&B continues the run whose id the folder records.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jaxgpt.common.runlog import CsvLog

TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
WANDB_ID_FILE = "wandb_run_id.txt"  # in the run folder: a resume continues the same W&B run
# CSV column -> TensorBoard/W&B tag: grouped as the dashboards show them.
TAGS = {"loss": "train/loss", "lr": "train/lr", "grad_norm": "train/grad_norm", "dt_ms": "perf/dt_ms",
        "tok_per_s": "perf/tok_per_s", "mfu": "perf/mfu", "val_loss": "val/loss", "val_bpb": "val/bits_per_byte",
        "hellaswag_acc_norm": "hellaswag/acc_norm"}


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def import_without_torch(name: str) -> Any:
    """Import `name` with torch hidden unless torch is already loaded (a torch run).

    tensorboardX imports torch at import time whenever it is installed, only to accept torch tensors; a JAX run
    writes floats, and loading torch beside jax costs seconds and memory, and a CUDA torch beside jax[cuda12]
    invites cuDNN conflicts (pyproject.toml): the JAX path never loads torch (tests/test_imports.py). A None entry
    in sys.modules makes `import torch` raise ImportError, which tensorboardX handles.
    """
    if "torch" in sys.modules:
        return importlib.import_module(name)
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        return importlib.import_module(name)
    finally:
        del sys.modules["torch"]


def check_monitor(wandb_project: str) -> None:
    """Refuse, before anything is written, a W&B run that cannot start."""
    if wandb_project and not installed("wandb"):
        raise ValueError(f"--wandb_project={wandb_project} needs the wandb package, which is not installed: "
                         "pip install wandb (or drop --wandb_project)")


def scalars(row: dict) -> dict[str, float]:
    """A row's numbers under their tags (empty columns and non-finite values left out)."""
    return {TAGS.get(k, k): float(v) for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and math.isfinite(v)}


class CsvSink:
    def __init__(self, path: Path, fields: Sequence[str]) -> None:
        self.log = CsvLog(path, fields)

    def start(self, step: int, keep: Callable[[dict[str, str]], bool] | None) -> None:
        self.log.start(step, keep=keep)

    def write(self, row: dict) -> None:
        self.log.append(row)

    def close(self) -> None:
        pass


class TensorBoardSink:
    def __init__(self, directory: Path) -> None:
        self.directory, self.writer = directory, None

    def start(self, step: int, keep: Any = None) -> None:
        SummaryWriter = import_without_torch("tensorboardX").SummaryWriter
        # purge_step: TensorBoard hides the earlier session's events from this step on (they are redone)
        self.writer = SummaryWriter(str(self.directory), purge_step=step or None, flush_secs=30)

    def write(self, row: dict) -> None:
        for tag, value in scalars(row).items():
            self.writer.add_scalar(tag, value, int(row["step"]))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()  # flushes


class WandbSink:
    def __init__(self, out: Path, project: str, config: dict) -> None:
        self.out, self.project, self.config, self.run = out, project, config, None

    def start(self, step: int, keep: Any = None) -> None:
        import wandb

        id_file = self.out / WANDB_ID_FILE
        run_id = id_file.read_text().strip() if step and id_file.is_file() else None  # a resume: the same W&B run
        # dir: wandb writes into its "wandb" subfolder (WANDB_DIR) of the run folder
        self.run = wandb.init(project=self.project, dir=str(self.out), id=run_id,
                              resume="allow" if run_id else None, config=self.config, name=self.out.name)
        id_file.write_text(self.run.id + "\n")

    def write(self, row: dict) -> None:
        self.run.log(scalars(row), step=int(row["step"]))

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()


class Monitor:
    """The run's sinks behind one interface: start(step) once, write(row) per row, close() at the end."""

    def __init__(self, sinks: Sequence[Any]) -> None:
        self.sinks = list(sinks)

    def start(self, step: int, keep: Callable[[dict[str, str]], bool] | None = None) -> None:
        for s in self.sinks:
            s.start(step, keep)

    def write(self, row: dict) -> None:
        for s in self.sinks:
            s.write(row)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


def open_monitor(out: Path, fields: Sequence[str], tensorboard: bool, wandb_project: str, config: dict,
                 log: Callable[[str], None]) -> Monitor:
    """The CSV, plus TensorBoard (unless off, or not installed: then one warning) and W&B when asked for."""
    sinks: list[Any] = [CsvSink(out / "train_log.csv", fields)]
    if tensorboard:
        if installed("tensorboardX"):
            sinks.append(TensorBoardSink(out / TENSORBOARD_DIR))
        else:
            log("warning: no TensorBoard event files: tensorboardX is not installed (pip install tensorboardX, "
                "or pass --tensorboard=false to silence this)")
    if wandb_project:
        check_monitor(wandb_project)
        sinks.append(WandbSink(out, wandb_project, config))
    return Monitor(sinks)
