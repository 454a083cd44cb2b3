"""Resuming a run: what a resume must not change (the run's identity), and restoring either framework's checkpoint.

Framework-free. A checkpoint's meta.json carries the run's identity: the model config, the
optimiser config, the `RESUME_FIELDS` of TrainConfig (data, batch, sequence length, dtype, seeds,
the --init_from weights) and the data folder's tokenizer. `--resume` refuses a different identity,
naming every field that changed (jaxgpt/common/checkpoint.py `config_diff`). A resume may steer the
run: the optimiser schedule (`SCHEDULE_FIELDS`: lr, warm-up, max_steps, ...; from the resumed step
on) and the cadences (`CADENCE_FIELDS`) may change, each change logged as `old -> new`; so may the
outputs, the micro-batch and the framework.

A checkpoint written by the other framework is read by its writer's reader, lazily through
jaxgpt/common/frameworks.py (JAX: orbax, jaxgpt/train/trainer.py `read_state`; torch: the
framework-free safetensors reader), and handed to this run's Trainer by name
(`load_train_state_numpy`): parameters, AdamW moments, step and data position carry over; the
dropout RNG stream cannot cross frameworks and restarts from the run's seed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from jaxgpt.common.checkpoint import (
    ORBAX_FORMAT,
    CheckpointDir,
    ConfigMismatch,
    LegacyCheckpoint,
    check_named,
    config_diff,
    read_safetensors_state,
)
from jaxgpt.common.config import GPTConfig, UsageError
from jaxgpt.common.data.codec import TOKENIZER_FILE
from jaxgpt.common.monitor import TENSORBOARD_DIR, WANDB_DIR, WANDB_ID_FILE
from jaxgpt.common.profile import PROFILE_DIR
from jaxgpt.common.recipes import CADENCE_FIELDS, RESUME_FIELDS, RESUME_FIELDS_IF_SET, TrainConfig
from jaxgpt.common.schedule import OptimConfig


def run_identity(model: GPTConfig, cfg: TrainConfig, optim: OptimConfig, tokenizer: dict | None) -> dict:
    """What a resumed run is compared with, as it reads back from meta.json (tuples -> lists): its identity
    (model, optimiser, RESUME_FIELDS, tokenizer) and the cadences, which may change (`check_resumable`)."""
    train = {k: getattr(cfg, k) for k in RESUME_FIELDS}
    train |= {k: v for k in RESUME_FIELDS_IF_SET if (v := getattr(cfg, k, None))}
    return json.loads(json.dumps({"model": model.to_dict(), "optim": dataclasses.asdict(optim), "train": train,
                                  "tokenizer": tokenizer, "cadence": {k: getattr(cfg, k) for k in CADENCE_FIELDS}}))


# The optimiser schedule a resumed run may change: the retry a diverged run is told to make (a lower lr, a
# longer warm-up), or a longer run (max_steps: also a finished one). Each takes effect from the resumed step
# on: both Trainers compute the lr of step n from the OptimConfig they are built with. What is trained on
# (data, batch, model, seeds, the starting weights) may not change.
SCHEDULE_FIELDS = ("lr", "min_lr_ratio", "warmup_steps", "max_steps", "weight_decay", "grad_clip", "beta1", "beta2")


def _split(config: dict) -> tuple[dict, dict]:
    """(the identity: the config without the steerable fields, the steerable fields {name: value}).

    Checkpoints written before the cadences were recorded have no "cadence": nothing to compare."""
    optim = dict(config.get("optim") or {})
    steerable = {k: optim.pop(k) for k in SCHEDULE_FIELDS if k in optim} | dict(config.get("cadence") or {})
    return {k: v for k, v in config.items() if k != "cadence"} | {"optim": optim}, steerable


def check_resumable(saved: dict, current: dict, where: Path) -> list[str]:
    """The steerable changes, one per field ('lr 0.0006 -> 0.0003'), or ConfigMismatch naming every field that
    may not change (and the fix)."""
    (fixed_old, steer_old), (fixed_new, steer_new) = _split(saved), _split(current)
    changes = [f"{k} {steer_old[k]!r} -> {steer_new.get(k)!r}" for k in steer_old if steer_old[k] != steer_new.get(k)]
    refused = config_diff(fixed_old, fixed_new)
    if refused:
        allowed = f" (these may change: {'; '.join(changes)})" if changes else ""
        raise ConfigMismatch(f"checkpoint {where} was written with another configuration ({'; '.join(refused)}); "
                             f"resume with the original settings{allowed}, or start a new run in another directory")
    return changes


def read_train_state(path: Path, meta: dict) -> dict[str, np.ndarray]:
    """Any checkpoint's named training state as numpy, read by its writer's reader."""
    fmt = check_named(meta, path)
    if fmt == ORBAX_FORMAT:
        if "jax" not in sys.modules:  # a torch process: read on the CPU, leave the GPUs to torch
            os.environ.setdefault("JAX_PLATFORMS", "cpu")
        from jaxgpt.common.frameworks import module

        return module("jax", "train.trainer").read_state(path)
    return read_safetensors_state(path)


def restore(trainer: Any, loader: Any, path: Path, meta: dict, identity: dict, log: Callable[[str], None]) -> None:
    """Load checkpoint `path` into the trainer and the data loader, or raise saying why not."""
    check_named(meta, path)
    changes = check_resumable(meta.get("config", {}), identity, path)
    if meta.get("framework") == trainer.framework:
        trainer.restore(path)  # its own format: every array straight onto its device / sharding
    else:
        trainer.load_train_state_numpy(read_train_state(path, meta))
        log(f"resumed a {meta.get('framework')} checkpoint in {trainer.framework}: parameters, AdamW moments, step and "
            "data position carry over; the dropout RNG stream cannot cross frameworks and restarts from --seed")
    loader.load_state(meta["loader"])
    for change in changes:  # one line per field, so a log search finds each
        log(f"resume with a changed setting: {change}")


# What a run of scripts/train.py leaves in its folder: a fresh run never writes over any of it.
RUN_OUTPUTS = ("checkpoints", "train_log.csv", "metrics.json", "hf", "curves.png", TOKENIZER_FILE, TENSORBOARD_DIR,
               WANDB_DIR, WANDB_ID_FILE, PROFILE_DIR)


def check_run_folder(out: Path, resume: bool, force: bool) -> list[Path]:
    """What a fresh run with --force will replace; raise if a fresh run would overwrite an earlier run's outputs.

    Checked before anything is written, so a refused run leaves the folder byte-for-byte as it was.
    """
    if resume and force:
        raise UsageError("--resume continues the run in --out_dir and --force replaces it: pass one of them")
    found = [out / name for name in RUN_OUTPUTS if (out / name).exists()]
    if found and not resume and not force:
        what = "checkpoints and other outputs" if (out / "checkpoints").exists() else "outputs"
        raise ValueError(f"{out} already holds {what} of a previous run ({', '.join(p.name for p in found)}); pass "
                         "--resume to continue it, --force to replace it, or another --out_dir (nothing was changed)")
    return [] if resume else found


def replace_run(found: list[Path], log: Callable[[str], None]) -> None:
    """--force: delete the previous run's outputs (only those `check_run_folder` found), once the new run is set up."""
    for p in found:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
    if found:
        log(f"--force: removed the previous run's {', '.join(p.name for p in found)} from {found[0].parent}")


class RunFolderLock:
    """Held by the primary process while a run writes into its folder: a second run into the same folder (a
    relaunch while the first still runs, a --resume or --force beside it) is refused instead of pruning,
    overwriting or deleting the first one's checkpoints.

    An exclusive `flock` on the folder itself: no file is written (a refused run changes nothing), and the
    kernel releases it when the holder exits, however it exits (no stale lock after a SIGKILL or a crash).
    Where the file system cannot lock (some network mounts), the run goes on and says that it is unguarded.
    """

    def __init__(self, out: Path, log: Callable[[str], None], flag: str = "--out_dir") -> None:
        self.fd: int | None = None
        try:
            import fcntl
        except ImportError:  # not a POSIX system
            log(f"note: {out} is not locked on this system; do not start a second run into it")
            return
        fd = os.open(out, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ValueError(f"{out} is in use by another run (a process holds its lock; `fuser -v {out}` names it); "
                             f"wait for that run to end or stop it, or pass another {flag} (nothing was changed)") \
                from None
        except OSError as e:
            os.close(fd)
            log(f"note: {out} cannot be locked ({e.strerror or e}); do not start a second run into it")
            return
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


def start_step(ckpts: CheckpointDir, trainer: Any, loader: Any, identity: dict, resume: bool,
               log: Callable[[str], None]) -> int:
    """The step to start from: 0 for a fresh run, the restored checkpoint's step with --resume."""
    out = ckpts.root.parent
    if (out / "run.json").is_file() and (out / "ckpt").is_dir():
        raise LegacyCheckpoint(f"{out} is a run folder of the old scripts/train_gpt.py (run.json + ckpt/), which this "
                               "version cannot continue; prepare the corpus with scripts/prepare_data.py and start a new "
                               "run with scripts/train.py in another --out_dir")
    if not resume:
        if ckpts.steps():
            raise ValueError(f"{ckpts.root} already holds checkpoints (steps {ckpts.steps()}); pass --resume to "
                             "continue that run, or choose another --out_dir (nothing was overwritten)")
        return 0
    meta = ckpts.restore_latest(lambda path, meta: restore(trainer, loader, path, meta, identity, log))
    if meta is None:
        raise ValueError(f"--resume: no checkpoint in {ckpts.root}; start without --resume")
    step = int(meta["step"])
    max_steps = identity["optim"]["max_steps"]
    if step > max_steps:
        raise ValueError(f"--max_steps={max_steps} is below the step of the checkpoint {ckpts.path(step)} ({step}); "
                         f"pass --max_steps >= {step}")
    log(f"resumed from {ckpts.path(step)} at step {step}")
    return step
