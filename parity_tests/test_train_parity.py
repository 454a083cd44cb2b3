"""The GPT-2 training recipe in JAX and in torch: same 20-step trajectory from the same weights and batches.

Both trainers run the full recipe (gradient accumulation over 2 micro-steps, padded vocab,
warm-up + cosine, clip 1.0, AdamW with decay on >= 2-D parameters), fp32, highest precision.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
import torch

from jaxgpt.common.config import get_preset
from jaxgpt.common.schedule import OptimConfig
from jaxgpt.train.sharding import make_mesh
from jaxgpt.train.trainer import Trainer as JaxTrainer
from torchref.train.trainer import Trainer as TorchTrainer

CFG = dataclasses.replace(get_preset("tiny"), padded_vocab_size=128)
OPT = OptimConfig(lr=3e-3, warmup_steps=5, max_steps=20, grad_clip=1.0)


@pytest.fixture
def one_torch_thread():
    # Tiny matmuls: one thread is as fast, and immune to OpenMP oversubscription on a shared CPU.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_jax_and_torch_recipes_give_the_same_20_step_trajectory(one_torch_thread):
    rng = np.random.default_rng(0)
    data = []
    for _ in range(20):
        t = (np.arange(17)[None, :] + rng.integers(0, 99, (8, 1)) + rng.integers(0, 2, (8, 17))) % 99
        data.append((t[:, :-1].astype(np.int32), t[:, 1:].astype(np.int32)))  # (8, 16): 2 micro-steps of 4
    jx = JaxTrainer(CFG, OPT, seed=0, grad_accum=2, mesh=make_mesh(jax.devices()[:1]))
    th = TorchTrainer(CFG, OPT, jx.state_numpy(), grad_accum=2, device="cpu")
    a = np.array([jx.step(x, y) for x, y in data])  # (20, 2): loss, grad norm
    b = np.array([th.step(x, y) for x, y in data])
    rel = np.abs(a - b) / np.abs(b)
    assert rel.max() <= 1e-4, f"max rel diff {rel.max():.3e} at step {rel.max(axis=1).argmax()}\njax {a[:, 0]}\ntorch {b[:, 0]}"
    assert a[-1, 0] < a[0, 0] - 0.5, "the recipe did not learn"
    wj, wt = jx.state_numpy(), th.state_numpy()
    assert wj.keys() == wt.keys()
    for k in wj:
        np.testing.assert_allclose(wj[k], wt[k], rtol=1e-3, atol=1e-5, err_msg=k)
