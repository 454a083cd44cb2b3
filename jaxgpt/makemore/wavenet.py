"""Lecture 5 in JAX: the WaveNet-style hierarchical MLP (van den Oord et al. 2016, without the
dilated convolutions' weight sharing across positions made explicit).

Instead of squashing all block_size characters into one layer, fuse them two at a time:
FlattenConsecutive(2) -> Linear -> BatchNorm -> tanh, log2(block_size) times (3 for context 8),
then a Linear to the logits. Context 8, embedding 24, hidden 128 gives 76,579 parameters.
Mirrored by torchref/makemore/wavenet.py.
"""

from __future__ import annotations

import jax
from flax import nnx

from jaxgpt.common.makemore.config import ModelConfig
from jaxgpt.makemore.layers import (
    BatchNorm1d,
    Embedding,
    FlattenConsecutive,
    Linear,
    Sequential,
    Tanh,
    cross_entropy,
)


class WaveNet(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        V, E, H = config.vocab_size, config.n_embd, config.n_hidden
        n_stages = config.block_size.bit_length() - 1  # log2(block_size); the config checked it is a power of 2
        layers: list[nnx.Module] = [Embedding(V, E, rngs=rngs)]
        fan_in = E
        for _ in range(n_stages):
            layers += [FlattenConsecutive(2), Linear(2 * fan_in, H, bias=False, rngs=rngs),
                       BatchNorm1d(H, momentum=config.bn_momentum), Tanh()]
            fan_in = H
        head = Linear(H, V, rngs=rngs)
        head.weight[...] = head.weight[...] * 0.1  # a less confident softmax at init
        self.net = Sequential([*layers, head])

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.net(x)  # (B, T) -> (B, T, E) -> (B, T/2, H) -> ... -> (B, H) -> (B, V)

    def loss(self, x: jax.Array, y: jax.Array) -> jax.Array:
        return cross_entropy(self(x), y)
