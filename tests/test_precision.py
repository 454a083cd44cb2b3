"""The bf16 precision rules, checked directly on what each framework computes (issue 12 item 1, issue 17 item 3).

The rule (torch autocast's, which jaxgpt follows explicitly): under bf16 compute only the matmul
inputs are bf16; the embeddings, the residual stream, LayerNorm, the attention softmax and the
loss are fp32. A trajectory bound alone cannot guard this (parity_tests/test_bf16.py records why:
a bf16 residual stream moved the 50-step loss by about as much as bf16 rounding itself), so the
dtypes are asserted here:

- JAX: on the traced program (jaxpr) of the loss and of its gradient, every dot_general takes bf16
  operands; every exp, log, max-reduction and rsqrt (softmax, logsumexp, LayerNorm) runs on fp32;
  and with jax.eval_shape, the embedding lookups, every block's output (the residual stream) and
  every LayerNorm's output are fp32 and the loss is fp32.
- torch: the aten ops recorded under autocast: matmuls in bf16; layer_norm, log_softmax and the
  loss in fp32; embeddings and every block's output fp32.

Planted bugs each test catches (checked when the tests were written): embeddings in the compute
dtype (the old code: bf16 residual stream), LayerNorm with dtype=bf16, scores without
preferred_element_type=fp32 (softmax in bf16), the loss without its fp32 cast.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from jax.extend.core import jaxprs_in_params
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from jaxgpt.common.config import PRESETS
from jaxgpt.gpt import GPT

CFG = dataclasses.replace(PRESETS["tiny"], padded_vocab_size=128)  # padded: the masked loss is traced too
B, T = 2, 12
BF16, F32 = jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32)
FP32_OPS = ("exp", "log", "reduce_max", "rsqrt")  # softmax, logsumexp, LayerNorm
BF16_ALGORITHM = jax.lax.DotAlgorithmPreset.BF16_BF16_F32


def _batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.integers(0, CFG.vocab_size, (B, T)).astype(np.int32),
            rng.integers(0, CFG.vocab_size, (B, T)).astype(np.int32))


def _eqns(jaxpr):
    """Every equation of a jaxpr, inside sub-jaxprs too (jit, custom_jvp/vjp, remat, ...)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in jaxprs_in_params(eqn.params):
            yield from _eqns(getattr(sub, "jaxpr", sub))


@pytest.fixture(scope="module")
def bf16_model():
    return GPT(CFG, rngs=nnx.Rngs(0), dtype=jnp.bfloat16)


@pytest.fixture(scope="module")
def programs(bf16_model):
    graphdef, params, rest = nnx.split(bf16_model, nnx.Param, ...)
    idx, tgt = _batch()

    def loss(p, idx, tgt):
        return nnx.merge(graphdef, p, rest)(idx, tgt)[1]

    return {"forward": jax.make_jaxpr(loss)(params, idx, tgt), "gradient": jax.make_jaxpr(jax.grad(loss))(params, idx, tgt)}


@pytest.mark.parametrize("program", ["forward", "gradient"])
def test_jax_op_dtypes_under_bf16(programs, program):
    eqns = list(_eqns(programs[program].jaxpr))
    dots = [e for e in eqns if e.primitive.name == "dot_general"]
    # Linear layers, the tied head, attention's two products; their backward too.
    assert len(dots) >= 6 * CFG.n_layer + 1, f"only {len(dots)} matmuls traced"
    # bf16 operands, or the BF16_BF16_F32 algorithm (which rounds fp32 operands to bf16: the backward of
    # attention's fp32 scores)
    not_bf16 = [tuple(str(v.aval.dtype) for v in e.invars) for e in dots
                if any(v.aval.dtype != BF16 for v in e.invars) and e.params["precision"] != BF16_ALGORITHM]
    assert not not_bf16, f"{len(not_bf16)} matmuls with non-bf16 operands: {not_bf16[:5]}"
    for prim in FP32_OPS:
        found = [e for e in eqns if e.primitive.name == prim]
        wrong = [str(v.aval.dtype) for e in found for v in e.invars if v.aval.dtype != F32]
        assert not wrong, f"{prim} runs on {sorted(set(wrong))}, not fp32 ({program})"
    if program == "forward":
        counts = {p: sum(e.primitive.name == p for e in eqns) for p in FP32_OPS}
        assert counts["rsqrt"] == 2 * CFG.n_layer + 1, counts  # every LayerNorm was seen
        assert counts["exp"] >= CFG.n_layer + 1 and counts["log"] >= 1, counts  # every softmax, the logsumexp


def test_jax_residual_stream_layernorm_and_loss_are_fp32(bf16_model):
    m = bf16_model
    idx, tgt = _batch()
    t = m.transformer
    x = jax.ShapeDtypeStruct((B, T, CFG.n_embd), F32)
    shape = jax.eval_shape
    assert shape(t.wte, jnp.asarray(idx)).dtype == F32, "token embeddings are not fp32"
    assert shape(t.wpe, jnp.arange(T)).dtype == F32, "position embeddings are not fp32"
    for i, block in enumerate(t.h):
        assert shape(lambda x, b=block: b(x)[0], x).dtype == F32, f"block {i} turns the residual stream to bf16"
        for name in ("ln_1", "ln_2"):
            assert shape(getattr(block, name), x).dtype == F32, f"block {i} {name} output is not fp32"
    assert shape(t.ln_f, x).dtype == F32, "ln_f output is not fp32"
    logits, loss = shape(lambda i, y: m(i, y), jnp.asarray(idx), jnp.asarray(tgt))
    assert loss.dtype == F32 and logits.dtype == F32 and logits.shape == (B, T, CFG.vocab_size)


def _dtypes(tree) -> list[torch.dtype]:
    return [t.dtype for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


class _Dtypes(TorchDispatchMode):
    """Records (aten op, input dtypes, output dtypes) of every op run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, list[torch.dtype], list[torch.dtype]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.append((func.overloadpacket.__name__, _dtypes((args, kwargs)), _dtypes(out)))
        return out


def test_torch_op_dtypes_under_autocast():
    from torchref.gpt import GPT as TorchGPT

    torch.manual_seed(0)
    m = TorchGPT(CFG)
    idx, tgt = (torch.as_tensor(a, dtype=torch.long) for a in _batch())
    block_out = []
    hooks = [b.register_forward_hook(lambda mod, inp, out: block_out.append(out[0].dtype)) for b in m.transformer.h]
    rec = _Dtypes()
    with torch.autocast("cpu", dtype=torch.bfloat16), rec:
        logits, loss = m(idx, tgt)
    with rec:
        loss.backward()
    for h in hooks:
        h.remove()
    assert block_out == [torch.float32] * CFG.n_layer, f"residual stream dtypes after each block: {block_out}"
    assert loss.dtype == torch.float32 and logits.dtype == torch.float32

    def ops(*names):
        found = [(ins, outs) for op, ins, outs in rec.ops if op in names]
        assert found, f"no {names} op recorded"
        return found

    for ins, _ in ops("mm", "addmm", "bmm"):
        assert all(d == torch.bfloat16 for d in ins), f"a matmul ran on {ins}"
    for ins, outs in ops("native_layer_norm"):
        assert ins[0] == torch.float32 and outs[0] == torch.float32, f"layer_norm {ins} -> {outs}"
    for ins, outs in ops("_log_softmax", "nll_loss_forward"):
        assert ins[0] == torch.float32, f"the loss ran on {ins}"
    for _, outs in ops("embedding"):
        assert outs == [torch.float32], f"embedding gave {outs}"
