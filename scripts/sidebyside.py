"""The GPT trainer in both frameworks behind one interface, for train_gpt.py, compare.py and sample.py.

This module imports jax AND torch (each lazily, only for the side asked for), which is why it lives
in scripts/ and not in a package: `jaxgpt` must never import torch and `torchref` never jax.
The scripts import it as a sibling module (`python scripts/x.py` puts scripts/ on sys.path).

A trainer owns a model, its AdamW optimiser (the shared recipe: jaxgpt/train/optimizer.py and its
torch mirror) and its RNG, and offers:
    step(x, y) -> (loss, grad_norm)     one optimiser step on int32 numpy (B, T) batches
    eval_loss(x, y) -> float            loss with dropout off
    state_numpy() / load_numpy(w)       the GPT-2-named weight table (the frameworks' interchange)
    generate(idx, n, **sampling)        the model's generate (KV cache), numpy in and out
    save(dir) / restore(dir)            full state: params, optimiser, step, RNG; orbax (JAX) or torch.save
Losses and norms are returned as Python floats, i.e. synchronised, so step times are honest.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from jaxgpt.config import GPTConfig
from jaxgpt.train.config import OptimConfig, lr_at

FRAMEWORKS = ("jax", "torch")


class JaxTrainer:
    """Flax NNX GPT + optax AdamW; one pure jax.jit step over the split (model, optimizer) state."""

    framework = "jax"

    def __init__(self, config: GPTConfig, optim: OptimConfig, weights: dict[str, np.ndarray] | None = None,
                 seed: int = 0) -> None:
        import jax
        from flax import nnx

        from jaxgpt.gpt import GPT
        from jaxgpt.train.optimizer import make_optimizer

        self.config, self.optim, self.step_count = config, optim, 0
        self.model = GPT(config, rngs=nnx.Rngs(params=seed, dropout=seed + 1))
        if weights is not None:
            self.model.load_numpy(weights)
        self.opt = nnx.Optimizer(self.model, make_optimizer(optim), wrt=nnx.Param)
        # Dropout's train/eval switch is static graph data: one graphdef per mode, one shared state.
        self.model.eval()
        self._gd_eval, _ = nnx.split((self.model, self.opt))
        self.model.train()
        self._gd_train, self.state = nnx.split((self.model, self.opt))
        gd_train, gd_eval = self._gd_train, self._gd_eval

        def train_step(state, x, y):
            model, opt = nnx.merge(gd_train, state)
            loss, grads = nnx.value_and_grad(lambda m: m(x, y)[1])(model)
            norm = jax.numpy.sqrt(sum(jax.numpy.sum(g.astype("float32") ** 2) for g in jax.tree.leaves(grads)))
            opt.update(model, grads)
            return nnx.state((model, opt)), loss, norm

        def eval_step(state, x, y):
            model, _ = nnx.merge(gd_eval, state)
            return model(x, y)[1]

        self._train_step = jax.jit(train_step, donate_argnums=0)
        self._eval_step = jax.jit(eval_step)

    def _sync_model(self):
        from flax import nnx

        model, self.opt = nnx.merge(self._gd_train, self.state)
        return model

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        self.state, loss, norm = self._train_step(self.state, x, y)
        self.step_count += 1
        return float(loss), float(norm)

    def eval_loss(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(self._eval_step(self.state, x, y))

    def state_numpy(self) -> dict[str, np.ndarray]:
        return self._sync_model().state_numpy()

    def generate(self, idx: np.ndarray, max_new_tokens: int, **kw: Any) -> np.ndarray:
        return self._sync_model().generate(idx, max_new_tokens, **kw)

    def save(self, directory: Path) -> None:
        import jax
        import orbax.checkpoint as ocp

        # Typed PRNG keys (dropout stream) are stored as their raw uint32 data.
        leaves = jax.tree.leaves(self.state)
        arrays = {f"{i:05d}": np.asarray(jax.random.key_data(v) if _is_key(v) else v) for i, v in enumerate(leaves)}
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(Path(directory).absolute() / "state", {"leaves": arrays, "step": np.asarray(self.step_count, np.int64)})

    def restore(self, directory: Path) -> None:
        import jax
        import orbax.checkpoint as ocp

        leaves, treedef = jax.tree.flatten(self.state)
        target = {"leaves": {f"{i:05d}": np.asarray(jax.random.key_data(v) if _is_key(v) else v)
                             for i, v in enumerate(leaves)}, "step": np.asarray(0, np.int64)}
        with ocp.StandardCheckpointer() as ckptr:
            got = ckptr.restore(Path(directory).absolute() / "state", target)
        new = []
        for i, old in enumerate(leaves):
            arr = np.asarray(got["leaves"][f"{i:05d}"])
            new.append(jax.random.wrap_key_data(arr, impl=jax.random.key_impl(old)) if _is_key(old)
                       else jax.numpy.asarray(arr, dtype=old.dtype))
        self.state = jax.tree.unflatten(treedef, new)
        self.step_count = int(got["step"])


def _is_key(x: Any) -> bool:
    import jax

    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


class TorchTrainer:
    """torchref GPT + torch AdamW (same recipe); dropout draws from a private torch.Generator-seeded RNG."""

    framework = "torch"

    def __init__(self, config: GPTConfig, optim: OptimConfig, weights: dict[str, np.ndarray] | None = None,
                 seed: int = 0) -> None:
        import torch

        from torchref.gpt import GPT
        from torchref.train.optimizer import make_optimizer

        self.config, self.optim, self.step_count = config, optim, 0
        torch.manual_seed(seed)
        self.model = GPT(config)
        if weights is not None:
            self.model.load_numpy(weights)
        self.opt = make_optimizer(self.model, optim)

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        import torch

        from torchref.train.optimizer import optimizer_step

        self.model.train()
        _, loss = self.model(torch.from_numpy(np.asarray(x, np.int64)), torch.from_numpy(np.asarray(y, np.int64)))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = optimizer_step(self.model, self.opt, self.step_count, self.optim)
        self.step_count += 1
        return float(loss.detach()), float(norm)

    def eval_loss(self, x: np.ndarray, y: np.ndarray) -> float:
        import torch

        self.model.eval()
        with torch.no_grad():
            _, loss = self.model(torch.from_numpy(np.asarray(x, np.int64)), torch.from_numpy(np.asarray(y, np.int64)))
        return float(loss)

    def state_numpy(self) -> dict[str, np.ndarray]:
        return self.model.state_numpy()

    def generate(self, idx: np.ndarray, max_new_tokens: int, **kw: Any) -> np.ndarray:
        return self.model.generate(idx, max_new_tokens, **kw)

    def save(self, directory: Path) -> None:
        import torch

        torch.save({"model": self.model.state_dict(), "opt": self.opt.state_dict(), "step": self.step_count,
                    "rng": torch.get_rng_state()}, Path(directory) / "state.pt")

    def restore(self, directory: Path) -> None:
        import torch

        ckpt = torch.load(Path(directory) / "state.pt", weights_only=True)
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["opt"])
        self.step_count = int(ckpt["step"])
        torch.set_rng_state(ckpt["rng"])


def make_trainer(framework: str, config: GPTConfig, optim: OptimConfig,
                 weights: dict[str, np.ndarray] | None = None, seed: int = 0) -> JaxTrainer | TorchTrainer:
    if framework == "jax":
        return JaxTrainer(config, optim, weights, seed)
    if framework == "torch":
        return TorchTrainer(config, optim, weights, seed)
    raise ValueError(f"unknown framework {framework!r}; use one of {FRAMEWORKS}")


def checkpoint_exists(directory: Path) -> bool:
    """A complete checkpoint: meta.json is written last, inside the directory that is renamed into place."""
    return (Path(directory) / "meta.json").is_file()


def save_atomic(trainer: JaxTrainer | TorchTrainer, directory: Path, meta: dict | None = None) -> None:
    """Write into DIR.tmp then rename: an interrupted save never damages the previous checkpoint.

    `meta` (JSON: step, data-loader state, ...) is written inside the same directory, so the model
    state and the position in the data can never come from two different saves.
    """
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    trainer.save(tmp)
    (tmp / "meta.json").write_text(json.dumps({"framework": trainer.framework, **(meta or {})}, indent=1))
    if directory.exists():
        old = directory.with_name(directory.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, directory)


__all__ = ["FRAMEWORKS", "JaxTrainer", "TorchTrainer", "make_trainer", "save_atomic", "checkpoint_exists", "lr_at"]
