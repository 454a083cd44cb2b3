"""Lecture 1's two bigram models in PyTorch, the twin of jaxgpt/makemore/bigram.py.

BigramCounts: P(next | prev) = (N[prev, next] + k) / sum(N[prev] + k), closed form, no training.
NeuralBigram: one-hot(prev) @ W = W[prev] as logits, with the L2 penalty mean(W**2).
"""

from __future__ import annotations

import torch
from torch import nn

from jaxgpt.common.makemore.config import ModelConfig
from torchref.makemore.layers import cross_entropy


class BigramCounts(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        V = config.vocab_size
        self.k = config.smoothing
        self.register_buffer("counts", torch.zeros(V, V))  # N[prev, next]

    @torch.no_grad()
    def fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Count every (previous, next) pair: x (N, 1), y (N,)."""
        self.counts.index_put_((x[:, -1].long(), y.long()), torch.ones(len(y)), accumulate=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        P = self.counts + self.k  # (V, V)
        logp = torch.log(P / P.sum(1, keepdim=True))
        return logp[x[:, -1]]  # (B, V): log-probabilities are valid logits

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cross_entropy(self(x), y)


class NeuralBigram(nn.Module):
    def __init__(self, config: ModelConfig, l2: float = 0.01):
        super().__init__()
        V = config.vocab_size
        self.l2 = l2
        self.W = nn.Parameter(torch.randn(V, V))  # (V, V)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # one_hot(prev) @ W picks row `prev` of W: index instead of multiplying by zeros.
        return self.W[x[:, -1]]  # (B, V)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cross_entropy(self(x), y) + self.l2 * torch.mean(self.W**2)
