"""Optimiser configuration and learning-rate schedule, framework-free (shared with torchref).

The recipe is the GPT-2 reproduction's (build-nanogpt): AdamW with betas (0.9, 0.95), eps 1e-8,
weight decay only on >= 2-D parameters (matmuls and embeddings; never biases or LayerNorm
gains), global-norm clipping, linear warm-up then cosine decay to a floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 6e-4  # peak learning rate, reached at the end of warm-up
    min_lr_ratio: float = 0.1  # the cosine ends at lr * min_lr_ratio (GPT-2 reproduction: 10%)
    warmup_steps: int = 715  # linear warm-up from lr/warmup_steps to lr
    max_steps: int = 19073  # the cosine reaches its floor here; constant afterwards
    weight_decay: float = 0.1  # decoupled (AdamW), on >= 2-D parameters only
    beta1: float = 0.9
    beta2: float = 0.95  # lower than Adam's 0.999: adapts faster to the changing loss landscape
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global L2 norm of the gradient; 0 disables clipping

    def __post_init__(self) -> None:
        if not (self.lr > 0 and math.isfinite(self.lr)):  # written so that nan fails too
            raise ValueError(f"lr={self.lr} must be a finite number > 0")
        if self.warmup_steps < 0 or self.max_steps < 1:
            raise ValueError(f"need warmup_steps >= 0 and max_steps >= 1, got {self.warmup_steps}, {self.max_steps}")
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} exceeds max_steps={self.max_steps}; pass a --warmup_steps "
                             f"<= {self.max_steps} (or a longer --max_steps)")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")


def lr_at(step: int, cfg: OptimConfig) -> float:
    """Learning rate for 0-based `step` (the value the JAX schedule computes in jnp)."""
    min_lr = cfg.lr * cfg.min_lr_ratio
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if step >= cfg.max_steps:
        return min_lr
    ratio = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - min_lr)
