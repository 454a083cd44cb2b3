"""The GPT trainer in PyTorch: the mirror of `jaxgpt/train/trainer.py` (same class, same methods).

One optimiser step over A micro-batches (A = `grad_accum`): each micro-batch's loss / A is
back-propagated, summing into .grad; under DDP the gradient all-reduce runs only on the last
micro-step (`no_sync` on the others, as build-nanogpt does). Then clip + AdamW with this step's
learning rate (torchref/train/optimizer.py). The logged loss is the mean over micro-steps and,
under DDP, over processes. bf16 compute uses autocast (parameters, gradients and AdamW state
stay fp32); `compile=True` compiles the step's forward and loss (`LossOf`: only the loss leaves the
compiled region, not the logits) with torch.compile.

Checkpoints are the named training state of jaxgpt/common/checkpoint.py (parameters and AdamW
moments under the weight table's names, `step`, the torch RNG states) in state.safetensors, which
numpy reads without torch: a torch checkpoint resumes in JAX and a JAX one here
(`load_train_state_numpy`).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.parallel import DistributedDataParallel as DDP

from jaxgpt.common.checkpoint import (
    SAFETENSORS_FORMAT,
    check_train_state,
    group,
    read_safetensors_state,
    write_safetensors_state,
)
from jaxgpt.common.config import GPTConfig
from jaxgpt.common.recipes import check_trainer_args
from jaxgpt.common.schedule import OptimConfig
from jaxgpt.common.weights import save_hf_dir
from torchref.gpt import GPT
from torchref.train.optimizer import make_optimizer, optimizer_step
from torchref.train.sharding import barrier, is_distributed, mean_across

SDPA_BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                 "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}


class LossOf(torch.nn.Module):
    """model(x, y) -> its loss alone: what the training step compiles (the logits stay inside)."""

    def __init__(self, model: GPT) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.model(x, y)[1]


class Trainer:
    """torchref GPT + torch AdamW (same recipe), optionally DDP across torchrun processes."""

    framework = "torch"
    state_format = SAFETENSORS_FORMAT

    def __init__(self, config: GPTConfig, optim: OptimConfig, weights: dict[str, np.ndarray] | None = None,
                 seed: int = 0, *, grad_accum: int = 1, dtype: str = "float32", device: str | torch.device | None = None,
                 compile: bool = False, attn: str = "auto") -> None:
        check_trainer_args(grad_accum, dtype)
        self.config, self.optim, self.step_count = config, optim, 0
        self.grad_accum, self.dtype = grad_accum, dtype
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch.manual_seed(seed)  # same init on every process (DDP also broadcasts rank 0's weights)
        self.model = GPT(config).to(self.device)
        if weights is not None:
            self.model.load_numpy(weights)
        self.opt = make_optimizer(self.model, optim)
        # The step runs LossOf(model): under torch.compile the loss is computed inside the compiled region, which
        # returns a scalar instead of the (B, T, V) fp32 logits (2 x 50304 x 4 bytes per token for GPT-2).
        self.ddp = DDP(LossOf(self.model), device_ids=[self.device.index] if self.device.type == "cuda" else None) \
            if is_distributed() else None
        net = self.ddp or LossOf(self.model)
        self.forward = torch.compile(net) if compile else net  # (x, y) -> mean cross-entropy
        # --attn (jaxgpt/common/attention.py): "auto" lets SDPA pick its kernel; else only that backend.
        self._sdpa_backends = None if attn == "auto" else [SDPA_BACKENDS[attn]]

    @contextmanager
    def _compute(self):
        """The compute dtype (bf16 autocast or fp32) and the attention kernel of the run."""
        kernels = nullcontext() if self._sdpa_backends is None else sdpa_kernel(self._sdpa_backends)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bfloat16"), kernels:
            yield

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
                with self._compute():
                    loss = self.forward(xs[a], ys[a])
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
        with torch.no_grad(), self._compute():
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

    # ---- the training state by name, and checkpoints ------------------------------------------------
    def _params_by_name(self) -> dict[str, torch.nn.Parameter]:
        return dict(self.model.named_parameters())  # tied weights appear once, as wte (the weight table's rule)

    def train_state_numpy(self) -> dict[str, np.ndarray]:
        """The whole training state as numpy arrays by name (jaxgpt/common/checkpoint.py's layout)."""
        host = lambda t: t.detach().float().cpu().numpy().copy()
        out = {f"params/{k}": host(p) for k, p in self._params_by_name().items()}
        for k, p in self._params_by_name().items():
            st = self.opt.state.get(p, {})
            zero = np.zeros(tuple(p.shape), np.float32)  # AdamW creates its moments at the first step
            out[f"opt/mu/{k}"] = host(st["exp_avg"]) if "exp_avg" in st else zero
            out[f"opt/nu/{k}"] = host(st["exp_avg_sq"]) if "exp_avg_sq" in st else zero
        out["step"] = np.asarray(self.step_count, np.int64)
        out["rng/cpu"] = torch.get_rng_state().numpy().copy()
        if self.device.type == "cuda":
            out["rng/cuda"] = torch.cuda.get_rng_state(self.device).numpy().copy()
        return out

    @torch.no_grad()
    def load_train_state_numpy(self, state: dict[str, np.ndarray], rng: bool = True) -> None:
        """Set parameters, AdamW moments and step by name, and the torch RNG when `rng` and present.

        `state` may come from either framework (a JAX state has no torch RNG entries: the generator
        keeps its state, i.e. it continues from this run's seed).
        """
        check_train_state(state, self.config, "training state")
        params, step = self._params_by_name(), int(state["step"])
        self.model.load_numpy(group(state, "params"))
        mu, nu = group(state, "opt/mu"), group(state, "opt/nu")
        # Through load_state_dict, so torch puts each entry where its AdamW variant (fused or not) wants it.
        sd = self.opt.state_dict()
        index = {id(p): i for i, p in enumerate(p for g in self.opt.param_groups for p in g["params"])}
        sd["state"] = {} if step == 0 else {
            index[id(p)]: {"step": torch.tensor(float(step)), "exp_avg": torch.from_numpy(np.array(mu[k], np.float32)),
                           "exp_avg_sq": torch.from_numpy(np.array(nu[k], np.float32))} for k, p in params.items()}
        self.opt.load_state_dict(sd)
        self.step_count = step
        if rng and "rng/cpu" in state:
            torch.set_rng_state(torch.from_numpy(np.array(state["rng/cpu"], np.uint8)))
        if rng and "rng/cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(torch.from_numpy(np.array(state["rng/cuda"], np.uint8)), self.device)

    @torch.no_grad()
    def finite(self) -> bool:
        """Whether every parameter and AdamW moment is finite: checked before a checkpoint is written, since a
        finite loss at step n does not prove the update of step n left finite parameters."""
        tensors = [p for p in self._params_by_name().values()]
        tensors += [t for st in self.opt.state.values() for k, t in st.items() if k in ("exp_avg", "exp_avg_sq")]
        return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())

    def save(self, directory: Path) -> None:
        """The named state as DIR/state.safetensors; rank 0 writes (the ranks hold the same state)."""
        state = self.train_state_numpy()
        if not is_distributed() or torch.distributed.get_rank() == 0:
            write_safetensors_state(Path(directory), state)

    def restore(self, directory: Path) -> None:
        self.load_train_state_numpy(read_safetensors_state(Path(directory)))
