"""AdamW for jaxgpt in optax, matching `torchref/train/optimizer.py` update for update.

optax's adamw defaults to weight_decay=1e-4 (torch: 1e-2) and decays every leaf; both are
set explicitly here: the decay value from OptimConfig and a mask selecting >= 2-D parameters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxgpt.common.schedule import OptimConfig


def lr_schedule(cfg: OptimConfig) -> optax.Schedule:
    """jnp version of `jaxgpt.common.schedule.lr_at` (optax passes the 0-based update count)."""
    min_lr = cfg.lr * cfg.min_lr_ratio

    def schedule(step: jax.Array) -> jax.Array:
        step = jnp.asarray(step, jnp.float32)
        warm = cfg.lr * (step + 1) / max(cfg.warmup_steps, 1)
        ratio = jnp.clip((step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps), 0.0, 1.0)
        cosine = min_lr + 0.5 * (1.0 + jnp.cos(jnp.pi * ratio)) * (cfg.lr - min_lr)
        cosine = jnp.where(step >= cfg.max_steps, min_lr, cosine)  # the floor, also when warmup == max_steps
        return jnp.where(step < cfg.warmup_steps, warm, cosine)

    return schedule


def decay_mask(params):
    """True for parameters that get weight decay: matrices and embeddings, not biases / gains."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    """Clip the global gradient norm, then AdamW with the warm-up + cosine schedule."""
    adamw = optax.adamw(
        lr_schedule(cfg), b1=cfg.beta1, b2=cfg.beta2, eps=cfg.eps, weight_decay=cfg.weight_decay, mask=decay_mask
    )
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adamw) if cfg.grad_clip > 0 else adamw
