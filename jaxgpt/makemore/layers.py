"""The lectures' hand-rolled layers in Flax NNX ("torchifying the code", lecture 3 and 5).

Linear keeps its weight as (fan_in, fan_out) and computes x @ W + b, as the lectures do, so the
PyTorch twin (torchref/makemore/layers.py) stores the very same arrays under the same names and
`state_numpy()` needs no transposes. Parameters are nnx.Param, running statistics nnx.BatchStat.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


class Linear(nnx.Module):
    """x @ weight + bias. init "lecture": randn / sqrt(fan_in), zero bias (lectures 3-5);
    "torch": U(+-1/sqrt(fan_in)) for weight and bias (nn.Linear's default, used by makemore.py)."""

    def __init__(self, fan_in: int, fan_out: int, *, rngs: nnx.Rngs, bias: bool = True, init: str = "lecture"):
        kw, kb = rngs.params(), rngs.params()
        if init == "lecture":
            w = jax.random.normal(kw, (fan_in, fan_out)) / math.sqrt(fan_in)
            b = jnp.zeros(fan_out)
        else:
            bound = 1 / math.sqrt(fan_in)
            w = jax.random.uniform(kw, (fan_in, fan_out), minval=-bound, maxval=bound)
            b = jax.random.uniform(kb, (fan_out,), minval=-bound, maxval=bound)
        self.weight = nnx.Param(w)
        self.bias = nnx.Param(b) if bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        out = x @ self.weight
        return out + self.bias if self.bias is not None else out


class Embedding(nnx.Module):
    """A (num, dim) lookup table, N(0, 1) initialised as torch.randn / nn.Embedding."""

    def __init__(self, num: int, dim: int, *, rngs: nnx.Rngs):
        self.weight = nnx.Param(jax.random.normal(rngs.params(), (num, dim)))

    def __call__(self, ix: jax.Array) -> jax.Array:
        return self.weight[ix]


class BatchNorm1d(nnx.Module):
    """Lecture 3's BatchNorm1d: batch statistics in training, running ones in eval.

    The variance is the unbiased one (torch's x.var default, as in the lecture's class and the
    Bessel correction of lecture 4), for normalising and for the running estimate alike.
    For (B, T, C) inputs the statistics are over B and T (lecture 5's fix for WaveNet).
    `use_running_average` is the attribute nnx's model.eval() / model.train() flip.
    """

    def __init__(self, dim: int, eps: float = 1e-5, momentum: float = 0.1):
        self.eps, self.momentum = eps, momentum
        self.use_running_average = False
        self.gamma = nnx.Param(jnp.ones(dim))
        self.beta = nnx.Param(jnp.zeros(dim))
        self.running_mean = nnx.BatchStat(jnp.zeros(dim))
        self.running_var = nnx.BatchStat(jnp.ones(dim))

    def __call__(self, x: jax.Array) -> jax.Array:
        axes = tuple(range(x.ndim - 1))  # (0,) for (B, C), (0, 1) for (B, T, C)
        if self.use_running_average:
            mean, var = self.running_mean[...], self.running_var[...]
        else:
            mean = x.mean(axes)
            var = x.var(axes, ddof=1)
            # Running estimates take no gradient (torch: under no_grad).
            m = self.momentum
            self.running_mean[...] = (1 - m) * self.running_mean[...] + m * jax.lax.stop_gradient(mean)
            self.running_var[...] = (1 - m) * self.running_var[...] + m * jax.lax.stop_gradient(var)
        xhat = (x - mean) / jnp.sqrt(var + self.eps)
        return self.gamma * xhat + self.beta


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis (eps 1e-5, biased variance), named weight/bias as torch."""

    def __init__(self, dim: int, eps: float = 1e-5):
        self.eps = eps
        self.weight = nnx.Param(jnp.ones(dim))
        self.bias = nnx.Param(jnp.zeros(dim))

    def __call__(self, x: jax.Array) -> jax.Array:
        mean = x.mean(-1, keepdims=True)
        var = x.var(-1, keepdims=True)
        return (x - mean) / jnp.sqrt(var + self.eps) * self.weight + self.bias


class Tanh(nnx.Module):
    """tanh. With `probe` set (only on a throw-away copy, see `probe`), it records its output
    (an nnx.Intermediate) and adds a zero nnx.Perturbation whose gradient is d loss / d output:
    the lecture's `layer.out` and `layer.out.grad` for --diagnostics."""

    def __init__(self):
        self.probe = False

    def __call__(self, x: jax.Array) -> jax.Array:
        out = jnp.tanh(x)
        if self.probe:
            self.sow(nnx.Intermediate, "out", out)
            out = self.perturb("out_grad", out)
        return out


class FlattenConsecutive(nnx.Module):
    """(B, T, C) -> (B, T/n, C*n): concatenate n neighbouring positions (lecture 5)."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self, x: jax.Array) -> jax.Array:
        B, T, C = x.shape
        x = x.reshape(B, T // self.n, C * self.n)
        return x[:, 0] if x.shape[1] == 1 else x  # (B, C*n) once the sequence is used up


class Sequential(nnx.Module):
    def __init__(self, layers: list[nnx.Module]):
        self.layers = nnx.List(layers)

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = layer(x)
        return x


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean negative log-likelihood in fp32 over targets != -1 (-1 = padding, makemore.py's ignore_index)."""
    logits = logits.reshape(-1, logits.shape[-1]).astype(jnp.float32)
    targets = targets.reshape(-1)
    valid = targets >= 0
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, jnp.where(valid, targets, 0)[:, None], axis=-1)[:, 0]
    return jnp.sum(jnp.where(valid, nll, 0.0)) / jnp.maximum(valid.sum(), 1)


def _name(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def named_params(model: nnx.Module) -> dict[str, nnx.Variable]:
    """Dotted name -> nnx.Param, the names torch's named_parameters() gives the twin."""
    return {_name(p): v for p, v in nnx.graph.iter_graph(model) if isinstance(v, nnx.Param)}


def state_numpy(model: nnx.Module) -> dict[str, np.ndarray]:
    """Every variable (parameters, running statistics, counts) as numpy, keyed as the twin's state_dict()."""
    return {_name(p): np.asarray(v[...]) for p, v in nnx.graph.iter_graph(model)
            if isinstance(v, nnx.Variable)}


def load_numpy(model: nnx.Module, weights: dict[str, np.ndarray]) -> None:
    """Load `state_numpy()`-keyed arrays; the key sets and every shape must match exactly."""
    own = {_name(p): v for p, v in nnx.graph.iter_graph(model) if isinstance(v, nnx.Variable)}
    missing, extra = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    if missing or extra:
        raise ValueError(f"weights do not fit the model: missing {missing}, unexpected {extra}")
    for k, v in own.items():
        if tuple(weights[k].shape) != tuple(v[...].shape):
            raise ValueError(f"{k}: shape {tuple(weights[k].shape)} in the weights, {tuple(v[...].shape)} in the model")
        v[...] = jnp.asarray(weights[k], v[...].dtype)


def probe(model: nnx.Module, x: np.ndarray, y: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """One training-mode forward and backward on (x, y), for --diagnostics, leaving `model` untouched.

    Returns numpy arrays: "act" / "act_grad" (every Tanh layer's output and d loss / d output, by
    layer name), "params" / "grads" (every parameter and d loss / d parameter). The statistics
    are computed from these by jaxgpt.common.makemore.diagnostics, for either framework. nnx.capture
    collects what the Tanh layers sow and perturb: a first pass creates the zero perturbations, the
    gradient with respect to them is the gradient with respect to the layers' outputs.
    """
    m = nnx.clone(model)  # the probe's forward updates BatchNorm statistics: not on the real model
    m.train()
    tanhs = [_name(p) for p, t in nnx.graph.iter_graph(m) if isinstance(t, Tanh)]
    for name in tanhs:
        _get(m, name).probe = True
    x, y = jnp.asarray(x), jnp.asarray(y)

    def loss(mod: nnx.Module) -> jax.Array:
        return mod.loss(x, y)

    _, perturbations = nnx.capture(loss, nnx.Perturbation)(m)

    def loss_and_outputs(mod: nnx.Module, perts: nnx.State):
        return nnx.capture(loss, nnx.Intermediate, init=perts)(mod)

    (grads, act_grads), acts = nnx.grad(loss_and_outputs, argnums=(0, 1), has_aux=True)(m, perturbations)
    params = {k: np.asarray(v[...]) for k, v in named_params(m).items()}
    flat = {_name(p): np.asarray(v[...]) for p, v in nnx.to_flat_state(grads)}
    return {"act": {k: np.asarray(_get(acts, k).out.get_value()[-1]) for k in tanhs},  # sow keeps a tuple of calls
            "act_grad": {k: np.asarray(_get(act_grads, k).out_grad[...]) for k in tanhs},
            "params": params, "grads": {k: flat[k] for k in params}}


def _get(node, name: str):
    """The sub-module or sub-state at dotted `name` ('' = the root; digits index lists)."""
    for part in name.split(".") if name else []:
        node = node[int(part)] if part.isdigit() else getattr(node, part) if not isinstance(node, nnx.State) \
            else node[part]
    return node


def num_params(model: nnx.Module) -> int:
    return sum(int(np.prod(v[...].shape)) for v in named_params(model).values())
