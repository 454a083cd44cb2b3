"""Lectures 2 and 3 in JAX: the Bengio et al. (2003) MLP, with and without BatchNorm.

MLP: embed the previous block_size characters (C), concatenate, tanh hidden layer, logits.
Initialised with lecture 3's scales: W1 by the tanh gain 5/3 over sqrt(fan_in) (Kaiming), so the
tanh does not saturate, and W2 by 0.01, b2 = 0, so the initial loss is ln 27 instead of ~27.
BatchNormMLP: the same with BatchNorm on the hidden pre-activation (b1 dropped: BN removes it).
DeepBatchNormMLP: lecture 3's end, n_layer Linear -> BatchNorm -> Tanh layers built from the
"torchified" layer classes, weights scaled by 5/3 and the last BatchNorm's gamma by 0.1 (a less
confident softmax at init). Mirrored by torchref/makemore/mlp.py.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgpt.common.makemore.config import ModelConfig
from jaxgpt.makemore.layers import BatchNorm1d, Embedding, Linear, Sequential, Tanh, cross_entropy

TANH_GAIN = 5 / 3  # Kaiming gain of tanh: keeps the activations' std near 1 through the layer


class MLP(nnx.Module):
    batchnorm = False  # BatchNormMLP: BatchNorm on the pre-activation, in place of the bias b1

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        V, E, H, T = config.vocab_size, config.n_embd, config.n_hidden, config.block_size
        self.C = nnx.Param(jax.random.normal(rngs.params(), (V, E)))
        self.W1 = nnx.Param(jax.random.normal(rngs.params(), (T * E, H)) * TANH_GAIN / math.sqrt(T * E))
        if self.batchnorm:  # no b1: BatchNorm subtracts the batch mean, which cancels any bias
            self.bn = BatchNorm1d(H, momentum=config.bn_momentum)
        else:
            self.b1 = nnx.Param(jax.random.normal(rngs.params(), (H,)) * 0.01)
        self.W2 = nnx.Param(jax.random.normal(rngs.params(), (H, V)) * 0.01)
        self.b2 = nnx.Param(jnp.zeros(V))
        self.act = Tanh()  # a layer (no parameters), so --diagnostics can watch it

    def __call__(self, x: jax.Array) -> jax.Array:
        B = x.shape[0]
        emb = self.C[x].reshape(B, -1)  # (B, T*E): the window's embeddings side by side
        hpre = emb @ self.W1  # (B, H)
        h = self.act(self.bn(hpre) if self.batchnorm else hpre + self.b1)  # (B, H)
        return h @ self.W2 + self.b2  # (B, V)

    def loss(self, x: jax.Array, y: jax.Array) -> jax.Array:
        return cross_entropy(self(x), y)


class BatchNormMLP(MLP):
    batchnorm = True


class DeepBatchNormMLP(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        V, E, H, T = config.vocab_size, config.n_embd, config.n_hidden, config.block_size
        m = config.bn_momentum
        self.C = Embedding(V, E, rngs=rngs)
        layers: list[nnx.Module] = []
        fan_in = T * E
        for _ in range(config.n_layer - 1):
            layers += [Linear(fan_in, H, bias=False, rngs=rngs), BatchNorm1d(H, momentum=m), Tanh()]
            fan_in = H
        layers += [Linear(fan_in, V, bias=False, rngs=rngs), BatchNorm1d(V, momentum=m)]
        for layer in layers:  # every Linear, the last included (lecture 3 scales layers[:-1])
            if isinstance(layer, Linear):
                layer.weight[...] = layer.weight[...] * TANH_GAIN
        layers[-1].gamma[...] = layers[-1].gamma[...] * 0.1
        self.net = Sequential(layers)

    def __call__(self, x: jax.Array) -> jax.Array:
        B = x.shape[0]
        return self.net(self.C(x).reshape(B, -1))  # (B, V)

    def loss(self, x: jax.Array, y: jax.Array) -> jax.Array:
        return cross_entropy(self(x), y)
