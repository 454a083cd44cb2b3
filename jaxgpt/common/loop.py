"""The GPT training loop, framework-free: drives the JAX Trainer or its torch twin unchanged.

One loop for every GPT run, the poetry GPT and GPT-2 alike (scripts/train.py). References:
build-nanogpt `train_gpt2.py` (gradient accumulation to a token budget, evaluations every N steps,
the log fields), nanoGPT (one log line per step), nanodo (metrics of step n-1 are fetched after
step n is dispatched, so the host never waits inside the hot loop; a NaN loss stops the run).

Per step (`Loop.run`):
    due evaluations first (they see the state *before* step n): val loss (+ bits per byte),
    HellaSwag, samples, a checkpoint -- each every N steps (`TrainConfig`), each flushing the step
    in flight first; then dispatch step n, then fetch and log step n-1 (async dispatch) or step n.
At the end: a final evaluation, a final checkpoint, the Hugging Face export, metrics.json.

Stopping (jaxgpt/common/runlog.py, the same at every stage): SIGINT/SIGTERM finish the step in
flight, write a checkpoint and exit 128+N; a non-finite loss (train or val), or non-finite
parameters found when a checkpoint is due, stop the run before anything is saved, exit 3, naming
the newest finite checkpoint and a retry `--resume` accepts (a lower --lr or a longer warm-up).
Nothing here imports jax or torch: the framework comes in through `Runtime` (built by
jaxgpt/train/runtime.py or its torch twin).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jaxgpt.common.checkpoint import CheckpointDir, checkpoint_exists
from jaxgpt.common.config import GPTConfig
from jaxgpt.common.metrics import mfu
from jaxgpt.common.monitor import Monitor, open_monitor
from jaxgpt.common.profile import PROFILE_DIR, StepProfiler, parse_profile_steps
from jaxgpt.common.recipes import TrainConfig
from jaxgpt.common.runlog import EXIT_DIVERGED, Stop, exit_code_for_signal, plot_log, stop_on_signal
from jaxgpt.common.schedule import OptimConfig, lr_at

CSV_FIELDS = ("step", "loss", "lr", "grad_norm", "dt_ms", "tok_per_s", "mfu", "val_loss", "val_bpb",
              "hellaswag_acc_norm")


@dataclass(frozen=True)
class Launch:
    """How the processes of a multi-host JAX run find each other (torch: torchrun's env vars instead)."""

    coordinator: str | None = None  # HOST:PORT of process 0 (or env JAX_COORDINATOR_ADDRESS); "auto": from Slurm/MPI
    num_processes: int | None = None
    process_id: int | None = None


@dataclass(frozen=True)
class Cluster:
    """What the framework found: processes, devices, and its own handle (the JAX mesh, torch's DistInfo)."""

    framework: str
    process_index: int  # this process (0 = primary: writes logs, meta, exports)
    num_processes: int
    n_devices: int  # devices (JAX) or ranks (torch) over all processes: the data-parallel width
    local_devices: int  # this process's devices: it loads micro_batch x local_devices rows per micro-step
    device_name: str  # for the MFU peak (jaxgpt/common/metrics.py)
    handle: Any = None


def primary_only(log: Callable[[str], None], cluster: Cluster) -> Callable[[str], None]:
    """`log` on process 0; nothing on the others (their warnings and errors go to stderr, which they keep).

    Under torchrun or a multi-host JAX launch every process runs the same loop: without this, each step line,
    evaluation and sample would be printed once per process."""
    return log if cluster.process_index == 0 else (lambda _msg: None)


@dataclass
class Runtime:
    """What the loop needs from the framework side (jaxgpt/train/runtime.py, torchref/train/runtime.py)."""

    trainer: Any  # jaxgpt.train.trainer.Trainer or its torch twin
    cluster: Cluster
    barrier: Callable[[], None]  # wait for every process
    fetch: Callable[[Any], float]  # device scalar -> float (waits for it)
    # True when dispatch returns before the step is computed (JAX; torch on GPU): the loop then fetches
    # step n-1's metrics after dispatching step n. False (torch on CPU): each step is logged at once.
    async_dispatch: bool = True
    hellaswag: Callable[[Sequence[Any]], dict] | None = None  # rendered tasks -> {"acc_norm", ...}
    save: Callable[[Path], Any] | None = None  # writes a checkpoint's state into a folder (default trainer.save)
    setup: tuple[str, ...] = ()  # lines logged at start: the attention kernel chosen and why, the compilation cache
    # The framework's jaxgpt/train/profile.py or torchref twin (start_trace, stop_trace, peak_memory); None = no
    # traces, no memory figure (a scripted trainer in tests)
    probe: Any = None
    log: Callable[[str], None] = field(default=lambda msg: print(msg, flush=True))
    # Several processes: launch the all-reduce (max) of this process's stop signal (0 = none) across processes
    # and return its not-yet-fetched result (`fetch` reads it). None: one process, its own flag decides.
    agree_stop: Callable[[int], Any] | None = None

    @property
    def primary(self) -> bool:
        return self.cluster.process_index == 0


@dataclass
class RunData:
    """The framework-free inputs of a run: batches, the tokenizer for samples, the bits-per-byte factor."""

    train: Any  # BatchSource (jaxgpt/common/data/loader.py): next_batch/state/load_state
    val: Any  # BatchSource with reset()
    codec: Any = None  # jaxgpt.common.sampling.TextCodec: decodes samples; None = no samples
    val_bytes_per_token: float | None = None  # UTF-8 bytes per val token (manifest.json); None = no bits/byte
    hellaswag: Sequence[Any] | None = None  # rendered HellaSwag tasks, or None


@dataclass
class Pending:
    """A dispatched step whose loss and gradient norm have not been fetched yet."""

    step: int
    loss: Any
    norm: Any


def due(step: int, every: int, start: int) -> bool:
    """Whether an every-N-steps event runs before step `step` of a run (re)started at `start`.

    Never at the start itself (a resumed run already did it, a fresh run has nothing to show).

    >>> [s for s in range(0, 7) if due(s, 3, 0)]
    [3, 6]
    """
    return every > 0 and step > start and step % every == 0


def step_line(row: dict) -> str:
    """The nanoGPT-style log line of one step."""
    m = row["mfu"]
    return (f"step {row['step']:6d} | loss {row['loss']:.6f} | lr {row['lr']:.4e} | norm {row['grad_norm']:.4f} | "
            f"dt {row['dt_ms']:.1f}ms | tok/s {row['tok_per_s']:,.0f} | MFU {'n/a' if m is None else f'{100 * m:.1f}%'}")


def eval_line(row: dict) -> str:
    msg = f"step {row['step']:6d} | val loss {row['val_loss']:.4f}"
    if row.get("val_bpb") is not None:
        msg += f" | {row['val_bpb']:.4f} bits/byte"
    if row.get("hellaswag_acc_norm") is not None:
        msg += f" | hellaswag acc_norm {row['hellaswag_acc_norm']:.4f}"
    return msg


def retry_advice(optim: OptimConfig) -> str:
    """What a diverged run is told to retry with: only settings that --resume accepts (resume.SCHEDULE_FIELDS)."""
    return (f"a lower --lr (e.g. --lr={optim.lr / 2:g}) or a longer --warmup_steps "
            f"(e.g. --warmup_steps={max(2 * optim.warmup_steps, 100)})")


def bits_per_byte(nats_per_token: float, bytes_per_token: float) -> float:
    """Loss per byte of text in bits: nats/token / (bytes/token x ln 2); tokenizer-independent.

    >>> round(bits_per_byte(math.log(2), 1.0), 6)  # 1 bit per token, 1 token per byte
    1.0
    """
    return nats_per_token / (bytes_per_token * math.log(2))


class Loop:
    """One training run: explicit state (step, the step in flight, timings), one method per concern."""

    def __init__(self, model_cfg: GPTConfig, cfg: TrainConfig, optim: OptimConfig, rt: Runtime, data: RunData,
                 out: Path, ckpts: CheckpointDir, meta: dict[str, Any]) -> None:
        self.model_cfg, self.cfg, self.optim, self.rt, self.data = model_cfg, cfg, optim, rt, data
        self.trainer = rt.trainer
        self.out, self.ckpts = Path(out), ckpts
        self.meta = meta  # what every checkpoint's meta.json carries (config, data identity, framework)
        self.log_path = self.out / "train_log.csv"
        # every logged row goes to the CSV and, when enabled, TensorBoard / W&B (jaxgpt/common/monitor.py)
        self.monitor: Monitor = open_monitor(self.out, CSV_FIELDS, cfg.tensorboard, cfg.wandb_project,
                                             meta.get("config", {}), rt.log) if rt.primary else Monitor([])
        self.profiler: StepProfiler | None = None  # --profile_steps, set up in run() (it knows the start step)
        self.first_dt: float | None = None  # the session's first step (it compiles), until the next is timed
        self.compile_seconds: float | None = None  # the first step's time beyond a compiled step's
        self.pending: Pending | None = None
        self.first_step = 0  # where this session started (the step that compiles)
        self.t_last = time.perf_counter()
        self.train_seconds, self.steps_timed = 0.0, 0  # this session, compile step excluded
        self.last_samples: list[str] = []
        self.saved: set[int] = set()  # checkpoints written by this session
        self.vote: Any = None  # the stop vote launched after the previous step, not fetched yet

    # ---- one step ------------------------------------------------------------------------------
    def dispatch(self, step: int) -> None:
        """Launch step `step` and log the step before it (or this one, when dispatch is synchronous)."""
        x, y = self.data.train.next_batch()
        if self.pending is None:  # nothing in flight (start, or after an evaluation): time this step alone
            self.t_last = time.perf_counter()
        loss, norm = self.trainer.dispatch(x, y)
        if self.rt.async_dispatch:
            self.flush()  # the previous step's metrics, fetched while this one runs
            self.pending = Pending(step, loss, norm)
        else:  # dispatch already computed the step (torch on CPU): log it now, so dt is its own
            self.pending = Pending(step, loss, norm)
            self.flush()

    def flush(self) -> None:
        """Fetch and log the step in flight; raise Stop (exit 3) on a non-finite loss."""
        if self.pending is None:
            return
        p, self.pending = self.pending, None
        loss, norm = self.rt.fetch(p.loss), self.rt.fetch(p.norm)
        now = time.perf_counter()
        dt, self.t_last = now - self.t_last, now
        if not math.isfinite(loss):
            self.diverged(f"loss is {loss} at step {p.step}", p.step)
        if self.steps_timed or p.step > self.first_step:  # the session's first step compiles: not timed
            self.train_seconds += dt
            self.steps_timed += 1
        self.note_compile_time(p.step, dt)
        tps = self.cfg.total_batch_tokens / dt
        row = {"step": p.step, "loss": loss, "lr": lr_at(p.step, self.optim), "grad_norm": norm, "dt_ms": dt * 1e3,
               "tok_per_s": tps, "mfu": mfu(tps, self.model_cfg, self.cfg.seq_len, self.rt.cluster.device_name,
                                            self.rt.cluster.n_devices)}
        self.rt.log(step_line(row))
        self.monitor.write(row)

    def diverged(self, what: str, step: int | None = None) -> None:
        """Stop with exit 3, naming the checkpoint to go back to and a retry that --resume accepts.

        `step`: the step whose loss was non-finite. When it is the first step of a resumed session, that
        loss is the resumed checkpoint's own: no schedule change can help from there, so say so."""
        self.ckpts.commit()  # a checkpoint still being written holds an earlier, finite state
        good = self.ckpts.newest_finite()
        if good is None:  # checkpoints of a version that did not record the check: the newest complete one
            good = next((s for s in reversed(self.ckpts.steps()) if checkpoint_exists(self.ckpts.path(s))), None)
        retry = retry_advice(self.optim)
        if good is None:
            where = f"no checkpoint was written yet; start again with --force and {retry}"
        elif good == step == self.first_step:
            path = self.ckpts.path(good)
            where = (f"{path} itself gives this loss (finite parameters, but too large), so no schedule change helps "
                     f"from it; move it aside (e.g. rename it to {path.parent / ('.' + path.name + '.diverged')}) and "
                     f"--resume from the checkpoint before it with {retry}, or start again with --force")
        else:
            where = (f"the newest finite checkpoint is {self.ckpts.path(good)} (step {good}); continue from it with "
                     f"--resume and {retry}")
        raise Stop(f"{what}; stopping without saving: {where}", EXIT_DIVERGED)

    # ---- evaluations ---------------------------------------------------------------------------
    def evaluate(self, step: int, final: bool = False) -> dict:
        """Val loss (+ bits per byte) and, when due, HellaSwag; one log line and one CSV row."""
        self.flush()
        n = (self.cfg.final_val_steps or self.cfg.val_steps) if final else self.cfg.val_steps
        self.data.val.reset()  # the same val batches every time, so evaluations compare
        losses = [self.trainer.eval_loss(*self.data.val.next_batch()) for _ in range(n)]
        row: dict[str, Any] = {"step": step, "val_loss": sum(losses) / n}
        if not math.isfinite(row["val_loss"]):
            self.diverged(f"val loss is {row['val_loss']} at step {step}")
        if self.data.val_bytes_per_token:
            row["val_bpb"] = bits_per_byte(row["val_loss"], self.data.val_bytes_per_token)
        every = self.cfg.hellaswag_every
        if self.data.hellaswag and (final or (every and step % every == 0)):
            row["hellaswag_acc_norm"] = self.rt.hellaswag(self.data.hellaswag)["acc_norm"]
        self.rt.log(eval_line(row))
        self.monitor.write(row)
        if self.rt.primary:
            self.plot()
        return row

    def note_compile_time(self, step: int, dt: float) -> None:
        """Log how much longer the session's first step took than the next one: its compilation (and warm-up)."""
        if step == self.first_step:
            self.first_dt = dt
        elif self.first_dt is not None and self.compile_seconds is None:
            self.compile_seconds = max(0.0, self.first_dt - dt)
            self.rt.log(f"compile: the first step took {self.first_dt:.2f} s, {self.compile_seconds:.2f} s more than "
                        f"a compiled one ({dt * 1e3:.1f} ms)")

    def peak_memory(self) -> str:
        """The peak device memory so far (JAX: device memory stats, torch: CUDA max allocated or host RSS)."""
        return self.rt.probe.peak_memory() if self.rt.probe is not None else "n/a"

    def plot(self) -> None:
        if self.cfg.plot:
            plot_log(self.log_path, self.out / "curves.png", title=str(self.out))

    def sample(self, step: int) -> list[str]:
        """cfg.sample_count samples, each a new document (separator + prompt) cut at its end."""
        from jaxgpt.common.sampling import generate_text

        self.flush()
        texts = generate_text(self.trainer.generate, self.data.codec, self.cfg.sample_prompt, self.cfg.sample_count,
                              self.cfg.sample_tokens, top_k=50, seed=step)
        for t in texts:
            self.rt.log(f"sample at step {step}: {t!r}")
        self.last_samples = texts
        return texts

    # ---- checkpoints ---------------------------------------------------------------------------
    def save(self, step: int) -> None:
        """A checkpoint of the state after `step` steps (all processes call it: the writers may be collective)."""
        self.flush()  # a non-finite loss of the step in flight stops the run here
        if not self.trainer.finite():
            self.diverged(f"the parameters or AdamW moments hold NaN/inf after step {step - 1}")
        self.ckpts.save(step, self.rt.save or self.trainer.save, {
            **self.meta, "framework": self.trainer.framework, "state_format": self.trainer.state_format,
            "loader": self.data.train.state(), "finite": True})
        self.saved.add(step)
        self.rt.log(f"saved checkpoint {self.ckpts.path(step)}" + (" (writing in the background)"
                                                                   if self.ckpts.pending else ""))

    # ---- the run -------------------------------------------------------------------------------
    def run(self, start: int) -> dict:
        """Train from step `start` (0, or where a checkpoint left off) to max_steps; the final metrics."""
        self.first_step = start
        spec = parse_profile_steps(self.cfg.profile_steps, start, self.optim.max_steps)  # before anything is written
        if spec and self.rt.probe is None:
            raise ValueError("--profile_steps needs the framework's profiler, which this runtime does not provide")
        self.profiler = StepProfiler(spec, self.rt.probe, self.out / PROFILE_DIR, self.rt.log)
        # the evaluations logged at the checkpoint's step came before it: kept, not redone
        self.monitor.start(start, keep=lambda row: int(float(row["step"])) == start and not row["loss"])
        try:
            return self.train_steps(start)
        finally:
            self.profiler.stop()
            self.monitor.close()

    def train_steps(self, start: int) -> dict:
        with stop_on_signal() as stop:
            for step in range(start, self.optim.max_steps):
                self.periodic(step, start)
                self.profiler.before(step)
                self.dispatch(step)
                self.profiler.after(step, self.flush)
                signum = self.agreed_signal(stop["signal"])
                if signum is not None:
                    self.save(step + 1)
                    self.ckpts.commit()
                    raise Stop(f"stopped by signal {signum} after step {step}; checkpoint saved in "
                               f"{self.ckpts.path(step + 1)}; continue with --resume", exit_code_for_signal(signum))
            return self.finish()

    def agreed_signal(self, local: int | None) -> int | None:
        """The signal that stops the run after the step just dispatched, the same on every process (or None).

        A signal reaches one process (a scheduler may TERM only one), or reaches them a step apart; if each
        stopped on its own flag, one would wait in the checkpoint's barrier while another waits in the next
        step's all-reduce: a hang. So every step each process launches a vote (max of the signals across
        processes) and reads the vote launched one step earlier, which completed with the step it followed:
        the read waits for nothing the loop does not already wait for, and every process reads the same
        vote after the same step, so all of them stop there together.
        """
        if self.rt.agree_stop is None:
            return local
        previous, self.vote = self.vote, self.rt.agree_stop(local or 0)
        agreed = int(self.rt.fetch(previous)) if previous is not None else 0
        return agreed or None

    def periodic(self, step: int, start: int) -> None:
        """The every-N-steps events due before step `step`."""
        if due(step, self.cfg.val_every, start):
            self.evaluate(step)
        if self.data.codec is not None and due(step, self.cfg.sample_every, start):
            self.sample(step)
        if due(step, self.cfg.ckpt_every, start):
            self.save(step)

    def finish(self) -> dict:
        """Final evaluation, checkpoint, samples and export; metrics.json."""
        end = self.optim.max_steps
        self.flush()
        final = self.evaluate(end, final=True)
        if self.data.codec is not None and self.cfg.sample_every:
            self.sample(end)
        self.ckpts.commit()
        # Saved unless written by this session or just resumed from (and verified): a step_ folder left by an
        # interrupted save or found damaged on resume is rewritten, never taken for a checkpoint.
        if end not in self.saved and end != self.first_step:
            self.save(end)
            self.ckpts.commit()
        if self.cfg.export_hf:
            self.trainer.save_hf(self.out / "hf")
            self.rt.log(f"exported the model as a Hugging Face GPT-2 directory: {self.out / 'hf'}")
        metrics = {**{k: v for k, v in final.items() if k != "step"}, "step": end,
                   "framework": self.trainer.framework, "train_seconds": self.train_seconds,
                   "steps_per_s": self.steps_timed / self.train_seconds if self.train_seconds else None,
                   "compile_seconds": self.compile_seconds, "peak_memory": self.peak_memory(),
                   "samples": self.last_samples}
        self.rt.log(f"peak memory: {metrics['peak_memory']}")
        if self.rt.primary:
            write_json(self.out / "metrics.json", metrics)
        return metrics


def write_json(path: Path, record: dict) -> None:
    """JSON written to a temp name and renamed: never half a file under the final name."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
