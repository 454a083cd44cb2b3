"""makemore.py's recurrent models in PyTorch: a vanilla RNN and a GRU, the twins of jaxgpt/makemore/rnn.py."""

from __future__ import annotations

import torch
from torch import nn

from jaxgpt.common.makemore.config import ModelConfig
from torchref.makemore.layers import Embedding, Linear, cross_entropy


class RNNCell(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.xh_to_h = Linear(config.n_embd + config.n_hidden, config.n_hidden, init="torch")

    def forward(self, xt: torch.Tensor, hprev: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.xh_to_h(torch.cat([xt, hprev], dim=1)))  # (B, H)


class GRUCell(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        n_in = config.n_embd + config.n_hidden
        self.xh_to_z = Linear(n_in, config.n_hidden, init="torch")
        self.xh_to_r = Linear(n_in, config.n_hidden, init="torch")
        self.xh_to_hbar = Linear(n_in, config.n_hidden, init="torch")

    def forward(self, xt: torch.Tensor, hprev: torch.Tensor) -> torch.Tensor:
        xh = torch.cat([xt, hprev], dim=1)  # (B, E+H)
        r = torch.sigmoid(self.xh_to_r(xh))  # reset gate: how much of the past the candidate sees
        hbar = torch.tanh(self.xh_to_hbar(torch.cat([xt, r * hprev], dim=1)))  # candidate state
        z = torch.sigmoid(self.xh_to_z(xh))  # update gate: how much of the state to replace
        return (1 - z) * hprev + z * hbar  # (B, H)


class RNN(nn.Module):
    def __init__(self, config: ModelConfig, cell_type: str = "rnn"):
        super().__init__()
        self.start = nn.Parameter(torch.zeros(1, config.n_hidden))  # the learned h_{-1}
        self.wte = Embedding(config.vocab_size, config.n_embd)
        self.cell = RNNCell(config) if cell_type == "rnn" else GRUCell(config)
        self.lm_head = Linear(config.n_hidden, config.vocab_size, init="torch")

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        emb = self.wte(idx)  # (B, T, E)
        hprev = self.start.expand(B, -1)  # (B, H)
        hiddens = []
        for t in range(T):
            hprev = self.cell(emb[:, t], hprev)
            hiddens.append(hprev)
        return self.lm_head(torch.stack(hiddens, 1))  # (B, T, V)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cross_entropy(self(x), y)
