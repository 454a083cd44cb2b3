"""Lecture 5 in PyTorch: the WaveNet-style hierarchical MLP, the twin of jaxgpt/makemore/wavenet.py."""

from __future__ import annotations

import torch
from torch import nn

from jaxgpt.common.makemore.config import ModelConfig
from torchref.makemore.layers import (
    BatchNorm1d,
    Embedding,
    FlattenConsecutive,
    Linear,
    Sequential,
    Tanh,
    cross_entropy,
)


class WaveNet(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        V, E, H = config.vocab_size, config.n_embd, config.n_hidden
        n_stages = config.block_size.bit_length() - 1  # log2(block_size); the config checked it is a power of 2
        layers: list[nn.Module] = [Embedding(V, E)]
        fan_in = E
        for _ in range(n_stages):
            layers += [FlattenConsecutive(2), Linear(2 * fan_in, H, bias=False),
                       BatchNorm1d(H, momentum=config.bn_momentum), Tanh()]
            fan_in = H
        head = Linear(H, V)
        with torch.no_grad():
            head.weight *= 0.1  # a less confident softmax at init
        self.net = Sequential([*layers, head])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, T) -> (B, T, E) -> (B, T/2, H) -> ... -> (B, H) -> (B, V)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cross_entropy(self(x), y)
