"""The lectures' hand-rolled layers in PyTorch, the twin of jaxgpt/makemore/layers.py.

Linear keeps its weight as (fan_in, fan_out) and computes x @ W + b, as the lectures do (not
nn.Linear's (out, in)), so both frameworks store the same arrays under the same names.
Running statistics are buffers, updated under no_grad.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Linear(nn.Module):
    """x @ weight + bias. init "lecture": randn / sqrt(fan_in), zero bias (lectures 3-5);
    "torch": U(+-1/sqrt(fan_in)) for weight and bias (nn.Linear's default, used by makemore.py)."""

    def __init__(self, fan_in: int, fan_out: int, *, bias: bool = True, init: str = "lecture"):
        super().__init__()
        if init == "lecture":
            w = torch.randn(fan_in, fan_out) / math.sqrt(fan_in)
            b = torch.zeros(fan_out)
        else:
            bound = 1 / math.sqrt(fan_in)
            w = torch.empty(fan_in, fan_out).uniform_(-bound, bound)
            b = torch.empty(fan_out).uniform_(-bound, bound)
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(b) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x @ self.weight
        return out + self.bias if self.bias is not None else out


class Embedding(nn.Module):
    """A (num, dim) lookup table, N(0, 1) initialised as torch.randn / nn.Embedding."""

    def __init__(self, num: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num, dim))

    def forward(self, ix: torch.Tensor) -> torch.Tensor:
        return self.weight[ix]


class BatchNorm1d(nn.Module):
    """Lecture 3's BatchNorm1d: batch statistics in training, running ones in eval.

    Unbiased variance for normalising and for the running estimate (the lecture's class; not
    nn.BatchNorm1d, which normalises with the biased one). (B, T, C) inputs: statistics over B, T.
    """

    def __init__(self, dim: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(x.dim() - 1))  # (0,) for (B, C), (0, 1) for (B, T, C)
        if self.training:
            mean = x.mean(dims)
            var = x.var(dims, unbiased=True)
            with torch.no_grad():
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var)
        else:
            mean, var = self.running_mean, self.running_var
        xhat = (x - mean) / torch.sqrt(var + self.eps)
        return self.gamma * xhat + self.beta


class LayerNorm(nn.Module):
    """LayerNorm over the last axis (eps 1e-5, biased variance), as nn.LayerNorm computes it."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


class Tanh(nn.Module):
    """tanh. With `probe` set (only on a throw-away copy, see `probe`), it keeps its output with
    retain_grad, as the lecture's `layer.out`, so `out.grad` is d loss / d output (--diagnostics)."""

    def __init__(self):
        super().__init__()
        self.probe, self.out = False, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.tanh(x)
        if self.probe:
            out.retain_grad()
            self.out = out
        return out


class FlattenConsecutive(nn.Module):
    """(B, T, C) -> (B, T/n, C*n): concatenate n neighbouring positions (lecture 5)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        x = x.reshape(B, T // self.n, C * self.n)
        return x[:, 0] if x.shape[1] == 1 else x  # (B, C*n) once the sequence is used up


class Sequential(nn.Module):
    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood in fp32 over targets != -1 (makemore.py's ignore_index)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1).long(), ignore_index=-1)


def named_params(model: nn.Module) -> dict[str, nn.Parameter]:
    return dict(model.named_parameters())


def state_numpy(model: nn.Module) -> dict[str, np.ndarray]:
    """Every parameter and buffer as numpy, keyed as the JAX twin's state_numpy()."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_numpy(model: nn.Module, weights: dict[str, np.ndarray]) -> None:
    """Load `state_numpy()`-keyed arrays; the key sets and every shape must match exactly."""
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    if missing or extra:
        raise ValueError(f"weights do not fit the model: missing {missing}, unexpected {extra}")
    for k, v in own.items():
        if tuple(weights[k].shape) != tuple(v.shape):
            raise ValueError(f"{k}: shape {tuple(weights[k].shape)} in the weights, {tuple(v.shape)} in the model")
    # np.array copies: arrays read from an .npz are read-only, which torch warns about
    model.load_state_dict({k: torch.as_tensor(np.array(weights[k]), dtype=own[k].dtype) for k in own})


def probe(model: nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """One training-mode forward and backward on (x, y), for --diagnostics, leaving `model` untouched.

    The twin of jaxgpt.makemore.layers.probe: "act" / "act_grad" by Tanh layer name, "params" /
    "grads" by parameter name, as numpy.
    """
    m = copy.deepcopy(model)  # the probe's forward updates BatchNorm statistics: not on the real model
    m.train()
    tanhs = {k: t for k, t in m.named_modules() if isinstance(t, Tanh)}
    for t in tanhs.values():
        t.probe = True
    m.zero_grad(set_to_none=True)
    m.loss(torch.as_tensor(x).long(), torch.as_tensor(y).long()).backward()
    params = {k: p.detach().numpy().copy() for k, p in m.named_parameters()}
    grads = {k: p.grad.numpy().copy() for k, p in m.named_parameters()}
    return {"act": {k: t.out.detach().numpy().copy() for k, t in tanhs.items()},
            "act_grad": {k: t.out.grad.numpy().copy() for k, t in tanhs.items()}, "params": params, "grads": grads}


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
