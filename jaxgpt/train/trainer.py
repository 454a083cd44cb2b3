"""The GPT trainer in JAX: model + AdamW + RNG as one state, one jitted step on a device mesh.

Mirrored by `torchref/train/trainer.py` (same class name, same methods). References: the Flax NNX
examples (split once, a pure `jax.jit` step that merges inside), nanodo (mesh + NamedSharding,
donated state), build-nanogpt (gradient accumulation, the log quantities).

The step, for a global batch of A micro-steps x M rows (A = `grad_accum`):
    lax.scan over the A micro-batches: loss, grad = value_and_grad(model)(x[a], y[a]); sum grads
    grads /= A; norm = global_norm(grads); clip to 1.0 + AdamW (jaxgpt/train/optimizer.py)
all inside one `jax.jit`, so there is no host round trip per micro-step. The rows M are sharded
over the mesh's "data" axis (jaxgpt/train/sharding.py); parameters and optimiser state are
replicated, or FSDP-sharded with `fsdp=True`. Data parallel: the scan runs per device under
`jax.shard_map` and the gradients are summed across devices once, after it (plain jit would
all-reduce them in every micro-step; tests/test_grad_allreduce.py reads it from the compiled HLO).
FSDP: plain jit, XLA all-gathers the weights and reduce-scatters the gradients.

Compute dtype: `dtype="bfloat16"` runs the matmuls in bf16 while parameters, gradients and the
AdamW moments stay fp32 (GPT's `dtype` vs its fp32 `param_dtype`); LayerNorm, softmax and the
loss are fp32 whatever the dtype (jaxgpt/gpt.py).

Public interface (shared with the torch twin):
    step(x, y) -> (loss, grad_norm) floats     x, y: this process's int32 rows (R, T), R = A * M_local
    dispatch(x, y) -> (loss, grad_norm) arrays the same step without waiting for it (loop hygiene)
    eval_loss(x, y) -> float                   dropout off; rows (M_local, T)
    state_numpy() / load_numpy(w)              GPT-2-named fp32 weights (the interchange format)
    train_state_numpy() / load_train_state_numpy(s)   the whole training state by name (jaxgpt/common/checkpoint.py)
    generate(idx, n, **sampling), model_view(), save_hf(dir)
    save(dir) / restore(dir)                   that named state with orbax (multi-host safe; optionally async)

Checkpoints by name: every leaf of the NNX state (model, optimiser) gets its name in the layout of
jaxgpt/common/checkpoint.py: parameters and their AdamW moments under the weight table's names in
torch layout (kernels transposed on the device, shardings transposed with them), the dropout RNG
streams under their module path, and the optimiser's step counters as one `step`. Restoring walks
the current state and fills each leaf by its name, so a checkpoint does not depend on the order of
NNX's leaves, and a missing or mis-shaped entry is an error naming it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxgpt.common.checkpoint import ORBAX_FORMAT, check_train_state
from jaxgpt.common.config import GPTConfig
from jaxgpt.common.recipes import check_trainer_args
from jaxgpt.common.schedule import OptimConfig
from jaxgpt.common.weights import save_hf_dir
from jaxgpt.gpt import GPT, _torch_name
from jaxgpt.train.optimizer import make_optimizer
from jaxgpt.train.sharding import (
    AXIS,
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


def _place_one(host: np.ndarray, sharding: Any) -> jax.Array:
    """A host array (the same on every process) onto `sharding`, also across processes."""
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def _place(state: Any, shardings: Any) -> Any:
    """Put every leaf (identical on every process) onto its sharding; works across processes."""

    def put(x: Any, sharding: jax.sharding.NamedSharding) -> Any:
        key = _is_key(x)
        arr = _place_one(to_host(jax.random.key_data(x) if key else x), sharding)
        return jax.random.wrap_key_data(arr, impl=jax.random.key_impl(x)) if key else arr

    return jax.tree.map(put, state, shardings)


class StateInit(NamedTuple):
    """How a Trainer's state is made: its structure (one graphdef per dropout mode), shardings, and `create`."""

    gd_train: nnx.GraphDef  # (model in train mode, optimiser)
    gd_eval: nnx.GraphDef  # (model in eval mode, optimiser): the same state fits both
    gd_model: nnx.GraphDef  # the training model split as (Param, rest): the micro-steps' structure
    shardings: Any  # a NamedSharding per state leaf (replicated, or FSDP by shape)
    create: Any  # jitted () -> state: parameters, AdamW moments and RNG streams, born in their shardings


@functools.lru_cache(maxsize=16)  # one compilation per (model, optimiser, mesh): later Trainers of a process reuse it
def state_init(config: GPTConfig, optim: OptimConfig, seed: int, dtype: str, attn_impl: str | None,
               mesh: jax.sharding.Mesh, fsdp: bool) -> StateInit:
    """The model + AdamW state, initialised directly into its shardings (nanodo's and maxtext's way).

    `nnx.eval_shape` gives the state's shapes without allocating it; the shardings follow from the shapes;
    then `create` is the initialisation jitted with those `out_shardings`, so under FSDP each device
    computes only its shard (the random draws are partitionable) and no device nor the host ever holds
    the whole state: the 774M/1558M presets fit where their full fp32 state (12 bytes per parameter with
    the AdamW moments) would not. `create.lower().compile().memory_analysis()` shows the per-device cost.
    """

    def build() -> tuple[GPT, nnx.Optimizer]:
        model = GPT(config, rngs=nnx.Rngs(params=seed, dropout=seed + 1), dtype=DTYPES[dtype], attn_impl=attn_impl)
        return model, nnx.Optimizer(model, make_optimizer(optim), wrt=nnx.Param)

    model, opt = nnx.eval_shape(build)
    # Dropout's train/eval switch is static graph data: one graphdef per mode, one shared state.
    model.eval()
    gd_eval, _ = nnx.split((model, opt))
    model.train()
    gd_train, abstract = nnx.split((model, opt))
    gd_model = nnx.split(model, nnx.Param, ...)[0]
    shardings = state_shardings(abstract, mesh, fsdp)
    return StateInit(gd_train, gd_eval, gd_model, shardings,
                     jax.jit(lambda: nnx.state(build()), out_shardings=shardings))


class Trainer:
    """Flax NNX GPT + optax AdamW on a 1-D device mesh; one jitted step over the split state."""

    framework = "jax"
    state_format = ORBAX_FORMAT

    def __init__(self, config: GPTConfig, optim: OptimConfig, weights: dict[str, np.ndarray] | None = None,
                 seed: int = 0, *, grad_accum: int = 1, dtype: str = "float32", mesh: jax.sharding.Mesh | None = None,
                 fsdp: bool = False, attn_impl: str | None = None) -> None:
        check_trainer_args(grad_accum, dtype)
        self.config, self.optim, self.step_count = config, optim, 0
        self.grad_accum, self.dtype, self.fsdp = grad_accum, dtype, fsdp
        self.mesh = mesh if mesh is not None else make_mesh()
        init = state_init(config, optim, seed, dtype, attn_impl, self.mesh, fsdp)
        self._gd_train, self._gd_eval, self._shardings = init.gd_train, init.gd_eval, init.shardings
        gd_model = init.gd_model
        self.state = init.create()  # each device computes its own shard: nothing whole, nothing through the host
        if weights is not None:
            self.load_numpy(weights)
        replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        gd_train, gd_eval, A = self._gd_train, self._gd_eval, grad_accum

        def accumulate(params, rest, x, y):
            """Sum of the A micro-steps' gradients and losses (lax.scan: one compiled micro-step)."""

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
            return gsum, lsum, rest

        def accumulate_per_device(params, rest, x, y):
            """Data parallel: each device accumulates the gradients of its own rows, then ONE all-reduce.

            Under plain jit, XLA reduces each micro-step's gradient across devices inside the scan (the
            gradient of replicated parameters must be replicated), i.e. A all-reduces of the whole
            gradient per step; with shard_map the loop is per device and the psum comes after it. Each
            device folds its index into the dropout keys so that rows on different devices get
            different masks (the keys go back unchanged; the counters advance alike everywhere).
            """
            device = jax.lax.axis_index(AXIS)
            local = jax.tree.map(lambda v: jax.random.fold_in(v, device) if _is_key(v) else v, rest)
            gsum, lsum, advanced = accumulate(params, local, x, y)
            # each device's loss is the mean over its equal share of rows: the global mean is their mean
            gsum, lsum = jax.tree.map(lambda g: jax.lax.psum(g, AXIS) / n_devices, (gsum, lsum))
            return gsum, lsum, jax.tree.map(lambda old, new: old if _is_key(old) else new, rest, advanced)

        n_devices = self.mesh.shape[AXIS]
        batch = P(None, AXIS)  # (A, M, T): rows split over the devices
        per_device = jax.shard_map(accumulate_per_device, mesh=self.mesh, in_specs=(P(), P(), batch, batch),
                                   out_specs=(P(), P(), P()), check_vma=False)

        def train_step(state, x, y):  # x, y: (A, M, T)
            model, opt = nnx.merge(gd_train, state)
            _, params, rest = nnx.split(model, nnx.Param, ...)  # rest: dropout RNG streams
            # FSDP shards the parameters themselves: there XLA's own placement (all-gather the weights,
            # reduce-scatter the gradients per micro-step) is the design, so the step stays plain jit.
            gsum, lsum, rest = (accumulate if fsdp else per_device)(params, rest, x, y)
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
        """A process-local copy of the model (eval mode) for weight export, and for generation across processes.

        The model's own state only (parameters, RNG streams): the AdamW moments, twice its size, stay put."""
        def local(x: Any) -> Any:
            if _is_key(x):
                return jax.random.wrap_key_data(jnp.asarray(to_host(jax.random.key_data(x))), impl=jax.random.key_impl(x))
            return jnp.asarray(to_host(x))

        graphdef, state = nnx.split(self.model_view())
        return nnx.merge(graphdef, jax.tree.map(local, state))

    def state_numpy(self) -> dict[str, np.ndarray]:
        return self._host_model().state_numpy()

    def load_numpy(self, weights: dict[str, np.ndarray]) -> None:
        model, opt = nnx.merge(self._gd_train, self.state)
        model.load_numpy(weights)
        self.state = _place(nnx.state((model, opt)), self._shardings)

    def generate(self, idx: np.ndarray, max_new_tokens: int, **kw: Any) -> np.ndarray:
        """Samples from the live parameters where they are (one process: no copy at all); a model spread over
        several processes cannot hand this one its tokens, so there the parameters come to each host."""
        model = self.model_view() if jax.process_count() == 1 else self._host_model()
        return model.generate(idx, max_new_tokens, **kw)

    def save_hf(self, path: str | Path) -> None:
        """Export as a Hugging Face GPT-2 directory (process 0 writes it)."""
        weights = self.state_numpy()
        if jax.process_index() == 0:
            save_hf_dir(path, weights, self.config)
        barrier("save_hf")

    # ---- the training state by name, and checkpoints ------------------------------------------------
    def _named_leaves(self) -> list[tuple[str | None, bool, Any]]:
        """(name or None for a step counter, stored transposed?, Variable) for every leaf of the state."""
        return [(*_state_key(path), var) for path, var in nnx.to_flat_state(self.state)]

    def _named_arrays(self) -> dict[str, jax.Array]:
        """The state as {name: device array in the named layout} (still sharded), plus `step`."""
        out: dict[str, Any] = {}
        for name, transpose, var in self._named_leaves():
            if name is not None:
                v = var.get_value()
                v = jax.random.key_data(v) if _is_key(v) else v
                out[name] = v.T if transpose else v
        out["step"] = np.asarray(self.step_count, np.int64)
        return out

    def train_state_numpy(self) -> dict[str, np.ndarray]:
        """The whole training state as host numpy arrays by name (jaxgpt/common/checkpoint.py's layout)."""
        return {k: to_host(v) if isinstance(v, jax.Array) else v for k, v in self._named_arrays().items()}

    def load_train_state_numpy(self, state: dict[str, np.ndarray], rng: bool = True) -> None:
        """Set parameters, AdamW moments and step by name, and the dropout RNG when `rng` and present.

        `state` may come from either framework (a torch state has no JAX RNG entries: this run's
        streams are kept, i.e. they continue from the seed).
        """
        check_train_state(state, self.config, "training state")

        def value_of(name: str, shape: tuple, dtype: Any, sharding: Any) -> jax.Array | None:
            if name not in state or (name.startswith("rng/") and not rng):
                return None
            host = np.asarray(state[name])
            if host.shape != shape:
                raise ValueError(f"training state entry {name} has shape {host.shape}, {shape} expected")
            return _place_one(host.astype(dtype), sharding)

        self._fill(value_of, int(state["step"]))

    def _fill(self, value_of: Any, step: int) -> None:
        """Set every leaf from value_of(name, shape, dtype, sharding) in the NAMED layout (None: keep it)."""
        for name, transpose, var in self._named_leaves():
            old = var.get_value()
            if name is None:  # the optimiser's step counters: all of them count optimiser steps
                var.set_value(_place_one(np.full(old.shape, step, old.dtype), old.sharding))
                continue
            data = jax.random.key_data(old) if _is_key(old) else old
            new = value_of(name, data.T.shape if transpose else data.shape, data.dtype,
                           _transposed(data.sharding) if transpose else data.sharding)
            if new is None:
                continue
            if transpose:
                new = jax.jit(jnp.transpose, out_shardings=data.sharding)(new)
            var.set_value(jax.random.wrap_key_data(new, impl=jax.random.key_impl(old)) if _is_key(old) else new)
        self.step_count = step

    def finite(self) -> bool:
        """Whether every parameter and AdamW moment is finite: checked before a checkpoint is written, since a
        finite loss at step n does not prove the update of step n left finite parameters."""
        arrays = [a for name, _, var in self._named_leaves() if name is not None and not name.startswith("rng/")
                  for a in [var.get_value()]]
        return bool(to_host(_all_finite(arrays)))

    def save(self, directory: Path, asynchronous: bool = False) -> Any:
        """Write the named state with orbax into DIR/state; all processes call it (the write is collective).

        With `asynchronous`, returns once the arrays are copied off the devices; the returned
        handle's wait() blocks until the files are written (jaxgpt/common/checkpoint.py commits then).
        """
        import orbax.checkpoint as ocp

        tree = _nest(self._named_arrays())
        ckptr = _checkpointer(ocp)
        ckptr.save(Path(directory).absolute() / "state", args=ocp.args.PyTreeSave(tree))
        handle = _OrbaxWrite(ckptr)
        if asynchronous:
            return handle
        handle.wait()
        return None

    def restore(self, directory: Path) -> None:
        """Read DIR/state (this framework's format) back into the live state, each array onto its sharding."""
        import orbax.checkpoint as ocp

        target: dict[str, Any] = {"step": np.asarray(0, np.int64)}
        for name, transpose, var in self._named_leaves():
            if name is not None:
                v = var.get_value()
                data = jax.random.key_data(v) if _is_key(v) else v
                target[name] = jax.ShapeDtypeStruct(data.T.shape if transpose else data.shape, data.dtype,
                                                    sharding=_transposed(data.sharding) if transpose else data.sharding)
        with ocp.StandardCheckpointer() as ckptr:
            got = _flatten(ckptr.restore(Path(directory).absolute() / "state", _nest(target)))
        missing = sorted(set(target) - set(got))
        if missing:
            raise ValueError(f"checkpoint {directory} lacks {missing[:8]}; it was written for another model")
        self._fill(lambda name, shape, dtype, sharding: got[name], int(got["step"]))


def _checkpointer(ocp: Any) -> Any:
    """An orbax checkpointer for the named state: orbax's PyTree format, as `ocp.StandardCheckpointer()` writes
    and reads it (restore and read_state use that one), with one change: with one process, each array is written
    from its first replica. orbax's default on CPU (replica-parallel) splits every replicated array into a
    slice per device, a `jit(slice)` per array shape compiled before the first save (4 s of the first save's
    4.4 s, tiny model on 8 CPU devices), which pays only when several hosts each write a part. With several
    processes orbax chooses as usual.
    """
    import orbax.checkpoint.type_handlers as th

    registry = th.create_type_handler_registry(
        (int, th.ScalarHandler()), (float, th.ScalarHandler()), (np.number, th.ScalarHandler()),
        (np.ndarray, th.NumpyHandler()),
        (jax.Array, th.ArrayHandler(use_replica_parallel=None if jax.process_count() > 1 else False)))
    return ocp.AsyncCheckpointer(ocp.PyTreeCheckpointHandler(use_ocdbt=True, type_handler_registry=registry))


@jax.jit
def _all_finite(arrays: list[jax.Array]) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in arrays]))


class _OrbaxWrite:
    """The handle of a (possibly background) orbax save: wait() returns when the files are complete."""

    def __init__(self, ckptr: Any) -> None:
        self.ckptr = ckptr

    def wait(self) -> None:
        self.ckptr.wait_until_finished()
        self.ckptr.close()


def _state_key(path: tuple) -> tuple[str | None, bool]:
    """The named-state key of one leaf of nnx.state((model, optimizer)) and whether it is stored transposed.

    (0, 'transformer', 'h', 0, 'attn', 'c_attn', 'kernel') -> ('params/transformer.h.0.attn.c_attn.weight', True)
    (1, 'opt_state', 1, 0, 'mu', <param path>)             -> ('opt/mu/<name>', <as the parameter>)
    (0, ..., 'drop', 'rngs', 'key')                          -> ('rng/transformer.drop.rngs.key', False)
    (1, 'step') and every optax 'count'                      -> (None, False): all equal the step
    """
    if path[0] == 0:
        rest = path[1:]
        if len(rest) >= 2 and rest[-2] == "rngs":
            return "rng/" + ".".join(map(str, rest)), False
        name, transpose = _torch_name(rest)
        return "params/" + name, transpose
    for moment in ("mu", "nu"):
        if moment in path:
            name, transpose = _torch_name(path[path.index(moment) + 1:])
            return f"opt/{moment}/{name}", transpose
    if path[-1] not in ("count", "step"):
        raise ValueError(f"optimiser state leaf {path} has no name in the checkpoint layout; "
                         "extend jaxgpt/train/trainer.py's _state_key for the new optimiser")
    return None, False


def _transposed(sharding: Any) -> Any:
    """The sharding of a 2-D array's transpose: the partition spec reversed."""
    if not isinstance(sharding, jax.sharding.NamedSharding):
        return sharding
    spec = tuple(sharding.spec) + (None,) * (2 - len(sharding.spec))
    return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(*reversed(spec)))


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{"opt/mu/x": a, "step": s} -> {"opt": {"mu": {"x": a}}, "step": s}: orbax's tree, keyed by name."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *groups, name = key.split("/")
        node = tree
        for g in groups:
            node = node.setdefault(g, {})
        node[name] = value
    return tree


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out |= _flatten(v, f"{prefix}{k}/")
        else:
            out[prefix + k] = v
    return out


def read_state(directory: Path) -> dict[str, np.ndarray]:
    """A JAX checkpoint's named state as host numpy arrays, without a Trainer (e.g. to resume it in torch).

    Restores every array onto this process's first CPU device, whatever the devices that wrote it.
    """
    import orbax.checkpoint as ocp

    path = Path(directory).absolute() / "state"
    cpu = jax.sharding.SingleDeviceSharding(jax.local_devices(backend="cpu")[0])
    with ocp.StandardCheckpointer() as ckptr:
        meta = ckptr.metadata(path).item_metadata.tree
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=cpu) if m.shape else
                              np.zeros((), m.dtype), meta)
        got = ckptr.restore(path, target)
    return {k: np.asarray(v) for k, v in _flatten(got).items()}


def fetch(x: jax.Array) -> float:
    """A replicated scalar as a Python float (waits for it), on any process."""
    return float(to_host(x))
