"""Shared parity helpers: seeding, array conversion and comparisons that report the max diff.

Every parity test compares a jaxgpt object with its torchref twin through these, so a
failure message always says how far apart the two frameworks were, not only that they were.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

# Tolerances of the suite (the parity issue's contract; never loosen one to make a test pass).
FWD_ATOL = 1e-5  # forward outputs, fp32, absolute
GRAD_RTOL = 1e-4  # gradients, optimizer steps, trajectories: relative to the largest magnitude


def seed_all(seed: int = 0) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_np(x: Any) -> np.ndarray:
    """A jax array, torch tensor or array-like as a float64-safe numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def max_diffs(a: Any, b: Any) -> tuple[float, float]:
    """(max abs diff, max abs diff / max(|a|, |b|, tiny))."""
    a, b = to_np(a).astype(np.float64), to_np(b).astype(np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shape mismatch: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0, 0.0
    diff = float(np.max(np.abs(a - b)))
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), 1e-30)
    return diff, diff / scale


def assert_close(a: Any, b: Any, *, atol: float | None = None, rtol: float | None = None, name: str = "") -> None:
    """Assert |a - b| <= atol (absolute) and/or <= rtol * max|a|,|b| (relative to the tensor's scale).

    The relative check is against the largest magnitude of the tensor, not elementwise, so
    values near zero inside a large gradient do not make it meaningless.
    """
    if atol is None and rtol is None:
        raise ValueError("give atol and/or rtol")
    diff, rel = max_diffs(a, b)
    ok = (atol is None or diff <= atol) and (rtol is None or rel <= rtol)
    assert ok, f"{name or 'arrays'} differ: max abs diff {diff:.3e}, max rel diff {rel:.3e} (atol={atol}, rtol={rtol})"


def assert_tree_close(a: Mapping[str, Any], b: Mapping[str, Any], *, atol: float | None = None,
                      rtol: float | None = None, name: str = "") -> None:
    """Compare two name -> array mappings key by key; the key sets must be identical."""
    missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    assert not missing and not extra, f"{name}: keys only in first {missing}, only in second {extra}"
    worst = []
    for k in sorted(a):
        diff, rel = max_diffs(a[k], b[k])
        if (atol is not None and diff > atol) or (rtol is not None and rel > rtol):
            worst.append(f"{k}: abs {diff:.3e} rel {rel:.3e}")
    assert not worst, f"{name}: {len(worst)} of {len(a)} entries differ beyond atol={atol} rtol={rtol}:\n" + "\n".join(worst)


def make_twins(config: Any, seed: int = 0, perturb: float = 0.02) -> tuple[Any, torch.nn.Module]:
    """(jaxgpt GPT, torchref GPT) holding identical weights, both in eval mode.

    The torch twin is initialised (seeded), then every parameter gets N(0, perturb) noise, so that
    zero biases and unit LayerNorm gains cannot hide a bias or gain bug; the JAX twin loads the
    same numpy arrays through the weight table's `load_numpy`.
    """
    from flax import nnx  # parity tests need both frameworks; keep this module importable without jax

    from jaxgpt.gpt import GPT as JaxGPT
    from torchref.gpt import GPT as TorchGPT

    seed_all(seed)
    tm = TorchGPT(config)
    weights = tm.state_numpy()
    if perturb:
        rng = np.random.default_rng(seed)
        weights = {k: (v + rng.normal(0.0, perturb, v.shape)).astype(np.float32) for k, v in weights.items()}
        tm.load_numpy(weights)
    jm = JaxGPT(config, rngs=nnx.Rngs(seed))
    jm.load_numpy(weights)
    tm.eval()
    jm.eval()
    return jm, tm
