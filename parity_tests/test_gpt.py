"""jaxgpt.gpt vs torchref.gpt: every submodule, logits, loss, gradients, KV-cache generation, causality.

Twins share weights through `state_numpy` / `load_numpy` (parity_tests/helpers.make_twins), with
noise added to every parameter so zero biases and unit gains cannot hide a bug. Three configs:
GPT-2 style ("tiny"), the poetry style ("tiny-untied": ReLU, untied head with a bias) and a
padded vocabulary (99 real ids in 128 rows). Tolerances are the suite's (helpers.FWD_ATOL,
helpers.GRAD_RTOL); the optimizer step and the training trajectory are in test_optimizer.py.
Generation: greedy tokens across twins and cache modes; seeded sampling (temperature, top-k,
top-p) cached == uncached past block_size, seed reproducibility, the sampling rule's
distribution in both twins, stop_token, and padded ids never sampled.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jaxgpt.common.config import PRESETS
from jaxgpt.gpt import _jit_cached, _jit_forward
from parity_tests.helpers import FWD_ATOL, GRAD_RTOL, assert_close, assert_tree_close, make_twins, max_diffs

CONFIGS = {
    "tiny": PRESETS["tiny"],
    "tiny-untied": PRESETS["tiny-untied"],
    "tiny-padded": dataclasses.replace(PRESETS["tiny"], padded_vocab_size=128),
}
B, T = 2, 12
P = 4  # prefill length of the KV-cache test


def jfwd(jm, idx):
    """The JAX twin's logits through generate()'s own compiled forward (one compile per shape)."""
    graphdef, state = nnx.split(jm)
    return np.asarray(_jit_forward(graphdef, state, jnp.asarray(idx)))


def jcached(jm, idx, cache, pos):
    graphdef, state = nnx.split(jm)
    logits, cache = _jit_cached(graphdef, state, jnp.asarray(idx), cache, jnp.int32(pos))
    return np.asarray(logits), cache


@pytest.fixture(scope="module", params=list(CONFIGS))
def twins(request):
    cfg = CONFIGS[request.param]
    jm, tm = make_twins(cfg, seed=0)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, cfg.vocab_size, (B, T))
    tgt = rng.integers(0, cfg.vocab_size, (B, T))
    tgt[0, :3] = -1  # ignored positions must be ignored the same way
    x = rng.normal(0.0, 1.0, (B, T, cfg.n_embd)).astype(np.float32)  # a residual-stream input
    return cfg, jm, tm, idx, tgt, x


def _j(a):
    return jnp.asarray(a)


def _t(a):
    return torch.as_tensor(np.asarray(a))


def test_weights_identical(twins):
    _, jm, tm, *_ = twins
    assert_tree_close(jm.state_numpy(), tm.state_numpy(), atol=0.0, name="state_numpy")


def test_embeddings(twins):
    _, jm, tm, idx, *_ = twins
    with torch.no_grad():
        assert_close(jm.transformer.wte(_j(idx)), tm.transformer.wte(_t(idx)), atol=FWD_ATOL, name="wte")
        pos = np.arange(T)
        assert_close(jm.transformer.wpe(_j(pos)), tm.transformer.wpe(_t(pos)), atol=FWD_ATOL, name="wpe")


def test_layernorm(twins):
    _, jm, tm, _, _, x = twins
    with torch.no_grad():
        for name in ("ln_1", "ln_2"):
            assert_close(getattr(jm.transformer.h[1], name)(_j(x)), getattr(tm.transformer.h[1], name)(_t(x)),
                         atol=FWD_ATOL, name=name)
        assert_close(jm.transformer.ln_f(_j(x)), tm.transformer.ln_f(_t(x)), atol=FWD_ATOL, name="ln_f")


def test_attention(twins):
    _, jm, tm, _, _, x = twins
    with torch.no_grad():
        assert_close(jm.transformer.h[0].attn(_j(x))[0], tm.transformer.h[0].attn(_t(x))[0], atol=FWD_ATOL, name="attn")


def test_mlp(twins):
    _, jm, tm, _, _, x = twins
    with torch.no_grad():
        assert_close(jm.transformer.h[0].mlp(_j(x)), tm.transformer.h[0].mlp(_t(x)), atol=FWD_ATOL, name="mlp")


def test_block(twins):
    _, jm, tm, _, _, x = twins
    with torch.no_grad():
        assert_close(jm.transformer.h[1](_j(x))[0], tm.transformer.h[1](_t(x))[0], atol=FWD_ATOL, name="block")


@partial(jax.jit, static_argnums=0)
def _jax_logits_loss(graphdef, state, idx, tgt):
    return nnx.merge(graphdef, state)(idx, tgt)


def test_logits_and_loss(twins):
    cfg, jm, tm, idx, tgt, _ = twins
    graphdef, state = nnx.split(jm)
    jl, jloss = _jax_logits_loss(graphdef, state, _j(idx), _j(tgt))
    with torch.no_grad():
        tl, tloss = tm(_t(idx), _t(tgt))
    assert jl.shape == tl.shape == (B, T, cfg.vocab_size)  # padded rows are cut on both sides
    assert_close(jl, tl, atol=FWD_ATOL, name="logits")
    assert_close(jloss, tloss, atol=FWD_ATOL, name="loss")
    # The ignored targets really are ignored: the loss equals the mean over the kept positions only.
    keep = tgt >= 0
    logp = jax.nn.log_softmax(jl, axis=-1)
    manual = -np.take_along_axis(np.asarray(logp), np.where(keep, tgt, 0)[..., None], -1)[..., 0][keep].mean()
    assert_close(jloss, manual, atol=FWD_ATOL, name="loss vs manual mean")


@partial(jax.jit, static_argnums=0)
def _jax_loss_and_grads(graphdef, params, rest, idx, tgt):
    return jax.value_and_grad(lambda p: nnx.merge(graphdef, p, rest)(idx, tgt)[1])(params)


def jax_grads(jm, idx, tgt) -> tuple[float, dict[str, np.ndarray]]:
    """Loss and {torch name: gradient in torch layout} of the JAX twin."""
    graphdef, params, rest = nnx.split(jm, nnx.Param, ...)
    loss, grads = _jax_loss_and_grads(graphdef, params, rest, _j(idx), _j(tgt))
    # Merging the gradient tree into the model's graph reuses state_numpy's name table and transposes.
    return float(loss), nnx.merge(graphdef, grads, rest).state_numpy()


def torch_grads(tm, idx, tgt) -> tuple[float, dict[str, np.ndarray]]:
    tm.zero_grad(set_to_none=True)
    _, loss = tm(_t(idx), _t(tgt))
    loss.backward()
    return float(loss.detach()), {k: p.grad.numpy().copy() for k, p in tm.named_parameters()}


def test_gradients(twins):
    cfg, jm, tm, idx, tgt, _ = twins
    jloss, jg = jax_grads(jm, idx, tgt)
    tloss, tg = torch_grads(tm, idx, tgt)
    assert_close(jloss, tloss, atol=FWD_ATOL, name="loss")
    C = cfg.n_embd
    # The key bias has an exactly zero true gradient (it adds q.b_k to every score of a query's row,
    # and softmax is shift-invariant), so both sides hold only rounding noise there and a relative
    # comparison of noise with noise is meaningless. Check it is noise (tiny against the layer's
    # other c_attn bias gradients), then compare the query and value parts at the suite's rtol.
    for k in [k for k in jg if k.endswith("attn.c_attn.bias")]:
        scale = np.abs(tg[k]).max()
        for g, side in ((jg[k], "jax"), (tg[k], "torch")):
            assert np.abs(g[C: 2 * C]).max() <= GRAD_RTOL * scale, f"{side} {k} key part is not ~0"
        jg[k], tg[k] = np.delete(jg[k], np.s_[C: 2 * C]), np.delete(tg[k], np.s_[C: 2 * C])
    assert_tree_close(jg, tg, rtol=GRAD_RTOL, name="gradients")
    if cfg.padded_vocab_size:
        # Padded rows are never used as inputs nor predicted: their gradient is exactly zero.
        assert not np.any(jg["transformer.wte.weight"][cfg.vocab_size:])
        assert not np.any(tg["transformer.wte.weight"][cfg.vocab_size:])


def test_causality_future_token(twins):
    cfg, jm, tm, idx, *_ = twins
    t = 5
    changed = idx.copy()
    changed[:, t] = (changed[:, t] + 1) % cfg.vocab_size
    j0, j1 = jfwd(jm, idx), jfwd(jm, changed)
    with torch.no_grad():
        t0, t1 = tm(_t(idx))[0].numpy(), tm(_t(changed))[0].numpy()
    for a, b, side in ((j0, j1, "jax"), (t0, t1, "torch")):
        assert max_diffs(a[:, :t], b[:, :t])[0] == 0.0, f"{side}: a future token changed earlier logits"
        assert max_diffs(a[:, t:], b[:, t:])[0] > 1e-4, f"{side}: the changed token had no effect"


@partial(jax.jit, static_argnums=(0, 4))
def _jax_grad_logits_at(graphdef, params, rest, idx, t):
    return jax.grad(lambda p: jnp.sum(nnx.merge(graphdef, p, rest)(idx)[0][:, t]))(params)


def test_causality_gradient(twins):
    """nanodo-style: d logits[:, t] / d (position-embedding row s) is zero for every s > t.

    Row s of wpe is added to the input at position s only, so its gradient is the sensitivity
    of the output at t to the input at s, through the whole real forward pass.
    """
    cfg, jm, tm, idx, *_ = twins
    t = 6
    graphdef, params, rest = nnx.split(jm, nnx.Param, ...)

    grads = _jax_grad_logits_at(graphdef, params, rest, _j(idx), t)
    jg = nnx.merge(graphdef, grads, rest).state_numpy()["transformer.wpe.weight"]
    tm.zero_grad(set_to_none=True)
    tm(_t(idx))[0][:, t].sum().backward()
    tg = tm.transformer.wpe.weight.grad.numpy()
    for g, side in ((jg, "jax"), (tg, "torch")):
        assert not np.any(g[t + 1:]), f"{side}: output at {t} depends on later positions"
        assert np.all(np.abs(g[: t + 1]).max(axis=1) > 0), f"{side}: output at {t} ignores an earlier position"


def test_kv_cache_logits(twins):
    """Prefill + one-token steps through the KV cache give the full forward's logits, in both twins."""
    cfg, jm, tm, idx, *_ = twins
    full_j = jfwd(jm, idx)
    with torch.no_grad():
        full_t = tm(_t(idx))[0].numpy()
        jl, jc = jcached(jm, idx[:, :P], jm.init_cache(B), 0)
        tl, tc = tm.forward_cached(_t(idx[:, :P]), tm.init_cache(B), 0)
        steps_j, steps_t = [jl], [tl.numpy()]
        for pos in range(P, T):
            jl, jc = jcached(jm, idx[:, pos: pos + 1], jc, pos)
            tl, tc = tm.forward_cached(_t(idx[:, pos: pos + 1]), tc, pos)
            steps_j.append(jl)
            steps_t.append(tl.numpy())
    cj, ct = np.concatenate(steps_j, 1), np.concatenate(steps_t, 1)
    assert_close(cj, full_j, atol=FWD_ATOL, name="jax cached vs full")
    assert_close(ct, full_t, atol=FWD_ATOL, name="torch cached vs full")
    assert_close(cj, ct, atol=FWD_ATOL, name="cached jax vs torch")


def test_generate_greedy_matches(twins):
    """Greedy tokens are identical across frameworks and with/without the cache, past block_size."""
    cfg, jm, tm, idx, *_ = twins
    # Run 4 tokens past block_size so the window slides on both paths. Every length is a new
    # compile for the uncached JAX path, so the prompt is long (the (B, T) shape is already
    # compiled by the other tests) and the run short.
    prompt = idx
    n = cfg.block_size - T + 4
    outs = {
        "jax cached": jm.generate(prompt, n, temperature=0.0),
        "jax uncached": jm.generate(prompt, n, temperature=0.0, use_cache=False),
        "torch cached": tm.generate(prompt, n, temperature=0.0),
        "torch uncached": tm.generate(prompt, n, temperature=0.0, use_cache=False),
    }
    ref = outs["jax uncached"]
    assert ref.shape == (B, T + n)
    assert np.array_equal(ref[:, :T], prompt)
    for name, out in outs.items():
        assert np.array_equal(out, ref), f"{name} differs from jax uncached:\n{out}\n{ref}"


# ---- sampling, seeds, stop tokens, padded ids ----------------------------------------------------------

SAMPLING = {  # (temperature, top_k, top_p); test_sampling_rule checks each rule on its own
    "plain": (1.0, None, None),
    "top_k+top_p": (0.7, 10, 0.8),
}


@pytest.fixture(scope="module")
def padded_twins():
    return make_twins(CONFIGS["tiny-padded"], seed=0)


@pytest.mark.parametrize("setting", list(SAMPLING))
def test_generate_sampling_cached_matches_uncached(padded_twins, setting):
    """With a seed, sampling gives the same tokens with and without the cache (past block_size too),
    the same seed gives the same tokens again, and another seed gives other tokens; in both twins."""
    temperature, top_k, top_p = SAMPLING[setting]
    cfg = CONFIGS["tiny-padded"]
    prompt = np.random.default_rng(5).integers(0, cfg.vocab_size, (B, T))
    n = cfg.block_size - T + 3  # the cached path must fall back to cropping for the last tokens
    kw = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
    for side, model in zip(("jax", "torch"), padded_twins):
        cached = model.generate(prompt, n, seed=123, **kw)
        assert cached.shape == (B, T + n) and np.array_equal(cached[:, :T], prompt)
        assert np.array_equal(model.generate(prompt, n, seed=123, use_cache=False, **kw), cached), \
            f"{side}: cached and uncached sampling differ"
        assert np.array_equal(model.generate(prompt, n, seed=123, **kw), cached), f"{side}: same seed, other tokens"
        assert not np.array_equal(model.generate(prompt, n, seed=124, **kw), cached), f"{side}: the seed is ignored"
        assert cached.max() < cfg.vocab_size


def _stopped(ref: np.ndarray, t0: int, stop: int) -> np.ndarray:
    """What generate(stop_token=stop) must return given the unstopped run `ref` (same greedy tokens):
    each row keeps its tokens up to its first `stop`, then repeats `stop`; the output ends at the
    step where the last row stops (or at the full length)."""
    rows, ends = [], []
    for row in ref:
        hits = np.flatnonzero(row[t0:] == stop)
        end = t0 + hits[0] + 1 if len(hits) else len(row)
        rows.append(np.concatenate([row[:end], np.full(len(row) - end, stop)]))
        ends.append(end)
    return np.stack(rows)[:, : max(ends)]


def test_generate_stop_token(padded_twins):
    """Rows that emit stop_token are padded with it; generation ends once every row has stopped.
    Same shapes as the sampling test (B, T), so no new compile: a second prompt repeats row 0 so
    that both rows stop at the same step and the run ends early."""
    jm, tm = padded_twins
    n = 4
    prompt = np.random.default_rng(5).integers(0, CONFIGS["tiny-padded"].vocab_size, (B, T))
    same = np.repeat(prompt[:1], B, axis=0)
    ref, ref_same = jm.generate(prompt, n, temperature=0.0), jm.generate(same, n, temperature=0.0)
    cases = {
        "row 0 stops at its 2nd token": (ref, int(ref[0, T + 1])),
        "all rows stop at once": (ref_same, int(ref_same[0, T])),
    }
    for name, (r, stop) in cases.items():
        want = _stopped(r, T, stop)
        for side, model in (("jax", jm), ("torch", tm)):
            for use_cache in (True, False):
                got = model.generate(r[:, :T], n, temperature=0.0, stop_token=stop, use_cache=use_cache)
                assert np.array_equal(got, want), f"{side} use_cache={use_cache} {name}:\n{got}\nwant\n{want}"
    assert _stopped(ref_same, T, int(ref_same[0, T])).shape == (B, T + 1)  # the early end is really tested


def test_padded_ids_are_never_sampled():
    """Padded head rows with a huge bias would win every draw if they were not cut from the logits."""
    cfg = dataclasses.replace(PRESETS["tiny-untied"], padded_vocab_size=128)
    jm, tm = make_twins(cfg, seed=0)
    weights = tm.state_numpy()
    weights["lm_head.bias"][cfg.vocab_size:] = 1e4
    jm.load_numpy(weights)
    tm.load_numpy(weights)
    prompt = np.random.default_rng(6).integers(0, cfg.vocab_size, (4, 3))
    for side, model in (("jax", jm), ("torch", tm)):
        for temperature, top_k, top_p in [(0.0, None, None), (2.0, 50, 0.99)]:
            out = model.generate(prompt, 4, temperature=temperature, top_k=top_k, top_p=top_p, seed=1)
            assert out.max() < cfg.vocab_size, f"{side} sampled a padded id at temperature {temperature}: {out}"


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, 3, None), (1.0, None, 0.7), (0.5, 4, 0.9)])
def test_sampling_rule(temperature, top_k, top_p):
    """Both samplers draw from the same distribution: softmax(logits / temperature) restricted to the
    top_k ids, then to the smallest top set whose mass reaches top_p, renormalised. Checked on
    20000 draws each against the exact probabilities (5 binomial standard deviations)."""
    from jaxgpt.gpt import _sample as jax_sample
    from torchref.gpt import _sample as torch_sample

    logits = np.array([2.0, 1.5, 1.0, 0.5, 0.3, 0.0, -0.5, -1.0], np.float32)
    # The rule, written out in float64 numpy.
    p = np.exp(logits / temperature - np.max(logits / temperature))
    p /= p.sum()
    order = np.argsort(-p)
    keep = np.zeros(len(p), bool)
    keep[order[: top_k or len(p)]] = True
    if top_p is not None:
        q = np.where(keep, p, 0.0) / p[keep].sum()
        mass_before = np.cumsum(q[order]) - q[order]
        keep[order[mass_before >= top_p]] = False
    want = np.where(keep, p, 0.0) / p[keep].sum()

    N = 20000
    rows = np.tile(logits, (N, 1))
    draws = {
        "jax": np.asarray(jax_sample(jnp.asarray(rows), jax.random.key(0), temperature, top_k, top_p)),
        "torch": torch_sample(torch.as_tensor(rows), torch.Generator().manual_seed(0), temperature, top_k, top_p).numpy(),
    }
    for side, d in draws.items():
        freq = np.bincount(d, minlength=len(p)) / N
        assert set(np.flatnonzero(freq)) == set(np.flatnonzero(keep)), f"{side}: drew {freq}, allowed {keep}"
        tol = 5 * np.sqrt(want * (1 - want) / N) + 1e-12
        assert np.all(np.abs(freq - want) <= tol), f"{side}: frequencies {freq} vs probabilities {want}"
