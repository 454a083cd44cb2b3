"""The GPT trainer in JAX: model + AdamW + RNG as one state, one jitted step on a device mesh.

Mirrored by `torchref/train/trainer.py` (same class name, same methods). References: the Flax NNX
examples (split once, a pure `jax.jit` step that merges inside), nanodo (mesh + NamedSharding,
donated state), build-nanogpt (gradient accumulation, the log quantities).

The step, for a global batch of A micro-steps x M rows (A = `grad_accum`):
    lax.scan over the A micro-batches: loss, grad = value_and_grad(model)(x[a], y[a]); sum grads
    grads /= A; norm = global_norm(grads); clip to 1.0 + AdamW (jaxgpt/train/optimizer.py)
all inside one `jax.jit`, so there is no host round trip per micro-step. The rows M are sharded
over the mesh's "data" axis (jaxgpt/train/sharding.py); parameters and optimiser state are
replicated, or FSDP-sharded with `fsdp=True`. XLA adds the gradient all-reduce.

Compute dtype: `dtype="bfloat16"` runs the matmuls in bf16 while parameters, gradients and the
AdamW moments stay fp32 (GPT's `dtype` vs its fp32 `param_dtype`); LayerNorm, softmax and the
loss are fp32 whatever the dtype (jaxgpt/gpt.py).

Public interface (shared with the torch twin):
    step(x, y) -> (loss, grad_norm) floats     x, y: this process's int32 rows (R, T), R = A * M_local
    dispatch(x, y) -> (loss, grad_norm) arrays the same step without waiting for it (loop hygiene)
    eval_loss(x, y) -> float                   dropout off; rows (M_local, T)
    state_numpy() / load_numpy(w)              GPT-2-named fp32 weights (the interchange format)
    generate(idx, n, **sampling), model_view(), save_hf(dir)
    save(dir) / restore(dir)                   params, optimiser state, RNG, step (orbax; multi-host safe)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxgpt.common.config import GPTConfig
from jaxgpt.common.schedule import OptimConfig
from jaxgpt.common.weights import save_hf_dir
from jaxgpt.gpt import GPT
from jaxgpt.train.optimizer import make_optimizer
from jaxgpt.train.sharding import (
    barrier,
    global_batch,
    global_eval_batch,
    make_mesh,
    state_shardings,
    to_host,
)

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _place(state: Any, shardings: Any) -> Any:
    """Put every leaf (identical on every process) onto its sharding; works across processes."""

    def put(x: Any, sharding: jax.sharding.NamedSharding) -> Any:
        key = _is_key(x)
        host = to_host(jax.random.key_data(x) if key else x)
        arr = jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])
        return jax.random.wrap_key_data(arr, impl=jax.random.key_impl(x)) if key else arr

    return jax.tree.map(put, state, shardings)


class Trainer:
    """Flax NNX GPT + optax AdamW on a 1-D device mesh; one jitted step over the split state."""

    framework = "jax"

    def __init__(self, config: GPTConfig, optim: OptimConfig, weights: dict[str, np.ndarray] | None = None,
                 seed: int = 0, *, grad_accum: int = 1, dtype: str = "float32", mesh: jax.sharding.Mesh | None = None,
                 fsdp: bool = False, attn_impl: str | None = None) -> None:
        if grad_accum < 1:
            raise ValueError(f"grad_accum={grad_accum} must be >= 1")
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r} is unknown; use one of {sorted(DTYPES)}")
        self.config, self.optim, self.step_count = config, optim, 0
        self.grad_accum, self.dtype, self.fsdp = grad_accum, dtype, fsdp
        self.mesh = mesh if mesh is not None else make_mesh()
        model = GPT(config, rngs=nnx.Rngs(params=seed, dropout=seed + 1), dtype=DTYPES[dtype], attn_impl=attn_impl)
        if weights is not None:
            model.load_numpy(weights)
        opt = nnx.Optimizer(model, make_optimizer(optim), wrt=nnx.Param)
        # Dropout's train/eval switch is static graph data: one graphdef per mode, one shared state.
        model.eval()
        self._gd_eval, _ = nnx.split((model, opt))
        model.train()
        self._gd_train, state = nnx.split((model, opt))
        self._shardings = state_shardings(state, self.mesh, fsdp)
        self.state = _place(state, self._shardings)
        del model, opt  # the live copy is self.state, on the mesh
        replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        gd_train, gd_eval, A = self._gd_train, self._gd_eval, grad_accum

        def train_step(state, x, y):  # x, y: (A, M, T)
            model, opt = nnx.merge(gd_train, state)
            gd_model, params, rest = nnx.split(model, nnx.Param, ...)  # rest: dropout RNG streams

            def loss_fn(p, rest, xb, yb):
                m = nnx.merge(gd_model, p, rest, copy=True)  # fresh Variables at this trace level
                loss = m(xb, yb)[1]
                return loss, nnx.split(m, nnx.Param, ...)[2]  # the advanced RNG counters

            def micro(carry, xy):
                gsum, lsum, rest = carry
                (loss, rest), g = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, *xy)
                return (jax.tree.map(jnp.add, gsum, g), lsum + loss, rest), None

            zeros = jax.tree.map(jnp.zeros_like, params)
            (gsum, lsum, rest), _ = jax.lax.scan(micro, (zeros, jnp.zeros((), jnp.float32), rest), (x, y))
            grads = jax.tree.map(lambda g: g / A, gsum)  # mean over micro-steps = mean over the global batch
            nnx.update(model, rest)
            norm = optax.tree.norm(grads)  # before clipping, as torch's clip_grad_norm_ reports it
            opt.update(model, grads)
            return nnx.state((model, opt)), lsum / A, norm

        def eval_step(state, x, y):
            model, _ = nnx.merge(gd_eval, state)
            return model(x, y)[1]

        self._train_step = jax.jit(train_step, donate_argnums=0,
                                   out_shardings=(self._shardings, replicated, replicated))
        self._eval_step = jax.jit(eval_step, out_shardings=replicated)

    # ---- training ------------------------------------------------------------------------------
    def dispatch(self, x: np.ndarray, y: np.ndarray) -> tuple[jax.Array, jax.Array]:
        """Launch one optimiser step on this process's rows (R, T); returns (loss, norm) not yet fetched."""
        xg, yg = global_batch(x, self.grad_accum, self.mesh), global_batch(y, self.grad_accum, self.mesh)
        self.state, loss, norm = self._train_step(self.state, xg, yg)
        self.step_count += 1
        return loss, norm

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        loss, norm = self.dispatch(x, y)
        return fetch(loss), fetch(norm)

    def eval_loss(self, x: np.ndarray, y: np.ndarray) -> float:
        xg, yg = global_eval_batch(x, self.mesh), global_eval_batch(y, self.mesh)
        return fetch(self._eval_step(self.state, xg, yg))

    # ---- the model -----------------------------------------------------------------------------
    def model_view(self) -> GPT:
        """The live model (eval mode) on the mesh: for evaluations that take a GPT (HellaSwag)."""
        return nnx.merge(self._gd_eval, self.state)[0]

    def _host_model(self) -> GPT:
        """A process-local copy of the model (eval mode), for generation and weight export."""
        def local(x: Any) -> Any:
            if _is_key(x):
                return jax.random.wrap_key_data(jnp.asarray(to_host(jax.random.key_data(x))), impl=jax.random.key_impl(x))
            return jnp.asarray(to_host(x))

        return nnx.merge(self._gd_eval, jax.tree.map(local, self.state))[0]

    def state_numpy(self) -> dict[str, np.ndarray]:
        return self._host_model().state_numpy()

    def load_numpy(self, weights: dict[str, np.ndarray]) -> None:
        model, opt = nnx.merge(self._gd_train, self.state)
        model.load_numpy(weights)
        self.state = _place(nnx.state((model, opt)), self._shardings)

    def generate(self, idx: np.ndarray, max_new_tokens: int, **kw: Any) -> np.ndarray:
        return self._host_model().generate(idx, max_new_tokens, **kw)

    def save_hf(self, path: str | Path) -> None:
        """Export as a Hugging Face GPT-2 directory (process 0 writes it)."""
        weights = self.state_numpy()
        if jax.process_index() == 0:
            save_hf_dir(path, weights, self.config)
        barrier("save_hf")

    # ---- checkpoints ---------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Every leaf of the state (typed PRNG keys as their raw uint32 data) with orbax; all processes call it."""
        import orbax.checkpoint as ocp

        leaves = jax.tree.leaves(self.state)
        arrays = {f"{i:05d}": jax.random.key_data(v) if _is_key(v) else v for i, v in enumerate(leaves)}
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(Path(directory).absolute() / "state", {"leaves": arrays, "step": np.asarray(self.step_count, np.int64)})

    def restore(self, directory: Path) -> None:
        import orbax.checkpoint as ocp

        leaves, treedef = jax.tree.flatten(self.state)
        target = {}
        for i, v in enumerate(leaves):
            data = jax.random.key_data(v) if _is_key(v) else v
            target[f"{i:05d}"] = jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=data.sharding)
        with ocp.StandardCheckpointer() as ckptr:
            got = ckptr.restore(Path(directory).absolute() / "state", {"leaves": target, "step": np.asarray(0, np.int64)})
        new = [jax.random.wrap_key_data(got["leaves"][f"{i:05d}"], impl=jax.random.key_impl(old)) if _is_key(old)
               else got["leaves"][f"{i:05d}"] for i, old in enumerate(leaves)]
        self.state = jax.tree.unflatten(treedef, new)
        self.step_count = int(got["step"])


def fetch(x: jax.Array) -> float:
    """A replicated scalar as a Python float (waits for it), on any process."""
    return float(to_host(x))
