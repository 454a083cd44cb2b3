"""Lectures 2 and 3 in PyTorch: the Bengio et al. (2003) MLP, with and without BatchNorm.

The twin of jaxgpt/makemore/mlp.py (see there for the init scales and why).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from jaxgpt.common.makemore.config import ModelConfig
from torchref.makemore.layers import BatchNorm1d, Embedding, Linear, Sequential, Tanh, cross_entropy

TANH_GAIN = 5 / 3  # Kaiming gain of tanh: keeps the activations' std near 1 through the layer


class MLP(nn.Module):
    batchnorm = False  # BatchNormMLP: BatchNorm on the pre-activation, in place of the bias b1

    def __init__(self, config: ModelConfig):
        super().__init__()
        V, E, H, T = config.vocab_size, config.n_embd, config.n_hidden, config.block_size
        self.C = nn.Parameter(torch.randn(V, E))
        self.W1 = nn.Parameter(torch.randn(T * E, H) * TANH_GAIN / math.sqrt(T * E))
        if self.batchnorm:  # no b1: BatchNorm subtracts the batch mean, which cancels any bias
            self.bn = BatchNorm1d(H, momentum=config.bn_momentum)
        else:
            self.b1 = nn.Parameter(torch.randn(H) * 0.01)
        self.W2 = nn.Parameter(torch.randn(H, V) * 0.01)
        self.b2 = nn.Parameter(torch.zeros(V))
        self.act = Tanh()  # a layer (no parameters), so --diagnostics can watch it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        emb = self.C[x].reshape(B, -1)  # (B, T*E): the window's embeddings side by side
        hpre = emb @ self.W1  # (B, H)
        h = self.act(self.bn(hpre) if self.batchnorm else hpre + self.b1)  # (B, H)
        return h @ self.W2 + self.b2  # (B, V)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cross_entropy(self(x), y)


class BatchNormMLP(MLP):
    batchnorm = True


class DeepBatchNormMLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        V, E, H, T = config.vocab_size, config.n_embd, config.n_hidden, config.block_size
        m = config.bn_momentum
        self.C = Embedding(V, E)
        layers: list[nn.Module] = []
        fan_in = T * E
        for _ in range(config.n_layer - 1):
            layers += [Linear(fan_in, H, bias=False), BatchNorm1d(H, momentum=m), Tanh()]
            fan_in = H
        layers += [Linear(fan_in, V, bias=False), BatchNorm1d(V, momentum=m)]
        with torch.no_grad():
            for layer in layers:  # every Linear, the last included (lecture 3 scales layers[:-1])
                if isinstance(layer, Linear):
                    layer.weight *= TANH_GAIN
            layers[-1].gamma *= 0.1
        self.net = Sequential(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        return self.net(self.C(x).reshape(B, -1))  # (B, V)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cross_entropy(self(x), y)
