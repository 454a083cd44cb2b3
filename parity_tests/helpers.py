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


# ---- training twins: the same AdamW recipe stepped in both frameworks --------------------------------

def jax_train_steps(jm: Any, optim_cfg: Any, batches: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Train the JAX twin with `jaxgpt.train.optimizer.make_optimizer` on `batches` (one step each).

    Returns {"losses", "grad_norms" (pre-clip), "lrs"} as float lists and "states", the parameters
    after each step as {torch name: numpy array in torch layout}. `jm` itself is not modified.
    The two frameworks' dropout masks cannot match, so compare trajectories with dropout 0.
    """
    import jax
    import optax
    from flax import nnx

    from jaxgpt.train.optimizer import lr_schedule, make_optimizer

    graphdef, params, rest = nnx.split(jm, nnx.Param, ...)
    tx = make_optimizer(optim_cfg)
    schedule = lr_schedule(optim_cfg)

    @jax.jit
    def step(params, opt_state, idx, tgt):
        loss, grads = jax.value_and_grad(lambda p: nnx.merge(graphdef, p, rest)(idx, tgt)[1])(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, optax.tree.norm(grads)

    opt_state = tx.init(params)
    out: dict[str, Any] = {"losses": [], "grad_norms": [], "lrs": [], "states": []}
    for i, (idx, tgt) in enumerate(batches):
        params, opt_state, loss, norm = step(params, opt_state, idx, tgt)
        out["losses"].append(float(loss))
        out["grad_norms"].append(float(norm))
        out["lrs"].append(float(schedule(i)))
        out["states"].append(nnx.merge(graphdef, params, rest).state_numpy())
    return out


def torch_train_steps(tm: torch.nn.Module, optim_cfg: Any, batches: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """The torch twin of `jax_train_steps` (`torchref.train.optimizer`); trains a copy of `tm`."""
    import copy

    from torchref.train.optimizer import make_optimizer, optimizer_step

    tm = copy.deepcopy(tm)
    opt = make_optimizer(tm, optim_cfg)
    out: dict[str, Any] = {"losses": [], "grad_norms": [], "lrs": [], "states": []}
    for i, (idx, tgt) in enumerate(batches):
        opt.zero_grad(set_to_none=True)
        _, loss = tm(torch.as_tensor(idx), torch.as_tensor(tgt))
        loss.backward()
        norm = optimizer_step(tm, opt, i, optim_cfg)
        out["losses"].append(float(loss.detach()))
        out["grad_norms"].append(float(norm))
        out["lrs"].append(opt.param_groups[0]["lr"])
        out["states"].append(tm.state_numpy())
    return out


def counting_batches(n: int, batch: int, seq: int, vocab_size: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """`n` (idx, targets) int32 batches of learnable rows: each row counts up (mod vocab_size) from a
    random start, and targets are the inputs shifted by one, so a short run's loss really falls."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, vocab_size, (n, batch, 1))
    rows = ((starts + np.arange(seq + 1)) % vocab_size).astype(np.int32)  # (n, batch, seq + 1)
    return [(r[:, :-1], r[:, 1:]) for r in rows]


def split_key_bias(state: Mapping[str, np.ndarray], n_embd: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(state with the key third of every c_attn bias removed, {name: that key third}).

    The key bias has an exactly zero true gradient: it adds q . b_k to every score of a query's
    row, and softmax is shift-invariant, so it never changes an output. Both frameworks hold only
    rounding noise there, which Adam's normalisation (noise / (|noise| + eps)) turns into moves
    that differ between frameworks; compare the rest at the suite's tolerance and check the key
    part separately (it must barely move).
    """
    rest, key = dict(state), {}
    for k in [k for k in state if k.endswith("attn.c_attn.bias")]:
        key[k] = state[k][n_embd: 2 * n_embd]
        rest[k] = np.delete(state[k], np.s_[n_embd: 2 * n_embd])
    return rest, key


# ---- the external reference: Hugging Face transformers' GPT-2 ----------------------------------------

def hf_gpt2(*, vocab_size: int = 99, n_positions: int = 16, n_embd: int = 32, n_layer: int = 2, n_head: int = 4,
            activation: str = "gelu_new", tie: bool = True, seed: int = 0, perturb: float = 0.02) -> Any:
    """A randomly initialised `transformers.GPT2LMHeadModel` in eval mode (HF's PT<->Flax test size).

    Built from transformers' own GPT2Config, not from our weight table, so it is an independent
    reference. Every parameter gets N(0, perturb) noise on top of HF's init (which has zero
    biases and unit LayerNorm gains, that would hide a bias or gain mix-up).
    """
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        activation_function=activation, tie_word_embeddings=tie, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    model = transformers.GPT2LMHeadModel(cfg)
    if perturb:
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in model.parameters():  # tied wte / lm_head is one tensor: perturbed once
                p.add_(torch.randn(p.shape, generator=gen) * perturb)
    return model.eval()


def hf_logits_loss(model: Any, idx: np.ndarray) -> tuple[np.ndarray, float]:
    """transformers' own logits (B, T, V) and next-token loss (labels=idx, shifted inside HF)."""
    with torch.no_grad():
        out = model(input_ids=torch.as_tensor(idx, dtype=torch.long), labels=torch.as_tensor(idx, dtype=torch.long))
    return out.logits.numpy(), float(out.loss)


def shifted_targets(idx: np.ndarray) -> np.ndarray:
    """HF's labels=idx convention in our (idx, targets) form: next token, last position ignored (-1)."""
    return np.concatenate([idx[:, 1:], np.full((idx.shape[0], 1), -1, idx.dtype)], axis=1)
