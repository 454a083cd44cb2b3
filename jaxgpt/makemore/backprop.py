"""Lecture 4 ("becoming a backprop ninja") in JAX: the BatchNorm MLP with a hand-written backward pass.

The forward pass is broken into the lecture's elementary steps (emb, embcat, hprebn, bnmeani,
..., probs, logprobs, loss) and `backward` writes out the gradient of every one of them, in
reverse, with the chain rule and nothing else; `fused=True` uses the lecture's closed forms for
the cross-entropy (dlogits = (softmax - onehot) / n) and BatchNorm (dhprebn in one line), which is
what training uses. Tests check both against jax.grad, and against the torch twin
(torchref/makemore/backprop.py). Variance uses Bessel's correction 1/(n-1), as the lecture does.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgpt.common.makemore.config import ModelConfig
from jaxgpt.makemore.layers import Tanh

EPS = 1e-5


class BackpropMLP(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        V, E, H, T = config.vocab_size, config.n_embd, config.n_hidden, config.block_size
        k = [rngs.params() for _ in range(7)]
        # Lecture 4's init: small but non-zero everywhere (b1, b2, bnbias included) so that no
        # gradient is accidentally zero and a wrong formula cannot hide behind it.
        self.C = nnx.Param(jax.random.normal(k[0], (V, E)))
        self.W1 = nnx.Param(jax.random.normal(k[1], (T * E, H)) * (5 / 3) / math.sqrt(T * E))
        self.b1 = nnx.Param(jax.random.normal(k[2], (H,)) * 0.1)  # useless under BatchNorm, kept for the exercise
        self.W2 = nnx.Param(jax.random.normal(k[3], (H, V)) * 0.1)
        self.b2 = nnx.Param(jax.random.normal(k[4], (V,)) * 0.1)
        self.bngain = nnx.Param(jax.random.normal(k[5], (H,)) * 0.1 + 1.0)
        self.bnbias = nnx.Param(jax.random.normal(k[6], (H,)) * 0.1)
        self.bnmean_running = nnx.BatchStat(jnp.zeros(H))
        self.bnvar_running = nnx.BatchStat(jnp.ones(H))
        self.act = Tanh()  # a layer (no parameters), so --diagnostics can watch it
        self.momentum = config.bn_momentum
        self.use_running_average = False

    def forward_pass(self, x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
        """Every intermediate of the training-mode forward pass, ending with the loss."""
        n = x.shape[0]
        v: dict[str, jax.Array] = {}
        v["emb"] = self.C[x]  # (n, T, E)
        v["embcat"] = v["emb"].reshape(n, -1)  # (n, T*E)
        v["hprebn"] = v["embcat"] @ self.W1 + self.b1  # (n, H)
        v["bnmeani"] = 1 / n * v["hprebn"].sum(0)  # (H,)
        v["bndiff"] = v["hprebn"] - v["bnmeani"]  # (n, H)
        v["bndiff2"] = v["bndiff"] ** 2  # (n, H)
        v["bnvar"] = 1 / (n - 1) * v["bndiff2"].sum(0)  # (H,)  Bessel's correction
        v["bnvar_inv"] = (v["bnvar"] + EPS) ** -0.5  # (H,)
        v["bnraw"] = v["bndiff"] * v["bnvar_inv"]  # (n, H)
        v["hpreact"] = self.bngain * v["bnraw"] + self.bnbias  # (n, H)
        v["h"] = self.act(v["hpreact"])  # (n, H)
        v["logits"] = v["h"] @ self.W2 + self.b2  # (n, V)
        v["logit_maxes"] = v["logits"].max(1, keepdims=True)  # (n, 1)  for numerical stability only
        v["norm_logits"] = v["logits"] - v["logit_maxes"]  # (n, V)
        v["counts"] = jnp.exp(v["norm_logits"])  # (n, V)
        v["counts_sum"] = v["counts"].sum(1, keepdims=True)  # (n, 1)
        v["counts_sum_inv"] = v["counts_sum"] ** -1  # (n, 1)
        v["probs"] = v["counts"] * v["counts_sum_inv"]  # (n, V)
        v["logprobs"] = jnp.log(v["probs"])  # (n, V)
        v["loss"] = -v["logprobs"][jnp.arange(n), y].mean()  # ()
        return v

    def backward(self, x: jax.Array, y: jax.Array, v: dict[str, jax.Array], fused: bool = False) -> dict[str, jax.Array]:
        """d loss / d (every intermediate and parameter), by hand. Keys are the variables' names."""
        n, V = v["logits"].shape
        W1, W2, bngain = self.W1[...], self.W2[...], self.bngain[...]
        d: dict[str, jax.Array] = {}
        if fused:  # exercise 2: the cross-entropy's gradient in one expression
            d["logits"] = (jax.nn.softmax(v["logits"], 1) - jax.nn.one_hot(y, V)) / n
        else:
            d["logprobs"] = jnp.zeros((n, V)).at[jnp.arange(n), y].set(-1.0 / n)
            d["probs"] = (1.0 / v["probs"]) * d["logprobs"]
            d["counts_sum_inv"] = (v["counts"] * d["probs"]).sum(1, keepdims=True)  # broadcast in forward -> sum
            d["counts"] = v["counts_sum_inv"] * d["probs"]
            d["counts_sum"] = -v["counts_sum"] ** -2 * d["counts_sum_inv"]
            d["counts"] = d["counts"] + jnp.ones_like(v["counts"]) * d["counts_sum"]  # counts feeds two nodes
            d["norm_logits"] = v["counts"] * d["counts"]  # d exp(u) = exp(u)
            d["logit_maxes"] = (-d["norm_logits"]).sum(1, keepdims=True)  # ~0: the max does not change the loss
            d["logits"] = d["norm_logits"] + jax.nn.one_hot(v["logits"].argmax(1), V) * d["logit_maxes"]
        d["h"] = d["logits"] @ W2.T
        d["W2"] = v["h"].T @ d["logits"]
        d["b2"] = d["logits"].sum(0)
        d["hpreact"] = (1.0 - v["h"] ** 2) * d["h"]  # tanh' = 1 - tanh^2
        d["bngain"] = (v["bnraw"] * d["hpreact"]).sum(0)
        d["bnbias"] = d["hpreact"].sum(0)
        if fused:  # exercise 3: BatchNorm's backward in one expression
            d["hprebn"] = bngain * v["bnvar_inv"] / n * (
                n * d["hpreact"] - d["hpreact"].sum(0) - n / (n - 1) * v["bnraw"] * (d["hpreact"] * v["bnraw"]).sum(0))
        else:
            d["bnraw"] = bngain * d["hpreact"]
            d["bndiff"] = v["bnvar_inv"] * d["bnraw"]
            d["bnvar_inv"] = (v["bndiff"] * d["bnraw"]).sum(0)
            d["bnvar"] = -0.5 * (v["bnvar"] + EPS) ** -1.5 * d["bnvar_inv"]
            d["bndiff2"] = 1.0 / (n - 1) * jnp.ones_like(v["bndiff2"]) * d["bnvar"]
            d["bndiff"] = d["bndiff"] + 2 * v["bndiff"] * d["bndiff2"]  # bndiff feeds bnraw and bndiff2
            d["bnmeani"] = (-d["bndiff"]).sum(0)
            d["hprebn"] = d["bndiff"] + 1.0 / n * jnp.ones_like(v["hprebn"]) * d["bnmeani"]
        d["embcat"] = d["hprebn"] @ W1.T
        d["W1"] = v["embcat"].T @ d["hprebn"]
        d["b1"] = d["hprebn"].sum(0)
        d["emb"] = d["embcat"].reshape(v["emb"].shape)
        d["C"] = jnp.zeros_like(self.C[...]).at[x.reshape(-1)].add(d["emb"].reshape(-1, d["emb"].shape[-1]))
        return d

    def forward_backward(self, x: jax.Array, y: jax.Array, fused: bool = True) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Training step's maths: (loss, parameter gradients), updating the running statistics."""
        v = self.forward_pass(x, y)
        m = self.momentum
        self.bnmean_running[...] = (1 - m) * self.bnmean_running[...] + m * v["bnmeani"]
        self.bnvar_running[...] = (1 - m) * self.bnvar_running[...] + m * v["bnvar"]
        d = self.backward(x, y, v, fused)
        return v["loss"], {k: d[k] for k in ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")}

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits; with running statistics in eval mode, batch statistics in training mode."""
        n = x.shape[0]
        hprebn = self.C[x].reshape(n, -1) @ self.W1 + self.b1  # (n, H)
        if self.use_running_average:
            mean, var = self.bnmean_running[...], self.bnvar_running[...]
        else:
            mean, var = hprebn.mean(0), hprebn.var(0, ddof=1)
        h = self.act(self.bngain * (hprebn - mean) * (var + EPS) ** -0.5 + self.bnbias)  # (n, H)
        return h @ self.W2 + self.b2  # (n, V)

    def loss(self, x: jax.Array, y: jax.Array) -> jax.Array:
        """The expanded forward's loss, for autodiff to check `backward` against."""
        return self.forward_pass(x, y)["loss"]
