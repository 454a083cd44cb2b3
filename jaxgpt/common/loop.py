"""The GPT-2 training recipe and loop, framework-free: runs the JAX Trainer or its torch twin unchanged.

References: build-nanogpt `train_gpt2.py` (the recipe: 2**19-token batches through gradient
accumulation, warm-up 715, cosine to 10% at 19,073, clip 1.0, vocab 50304, evals every 250
steps), nanodo (metrics of step n-1 fetched after step n is dispatched, NaN stops the run).

`TrainConfig` is the one training configuration of both frameworks (scripts/train_gpt2.py builds
it from flags). `run()` drives any trainer with the twin interface (jaxgpt/train/trainer.py):
    per step: dispatch(x, y) -> fetch the previous step's (loss, norm) -> one log line + CSV row
    every val_every: val loss;  every hellaswag_every: HellaSwag;  every sample_every: samples
    every ckpt_every, at SIGTERM/SIGINT and at the end: an atomic checkpoint (keep the last K)
A non-finite loss stops the run before anything is saved, so the last checkpoint stays good.
Nothing here imports jax or torch; the framework-specific parts come in through `Runtime`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jaxgpt.common.checkpoint import CheckpointDir, check_same_config, check_writable
from jaxgpt.common.config import GPTConfig
from jaxgpt.common.metrics import mfu
from jaxgpt.common.runlog import (  # noqa: F401 - Stop and read_log are part of the loop API
    EXIT_DIVERGED,
    CsvLog,
    Stop,
    exit_code_for_signal,
    plot_log,
    read_log,
    stop_on_signal,
)
from jaxgpt.common.schedule import OptimConfig, lr_at

CSV_FIELDS = ("step", "loss", "lr", "grad_norm", "dt_ms", "tok_per_s", "mfu", "val_loss", "hellaswag_acc_norm")


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "gpt2-124m"  # model preset (jaxgpt/common/config.py)
    padded_vocab: int = 50304  # embedding/head rows (tensor-core friendly); 0 = no padding
    data_dir: str = "data/edu_fineweb10B"  # *_train_*.npy / *_val_*.npy uint16 shards (scripts/fineweb.py)
    out_dir: str = "out/gpt2"  # checkpoints, train_log.csv, curves.png, the final HF export
    total_batch_tokens: int = 524288  # tokens per optimiser step, all devices and micro-steps together (2**19)
    micro_batch: int = 16  # rows per device per micro-step; the accumulation steps follow from it
    seq_len: int = 1024  # T; at most the preset's block_size
    dtype: str = "bfloat16"  # compute dtype; parameters and optimiser state are always fp32
    fsdp: bool = False  # JAX: shard params + optimiser state over the devices (350M-1558M presets)
    compile: bool = False  # torch: torch.compile the model
    seed: int = 0  # parameter init and dropout
    shuffle_seed: int | None = None  # None: shards in name order (build-nanogpt); else shuffled per epoch
    val_every: int = 250  # steps between val-loss evaluations; 0 = only at the end
    val_steps: int = 20  # val batches per evaluation (each micro_batch x devices rows)
    hellaswag_every: int = 250  # 0 = never
    hellaswag_file: str = ""  # hellaswag_val.jsonl; empty = skip HellaSwag
    hellaswag_limit: int = 0  # score only the first N examples (0 = all 10,042)
    sample_every: int = 250  # 0 = never; needs the GPT-2 tokenizer (tiktoken)
    sample_tokens: int = 32  # tokens generated per sample
    sample_prompt: str = "Hello, I'm a language model,"
    ckpt_every: int = 1000  # steps between checkpoints; 0 = only at the end and at signals
    keep: int = 3  # checkpoints kept (older complete ones are deleted)
    export_hf: bool = True  # write the final model as a Hugging Face GPT-2 directory (out_dir/hf)
    plot: bool = False  # write out_dir/curves.png at each evaluation and at the end

    def __post_init__(self) -> None:
        for name in ("total_batch_tokens", "micro_batch", "seq_len", "val_steps", "keep", "sample_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name}={getattr(self, name)} must be >= 1")
        for name in ("val_every", "hellaswag_every", "sample_every", "ckpt_every", "hellaswag_limit", "padded_vocab"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name}={getattr(self, name)} must be >= 0")

    def model_config(self, base: GPTConfig) -> GPTConfig:
        if self.seq_len > base.block_size:
            raise ValueError(f"--seq_len={self.seq_len} exceeds the preset's block_size {base.block_size}")
        if self.padded_vocab and self.padded_vocab < base.vocab_size:
            raise ValueError(f"--padded_vocab={self.padded_vocab} is below vocab_size {base.vocab_size}; "
                             "use a multiple of 128 >= vocab_size, or 0 for none")
        return dataclasses.replace(base, padded_vocab_size=self.padded_vocab or None)


# Fields a resumed run must share with the checkpoint (the others only change cadence or speed).
RESUME_FIELDS = ("preset", "padded_vocab", "data_dir", "total_batch_tokens", "seq_len", "dtype", "seed",
                 "shuffle_seed")


def grad_accum_steps(total_batch_tokens: int, micro_batch: int, seq_len: int, n_devices: int) -> int:
    """Micro-steps per optimiser step; raises with the fix when the global batch does not divide."""
    per_micro = micro_batch * seq_len * n_devices  # tokens of one micro-step over all devices
    if total_batch_tokens % per_micro:
        raise ValueError(
            f"--total_batch_tokens={total_batch_tokens} is not divisible by micro_batch x seq_len x devices = "
            f"{micro_batch} x {seq_len} x {n_devices} = {per_micro}; choose a micro_batch (or seq_len) such that "
            f"this divides it, e.g. --total_batch_tokens={max(1, round(total_batch_tokens / per_micro)) * per_micro}")
    return total_batch_tokens // per_micro


@dataclass
class Runtime:
    """What the loop needs from the framework side (filled by scripts/train_gpt2.py)."""

    trainer: Any  # jaxgpt/train/trainer.py Trainer or its torch twin
    process_index: int  # this process (0 = primary: writes logs, meta, exports)
    num_processes: int
    n_devices: int  # devices (JAX) or ranks (torch) over all processes
    device_name: str  # for the MFU peak (jaxgpt/common/metrics.py)
    barrier: Callable[[], None]
    fetch: Callable[[Any], float]  # device scalar -> float (waits)
    hellaswag: Callable[[], float] | None = None  # -> acc_norm
    sample: Callable[[], list[str]] | None = None  # -> decoded samples
    # True when dispatch returns before the step is computed (JAX; torch on GPU): the loop then fetches
    # step n-1's metrics after dispatching step n. False (torch on CPU): each step is logged at once.
    async_dispatch: bool = True
    log: Callable[[str], None] = field(default=lambda msg: print(msg, flush=True))


def run(cfg: TrainConfig, model_cfg: GPTConfig, optim: OptimConfig, rt: Runtime, train_loader: Any,
        val_loader: Any, resume: bool) -> dict:
    """Train to optim.max_steps (or resume), returning {"step", "val_loss", ...} of the end."""
    out = Path(cfg.out_dir)
    primary = rt.process_index == 0
    if primary:
        check_writable(out)
    rt.barrier()
    ckpts = CheckpointDir(out / "checkpoints", cfg.keep, is_primary=primary, barrier=rt.barrier, log=rt.log)
    trainer = rt.trainer
    saved_cfg = {"model": model_cfg.to_dict(), "optim": dataclasses.asdict(optim),
                 "train": {k: getattr(cfg, k) for k in RESUME_FIELDS}}
    saved_cfg = json.loads(json.dumps(saved_cfg))  # as it reads back from meta.json (tuples -> lists)
    start = 0
    if resume:
        def restore(path: Path, meta: dict) -> None:
            check_same_config(meta["config"], saved_cfg, path)
            if meta.get("framework") != trainer.framework:
                check_same_config({"framework": meta.get("framework")}, {"framework": trainer.framework}, path)
            trainer.restore(path)
            train_loader.load_state(meta["loader"])

        meta = ckpts.restore_latest(restore)
        if meta is None:
            raise ValueError(f"--resume: no checkpoint in {ckpts.root}; start without --resume")
        start = int(meta["step"])
        rt.log(f"resumed from {ckpts.path(start)} at step {start}")
    elif ckpts.steps():
        raise ValueError(f"{ckpts.root} already holds checkpoints (steps {ckpts.steps()}); pass --resume to continue "
                         "that run, or choose another --out_dir (nothing was overwritten)")

    log_path = out / "train_log.csv"
    log = CsvLog(log_path, CSV_FIELDS)
    if primary:
        log.start(start)
    tokens_per_step = cfg.total_batch_tokens

    def checkpoint(step: int) -> None:
        ckpts.save(step, trainer.save, {"framework": trainer.framework, "config": saved_cfg,
                                        "loader": train_loader.state()})
        rt.log(f"saved checkpoint {ckpts.path(step)}")

    def evaluate(step: int, final: bool = False) -> dict:
        row: dict[str, Any] = {"step": step}
        val_loader.reset()
        vals = [trainer.eval_loss(*val_loader.next_batch()) for _ in range(cfg.val_steps)]
        row["val_loss"] = sum(vals) / len(vals)
        msg = f"step {step:6d} | val loss {row['val_loss']:.4f}"
        if rt.hellaswag is not None and (final or (cfg.hellaswag_every and step % cfg.hellaswag_every == 0)):
            row["hellaswag_acc_norm"] = rt.hellaswag()
            msg += f" | hellaswag acc_norm {row['hellaswag_acc_norm']:.4f}"
        rt.log(msg)
        if primary:
            log.append(row)
            if cfg.plot:
                plot_log(log_path, out / "curves.png")
        return row

    pending: tuple[int, Any, Any] | None = None  # (step, loss, norm) dispatched but not yet fetched
    t_last = time.perf_counter()

    def flush() -> None:
        """Fetch and log the step in flight; raise Stop on a non-finite loss."""
        nonlocal pending, t_last
        if pending is None:
            return
        step, loss_a, norm_a = pending
        pending = None
        loss, norm = rt.fetch(loss_a), rt.fetch(norm_a)
        now = time.perf_counter()
        dt, t_last = now - t_last, now
        if not math.isfinite(loss):
            last = ckpts.steps()
            raise Stop(f"loss is {loss} at step {step}; stopping without saving. The last good checkpoint is "
                       f"{ckpts.path(last[-1]) if last else 'none (no checkpoint was written yet)'}; resume from it "
                       "with a lower --lr or a longer --warmup_steps", EXIT_DIVERGED)
        tps = tokens_per_step / dt
        m = mfu(tps, model_cfg, cfg.seq_len, rt.device_name, rt.n_devices)
        row = {"step": step, "loss": loss, "lr": lr_at(step, optim), "grad_norm": norm, "dt_ms": dt * 1e3,
               "tok_per_s": tps, "mfu": m}
        rt.log(f"step {step:6d} | loss {loss:.6f} | lr {row['lr']:.4e} | norm {norm:.4f} | dt {dt * 1e3:.1f}ms | "
               f"tok/s {tps:,.0f} | MFU {'n/a' if m is None else f'{100 * m:.1f}%'}")
        if primary:
            log.append(row)

    with stop_on_signal() as stop:
        for step in range(start, optim.max_steps):
            if step > start and step % max(cfg.val_every, 1) == 0 and cfg.val_every:
                flush()
                evaluate(step)
            if rt.sample is not None and cfg.sample_every and step % cfg.sample_every == 0 and step > start:
                flush()
                for s in rt.sample():
                    rt.log(f"sample: {s!r}")
            if step > start and cfg.ckpt_every and step % cfg.ckpt_every == 0:
                flush()
                checkpoint(step)
            x, y = train_loader.next_batch()
            if pending is None:  # nothing in flight (start, or after an eval): time this step alone
                t_last = time.perf_counter()
            loss_a, norm_a = trainer.dispatch(x, y)
            if rt.async_dispatch:
                flush()  # the previous step's metrics, fetched while this one runs
                pending = (step, loss_a, norm_a)
            else:  # dispatch already computed the step (torch on CPU): log it now, so dt is its own
                pending = (step, loss_a, norm_a)
                flush()
            if stop["signal"] is not None:
                flush()
                checkpoint(step + 1)
                raise Stop(f"stopped by signal {stop['signal']} after step {step}; checkpoint saved in "
                           f"{ckpts.path(step + 1)}; continue with --resume", exit_code_for_signal(stop["signal"]))
        flush()
        final = evaluate(optim.max_steps, final=True)
        if not ckpts.steps() or ckpts.steps()[-1] != optim.max_steps:
            checkpoint(optim.max_steps)
        if cfg.export_hf:
            trainer.save_hf(out / "hf")
            rt.log(f"exported the model as a Hugging Face GPT-2 directory: {out / 'hf'}")
        return {"step": optim.max_steps, **final}
