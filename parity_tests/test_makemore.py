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
from jaxgpt.common.makemore import data, diagnostics
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


def _tail_loss(jm, name, value, y):
    """The loss recomputed from intermediate `name` of the backprop MLP's forward (autodiff's reference)."""
    n = value.shape[0]
    if name == "embcat":
        value = value @ jm.W1[...] + jm.b1[...]
        name = "hprebn"
    if name == "hprebn":
        mean, var = value.mean(0), value.var(0, ddof=1)  # Bessel, as the lecture
        value = jm.bngain[...] * (value - mean) * (var + 1e-5) ** -0.5 + jm.bnbias[...]
        name = "hpreact"
    if name == "hpreact":
        value = jnp.tanh(value)
        name = "h"
    if name == "h":
        value = value @ jm.W2[...] + jm.b2[...]
    return -jax.nn.log_softmax(value, 1)[jnp.arange(n), y].mean()


@pytest.mark.parametrize("fused", [False, True])
def test_handwritten_backward_equals_autodiff_jax(fused):
    """Every parameter's hand-written gradient, and (issue 17) the intermediates logits, h, hpreact,
    hprebn and embcat by value: jax.grad of the loss recomputed from each of them."""
    _, X, Y, jm, _ = backprop_case()
    x, y = jnp.asarray(X), jnp.asarray(Y)
    v = jm.forward_pass(x, y)
    d = jm.backward(x, y, v, fused=fused)
    _, auto = jax_loss_and_grads(jm, X, Y)
    for k in auto:
        assert_close(d[k], auto[k], atol=1e-6, name=f"jax d{k}")
    for name in ("logits", "h", "hpreact", "hprebn", "embcat"):
        g = jax.grad(lambda z, name=name: _tail_loss(jm, name, z, y))(v[name])
        assert float(jnp.abs(g).max()) > 0, name  # a real gradient, not a vacuous comparison
        assert_close(d[name], g, atol=1e-6, name=f"jax d{name} ({'fused' if fused else 'step by step'})")


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



# ---- --diagnostics: the statistics are framework-free; the twins must feed them the same numbers -----------
@pytest.mark.parametrize("model", C.DIAGNOSTIC_MODELS)
def test_diagnostics_statistics_equal_across_frameworks(model):
    """Same weights, same batch: every statistic the diagnostics plot (tanh saturation, gradient at each
    tanh output, gradient-to-data ratio per weight, update-to-data ratio of one SGD step) agrees to 1e-5."""
    jt, tt = twins(model)
    x, y = batch(jt.config, n=32)
    before = jt.state_numpy()
    snaps = [diagnostics.snapshot(jt.probe(x, y))]
    snaps.append(diagnostics.snapshot(tt.probe(x, y), snaps[0]["ranges"]))
    after = jt.state_numpy()
    assert after.keys() == before.keys() and all(
        np.array_equal(after[k], before[k]) for k in before), "probe changed the model"
    assert snaps[0]["tanh"], f"{model}: no tanh layer found"
    for group in ("tanh", "tanh_grad", "weight_grad"):
        a, b = snaps[0][group], snaps[1][group]
        assert a.keys() == b.keys(), (group, a.keys(), b.keys())
        for layer in a:
            for stat, va in a[layer].items():
                vb = b[layer][stat]
                # gradient means and stds are ~1e-3: compared relative to the layer's std, the rest absolutely
                scale = max(abs(a[layer]["std"]), 1e-30) if group != "tanh" and stat in ("mean", "std") else 1.0
                scale = max(abs(va), 1e-30) if stat == "grad_data" else scale
                assert abs(va - vb) <= 1e-5 * scale, f"{model} {group} {layer} {stat}: jax {va} torch {vb}"
    updates = []
    for t in (jt, tt):
        t.set_train_data(x, y)
        w0 = t.state_numpy()
        t.train_steps(None if t.train_cfg.batch_size == 0 else np.arange(len(x), dtype=np.int32)[None], 1)
        updates.append(diagnostics.update_ratios(w0, t.state_numpy()))
    assert updates[0].keys() == updates[1].keys() and updates[0]
    for k in updates[0]:
        assert abs(updates[0][k] - updates[1][k]) <= 1e-5, (k, updates)


# ---- the transformer's dropout -------------------------------------------------------------------------------
@torch.no_grad()
def test_dropout_off_in_eval_on_in_training_and_causal():
    """Dropout (the transformer's, nanoGPT's placement): off in evaluation, so the twins agree with it
    set; on in training steps, the same masks for the same key; causal with the masks held fixed; and a
    rate -> 0 equals no dropout."""
    jt, tt = twins("transformer", noise=0.05)
    mcfg = dataclasses.replace(jt.config, dropout=0.2)
    jd, td = jtrain.Trainer(mcfg, jt.train_cfg), ttrain.Trainer(mcfg, tt.train_cfg)
    for a, b in ((jd, jt), (td, tt)):
        a.load_numpy(b.state_numpy())
    x, y = batch(mcfg)
    # evaluation: no dropout, so the twins with dropout 0.2 equal the ones without, and each other
    assert_close(jd.logits(x), jt.logits(x), atol=FWD_ATOL, name="jax eval logits with dropout 0.2")
    assert_close(td.logits(x), jd.logits(x), atol=FWD_ATOL, name="torch vs jax eval logits, dropout 0.2")
    jd.model.train()
    td.model.train()
    key = jax.random.key(3)

    def gen():
        return torch.Generator().manual_seed(3)

    xj, yj, xt, yt = jnp.asarray(x), jnp.asarray(y), torch.as_tensor(x).long(), torch.as_tensor(y).long()
    # training: masks on (the loss moves), the same masks for the same key / generator seed
    lj, lj2 = float(jd.model.loss(xj, yj, key)), float(jd.model.loss(xj, yj, key))
    lt, lt2 = float(td.model.loss(xt, yt, gen())), float(td.model.loss(xt, yt, gen()))
    assert lj == lj2 and lt == lt2
    assert abs(lj - float(jt.model.loss(xj, yj))) > 1e-3 and abs(lt - float(tt.model.loss(xt, yt))) > 1e-3
    # causality with the dropout masks held fixed: changing the last character changes no earlier output
    x2 = x.copy()
    x2[:, -1] = (x2[:, -1] + 1) % 27
    for f in (lambda z: np.asarray(jd.model(jnp.asarray(z), key)),
              lambda z: td.model(torch.as_tensor(z).long(), gen()).numpy()):
        a, b = f(x), f(x2)
        assert_close(a[:, :-1], b[:, :-1], atol=0.0, name="outputs before the changed position")
        assert np.abs(a[:, -1] - b[:, -1]).max() > 1e-4
    # a dropout rate -> 0 in training equals no dropout
    tiny_rate = dataclasses.replace(mcfg, dropout=1e-7)
    for T, ref, xx, yy, rng in ((jtrain.Trainer, jt, xj, yj, key), (ttrain.Trainer, tt, xt, yt, gen())):
        t = T(tiny_rate, jt.train_cfg)
        t.load_numpy(ref.state_numpy())
        t.model.train()
        assert_close(float(t.model.loss(xx, yy, rng)), float(ref.model.loss(xx, yy)), atol=1e-5, name="dropout -> 0")
