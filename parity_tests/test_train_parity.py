"""The GPT-2 training recipe in JAX and in torch: same 20-step trajectory from the same weights and batches,
and a checkpoint of either framework continued in the other.

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


def batches(n: int = 20) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    data = []
    for _ in range(n):
        t = (np.arange(17)[None, :] + rng.integers(0, 99, (8, 1)) + rng.integers(0, 2, (8, 17))) % 99
        data.append((t[:, :-1].astype(np.int32), t[:, 1:].astype(np.int32)))  # (8, 16): 2 micro-steps of 4
    return data


def test_jax_and_torch_recipes_give_the_same_20_step_trajectory(one_torch_thread):
    data = batches()
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


def make(framework: str):
    if framework == "jax":
        return JaxTrainer(CFG, OPT, seed=0, grad_accum=2, mesh=make_mesh(jax.devices()[:1]))
    return TorchTrainer(CFG, OPT, seed=0, grad_accum=2, device="cpu")


@pytest.mark.parametrize("writer, reader", [("jax", "torch"), ("torch", "jax")])
def test_a_checkpoint_continues_in_the_other_framework(one_torch_thread, tmp_path, writer, reader):
    """10 steps, a checkpoint; then 10 more steps in the writer's framework and, from the checkpoint read by
    name, 10 in the other: the same losses (<= 1e-4 relative), AdamW moments and step included."""
    from jaxgpt.common.checkpoint import CheckpointDir, group
    from jaxgpt.common.resume import read_train_state

    data = batches()
    w = make(writer)
    for x, y in data[:10]:
        w.step(x, y)
    ck = CheckpointDir(tmp_path / "checkpoints")
    ck.save(10, w.save, {"framework": w.framework, "state_format": w.state_format})
    state = read_train_state(ck.path(10), {"state_format": w.state_format})
    assert int(state["step"]) == 10 and np.abs(group(state, "opt/nu")["transformer.wte.weight"]).max() > 0
    same = np.array([w.step(x, y) for x, y in data[10:]])  # (10, 2): loss, grad norm
    r = make(reader)
    r.load_train_state_numpy(state)
    other = np.array([r.step(x, y) for x, y in data[10:]])
    rel = np.abs(same - other) / np.abs(same)
    assert rel.max() <= 1e-4, f"{writer} -> {reader}: max rel diff {rel.max():.3e}\n{same[:, 0]}\n{other[:, 0]}"
    # A fresh trainer without the moments (a weights-only hand-over) is measurably off: the check has teeth.
    bare = make(reader)
    bare.load_numpy(group(state, "params"))
    bare.step_count = 10
    naive = np.array([bare.step(x, y) for x, y in data[10:]])
    assert (np.abs(same - naive) / np.abs(same)).max() > 1e-3
