"""Every attention path of jaxgpt.gpt, in training mode too: causality with dropout on, and the explicit
path (`causal_attention`) against the fused one (jax.nn.dot_product_attention) and against torch.

The explicit path runs whenever dropout is active in training (the fused kernels have no dropout on
the probabilities: the `poetry-original` preset trains through it) and, on the CPU backend, for every
attention (it is faster there). The other parity tests run in eval mode with dropout 0, so a mask that
let a position see a future token only in training would pass them. Planted bugs these tests catch
(checked by hand, see the final report of the change): `jnp.tril(..., k=1)` in causal_attention (each
position sees one future token) fails all three model tests below.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx

from jaxgpt.common.config import PRESETS
from jaxgpt.gpt import GPT, causal_attention
from parity_tests.helpers import FWD_ATOL, assert_close, make_twins, max_diffs

# The poetry-original style (ReLU, untied head with bias) with its dropout 0.2, at test size.
CFG = dataclasses.replace(PRESETS["tiny-untied"], dropout=0.2)
B, T = 2, 12


@partial(jax.jit, static_argnums=0)
def _train_logits(graphdef, state, idx):
    return nnx.merge(graphdef, state)(idx)[0]


def _train_model(cfg, weights, attn_impl=None):
    m = GPT(cfg, rngs=nnx.Rngs(params=0, dropout=7), attn_impl=attn_impl)
    m.load_numpy(weights)
    m.train()
    return m


@pytest.fixture(scope="module")
def weights():
    _, tm = make_twins(CFG, seed=0)
    return tm.state_numpy()


def test_training_attention_is_causal_with_dropout(weights):
    """Changing token t leaves every earlier position's logits bit-identical, with dropout on and the
    same dropout masks (the same RNG state for both passes)."""
    m = _train_model(CFG, weights)
    graphdef, state = nnx.split(m)  # one state, merged twice: the dropout streams start from the same counts
    idx = np.random.default_rng(1).integers(0, CFG.vocab_size, (B, T)).astype(np.int32)
    t = 5
    changed = idx.copy()
    changed[:, t] = (changed[:, t] + 1) % CFG.vocab_size
    a, b = np.asarray(_train_logits(graphdef, state, idx)), np.asarray(_train_logits(graphdef, state, changed))
    assert max_diffs(a[:, :t], b[:, :t])[0] == 0.0, "a future token changed earlier logits in training mode"
    assert max_diffs(a[:, t:], b[:, t:])[0] > 1e-4, "the changed token had no effect"
    # The masks are really the same in both passes, and dropout really is on (else this tests eval mode).
    assert np.array_equal(a, np.asarray(_train_logits(graphdef, state, idx))), "dropout masks differ between passes"
    m.eval()
    assert max_diffs(a, np.asarray(m(jnp.asarray(idx))[0]))[0] > 1e-3, "training output equals eval: dropout is off"


@partial(jax.jit, static_argnums=(0, 4))
def _grad_wpe(graphdef, params, rest, idx, t):
    # copy=True: fresh Variables at the grad's trace level (dropout advances its RNG counts), as the trainer does
    return jax.grad(lambda p, r: jnp.sum(nnx.merge(graphdef, p, r, copy=True)(idx)[0][:, t]))(params, rest)


def test_training_attention_gradient_is_causal_with_dropout(weights):
    """nanodo-style through the dropout path: d logits[:, t] / d wpe[s] is zero for every s > t."""
    m = _train_model(CFG, weights)
    graphdef, params, rest = nnx.split(m, nnx.Param, ...)
    idx = np.random.default_rng(2).integers(0, CFG.vocab_size, (B, T)).astype(np.int32)
    t = 6
    g = nnx.merge(graphdef, _grad_wpe(graphdef, params, rest, jnp.asarray(idx), t), rest)
    wpe = g.state_numpy()["transformer.wpe.weight"]
    assert not np.any(wpe[t + 1:]), f"output at {t} depends on later positions in training mode"
    assert np.all(np.abs(wpe[: t + 1]).max(axis=1) > 0), f"output at {t} ignores an earlier position"


def test_explicit_path_matches_fused_path_and_torch_as_dropout_vanishes(weights):
    """Training mode with dropout rate 1e-9 (every unit kept, scale 1 in fp32) takes the explicit path; it
    must give the fused path's logits (eval mode, jax.nn.dot_product_attention) and torch's, training
    mode with the same rate."""
    cfg = dataclasses.replace(CFG, dropout=1e-9)
    idx = np.random.default_rng(3).integers(0, cfg.vocab_size, (B, T)).astype(np.int32)
    explicit = _train_model(cfg, weights, attn_impl="xla")
    assert not explicit.transformer.h[0].attn.attn_dropout.deterministic  # the dropout branch is the one run
    got = np.asarray(explicit(jnp.asarray(idx))[0])
    fused = _train_model(cfg, weights, attn_impl="xla")
    fused.eval()  # dropout off: jax.nn.dot_product_attention(implementation="xla")
    assert_close(got, fused(jnp.asarray(idx))[0], atol=FWD_ATOL, name="explicit (training) vs fused (eval)")
    _, tm = make_twins(cfg, seed=0)
    tm.load_numpy(weights)
    tm.train()
    with torch.no_grad():
        want = tm(torch.as_tensor(idx))[0].numpy()
    assert_close(got, want, atol=FWD_ATOL, name="explicit (training) vs torch (training)")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_causal_attention_function(dtype):
    """The function alone, on random q, k, v: equal to jax.nn.dot_product_attention (xla) and, in fp32,
    to torch's scaled_dot_product_attention; bf16 inputs give bf16 outputs from fp32 scores."""
    rng = np.random.default_rng(4)
    q, k, v = (rng.normal(0, 1, (2, 9, 3, 5)).astype(np.float32) for _ in range(3))  # (B, T, nh, hs)
    jq, jk, jv = (jnp.asarray(a, dtype) for a in (q, k, v))
    got = causal_attention(jq, jk, jv)
    assert got.dtype == dtype
    want = jax.nn.dot_product_attention(jq, jk, jv, is_causal=True, implementation="xla")
    tol = FWD_ATOL if dtype == jnp.float32 else 2e-2  # bf16 rounding of the probabilities / outputs
    assert_close(np.asarray(got, np.float32), np.asarray(want, np.float32), atol=tol, name="vs dot_product_attention")
    if dtype == jnp.float32:
        tq, tk, tv = (torch.as_tensor(a).transpose(1, 2) for a in (q, k, v))
        ty = F.scaled_dot_product_attention(tq, tk, tv, is_causal=True).transpose(1, 2).numpy()
        assert_close(got, ty, atol=FWD_ATOL, name="vs torch sdpa")
