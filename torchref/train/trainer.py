"""The GPT trainer in PyTorch: the mirror of `jaxgpt/train/trainer.py` (same class, same methods).

One optimiser step over A micro-batches (A = `grad_accum`): each micro-batch's loss / A is
back-propagated, summing into .grad; under DDP the gradient all-reduce runs only on the last
micro-step (`no_sync` on the others, as build-nanogpt does). Then clip + AdamW with this step's
learning rate (torchref/train/optimizer.py). The logged loss is the mean over micro-steps and,
under DDP, over processes. bf16 compute uses autocast (parameters, gradients and AdamW state
stay fp32); `compile=True` wraps the model in torch.compile.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from jaxgpt.common.config import GPTConfig
from jaxgpt.common.schedule import OptimConfig
from jaxgpt.common.weights import save_hf_dir
from torchref.gpt import GPT
from torchref.train.optimizer import make_optimizer, optimizer_step
from torchref.train.sharding import barrier, is_distributed, mean_across

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class Trainer:
    """torchref GPT + torch AdamW (same recipe), optionally DDP across torchrun processes."""

    framework = "torch"

    def __init__(self, config: GPTConfig, optim: OptimConfig, weights: dict[str, np.ndarray] | None = None,
                 seed: int = 0, *, grad_accum: int = 1, dtype: str = "float32", device: str | torch.device | None = None,
                 compile: bool = False) -> None:
        if grad_accum < 1:
            raise ValueError(f"grad_accum={grad_accum} must be >= 1")
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r} is unknown; use one of {sorted(DTYPES)}")
        self.config, self.optim, self.step_count = config, optim, 0
        self.grad_accum, self.dtype = grad_accum, dtype
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch.manual_seed(seed)  # same init on every process (DDP also broadcasts rank 0's weights)
        self.model = GPT(config).to(self.device)
        if weights is not None:
            self.model.load_numpy(weights)
        self.opt = make_optimizer(self.model, optim)
        self.ddp = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None) \
            if is_distributed() else None
        net = self.ddp or self.model
        self.forward = torch.compile(net) if compile else net

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bfloat16")

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, np.int64)).to(self.device, non_blocking=True)

    # ---- training ------------------------------------------------------------------------------
    def dispatch(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step on this process's rows (R, T), R = A * micro; (loss, norm) as tensors."""
        A = self.grad_accum
        R, T = x.shape
        if R % A:
            raise ValueError(f"{R} rows per process cannot be split into {A} gradient-accumulation micro-steps; "
                             "make the batch a multiple of the accumulation steps")
        xs, ys = self._tensor(x).view(A, R // A, T), self._tensor(y).view(A, R // A, T)  # (A, M, T)
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        for a in range(A):
            # Sync gradients across processes only once, on the last micro-step.
            sync = self.ddp is None or a == A - 1
            with (nullcontext() if sync else self.ddp.no_sync()):
                with self._autocast():
                    _, loss = self.forward(xs[a], ys[a])
                (loss / A).backward()
            loss_sum += loss.detach()
        norm = optimizer_step(self.model, self.opt, self.step_count, self.optim)
        self.step_count += 1
        return mean_across(loss_sum / A), norm

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        loss, norm = self.dispatch(x, y)
        return float(loss), float(norm)

    def eval_loss(self, x: np.ndarray, y: np.ndarray) -> float:
        self.model.eval()
        with torch.no_grad(), self._autocast():
            _, loss = self.model(self._tensor(x), self._tensor(y))
        return float(mean_across(loss.float()))

    # ---- the model -----------------------------------------------------------------------------
    def model_view(self) -> GPT:
        self.model.eval()
        return self.model

    def state_numpy(self) -> dict[str, np.ndarray]:
        return self.model.state_numpy()

    def load_numpy(self, weights: dict[str, np.ndarray]) -> None:
        self.model.load_numpy(weights)

    def generate(self, idx: np.ndarray, max_new_tokens: int, **kw: Any) -> np.ndarray:
        return self.model.generate(idx, max_new_tokens, **kw)

    def save_hf(self, path: str | Path) -> None:
        if not is_distributed() or torch.distributed.get_rank() == 0:
            save_hf_dir(path, self.state_numpy(), self.config)
        barrier()

    # ---- checkpoints ---------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Params, optimiser state, step and RNG in state.pt; rank 0 writes (the ranks hold the same state)."""
        if is_distributed() and torch.distributed.get_rank() != 0:
            return
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        torch.save({"model": self.model.state_dict(), "opt": self.opt.state_dict(), "step": self.step_count,
                    "rng": rng}, Path(directory) / "state.pt")

    def restore(self, directory: Path) -> None:
        ckpt = torch.load(Path(directory) / "state.pt", map_location=self.device, weights_only=True)
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["opt"])
        self.step_count = int(ckpt["step"])
        rng = ckpt["rng"]
        if isinstance(rng, torch.Tensor):  # checkpoints of the poetry stage: the CPU state only
            rng = {"cpu": rng}
        torch.set_rng_state(rng["cpu"].cpu())
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"].cpu(), self.device)
