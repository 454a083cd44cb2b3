"""makemore.py's attention models in JAX: the Transformer (Vaswani et al. 2017, GPT-2 flavour) and the
bag-of-words model that replaces attention by a uniform average over the past.

Transformer: token + position embeddings, n_layer pre-LayerNorm blocks (causal self-attention
and a 4x MLP with tanh GELU), a final LayerNorm and a bias-free lm_head; PyTorch's default init
as makemore.py has it. Optional dropout (config.dropout; makemore.py has none) where nanoGPT puts
it: on the embeddings, the attention weights and each residual branch; it is on only when the
trainer passes a `dropout_key` (training steps), so evaluation and sampling are deterministic. BoW: one block whose "attention" weights every earlier position equally
(plus a tanh MLP), then a linear head, as makemore.py's. Mirrored by torchref/makemore/transformer.py.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgpt.common.makemore.config import ModelConfig
from jaxgpt.makemore.layers import Embedding, LayerNorm, Linear, cross_entropy


def causal_mask(T: int) -> jax.Array:
    return jnp.tril(jnp.ones((T, T), bool))  # (T, T): position t sees 0..t


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout: zero each element with probability `rate`, scale the rest by 1/(1-rate)."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def _keys(key: jax.Array | None, n: int) -> list[jax.Array | None]:
    return [None] * n if key is None else list(jax.random.split(key, n))


class CausalSelfAttention(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        C = config.n_embd
        self.c_attn = Linear(C, 3 * C, init="torch", rngs=rngs)
        self.c_proj = Linear(C, C, init="torch", rngs=rngs)
        self.n_head, self.dropout = config.n_head, config.dropout

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        B, T, C = x.shape
        k_att, k_out = _keys(key, 2)
        nh, hs = self.n_head, C // self.n_head
        q, k, v = jnp.split(self.c_attn(x), 3, axis=-1)  # each (B, T, C)
        q, k, v = (t.reshape(B, T, nh, hs).transpose(0, 2, 1, 3) for t in (q, k, v))  # (B, nh, T, hs)
        att = (q @ k.transpose(0, 1, 3, 2)) / math.sqrt(hs)  # (B, nh, T, T)
        att = jax.nn.softmax(jnp.where(causal_mask(T), att, -jnp.inf).astype(jnp.float32), axis=-1)
        att = dropout(att, self.dropout, k_att)
        y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C): heads side by side
        return dropout(self.c_proj(y), self.dropout, k_out)


def new_gelu(x: jax.Array) -> jax.Array:
    """GELU, tanh approximation (GPT-2's, makemore.py's NewGELU)."""
    return 0.5 * x * (1.0 + jnp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


class MLP(nnx.Module):
    def __init__(self, n_in: int, n_hidden: int, *, rngs: nnx.Rngs):
        self.c_fc = Linear(n_in, n_hidden, init="torch", rngs=rngs)
        self.c_proj = Linear(n_hidden, n_in, init="torch", rngs=rngs)


class Block(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.ln_1 = LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config, rngs=rngs)
        self.ln_2 = LayerNorm(config.n_embd)
        self.mlp = MLP(config.n_embd, 4 * config.n_embd, rngs=rngs)
        self.dropout = config.dropout

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        k_attn, k_mlp = _keys(key, 2)
        x = x + self.attn(self.ln_1(x), k_attn)
        return x + dropout(self.mlp.c_proj(new_gelu(self.mlp.c_fc(self.ln_2(x)))), self.dropout, k_mlp)


class Transformer(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.block_size = config.block_size
        self.wte = Embedding(config.vocab_size, config.n_embd, rngs=rngs)
        self.wpe = Embedding(config.block_size, config.n_embd, rngs=rngs)
        self.h = nnx.List([Block(config, rngs=rngs) for _ in range(config.n_layer)])
        self.ln_f = LayerNorm(config.n_embd)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False, init="torch", rngs=rngs)
        self.dropout = config.dropout

    def __call__(self, idx: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
        T = idx.shape[1]
        keys = _keys(dropout_key, len(self.h) + 1)
        x = dropout(self.wte(idx) + self.wpe(jnp.arange(T)), self.dropout, keys[0])  # (B, T, C)
        for block, key in zip(self.h, keys[1:]):
            x = block(x, key)
        return self.lm_head(self.ln_f(x))  # (B, T, V)

    def loss(self, x: jax.Array, y: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
        return cross_entropy(self(x, dropout_key), y)


class BoWBlock(nnx.Module):
    """x + mean of x over positions <= t, then x + MLP(x) (tanh, n_hidden wide)."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.mlp = MLP(config.n_embd, config.n_hidden, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        T = x.shape[1]
        # makemore.py's CausalBoW: softmax of all-zero scores under the causal mask = uniform weights.
        att = jax.nn.softmax(jnp.where(causal_mask(T), 0.0, -jnp.inf), axis=-1)  # (T, T)
        x = x + att @ x  # (B, T, C)
        return x + self.mlp.c_proj(jnp.tanh(self.mlp.c_fc(x)))


class BoW(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.wte = Embedding(config.vocab_size, config.n_embd, rngs=rngs)
        self.wpe = Embedding(config.block_size, config.n_embd, rngs=rngs)
        self.context_block = BoWBlock(config, rngs=rngs)
        self.lm_head = Linear(config.n_embd, config.vocab_size, init="torch", rngs=rngs)

    def __call__(self, idx: jax.Array) -> jax.Array:
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(jnp.arange(T))  # (B, T, C)
        x = self.context_block(x)
        return self.lm_head(x)  # (B, T, V)

    def loss(self, x: jax.Array, y: jax.Array) -> jax.Array:
        return cross_entropy(self(x), y)
