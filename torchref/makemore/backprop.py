"""Lecture 4 ("becoming a backprop ninja") in PyTorch: the BatchNorm MLP with a hand-written backward pass.

The twin of jaxgpt/makemore/backprop.py, line for line: `forward` keeps every intermediate,
`backward` writes out the gradient of each by the chain rule (fused=True: the lecture's closed
forms for cross-entropy and BatchNorm); tests check both against loss.backward().
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from jaxgpt.common.makemore.config import ModelConfig
from torchref.makemore.layers import Tanh

EPS = 1e-5


class BackpropMLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        V, E, H, T = config.vocab_size, config.n_embd, config.n_hidden, config.block_size
        # Lecture 4's init: small but non-zero everywhere so no gradient is accidentally zero.
        self.C = nn.Parameter(torch.randn(V, E))
        self.W1 = nn.Parameter(torch.randn(T * E, H) * (5 / 3) / math.sqrt(T * E))
        self.b1 = nn.Parameter(torch.randn(H) * 0.1)  # useless under BatchNorm, kept for the exercise
        self.W2 = nn.Parameter(torch.randn(H, V) * 0.1)
        self.b2 = nn.Parameter(torch.randn(V) * 0.1)
        self.bngain = nn.Parameter(torch.randn(H) * 0.1 + 1.0)
        self.bnbias = nn.Parameter(torch.randn(H) * 0.1)
        self.register_buffer("bnmean_running", torch.zeros(H))
        self.register_buffer("bnvar_running", torch.ones(H))
        self.act = Tanh()  # a layer (no parameters), so --diagnostics can watch it
        self.momentum = config.bn_momentum

    def forward_pass(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every intermediate of the training-mode forward pass, ending with the loss."""
        n = x.shape[0]
        v: dict[str, torch.Tensor] = {}
        v["emb"] = self.C[x]  # (n, T, E)
        v["embcat"] = v["emb"].reshape(n, -1)  # (n, T*E)
        v["hprebn"] = v["embcat"] @ self.W1 + self.b1  # (n, H)
        v["bnmeani"] = 1 / n * v["hprebn"].sum(0)  # (H,)
        v["bndiff"] = v["hprebn"] - v["bnmeani"]  # (n, H)
        v["bndiff2"] = v["bndiff"] ** 2  # (n, H)
        v["bnvar"] = 1 / (n - 1) * v["bndiff2"].sum(0)  # (H,)  Bessel's correction
        v["bnvar_inv"] = (v["bnvar"] + EPS) ** -0.5  # (H,)
        v["bnraw"] = v["bndiff"] * v["bnvar_inv"]  # (n, H)
        v["hpreact"] = self.bngain * v["bnraw"] + self.bnbias  # (n, H)
        v["h"] = self.act(v["hpreact"])  # (n, H)
        v["logits"] = v["h"] @ self.W2 + self.b2  # (n, V)
        v["logit_maxes"] = v["logits"].max(1, keepdim=True).values  # (n, 1)  for numerical stability only
        v["norm_logits"] = v["logits"] - v["logit_maxes"]  # (n, V)
        v["counts"] = v["norm_logits"].exp()  # (n, V)
        v["counts_sum"] = v["counts"].sum(1, keepdim=True)  # (n, 1)
        v["counts_sum_inv"] = v["counts_sum"] ** -1  # (n, 1)
        v["probs"] = v["counts"] * v["counts_sum_inv"]  # (n, V)
        v["logprobs"] = v["probs"].log()  # (n, V)
        v["loss"] = -v["logprobs"][torch.arange(n), y].mean()  # ()
        return v

    @torch.no_grad()
    def backward(self, x: torch.Tensor, y: torch.Tensor, v: dict[str, torch.Tensor],
                 fused: bool = False) -> dict[str, torch.Tensor]:
        """d loss / d (every intermediate and parameter), by hand. Keys are the variables' names."""
        n, V = v["logits"].shape
        y = y.long()
        W1, W2, bngain = self.W1, self.W2, self.bngain
        d: dict[str, torch.Tensor] = {}
        if fused:  # exercise 2: the cross-entropy's gradient in one expression
            d["logits"] = (F.softmax(v["logits"], 1) - F.one_hot(y, V)) / n
        else:
            d["logprobs"] = torch.zeros(n, V)
            d["logprobs"][torch.arange(n), y] = -1.0 / n
            d["probs"] = (1.0 / v["probs"]) * d["logprobs"]
            d["counts_sum_inv"] = (v["counts"] * d["probs"]).sum(1, keepdim=True)  # broadcast in forward -> sum
            d["counts"] = v["counts_sum_inv"] * d["probs"]
            d["counts_sum"] = -v["counts_sum"] ** -2 * d["counts_sum_inv"]
            d["counts"] = d["counts"] + torch.ones_like(v["counts"]) * d["counts_sum"]  # counts feeds two nodes
            d["norm_logits"] = v["counts"] * d["counts"]  # d exp(u) = exp(u)
            d["logit_maxes"] = (-d["norm_logits"]).sum(1, keepdim=True)  # ~0: the max does not change the loss
            d["logits"] = d["norm_logits"] + F.one_hot(v["logits"].argmax(1), V) * d["logit_maxes"]
        d["h"] = d["logits"] @ W2.T
        d["W2"] = v["h"].T @ d["logits"]
        d["b2"] = d["logits"].sum(0)
        d["hpreact"] = (1.0 - v["h"] ** 2) * d["h"]  # tanh' = 1 - tanh^2
        d["bngain"] = (v["bnraw"] * d["hpreact"]).sum(0)
        d["bnbias"] = d["hpreact"].sum(0)
        if fused:  # exercise 3: BatchNorm's backward in one expression
            d["hprebn"] = bngain * v["bnvar_inv"] / n * (
                n * d["hpreact"] - d["hpreact"].sum(0) - n / (n - 1) * v["bnraw"] * (d["hpreact"] * v["bnraw"]).sum(0))
        else:
            d["bnraw"] = bngain * d["hpreact"]
            d["bndiff"] = v["bnvar_inv"] * d["bnraw"]
            d["bnvar_inv"] = (v["bndiff"] * d["bnraw"]).sum(0)
            d["bnvar"] = -0.5 * (v["bnvar"] + EPS) ** -1.5 * d["bnvar_inv"]
            d["bndiff2"] = 1.0 / (n - 1) * torch.ones_like(v["bndiff2"]) * d["bnvar"]
            d["bndiff"] = d["bndiff"] + 2 * v["bndiff"] * d["bndiff2"]  # bndiff feeds bnraw and bndiff2
            d["bnmeani"] = (-d["bndiff"]).sum(0)
            d["hprebn"] = d["bndiff"] + 1.0 / n * torch.ones_like(v["hprebn"]) * d["bnmeani"]
        d["embcat"] = d["hprebn"] @ W1.T
        d["W1"] = v["embcat"].T @ d["hprebn"]
        d["b1"] = d["hprebn"].sum(0)
        d["emb"] = d["embcat"].view(v["emb"].shape)
        d["C"] = torch.zeros_like(self.C).index_add_(0, x.reshape(-1).long(), d["emb"].reshape(-1, d["emb"].shape[-1]))
        return d

    @torch.no_grad()
    def forward_backward(self, x: torch.Tensor, y: torch.Tensor, fused: bool = True) -> tuple[torch.Tensor, dict]:
        """Training step's maths: (loss, parameter gradients), updating the running statistics."""
        v = self.forward_pass(x, y)
        m = self.momentum
        self.bnmean_running.mul_(1 - m).add_(m * v["bnmeani"])
        self.bnvar_running.mul_(1 - m).add_(m * v["bnvar"])
        d = self.backward(x, y, v, fused)
        return v["loss"], {k: d[k] for k in ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits; with running statistics in eval mode, batch statistics in training mode."""
        n = x.shape[0]
        hprebn = self.C[x].reshape(n, -1) @ self.W1 + self.b1  # (n, H)
        if self.training:
            mean, var = hprebn.mean(0), hprebn.var(0, unbiased=True)
        else:
            mean, var = self.bnmean_running, self.bnvar_running
        h = self.act(self.bngain * (hprebn - mean) * (var + EPS) ** -0.5 + self.bnbias)  # (n, H)
        return h @ self.W2 + self.b2  # (n, V)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The expanded forward's loss, for autograd to check `backward` against."""
        return self.forward_pass(x, y)["loss"]
