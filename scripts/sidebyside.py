"""The GPT trainer in both frameworks behind one interface, for train_gpt.py, compare.py and sample.py.

A thin dispatcher over the twin trainers `jaxgpt.train.trainer.Trainer` and
`torchref.train.trainer.Trainer` (same methods: step, eval_loss, state_numpy, generate, save,
restore; see their docstrings). It imports jax AND torch (each lazily, only for the side asked
for), which is why it lives in scripts/ and not in a package: `jaxgpt` must never import torch
and `torchref` never jax. The scripts import it as a sibling module.

Losses and norms from `step` are Python floats, i.e. synchronised, so step times are honest.
Checkpoint directories (atomic write, completeness check) are jaxgpt/common/checkpoint.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jaxgpt.common import checkpoint as _ckpt
from jaxgpt.common.config import GPTConfig
from jaxgpt.common.schedule import OptimConfig, lr_at

FRAMEWORKS = ("jax", "torch")


def make_trainer(framework: str, config: GPTConfig, optim: OptimConfig,
                 weights: dict[str, np.ndarray] | None = None, seed: int = 0, **options: Any) -> Any:
    """The `framework` twin's Trainer; `options` (grad_accum, dtype, mesh/fsdp or device/compile) pass through."""
    if framework == "jax":
        from jaxgpt.train.trainer import Trainer
    elif framework == "torch":
        from torchref.train.trainer import Trainer
    else:
        raise ValueError(f"unknown framework {framework!r}; use one of {FRAMEWORKS}")
    return Trainer(config, optim, weights, seed, **options)


def checkpoint_exists(directory: Path) -> bool:
    """A complete checkpoint: meta.json (written last, with a file manifest) and every file it lists."""
    return _ckpt.checkpoint_exists(directory)


def save_atomic(trainer: Any, directory: Path, meta: dict | None = None) -> None:
    """Write the trainer's full state + `meta` into DIR atomically (temp dir, then rename).

    `meta` (JSON: step, data-loader state, ...) is written inside the same directory, so the model
    state and the position in the data can never come from two different saves.
    """
    _ckpt.save_atomic(Path(directory), trainer.save, {"framework": trainer.framework, **(meta or {})})


def __getattr__(name: str) -> Any:
    # The pre-package names, still importable (lazily: each pulls in its framework).
    if name == "JaxTrainer":
        from jaxgpt.train.trainer import Trainer
        return Trainer
    if name == "TorchTrainer":
        from torchref.train.trainer import Trainer
        return Trainer
    raise AttributeError(name)


__all__ = ["FRAMEWORKS", "checkpoint_exists", "lr_at", "make_trainer", "save_atomic"]
