"""AdamW in jaxgpt (optax) vs torchref (torch.optim): the schedule, one step, a 20-step trajectory.

The recipe (jaxgpt/common/schedule.py): betas (0.9, 0.95), eps 1e-8, weight decay only on >= 2-D
parameters, global-norm clipping at 1.0 (the runs below have pre-clip norms above 1, so clipping
is exercised), linear warm-up then cosine decay. Twins start from the same weights
(helpers.make_twins) and see the same batches. Configs have dropout 0 (the frameworks' dropout
masks cannot match): GPT-2 style ("tiny") and the poetry style ("tiny-untied": ReLU, untied head
with a bias). Tolerance: helpers.GRAD_RTOL, relative to each tensor's largest magnitude.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

from jaxgpt.common.config import PRESETS
from jaxgpt.common.schedule import OptimConfig, lr_at
from jaxgpt.train.optimizer import lr_schedule, make_optimizer
from parity_tests.helpers import (
    FWD_ATOL,
    GRAD_RTOL,
    assert_close,
    assert_tree_close,
    counting_batches,
    jax_train_steps,
    make_twins,
    split_key_bias,
    torch_train_steps,
)
from torchref.train import optimizer as topt

STEPS, B, T = 20, 4, 16
# Warm-up over the first quarter, cosine over the rest: the trajectory crosses both phases.
OPTIM = OptimConfig(lr=3e-3, min_lr_ratio=0.1, warmup_steps=5, max_steps=STEPS, weight_decay=0.1,
                    beta1=0.9, beta2=0.95, eps=1e-8, grad_clip=1.0)
CONFIGS = ["tiny", "tiny-untied"]


@pytest.mark.parametrize("cfg", [
    OPTIM,
    OptimConfig(lr=6e-4, warmup_steps=715, max_steps=19073),  # the GPT-2 124M run's schedule
    OptimConfig(lr=1e-3, warmup_steps=0, max_steps=10, min_lr_ratio=0.0),  # no warm-up, decay to 0
    OptimConfig(lr=1e-3, warmup_steps=10, max_steps=10),  # warm-up only
], ids=["test", "gpt2", "no-warmup", "warmup-only"])
def test_lr_schedule_matches_lr_at(cfg):
    """The jnp schedule optax calls equals the Python lr_at torch uses, at every step and past the end."""
    edges = [cfg.warmup_steps - 1, cfg.warmup_steps, cfg.warmup_steps + 1, cfg.max_steps - 1, cfg.max_steps]
    steps = np.unique(np.clip(np.concatenate([np.arange(min(cfg.max_steps, 50) + 5), edges,
                                              np.linspace(0, cfg.max_steps + 100, 200).astype(int)]), 0, None))
    got = np.asarray(jax.vmap(lr_schedule(cfg))(jnp.asarray(steps)))
    want = np.array([lr_at(int(s), cfg) for s in steps])
    # fp32 against float64: relative to each value, and to the peak for values near a zero floor.
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * cfg.lr, err_msg="jnp lr_schedule vs lr_at")
    # The shape of the schedule itself: warm-up starts at lr/warmup, peaks at lr, ends at the floor.
    if cfg.warmup_steps:
        assert lr_at(0, cfg) == pytest.approx(cfg.lr / cfg.warmup_steps)
    assert max(want) == pytest.approx(cfg.lr)
    assert lr_at(cfg.max_steps + 100, cfg) == pytest.approx(cfg.lr * cfg.min_lr_ratio)
    assert np.all(np.diff(want[steps >= cfg.warmup_steps]) <= 1e-12), "the cosine phase must not rise"


def test_weight_decay_only_on_matrices():
    """A step with all-zero gradients is pure weight decay: >= 2-D params shrink by lr*wd, others stay.
    On the untied config, which has every kind of parameter (matrices, embeddings, gains, biases,
    the head's weight and bias)."""
    jm, tm = make_twins(PRESETS["tiny-untied"], seed=0)
    before = tm.state_numpy()
    # JAX: the optax chain on zero gradients.
    graphdef, params, rest = nnx.split(jm, nnx.Param, ...)
    tx = make_optimizer(OPTIM)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = jax.jit(tx.update)(zeros, tx.init(params), params)
    jax_after = nnx.merge(graphdef, optax.apply_updates(params, updates), rest).state_numpy()
    # torch: the two-group AdamW on zero gradients.
    opt = topt.make_optimizer(tm, OPTIM)
    for p in tm.parameters():
        p.grad = torch.zeros_like(p)
    topt.optimizer_step(tm, opt, 0, OPTIM)
    torch_after = tm.state_numpy()

    shrink = 1.0 - lr_at(0, OPTIM) * OPTIM.weight_decay
    assert any(v.ndim < 2 for v in before.values()) and any(v.ndim >= 2 for v in before.values())
    for k, w in before.items():
        want = w * shrink if w.ndim >= 2 else w
        for after, side in ((jax_after, "jax"), (torch_after, "torch")):
            assert_close(after[k], want, rtol=1e-6, name=f"{side} {k} ({'decayed' if w.ndim >= 2 else 'not decayed'})")


@pytest.fixture(scope="module", params=CONFIGS)
def runs(request):
    cfg = PRESETS[request.param]
    assert cfg.dropout == 0.0
    jm, tm = make_twins(cfg, seed=0)
    batches = counting_batches(STEPS, B, T, cfg.vocab_size, seed=1)
    return cfg, tm.state_numpy(), jax_train_steps(jm, OPTIM, batches), torch_train_steps(tm, OPTIM, batches)


def _compare_states(cfg, init, js, ts, steps_taken, what):
    (j_rest, j_key), (t_rest, t_key) = split_key_bias(js, cfg.n_embd), split_key_bias(ts, cfg.n_embd)
    assert_tree_close(j_rest, t_rest, rtol=GRAD_RTOL, name=what)
    # The gradient-free key bias may only drift by rounding noise: far less than the ~lr per step
    # that Adam moves a parameter with a real gradient.
    _, init_key = split_key_bias(init, cfg.n_embd)
    budget = 1e-2 * sum(lr_at(i, OPTIM) for i in range(steps_taken))
    for k in init_key:
        for got, side in ((j_key[k], "jax"), (t_key[k], "torch")):
            drift = float(np.abs(got - init_key[k]).max())
            assert drift <= budget, f"{side} {k}: key bias moved {drift:.2e} > {budget:.2e} with no gradient"


def test_one_adamw_step(runs):
    cfg, init, j, t = runs
    assert_close(j["losses"][0], t["losses"][0], atol=FWD_ATOL, name="loss before the step")
    assert_close(j["grad_norms"][0], t["grad_norms"][0], rtol=GRAD_RTOL, name="pre-clip grad norm")
    assert j["grad_norms"][0] > OPTIM.grad_clip, "the step should exercise clipping"
    assert j["lrs"][0] == pytest.approx(t["lrs"][0]) == pytest.approx(OPTIM.lr / OPTIM.warmup_steps)
    _compare_states(cfg, init, j["states"][0], t["states"][0], 1, "params after one AdamW step")
    # Every parameter with a gradient moved (the step is not a no-op on either side).
    moved = [k for k in init if np.abs(t["states"][0][k] - init[k]).max() > 0.5 * lr_at(0, OPTIM)]
    assert len(moved) == len(init), f"unmoved parameters: {sorted(set(init) - set(moved))}"


def test_training_trajectory(runs):
    cfg, init, j, t = runs
    assert_close(j["losses"], t["losses"], rtol=GRAD_RTOL, name="losses over 20 steps")
    assert_close(j["grad_norms"], t["grad_norms"], rtol=GRAD_RTOL, name="grad norms over 20 steps")
    np.testing.assert_allclose(j["lrs"], t["lrs"], rtol=1e-6, err_msg="learning rates")
    _compare_states(cfg, init, j["states"][-1], t["states"][-1], STEPS, "params after 20 steps")
    # The run really trains (else matching trajectories would prove little).
    assert t["losses"][-1] < t["losses"][0] - 0.3, f"loss did not fall: {t['losses'][0]:.3f} -> {t['losses'][-1]:.3f}"
