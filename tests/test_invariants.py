"""Invariants the mutation check (docs/TESTING.md) found unguarded, each pinned by a direct test."""

from __future__ import annotations

import numpy as np
import pytest

from jaxgpt.common.config import GPTConfig

CFG = GPTConfig(block_size=16, vocab_size=10, n_layer=1, n_head=2, n_embd=8)


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GPT-2's GELU, the tanh approximation (Hendrycks & Gimpel 2016, eq. in sec. 2), in float64."""
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_mlp_activation_is_gpt2s_tanh_gelu(framework):
    # The parity tests' activations are small, where the exact (erf) GELU and the tanh form agree to
    # well under the 1e-5 forward tolerance: an exact GELU on both sides passed them all (mutant
    # gelu-exact). Here the MLP's two matrices route x straight through the activation (c_fc copies the
    # input, c_proj picks the first C units), so the output is the activation itself, on [-4, 4],
    # where the two forms differ by up to 4.7e-4 (measured in float64 below).
    C = CFG.n_embd
    x = np.linspace(-4.0, 4.0, 16 * C).reshape(1, 16, C).astype(np.float32)
    w_fc = np.zeros((4 * C, C), np.float32)  # torch layout (out, in)
    w_fc[np.arange(4 * C), np.arange(4 * C) % C] = 1.0
    w_proj = np.zeros((C, 4 * C), np.float32)
    w_proj[np.arange(C), np.arange(C)] = 1.0
    if framework == "jax":
        import jax.numpy as jnp
        from flax import nnx

        from jaxgpt.gpt import MLP

        mlp = MLP(CFG, rngs=nnx.Rngs(0))
        mlp.c_fc.kernel[...], mlp.c_proj.kernel[...] = jnp.asarray(w_fc.T), jnp.asarray(w_proj.T)  # (in, out)
        mlp.c_fc.bias[...], mlp.c_proj.bias[...] = jnp.zeros(4 * C), jnp.zeros(C)
        mlp.eval()
        got = np.asarray(mlp(jnp.asarray(x)), np.float64)
    else:
        import torch

        from torchref.gpt import MLP

        mlp = MLP(CFG).eval()
        with torch.no_grad():
            mlp.c_fc.weight.copy_(torch.from_numpy(w_fc))
            mlp.c_proj.weight.copy_(torch.from_numpy(w_proj))
            mlp.c_fc.bias.zero_()
            mlp.c_proj.bias.zero_()
            got = mlp(torch.from_numpy(x)).double().numpy()
    from math import erf

    exact = np.vectorize(lambda v: 0.5 * v * (1.0 + erf(v / np.sqrt(2.0))))(x.astype(np.float64))
    want = _gelu_tanh(x.astype(np.float64))
    assert np.abs(want - exact).max() > 4e-4  # the two forms are told apart on this input
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6, err_msg=f"{framework}: not the tanh GELU")
