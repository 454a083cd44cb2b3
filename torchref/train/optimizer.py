"""AdamW for torchref, the mirror of `jaxgpt/train/optimizer.py`.

Weight decay on >= 2-D parameters only (two param groups, as nanoGPT's configure_optimizers);
the learning rate is set from `lr_at` before every step, and the gradient is clipped by global
norm, in the order optax applies them (clip, then AdamW).
"""

from __future__ import annotations

import torch

from jaxgpt.common.schedule import OptimConfig, lr_at


def make_optimizer(model: torch.nn.Module, cfg: OptimConfig, fused: bool | None = None) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    if fused is None:  # the fused CUDA kernel is faster; it needs every parameter on the GPU
        fused = all(p.is_cuda for p in params)
    return torch.optim.AdamW(groups, lr=lr_at(0, cfg), betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused)


def optimizer_step(model: torch.nn.Module, opt: torch.optim.Optimizer, step: int, cfg: OptimConfig) -> torch.Tensor:
    """Clip, set this step's learning rate, update. Returns the pre-clip global gradient norm."""
    params = [p for p in model.parameters() if p.grad is not None]
    if cfg.grad_clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    else:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    for group in opt.param_groups:
        group["lr"] = lr_at(step, cfg)
    opt.step()
    return norm
