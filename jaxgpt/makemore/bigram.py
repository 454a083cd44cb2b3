"""Lecture 1's two bigram models in JAX: the count table and the neural net that learns it.

BigramCounts: P(next | prev) = (N[prev, next] + k) / sum(N[prev] + k), closed form, no training;
its NLL is the floor the neural bigram descends to. NeuralBigram: one-hot(prev) @ W = W[prev]
as logits, trained by full-batch gradient descent with the L2 penalty mean(W**2) that plays the
role of the smoothing k. Mirrored by torchref/makemore/bigram.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgpt.common.makemore.config import ModelConfig
from jaxgpt.makemore.layers import cross_entropy


class Counts(nnx.Variable):
    """Bigram counts: model state that no optimiser touches."""


class BigramCounts(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs | None = None):
        V = config.vocab_size
        self.k = config.smoothing
        self.counts = Counts(jnp.zeros((V, V), jnp.float32))  # N[prev, next]

    def fit(self, x: jax.Array, y: jax.Array) -> None:
        """Count every (previous, next) pair: x (N, 1), y (N,)."""
        self.counts[...] = self.counts[...].at[x[:, -1], y].add(1.0)

    def __call__(self, x: jax.Array) -> jax.Array:
        P = self.counts[...] + self.k  # (V, V)
        logp = jnp.log(P / P.sum(1, keepdims=True))
        return logp[x[:, -1]]  # (B, V): log-probabilities are valid logits

    def loss(self, x: jax.Array, y: jax.Array) -> jax.Array:
        return cross_entropy(self(x), y)


class NeuralBigram(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, l2: float = 0.01):
        V = config.vocab_size
        self.l2 = l2
        self.W = nnx.Param(jax.random.normal(rngs.params(), (V, V)))  # (V, V)

    def __call__(self, x: jax.Array) -> jax.Array:
        # one_hot(prev) @ W picks row `prev` of W: index instead of multiplying by zeros.
        return self.W[x[:, -1]]  # (B, V)

    def loss(self, x: jax.Array, y: jax.Array) -> jax.Array:
        return cross_entropy(self(x), y) + self.l2 * jnp.mean(self.W[...] ** 2)
