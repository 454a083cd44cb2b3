"""One makemore training run, driving either framework's Trainer (framework-free: numpy + the Trainer API).

The Trainers (jaxgpt/makemore/train.py, torchref/makemore/train.py) do the maths: JAX runs a chunk
of steps as one compiled lax.scan call, torch an eager loop. This module is the loop around them,
with the conventions every stage of the ladder shares (jaxgpt/common/runlog.py):

- **Batches** are a function of (seed, step) (data.step_batches), the learning rate of the step
  (config.lr_at), dropout masks of (seed, step) inside the Trainers: chunk sizes do not change a
  run, both frameworks see the same batches, and a resumed run continues exactly.
- **Checkpoints** (checkpoint.py, one .npz) are written at every evaluation and at the end, to
  `--save PATH` and/or `RUN/checkpoint.npz` of the run folder, never with a non-finite state.
- **Stop**: SIGINT/SIGTERM finish the chunk in flight, write the checkpoint (where one is asked
  for) and end with exit code 128 + N; `--load` of that checkpoint continues the run.
- **Divergence**: a non-finite loss stops the run with exit code 3 without saving; the message
  names the last good checkpoint, which is left intact.
- **Logs**: with a run folder, `log.csv` (step, loss, lr, val_loss, elapsed_s; a row per chunk) and
  `curves.png`; with --diagnostics, the lecture-3 PNGs (diagnostics.py).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jaxgpt.common import runlog
from jaxgpt.common.makemore import checkpoint, data, diagnostics
from jaxgpt.common.makemore.config import ModelConfig, TrainConfig, lr_at

LOG_FIELDS = ("step", "loss", "lr", "val_loss", "elapsed_s")
CHUNK = {"jax": 1000, "torch": 100}  # steps per compiled call (JAX) / per progress update (torch)


def make_trainer(framework: str, mcfg: ModelConfig, tcfg: TrainConfig, seed: int = 0):
    """The framework's Trainer; torch is imported only when asked for (JAX users need no torch)."""
    if framework == "jax":
        from jaxgpt.makemore.train import Trainer
    elif framework == "torch":
        try:
            from torchref.makemore.train import Trainer
        except ImportError as e:
            raise runlog.Stop(f"--framework torch needs PyTorch ({e}); install the [torch] extra", 1) from None
    else:
        raise ValueError(f"framework must be 'jax' or 'torch', got {framework!r}")
    return Trainer(mcfg, tcfg, seed)


@dataclass
class Splits:
    """The words of each split and their (X, Y) arrays, built for one model's layout and context."""

    words: dict[str, list[str]]
    arrays: dict[str, tuple[np.ndarray, np.ndarray]]

    @classmethod
    def build(cls, words: list[str], mcfg: ModelConfig, tcfg: TrainConfig) -> Splits:
        tr, va, te = data.split_words(words, tcfg.split, val_fraction=tcfg.val_fraction)
        build = data.build_windows if mcfg.is_window else data.build_sequences
        ws = {"train": tr, "val": va, "test": te}
        return cls(ws, {k: build(w, mcfg.block_size) for k, w in ws.items()})


@dataclass
class Options:
    """How to run (not what to train: that is the ModelConfig and TrainConfig)."""

    seed: int = 0
    save: Path | None = None  # --save PATH: the checkpoint (also written to out/checkpoint.npz)
    out: Path | None = None  # the run folder: log.csv, curves.png, checkpoint.npz, diagnostics PNGs
    diagnostics: bool = False
    test: bool = True  # evaluate the test split at the end (False for recipe selection on val)
    samples: int = 0
    temperature: float = 1.0
    top_k: int | None = None
    data_desc: str = ""
    progress: bool = True
    meta: dict[str, Any] = field(default_factory=dict)  # extra fields for the checkpoint's metadata


class Run:
    """Train `trainers` (one, or the two twins in lockstep on the same batches) on `splits`."""

    def __init__(self, trainers: list, splits: Splits, opts: Options, replay: Any = None,
                 log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> None:
        self.trainers, self.splits, self.opts, self.replay, self.log = trainers, splits, opts, replay, log
        self.tcfg: TrainConfig = trainers[0].train_cfg
        self.mcfg: ModelConfig = trainers[0].config
        self.last_saved: tuple[Path, int] | None = None  # (file, step) of the newest good checkpoint
        self.history: list[tuple[int, float]] = []  # (step, val loss)
        self.recorders = [diagnostics.Recorder(t.framework) for t in trainers] if opts.diagnostics else []
        self.train_time, self.timed_steps = [0.0] * len(trainers), 0  # per trainer: s spent in train_steps
        fw = "" if len(trainers) == 1 else f"_{trainers[0].framework}"
        self.csv = runlog.CsvLog(opts.out / f"log{fw}.csv", LOG_FIELDS) if opts.out else None

    # ---- checkpoints ---------------------------------------------------------------------------
    def targets(self) -> list[Path]:
        paths = [self.opts.save] if self.opts.save else []
        if self.opts.out and len(self.trainers) == 1:
            paths.append(self.opts.out / "checkpoint.npz")
        return paths

    def save(self, val: float | None = None) -> None:
        """Write the checkpoint(s); a non-finite state is a divergence (exit 3), never written."""
        t = self.trainers[0]
        if not self.targets():
            return
        state, opt = t.state_numpy(), t.optimizer_numpy()
        bad = [k for k, v in {**state, **opt}.items() if not np.all(np.isfinite(v))]
        if bad:
            raise runlog.Stop(f"the parameters became non-finite ({', '.join(bad[:3])}) by step {t.step_count:,}: the "
                              f"run diverged and was stopped without saving; {self._good()}. Lower --learning-rate "
                              "(and --load it to continue)", runlog.EXIT_DIVERGED)
        meta = {"model": self.mcfg.to_dict(), "train": self.tcfg.to_dict(), "step": t.step_count,
                "seed": self.opts.seed, "framework": t.framework, "data": self.opts.data_desc, "val": val,
                **self.opts.meta}
        for path in self.targets():
            checkpoint.save(path, state, meta, opt)
            self.last_saved = (path, t.step_count)

    def _good(self) -> str:
        if self.last_saved is None:
            return "no checkpoint was written" + ("" if self.targets() else " (no --save / --out)")
        path, step = self.last_saved
        return f"the last good checkpoint, {path} (step {step:,}), is intact"

    def loaded_from(self, path: Path, step: int) -> None:
        """A run continued from `path`: until it saves, that file is its last good checkpoint."""
        self.last_saved = (Path(path), step)

    # ---- the loop ---------------------------------------------------------------------------------
    def batches(self, start: int, k: int) -> np.ndarray | None:
        n = len(self.splits.arrays["train"][0])
        if self.tcfg.batch_size == 0:
            return None  # full-batch descent
        if self.replay is not None:  # the notebook's generator: one randint(n, (32,)) per step
            return self.replay.randint(n, (k, self.tcfg.batch_size)).astype(np.int32)
        return data.step_batches(self.opts.seed, start, k, n, self.tcfg.batch_size)

    def _chunk(self, s: int, every: int, measure: set[int]) -> int:
        k = min(CHUNK[self.trainers[0].framework], self.tcfg.steps - s, every - s % every)
        if measure:
            if s in measure:
                return 1  # an update ratio is measured on this step: parameters before and after it
            nxt = next((m for m in range(s + 1, s + k) if m in measure), None)
            k = k if nxt is None else nxt - s
        return k

    def train(self) -> None:
        """Train to the schedule's end; raises runlog.Stop on a signal (after saving) or on divergence."""
        from tqdm import tqdm

        t0, tcfg = self.trainers[0], self.tcfg
        X, Y = self.splits.arrays["train"]
        for t in self.trainers:
            t.set_train_data(X, Y)
        every = tcfg.eval_every or tcfg.steps
        measure = set(diagnostics.measure_steps(t0.step_count, tcfg.steps)) if self.recorders else set()
        if self.recorders:
            self.probe("init")
        if self.csv:  # a row's step counts the steps done, so a resumed run keeps the rows up to its step
            self.csv.start(resume_step=t0.step_count + 1)
        first, start_time = True, time.perf_counter()
        bar = tqdm(total=tcfg.steps, initial=t0.step_count, unit="step", dynamic_ncols=True, file=sys.stderr,
                   desc=f"{'+'.join(t.framework for t in self.trainers)} {self.mcfg.model}", disable=not self.opts.progress)
        try:
            with runlog.stop_on_signal() as flag:
                while t0.step_count < tcfg.steps:
                    s = t0.step_count
                    k = self._chunk(s, every, measure)
                    idx = self.batches(s, k)
                    before = [t.state_numpy() for t in self.trainers] if s in measure else None
                    losses, dts = [], []
                    for t in self.trainers:
                        tick = time.perf_counter()
                        losses.append(t.train_steps(idx, k))
                        dts.append(time.perf_counter() - tick)
                    if not first or tcfg.steps - s == k:  # the first call includes compilation: not timed
                        self.train_time = [a + b for a, b in zip(self.train_time, dts)]
                        self.timed_steps += k
                    first = False
                    bad = [loss for loss in losses if not np.isfinite(loss)]
                    if bad:
                        raise runlog.Stop(f"training loss became {bad[0]} in steps {s:,}-{s + k - 1:,}: the run diverged "
                                          f"and was stopped without saving; {self._good()}. Lower --learning-rate "
                                          "(and --load it to continue)", runlog.EXIT_DIVERGED)
                    if before is not None:
                        for rec, t, b in zip(self.recorders, self.trainers, before):
                            rec.update(s, b, t.state_numpy())
                    bar.update(k)
                    post = {"loss": f"{losses[0]:.4f}", "lr": f"{lr_at(s, tcfg):g}"}
                    row = {"step": t0.step_count, "loss": losses[0], "lr": lr_at(s, tcfg),
                           "elapsed_s": round(time.perf_counter() - start_time, 3)}
                    if t0.step_count % every == 0 or t0.step_count == tcfg.steps:
                        val = self.evaluate("val")
                        self.history.append((t0.step_count, val[0]))
                        post["val"] = f"{val[0]:.4f}"
                        row["val_loss"] = val[0]
                        self.save(val[0])
                    bar.set_postfix(post)
                    if self.csv:
                        self.csv.append(row)
                    if flag["signal"] is not None:
                        self.stopped(flag["signal"])
        finally:
            bar.close()
            if self.csv and self.opts.out:
                self.plot()
        if self.recorders:
            self.probe("final")

    def stopped(self, signum: int) -> None:
        step = self.trainers[0].step_count
        if self.targets():
            self.save()
            where = f"saved {', '.join(map(str, self.targets()))} at step {step:,}; --load it to continue"
        else:
            where = f"nothing saved at step {step:,} (pass --save PATH or --out DIR to keep a stopped run)"
        raise runlog.Stop(f"stopped by signal {signum}: {where}", runlog.exit_code_for_signal(signum))

    # ---- evaluation, diagnostics, samples -------------------------------------------------------------
    def evaluate(self, split: str) -> list[float]:
        """Mean loss of the whole split in eval mode, per trainer."""
        X, Y = self.splits.arrays[split]
        return [t.loss(X, Y) for t in self.trainers]

    def probe(self, label: str) -> None:
        """Diagnostics snapshot on one training batch (the batch of the current step), every trainer."""
        X, Y = self.splits.arrays["train"]
        s = self.trainers[0].step_count
        idx = self.batches(s, 1)[0] if self.replay is None else data.step_batches(self.opts.seed, s, 1, len(X),
                                                                                   self.tcfg.batch_size)[0]
        ranges = None
        for rec, t in zip(self.recorders, self.trainers):
            rec.snap(label, s, t.probe(X[idx], Y[idx]), ranges)
            ranges = rec.snapshots[label]["ranges"]  # the twin's histograms on the same bins

    def plot(self) -> None:
        if self.csv is not None and self.csv.path.exists() and runlog.read_log(self.csv.path):
            runlog.plot_log(self.csv.path, self.csv.path.with_name(self.csv.path.stem.replace("log", "curves") + ".png"),
                            f"makemore {self.mcfg.model} ({self.trainers[0].framework})")

    def write_diagnostics(self) -> list[Path]:
        out = self.opts.out
        for rec in self.recorders:
            rec.save(out / f"diagnostics_{rec.framework}.json")
        return diagnostics.plot(self.recorders, out, f"{self.mcfg.model}:")

    def results(self, target: float | None = None, target_split: str = "val", lecture_rng: bool = False) -> list[dict]:
        """Per trainer: losses of the whole splits, speed, history and samples (scripts print and tabulate these)."""
        splits = ["train", "val"] + (["test"] if self.opts.test else [])
        losses = {k: self.evaluate(k) for k in splits}
        out = []
        for i, t in enumerate(self.trainers):
            r = {"model": self.mcfg.model, "framework": t.framework, "params": t.num_params(), "step": t.step_count,
                 "train": losses["train"][i], "val": losses["val"][i],
                 "test": losses["test"][i] if self.opts.test else None,
                 "s_per_1k": 1000 * self.train_time[i] / self.timed_steps if self.timed_steps else None,
                 "history": self.history, "split": self.tcfg.split, "val_fraction": self.tcfg.val_fraction,
                 "target": target, "target_split": target_split, "lecture_rng": lecture_rng,
                 "model_config": self.mcfg.to_dict(), "train_config": self.tcfg.to_dict(), "seed": self.opts.seed}
            if self.opts.samples:
                train_set = set(self.splits.words["train"])
                names = data.sample_words(t.logits, self.mcfg.block_size, self.mcfg.is_window, self.opts.samples,
                                          np.random.default_rng(self.opts.seed), temperature=self.opts.temperature,
                                          top_k=self.opts.top_k)
                r["samples"] = [(n, n not in train_set) for n in names]
            out.append(r)
        return out
