"""jaxgpt.makemore vs torchref.makemore: every model of the ladder, and the hand-written backward pass.

Twins share weights through state_numpy / load_numpy (the same names and shapes on both sides),
with noise added so unit gains and zero biases cannot hide a bug. For every model: logits in eval
and training mode, loss and every parameter's gradient; one optimiser step through the Trainers;
BatchNorm running statistics after several steps. The backprop-ninja MLP's hand-written gradients
(every intermediate, fused and unfused) must equal autodiff in each framework to 1e-6 (fp32).
Tiny configs keep the file fast; the full-size recipes are scripts/makemore.py --ladder.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jaxgpt.common.makemore import config as C
from jaxgpt.common.makemore import data
from jaxgpt.makemore import layers as jlayers
from jaxgpt.makemore import train as jtrain
from parity_tests.helpers import (
    FWD_ATOL,
    GRAD_RTOL,
    assert_close,
    assert_tree_close,
    seed_all,
    split_key_bias,
)
from torchref.makemore import layers as tlayers
from torchref.makemore import train as ttrain

TRAINABLE = [m for m in C.MODELS if m != "bigram"]
BN_MODELS = ("bn-mlp", "bn-mlp-deep", "backprop", "wavenet")
B = 16  # batch


def tiny(model: str, **train) -> tuple[C.ModelConfig, C.TrainConfig]:
    """A small version of each preset (same structure, small widths); `train` overrides its TrainConfig."""
    p = C.get_preset(model)
    if p.model.is_window:
        block = 4 if model == "wavenet" else p.model.block_size
        mcfg = dataclasses.replace(p.model, block_size=block, n_embd=5, n_hidden=12,
                                   n_layer=min(p.model.n_layer, 3), bn_momentum=0.1)
    else:
        mcfg = dataclasses.replace(p.model, block_size=9, n_embd=8, n_hidden=12, n_layer=2, n_head=2)
    return mcfg, dataclasses.replace(p.train, batch_size=B if p.train.batch_size else 0, **train)


def twins(model: str, seed: int = 0, noise: float = 0.05, **train):
    """(jax Trainer, torch Trainer) of the tiny `model` holding identical, perturbed weights."""
    mcfg, tcfg = tiny(model, **train)
    seed_all(seed)
    tt = ttrain.Trainer(mcfg, tcfg, seed)
    w = tt.state_numpy()
    rng = np.random.default_rng(seed)
    w = {k: (v + rng.normal(0, noise, v.shape) if "running" not in k else v).astype(np.float32) for k, v in w.items()}
    tt.load_numpy(w)
    jt = jtrain.Trainer(mcfg, tcfg, seed)
    jt.load_numpy(w)
    return jt, tt


def batch(mcfg: C.ModelConfig, n: int = B, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    words = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "zoe", "li", "x"]
    build = data.build_windows if mcfg.is_window else data.build_sequences
    X, Y = build(words, mcfg.block_size)
    ix = np.random.default_rng(seed).integers(0, len(X), n)
    return X[ix], Y[ix]


def jax_loss_and_grads(model, x, y):
    loss, g = nnx.value_and_grad(lambda m: m.loss(jnp.asarray(x), jnp.asarray(y)))(model)
    return float(loss), {".".join(map(str, p)): np.asarray(v[...]) for p, v in nnx.to_flat_state(g)}


def torch_loss_and_grads(model, x, y):
    model.zero_grad(set_to_none=True)
    loss = model.loss(torch.as_tensor(x).long(), torch.as_tensor(y).long())
    loss.backward()
    return float(loss.detach()), {k: p.grad.numpy() for k, p in model.named_parameters()}


@pytest.mark.parametrize("model", TRAINABLE)
def test_twin_parity(model):
    """One pair of twins per model (building JAX models is the slow part): names, forward, loss,
    gradients, one optimiser step and, for BatchNorm models, the running statistics after training."""
    jt, tt = twins(model)
    js, ts = jt.state_numpy(), tt.state_numpy()
    assert {k: v.shape for k, v in js.items()} == {k: v.shape for k, v in ts.items()}
    assert jt.num_params() == tt.num_params()
    x, y = batch(jt.config)
    # eval mode (running statistics) first: the training-mode pass below updates them
    assert_close(jt.logits(x), tt.logits(x), atol=FWD_ATOL, name=f"{model} eval logits")
    assert_close(jt.loss(x, y), tt.loss(x, y), atol=FWD_ATOL, name=f"{model} eval loss")
    jt.model.train()
    tt.model.train()
    jl, jg = jax_loss_and_grads(jt.model, x, y)
    tl, tg = torch_loss_and_grads(tt.model, x, y)
    assert_close(jl, tl, atol=FWD_ATOL, name=f"{model} training loss")
    if model == "backprop":  # BatchNorm cancels b1: its true gradient is 0, both sides give ~1e-9 noise
        assert_close(jg.pop("b1"), tg.pop("b1"), atol=1e-6, name="backprop b1 gradient")
    assert_tree_close(jg, tg, rtol=GRAD_RTOL, name=f"{model} gradients")
    # the training-mode forward updated BatchNorm statistics identically on both sides
    assert_tree_close(jt.state_numpy(), tt.state_numpy(), rtol=GRAD_RTOL, name=f"{model} state after forward")

    # one optimiser step (SGD or AdamW, the preset's) through the Trainers
    X, Y = batch(jt.config, n=B)  # the shapes of x, y: no new compilation for the eval below
    for t in (jt, tt):
        t.set_train_data(X, Y)
    full = jt.train_cfg.batch_size == 0
    idx = None if full else data.batch_indices(np.random.default_rng(0), len(X), 10, B)
    before = jt.state_numpy()
    lj = jt.train_steps(None if full else idx[:1], 1)
    lt = tt.train_steps(None if full else idx[:1], 1)
    assert_close(lj, lt, atol=FWD_ATOL, name=f"{model} step loss")
    after_j, after_t = jt.state_numpy(), tt.state_numpy()
    assert [k for k in before if not np.allclose(before[k], after_j[k])], "the optimiser step changed nothing"
    # The transformer's key bias has a zero true gradient (softmax ignores it), so both sides hold
    # ~1e-9 noise, which AdamW's first step scales to +-lr. Compare the query and value thirds; the
    # gradient test above already matched the key bias's (zero) gradient.
    (after_j, _), (after_t, _) = (split_key_bias(a, jt.config.n_embd) for a in (after_j, after_t))
    assert_tree_close(after_j, after_t, rtol=GRAD_RTOL, name=f"{model} after one {jt.train_cfg.optimizer} step")

    if model in BN_MODELS:  # nine more SGD steps: running mean/var stay identical
        for i in range(1, 10):  # one step per call: the compiled 1-step function is reused
            jt.train_steps(idx[i: i + 1])
            tt.train_steps(idx[i: i + 1])
        js, ts = jt.state_numpy(), tt.state_numpy()
        stats = [k for k in js if "running" in k]
        assert stats and not np.allclose(js[stats[0]], before[stats[0]])
        assert_tree_close({k: js[k] for k in stats}, {k: ts[k] for k in stats}, rtol=GRAD_RTOL,
                          name=f"{model} running stats after 10 steps")
        assert_tree_close(js, ts, rtol=GRAD_RTOL, name=f"{model} after 10 steps")
        assert_close(jt.loss(X, Y), tt.loss(X, Y), atol=FWD_ATOL, name=f"{model} eval loss after training")


@pytest.mark.parametrize("model, train", [
    ("transformer", dict(schedule="cosine", lr=1e-2, lr_final=1e-3, warmup_steps=3, steps=8)),
    ("wavenet", dict(lr_decay_step=4, steps=8)),
])
def test_scheduled_steps_twins(model, train):
    """Eight steps through a warm-up + cosine or a step decay, every step at its own rate: the
    JAX Trainer runs them as one compiled chunk (rates computed on the host), torch one by one."""
    jt, tt = twins(model, **train)
    X, Y = batch(jt.config, n=64)
    idx = data.batch_indices(np.random.default_rng(0), len(X), 8, B)
    for t in (jt, tt):
        t.set_train_data(X, Y)
    jt.train_steps(idx)
    for i in range(8):
        tt.train_steps(idx[i: i + 1])
    assert len({C.lr_at(s, jt.train_cfg) for s in range(8)}) >= 2  # the rate really changes
    # the key bias third: zero true gradient, see test_twin_parity
    (js, _), (ts, _) = (split_key_bias(t.state_numpy(), jt.config.n_embd) for t in (jt, tt))
    assert_tree_close(js, ts, rtol=GRAD_RTOL, name=f"{model} after 8 scheduled steps")


def test_bigram_counts():
    mcfg, tcfg = tiny("bigram")
    jt, tt = jtrain.Trainer(mcfg, tcfg), ttrain.Trainer(mcfg, tcfg)
    X, Y = batch(mcfg, n=200)
    jt.fit_counts(X, Y)
    tt.fit_counts(X, Y)
    assert_tree_close(jt.state_numpy(), tt.state_numpy(), atol=0.0, name="counts")
    assert jt.state_numpy()["counts"].sum() == 200
    assert_close(jt.loss(X, Y), tt.loss(X, Y), atol=FWD_ATOL, name="count model NLL")


# ---- lecture 4: the hand-written backward pass ----------------------------------------------------
def backprop_case():
    """Lecture 4's sizes: ctx 3, emb 10, hidden 64, batch 32, with its (non-zero) init."""
    mcfg = C.ModelConfig("backprop", block_size=3, n_embd=10, n_hidden=64)
    X, Y = batch(mcfg, n=32, seed=3)
    seed_all(0)
    tm = ttrain.build_model(mcfg)
    jm = jtrain.build_model(mcfg)
    jlayers.load_numpy(jm, tlayers.state_numpy(tm))
    return mcfg, X, Y, jm, tm


@pytest.mark.parametrize("fused", [False, True])
def test_handwritten_backward_equals_autodiff_torch(fused):
    _, X, Y, _, tm = backprop_case()
    x, y = torch.as_tensor(X).long(), torch.as_tensor(Y).long()
    v = tm.forward_pass(x, y)
    for t in v.values():
        t.retain_grad()
    v["loss"].backward()
    d = tm.backward(x, y, {k: t.detach() for k, t in v.items()}, fused=fused)
    auto = {**{k: t.grad for k, t in v.items() if t.grad is not None}, **{k: p.grad for k, p in tm.named_parameters()}}
    checked = sorted(set(d) & set(auto))
    assert len(checked) == (13 if fused else 26), checked  # every gradient the lecture writes out
    for k in checked:
        assert_close(d[k], auto[k], atol=1e-6, name=f"torch d{k}")


@pytest.mark.parametrize("fused", [False, True])
def test_handwritten_backward_equals_autodiff_jax(fused):
    _, X, Y, jm, _ = backprop_case()
    x, y = jnp.asarray(X), jnp.asarray(Y)
    v = jm.forward_pass(x, y)
    d = jm.backward(x, y, v, fused=fused)
    _, auto = jax_loss_and_grads(jm, X, Y)
    for k in auto:
        assert_close(d[k], auto[k], atol=1e-6, name=f"jax d{k}")
    # intermediates: autodiff of the loss with respect to the logits and the BatchNorm input
    names = ["logits", "h", "hpreact", "hprebn", "embcat"]
    g = jax.grad(lambda z: _loss_from(jm, v, z, y))(v["logits"])
    assert_close(d["logits"], g, atol=1e-6, name="jax dlogits")
    assert all(k in d for k in names)


def _loss_from(jm, v, logits, y):
    n = logits.shape[0]
    return -jax.nn.log_softmax(logits, 1)[jnp.arange(n), y].mean()


@pytest.mark.parametrize("fused", [False, True])
def test_handwritten_backward_twins(fused):
    """Every intermediate gradient is the same in both frameworks."""
    _, X, Y, jm, tm = backprop_case()
    x, y = torch.as_tensor(X).long(), torch.as_tensor(Y).long()
    with torch.no_grad():
        dt = tm.backward(x, y, tm.forward_pass(x, y), fused=fused)
    dj = jm.backward(jnp.asarray(X), jnp.asarray(Y), jm.forward_pass(jnp.asarray(X), jnp.asarray(Y)), fused=fused)
    assert sorted(dj) == sorted(dt)
    dj, dt = {k: np.asarray(v) for k, v in dj.items()}, {k: v.numpy() for k, v in dt.items()}
    # b1 (cancelled by BatchNorm) and logit_maxes (cancelled by the softmax) have gradient exactly 0:
    # both sides hold ~1e-9 rounding noise there, so those two are compared in absolute terms.
    zero = [k for k in ("b1", "logit_maxes") if k in dj]
    assert_tree_close({k: dj.pop(k) for k in zero}, {k: dt.pop(k) for k in zero}, atol=1e-6, name="zero gradients")
    assert_tree_close(dj, dt, rtol=GRAD_RTOL, name="hand-written gradients")  # twin vs twin: the suite's tolerance
