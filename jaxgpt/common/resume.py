"""Resuming a run: what a resume must not change (the run's identity), and restoring either framework's checkpoint.

Framework-free. A checkpoint's meta.json carries the run's identity: the model config, the
optimiser config, the `RESUME_FIELDS` of TrainConfig (data, batch, sequence length, dtype, seeds)
and the data folder's tokenizer. `--resume` refuses a different identity, naming every field
that changed (jaxgpt/common/checkpoint.py `config_diff`); cadences, outputs, micro-batch and the
framework may change.

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
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from jaxgpt.common.checkpoint import (
    ORBAX_FORMAT,
    CheckpointDir,
    LegacyCheckpoint,
    check_named,
    check_same_config,
    read_safetensors_state,
)
from jaxgpt.common.config import GPTConfig
from jaxgpt.common.recipes import RESUME_FIELDS, TrainConfig
from jaxgpt.common.schedule import OptimConfig


def run_identity(model: GPTConfig, cfg: TrainConfig, optim: OptimConfig, tokenizer: dict | None) -> dict:
    """What a resumed run must share with its checkpoint, as it reads back from meta.json (tuples -> lists)."""
    return json.loads(json.dumps({"model": model.to_dict(), "optim": dataclasses.asdict(optim),
                                  "train": {k: getattr(cfg, k) for k in RESUME_FIELDS}, "tokenizer": tokenizer}))


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
    check_same_config(meta.get("config", {}), identity, path)
    if meta.get("framework") == trainer.framework:
        trainer.restore(path)  # its own format: every array straight onto its device / sharding
    else:
        trainer.load_train_state_numpy(read_train_state(path, meta))
        log(f"resumed a {meta.get('framework')} checkpoint in {trainer.framework}: parameters, AdamW moments, step and "
            "data position carry over; the dropout RNG stream cannot cross frameworks and restarts from --seed")
    loader.load_state(meta["loader"])


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
    log(f"resumed from {ckpts.path(int(meta['step']))} at step {int(meta['step'])}")
    return int(meta["step"])
