"""makemore.py's attention models in PyTorch: Transformer and bag-of-words, the twins of
jaxgpt/makemore/transformer.py. Dropout draws its masks from the `dropout_gen` generator the
trainer passes (one per step, seeded by (seed, step), so a resumed run drops the same units);
without it (evaluation, sampling) there is no dropout."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from jaxgpt.common.makemore.config import ModelConfig
from torchref.makemore.layers import Embedding, LayerNorm, Linear, cross_entropy


def causal_mask(T: int) -> torch.Tensor:
    return torch.tril(torch.ones(T, T, dtype=torch.bool))  # (T, T): position t sees 0..t


def dropout(x: torch.Tensor, rate: float, gen: torch.Generator | None) -> torch.Tensor:
    """Inverted dropout: zero each element with probability `rate`, scale the rest by 1/(1-rate)."""
    if gen is None or rate == 0.0:
        return x
    keep = torch.rand(x.shape, generator=gen) >= rate
    return torch.where(keep, x / (1.0 - rate), 0.0)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        C = config.n_embd
        self.c_attn = Linear(C, 3 * C, init="torch")
        self.c_proj = Linear(C, C, init="torch")
        self.n_head, self.dropout = config.n_head, config.dropout

    def forward(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)  # each (B, T, C)
        q, k, v = (t.view(B, T, nh, hs).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (B, nh, T, T)
        att = F.softmax(att.masked_fill(~causal_mask(T), float("-inf")).float(), dim=-1)
        att = dropout(att, self.dropout, gen)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side
        return dropout(self.c_proj(y), self.dropout, gen)


def new_gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation (GPT-2's, makemore.py's NewGELU)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


class MLP(nn.Module):
    def __init__(self, n_in: int, n_hidden: int):
        super().__init__()
        self.c_fc = Linear(n_in, n_hidden, init="torch")
        self.c_proj = Linear(n_hidden, n_in, init="torch")


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd)
        self.mlp = MLP(config.n_embd, 4 * config.n_embd)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), gen)
        return x + dropout(self.mlp.c_proj(new_gelu(self.mlp.c_fc(self.ln_2(x)))), self.dropout, gen)


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.block_size = config.block_size
        self.wte = Embedding(config.vocab_size, config.n_embd)
        self.wpe = Embedding(config.block_size, config.n_embd)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = LayerNorm(config.n_embd)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False, init="torch")
        self.dropout = config.dropout

    def forward(self, idx: torch.Tensor, dropout_gen: torch.Generator | None = None) -> torch.Tensor:
        T = idx.shape[1]
        x = dropout(self.wte(idx) + self.wpe(torch.arange(T)), self.dropout, dropout_gen)  # (B, T, C)
        for block in self.h:
            x = block(x, dropout_gen)
        return self.lm_head(self.ln_f(x))  # (B, T, V)

    def loss(self, x: torch.Tensor, y: torch.Tensor, dropout_gen: torch.Generator | None = None) -> torch.Tensor:
        return cross_entropy(self(x, dropout_gen), y)


class BoWBlock(nn.Module):
    """x + mean of x over positions <= t, then x + MLP(x) (tanh, n_hidden wide)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.mlp = MLP(config.n_embd, config.n_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        # makemore.py's CausalBoW: softmax of all-zero scores under the causal mask = uniform weights.
        att = F.softmax(torch.zeros(T, T).masked_fill(~causal_mask(T), float("-inf")), dim=-1)  # (T, T)
        x = x + att @ x  # (B, T, C)
        return x + self.mlp.c_proj(torch.tanh(self.mlp.c_fc(x)))


class BoW(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.wte = Embedding(config.vocab_size, config.n_embd)
        self.wpe = Embedding(config.block_size, config.n_embd)
        self.context_block = BoWBlock(config)
        self.lm_head = Linear(config.n_embd, config.vocab_size, init="torch")

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T))  # (B, T, C)
        x = self.context_block(x)
        return self.lm_head(x)  # (B, T, V)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cross_entropy(self(x), y)
