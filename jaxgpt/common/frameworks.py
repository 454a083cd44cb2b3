"""The one place that names both frameworks: pick the JAX or the PyTorch side by name, lazily.

Framework-free itself (it imports neither jax nor torch at import time): each function imports the
requested side only when called, so `--framework jax` never needs torch and a torch run never
initialises jax. Every training entry point (scripts/train.py, compare.py, sample.py, hellaswag.py)
goes through here instead of writing its own "jax -> Trainer, else torch" branch.

Each side has the same modules, twins at the same paths:

    jaxgpt.train.trainer.Trainer     torchref.train.trainer.Trainer     the training state + step
    jaxgpt.train.runtime             torchref.train.runtime             distributed set-up, Runtime
    jaxgpt.gpt.GPT                   torchref.gpt.GPT                   the model
    jaxgpt.eval.hellaswag            torchref.eval.hellaswag            HellaSwag scoring

`--framework torch` where torch is not installed stops with one line naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

FRAMEWORKS = ("jax", "torch")
PACKAGES = {"jax": "jaxgpt", "torch": "torchref"}
# What `pip install` needs for each side (pyproject.toml's dependencies / extras).
INSTALL = {"jax": 'pip install -e .  (jax, flax, optax and orbax are core dependencies)',
           "torch": 'pip install -e ".[torch]"'}
_REQUIRES = {"jax": ("jax", "flax", "optax", "orbax"), "torch": ("torch",)}


def check_framework(name: str) -> str:
    if name not in FRAMEWORKS:
        raise ValueError(f"unknown framework {name!r}; use one of {', '.join(FRAMEWORKS)}")
    return name


def module(framework: str, name: str) -> ModuleType:
    """`jaxgpt.<name>` or `torchref.<name>`, e.g. module("torch", "train.trainer").

    A missing framework is a ValueError saying what to install (a one-line error in the CLIs).
    """
    check_framework(framework)
    try:
        return importlib.import_module(f"{PACKAGES[framework]}.{name}")
    except ModuleNotFoundError as e:
        missing = (e.name or "").partition(".")[0]
        if missing in _REQUIRES[framework]:
            raise ValueError(f"--framework {framework} needs {missing}, which is not installed; "
                             f"install it with: {INSTALL[framework]}") from None
        raise


def trainer_class(framework: str) -> type:
    """The framework's Trainer (jaxgpt/train/trainer.py or torchref/train/trainer.py)."""
    return module(framework, "train.trainer").Trainer


def make_trainer(framework: str, config: Any, optim: Any, weights: dict[str, np.ndarray] | None = None,
                 seed: int = 0, **options: Any) -> Any:
    """The framework's Trainer; `options` (grad_accum, dtype, mesh/fsdp or device/compile) pass through."""
    return trainer_class(framework)(config, optim, weights, seed, **options)


def runtime(framework: str) -> ModuleType:
    """The framework's runtime module: `connect(launch) -> Cluster`, `make_runtime(...) -> Runtime`."""
    return module(framework, "train.runtime")


def model_class(framework: str) -> type:
    """The framework's GPT (jaxgpt/gpt.py or torchref/gpt.py)."""
    return module(framework, "gpt").GPT
