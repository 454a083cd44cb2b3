"""HellaSwag scoring in JAX: the model-dependent half (rendering and counting live in jaxgpt/common/data/hellaswag.py).

References: karpathy/build-nanogpt `hellaswag.py` (completion-style scoring: GPT-2 124M gets
acc 0.2859 / acc_norm 0.2955 on the official val set), nanodo (1-D data mesh, batch on
`P("data")`, an error when the batch does not divide the devices). Mirrored by
`torchref/eval/hellaswag.py`.

Two jitted functions: `token_losses`, packed token rows (R, L) -> per-token cross-entropy (R, L-1)
(the reference: every position through the head), and `_ending_losses`, which `HellaSwagEval` runs:
the trunk over every position, then the vocabulary-wide head and the cross-entropy only at the
ending tokens (`ending_positions`: about a quarter of the positions; the head dominates a small
model's evaluation). Every batch of an evaluation has the same shapes (`pack_length` pads all
examples to one length, `iter_batches` pads the last batch, `pack_batches` one ending width), so it
compiles once per evaluation shape. A training loop that evaluates every N steps holds one
`HellaSwagEval`: the tasks are rendered and packed once per run, each batch is as large as the
memory budget allows, and an evaluation dispatches every batch before fetching all their losses at once.

Distribution, two levels:
- devices: with a `mesh`, a batch's rows are sharded over its (first) axis and the parameters are
  replicated on it (or kept as they are when they already live on the mesh, e.g. FSDP-sharded;
  on a mesh that spans processes each process fills its own devices from its host copy);
- processes: process p scores examples p, p+P, p+2P, ... (`iter_batches`); every process runs the
  same number of same-shaped batches, so jitted collectives stay in step. The per-example
  predictions are then all-gathered and merged by example index: counts are sums of integers,
  identical on every process, never averages of averages.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxgpt.common.data.hellaswag import (
    EVAL_BYTES_PER_DEVICE,
    N_ENDINGS,
    Result,
    check_eval_args,
    combine_results,
    examples_per_batch,
    max_scored,
    pack_batches,
    pack_length,
    pad_token,
    prepare_rendered,
    progress_bar,
    score_batch,
    spread_losses,
)
from jaxgpt.gpt import GPT, _set_eval


@partial(jax.jit, static_argnums=0)
def _ending_losses(graphdef: nnx.GraphDef, state: nnx.State, tokens: jax.Array, positions: jax.Array) -> jax.Array:
    """Rows (R, L) and ending positions (G, K) -> the losses there (G, K): `token_losses` of row slice g,
    flattened, at positions[g] (G: the mesh's devices, each holding one slice of rows and its positions)."""
    model = nnx.merge(graphdef, state)
    G = positions.shape[0]
    x = model.hidden(tokens[:, :-1])  # (R, L-1, C) fp32
    x = x.reshape(G, -1, x.shape[-1])  # (G, R/G*(L-1), C): each device's rows stay on it
    targets = tokens[:, 1:].reshape(G, -1)
    x = jnp.take_along_axis(x, positions[..., None], axis=1)  # (G, K, C)
    logits = model.head(x)  # (G, K, V) fp32: the head at the endings only
    return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.take_along_axis(targets, positions, axis=1))


@partial(jax.jit, static_argnums=0)
def _token_losses(graphdef: nnx.GraphDef, state: nnx.State, tokens: jax.Array) -> jax.Array:
    model = nnx.merge(graphdef, state)
    logits, _ = model(tokens[:, :-1])  # (R, L-1, V) fp32: the last token predicts nothing
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:])  # (R, L-1)


def token_losses(model: GPT, tokens: np.ndarray, mesh: Mesh | None = None) -> np.ndarray:
    """Per-token losses (R, L-1) of token rows (R, L): loss[:, j] = -log p(tokens[:, j+1] | tokens[:, :j+1]).

    With a mesh, `tokens` are this process's rows; the returned losses are this process's rows too.
    The model is used as it is (put it in eval mode first: `evaluate_hellaswag` does).
    """
    graphdef, state = nnx.split(model)
    if mesh is not None:
        state = _on_mesh(state, mesh)
    return _run(graphdef, state, np.asarray(tokens, dtype=np.int32), mesh)


def _run(graphdef: nnx.GraphDef, state: nnx.State, tokens: np.ndarray, mesh: Mesh | None) -> np.ndarray:
    return _fetch_all([_dispatch(graphdef, state, tokens, mesh)], mesh)[0]


def _on_mesh(state: nnx.State, mesh: Mesh) -> nnx.State:
    """Replicate parameters onto the mesh, leaving those already placed on it (e.g. FSDP shards) alone."""
    devices = set(mesh.devices.flat)
    replicated = NamedSharding(mesh, P())

    def place(x: Any) -> Any:
        if isinstance(x, jax.Array) and x.sharding.device_set == devices:
            return x
        return _replicate(x, replicated)

    return jax.tree.map(place, state)


def _replicate(x: Any, sharding: NamedSharding) -> jax.Array:
    """x (the same value on every process) -> a copy on every device of `sharding`'s mesh."""
    if sharding.is_fully_addressable:
        return jax.device_put(x, sharding)
    # A mesh spanning processes: device_put cannot reach other processes' devices, so each process
    # fills its own devices from its host copy (dropout RNG keys travel as their raw uint32 data).
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(_replicate(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x))
    host = np.asarray(jax.device_get(x))
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def evaluate_hellaswag(model: GPT, examples_or_path: Any, *, batch_size: int | None = None, mesh: Mesh | None = None,
                       limit: int | None = None, enc: Any = None, progress: bool = False) -> dict:
    """Score HellaSwag completion-style; returns identical totals on every process.

    examples_or_path: a hellaswag_val.jsonl-schema file, or a list of `Example`s, or of `Rendered`s.
      To evaluate every N training steps, make one `HellaSwagEval` and call it instead: it renders and
      packs the tasks once.
    batch_size: examples per process per step (each is 4 rows); with a mesh, 4 * batch_size must
      divide by the mesh's devices in this process. None: as many as the memory budget allows
      (`examples_per_batch`).
    mesh: shard each batch's rows over the mesh's first axis (None: the default device), e.g.
      jaxgpt.train.sharding.make_mesh().
    enc: the tokenizer for rendering (default tiktoken gpt2).

    Returns {"acc", "acc_norm", "count", "correct", "correct_norm", "result", "seconds"}; `result`
    is the merged `Result` (per-example label / pred / pred_norm, ordered by example index).
    """
    return HellaSwagEval(examples_or_path, model.config, batch_size=batch_size, mesh=mesh, limit=limit,
                         enc=enc)(model, progress=progress)


class HellaSwagEval:
    """HellaSwag rendered and packed once, scored as often as needed (a training run: every N steps).

    Each call dispatches every batch's forward without waiting, then fetches all the per-token losses in
    one transfer: one host round trip per evaluation, not one per batch.
    """

    def __init__(self, examples_or_path: Any, config: Any, *, batch_size: int | None = None,
                 mesh: Mesh | None = None, limit: int | None = None, enc: Any = None) -> None:
        check_eval_args(1 if batch_size is None else batch_size, limit)
        self.mesh = mesh
        pad_id = pad_token(config)
        rendered = prepare_rendered(examples_or_path, config, limit, enc, pad_id)
        n_local = 1 if mesh is None else len([d for d in mesh.devices.flat if d.process_index == jax.process_index()])
        length = pack_length(rendered, block_size=config.block_size)  # one shape for every batch: one compilation
        pid, nproc = jax.process_index(), jax.process_count()
        if batch_size is None:
            batch_size = examples_per_batch(length, config.padded_vocab_size or config.vocab_size, n_local,
                                            _device_budget(), -(-len(rendered) // nproc), max_scored(rendered))
        if (N_ENDINGS * batch_size) % n_local:
            raise ValueError(f"a batch of {batch_size} examples is {N_ENDINGS * batch_size} rows, which does not "
                             f"divide over this process's {n_local} mesh devices; pick batch_size so that "
                             f"4 * batch_size is a multiple of {n_local}")
        self.packed = pack_batches(rendered, batch_size, length, pid, nproc, pad_id, groups=n_local)

    def __call__(self, model: GPT, progress: bool = False) -> dict:
        t0 = time.perf_counter()
        length = self.packed.length
        was_training = _set_eval(model)
        try:
            graphdef, state = nnx.split(model)
            if self.mesh is not None:
                state = _on_mesh(state, self.mesh)
            # all batches dispatched first (the device works through them while the host packs the next)...
            pending = [_dispatch(graphdef, state, b.tokens.reshape(-1, length), self.mesh, positions)
                       for b, positions in progress_bar(list(zip(self.packed.batches, self.packed.positions)),
                                                        progress)]
        finally:
            if was_training:
                model.train()
        losses = _fetch_all(pending, self.mesh)  # ...then one transfer for all of them
        rows = N_ENDINGS * self.packed.batch_size
        result = _gather([score_batch(b, spread_losses(p, x, rows, length))
                          for b, p, x in zip(self.packed.batches, self.packed.positions, losses)], jax.process_count())
        return {"acc": result.acc, "acc_norm": result.acc_norm, "count": result.n, "correct": result.correct,
                "correct_norm": result.correct_norm, "result": result, "seconds": time.perf_counter() - t0}


def _device_budget() -> int:
    """Bytes of evaluation logits per device: a quarter of an accelerator's memory; on CPUs the default shared by
    the host's devices (simulated CPU devices all live in the one host memory)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    return stats["bytes_limit"] // 4 if "bytes_limit" in stats else EVAL_BYTES_PER_DEVICE // jax.local_device_count()


def _dispatch(graphdef: nnx.GraphDef, state: nnx.State, tokens: np.ndarray, mesh: Mesh | None,
              positions: np.ndarray | None = None) -> jax.Array:
    """Launch one batch's forward; its losses stay on the devices: per token (R, L-1), or with this process's
    ending `positions` (G, K) (-1: none) only there (G, K)."""
    args = [tokens] if positions is None else [tokens, np.maximum(positions, 0)]  # -1 reads position 0, unused
    if mesh is None:
        args = [jnp.asarray(a) for a in args]
    else:
        args = multihost_utils.host_local_array_to_global_array(args, mesh, [P(mesh.axis_names[0])] * len(args))
    return (_token_losses if positions is None else _ending_losses)(graphdef, state, *args)


def _fetch_all(pending: list[jax.Array], mesh: Mesh | None) -> list[np.ndarray]:
    """Every batch's losses (this process's rows or groups) in one device-to-host transfer."""
    if mesh is not None:
        pending = multihost_utils.global_array_to_host_local_array(pending, mesh, [P(mesh.axis_names[0])] * len(pending))
    return [np.asarray(x) for x in jax.device_get(pending)]


def _gather(parts: list[Result], nproc: int) -> Result:
    """Merge this process's results with every other process's (all-gather of fixed-size arrays)."""
    local = combine_results(parts)
    if nproc == 1:
        return local
    # Processes hold different counts (they differ by at most one batch): pad to a common size with
    # index -1, gather (P, n) and drop the padding. Indices and predictions are small ints: int32 is exact.
    n = int(np.max(multihost_utils.process_allgather(np.array([local.n], np.int32))))
    table = np.full((4, n), -1, np.int32)
    table[:, :local.n] = [local.index, local.label, local.pred, local.pred_norm]
    every = np.asarray(multihost_utils.process_allgather(table))  # (P, 4, n): index, label, pred, pred_norm
    merged = combine_results([Result(*(np.asarray(t[i][t[0] >= 0], np.int64) for i in range(4))) for t in every])
    counts = np.asarray(multihost_utils.process_allgather(local.counts().astype(np.int32))).sum(0)
    if not np.array_equal(merged.counts(), counts):  # the two routes must agree exactly
        raise RuntimeError(f"gathered counts {merged.counts()} != summed per-process counts {counts}")
    return merged
