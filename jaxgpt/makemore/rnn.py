"""makemore.py's recurrent models in JAX: a vanilla RNN (Mikolov et al. 2010) and a GRU (Cho et al. 2014).

Both read a name one character at a time: h_t = cell(embedding(x_t), h_{t-1}), starting from a
learned h_start, and predict the next character from every h_t. The time loop is nnx.scan
(jax.lax.scan lifted over the module: one compiled cell, not T copies). Mirrored by torchref/makemore/rnn.py (a Python loop).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgpt.common.makemore.config import ModelConfig
from jaxgpt.makemore.layers import Embedding, Linear, cross_entropy


class RNNCell(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.xh_to_h = Linear(config.n_embd + config.n_hidden, config.n_hidden, init="torch", rngs=rngs)

    def __call__(self, xt: jax.Array, hprev: jax.Array) -> jax.Array:
        return jnp.tanh(self.xh_to_h(jnp.concatenate([xt, hprev], axis=1)))  # (B, H)


class GRUCell(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        n_in = config.n_embd + config.n_hidden
        self.xh_to_z = Linear(n_in, config.n_hidden, init="torch", rngs=rngs)
        self.xh_to_r = Linear(n_in, config.n_hidden, init="torch", rngs=rngs)
        self.xh_to_hbar = Linear(n_in, config.n_hidden, init="torch", rngs=rngs)

    def __call__(self, xt: jax.Array, hprev: jax.Array) -> jax.Array:
        xh = jnp.concatenate([xt, hprev], axis=1)  # (B, E+H)
        r = jax.nn.sigmoid(self.xh_to_r(xh))  # reset gate: how much of the past the candidate sees
        hbar = jnp.tanh(self.xh_to_hbar(jnp.concatenate([xt, r * hprev], axis=1)))  # candidate state
        z = jax.nn.sigmoid(self.xh_to_z(xh))  # update gate: how much of the state to replace
        return (1 - z) * hprev + z * hbar  # (B, H)


class RNN(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, cell_type: str = "rnn"):
        self.start = nnx.Param(jnp.zeros((1, config.n_hidden)))  # the learned h_{-1}
        self.wte = Embedding(config.vocab_size, config.n_embd, rngs=rngs)
        self.cell = RNNCell(config, rngs=rngs) if cell_type == "rnn" else GRUCell(config, rngs=rngs)
        self.lm_head = Linear(config.n_hidden, config.vocab_size, init="torch", rngs=rngs)

    def __call__(self, idx: jax.Array) -> jax.Array:
        B = idx.shape[0]
        emb = self.wte(idx)  # (B, T, E)
        h0 = jnp.broadcast_to(self.start[...], (B, self.start.shape[1]))  # (B, H)

        def step(cell, hprev, xt):
            ht = cell(xt, hprev)
            return ht, ht

        # nnx.scan carries the cell's parameters as a broadcast (same weights at every step).
        scan = nnx.scan(step, in_axes=(nnx.StateAxes({...: None}), nnx.Carry, 1), out_axes=(nnx.Carry, 1))
        _, hidden = scan(self.cell, h0, emb)  # hidden (B, T, H)
        return self.lm_head(hidden)  # (B, T, V)

    def loss(self, x: jax.Array, y: jax.Array) -> jax.Array:
        return cross_entropy(self(x), y)
