"""The training loss reads the padded logits in place: no sliced or fp32 (B, T, vocab_size) copy (issue 12, item 11).

With GPT-2's vocabulary padded from 50257 to 50304 rows, the loss used to slice the logits to 50257
columns and take an fp32 copy of them (and the slice's gradient padded them back): one extra
(B, T, V) array each way, 196 MiB at gpt2-cpu's 4 x 256 tokens. Now the pad columns are masked
inside the loss. Checked structurally on both frameworks, with a vocabulary (99 ids in 112 rows)
whose sizes no other dimension of the model shares: no array whose last dimension is the visible
vocab_size is computed, apart from the logits returned to callers (a view in torch; dropped by XLA
when only the loss is used). Exact values: parity_tests/test_gpt.py. The step-level memory figures
are in docs/BENCHMARKS.md ("GPT step profile").
"""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from jaxgpt.common.config import PRESETS
from jaxgpt.gpt import GPT

CFG = dataclasses.replace(PRESETS["tiny"], vocab_size=99, padded_vocab_size=112)
B, T = 4, 16


def _batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    tgt = rng.integers(0, CFG.vocab_size, (B, T)).astype(np.int32)
    tgt[0, :3] = -1  # ignored positions
    return rng.integers(0, CFG.vocab_size, (B, T)).astype(np.int32), tgt


def test_jax_loss_and_grad_compile_without_a_vocab_sized_copy():
    m = GPT(CFG, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(m, nnx.Param, ...)
    idx, tgt = _batch()

    def loss(p, idx, tgt):
        return nnx.merge(graphdef, p, rest)(idx, tgt)[1]

    hlo = jax.jit(jax.value_and_grad(loss)).lower(params, jnp.asarray(idx), jnp.asarray(tgt)).compile().as_text()
    padded = re.findall(rf"f32\[[0-9,]*,{CFG.padded_vocab_size}\]", hlo)
    visible = re.findall(rf"\[[0-9,]*,{CFG.vocab_size}\]", hlo)
    assert padded, "the padded logits should be in the program (the check would prove nothing)"
    assert not visible, f"a (.., vocab_size) array is computed: {sorted(set(visible))}"


class _Ops(TorchDispatchMode):
    """Records every aten op with the shapes of its tensor outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, list[tuple[int, ...]], bool]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        shapes = [tuple(t.shape) for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        self.ops.append((str(func.overloadpacket.__name__), shapes, bool(func._schema.is_mutable) or _is_view(func)))
        return out


def _is_view(func) -> bool:
    # aten view ops alias their input (no copy): slice, view, transpose, as_strided, ...
    return any(a.alias_info is not None and not a.alias_info.is_write for a in func._schema.returns)


def test_torch_loss_and_backward_make_no_vocab_sized_copy():
    from torchref.gpt import GPT as TorchGPT

    torch.manual_seed(0)
    m = TorchGPT(CFG)
    idx, tgt = (torch.as_tensor(a, dtype=torch.long) for a in _batch())
    rec = _Ops()
    with rec:
        logits, loss = m(idx, tgt)
        loss.backward()
    assert logits.shape == (B, T, CFG.vocab_size)
    padded = [op for op, shapes, _ in rec.ops if any(s[-1:] == (CFG.padded_vocab_size,) for s in shapes)]
    copies = [op for op, shapes, aliasing in rec.ops
              if not aliasing and any(s[-1:] == (CFG.vocab_size,) for s in shapes)]
    assert padded, "the padded logits should be seen (the check would prove nothing)"
    assert not copies, f"ops that compute a (.., vocab_size) array: {copies}"
    # The pad rows of the tied embedding get an exactly zero gradient (nothing flows through -inf).
    assert not m.transformer.wte.weight.grad[CFG.vocab_size:].any()


def test_both_target_pick_forms_give_the_same_loss_and_gradient(monkeypatch):
    """cross_entropy picks the target logit by a gather on CPU and by a one-hot sum elsewhere (GPUs);
    both are exact, so loss and gradient are bit-identical, padded columns and ignored rows included."""
    from jaxgpt.gpt import cross_entropy

    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(0, 3, (B, T, CFG.padded_vocab_size)), jnp.float32)
    _, tgt = _batch()

    def loss_and_grad():
        return jax.value_and_grad(lambda lg: cross_entropy(lg, jnp.asarray(tgt), CFG.vocab_size))(logits)

    cpu = loss_and_grad()
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    gpu = loss_and_grad()
    assert float(cpu[0]) == float(gpu[0])
    assert np.array_equal(np.asarray(cpu[1]), np.asarray(gpu[1]))
    assert not np.asarray(cpu[1])[..., CFG.vocab_size:].any()  # the pad columns get no gradient
    assert not np.asarray(cpu[1])[0, :3].any()  # nor do the ignored positions
