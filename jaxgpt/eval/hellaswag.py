"""HellaSwag scoring in JAX: the model-dependent half (rendering and counting live in jaxgpt/common/data/hellaswag.py).

References: karpathy/build-nanogpt `hellaswag.py` (completion-style scoring: GPT-2 124M gets
acc 0.2859 / acc_norm 0.2955 on the official val set), nanodo (1-D data mesh, batch on
`P("data")`, an error when the batch does not divide the devices). Mirrored by
`torchref/eval/hellaswag.py`.

What runs here is one jitted function, `token_losses`: packed token rows (R, L) -> per-token
cross-entropy (R, L-1). Every batch of an evaluation has the same shape (`pack_length` pads all
examples to one length, `iter_batches` pads the last batch), so it compiles once per evaluation
shape, and a training loop that evaluates every N steps re-uses that compilation.

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
    N_ENDINGS,
    Result,
    check_eval_args,
    combine_results,
    iter_batches,
    pack_length,
    pad_token,
    prepare_rendered,
    progress_bar,
    score_batch,
)
from jaxgpt.gpt import GPT, _set_eval


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
    if mesh is None:
        return np.asarray(_token_losses(graphdef, state, jnp.asarray(tokens)))
    spec = P(mesh.axis_names[0])
    # Each process hands over its own rows; the global batch is their concatenation in process order.
    x = multihost_utils.host_local_array_to_global_array(tokens, mesh, spec)
    out = _token_losses(graphdef, state, x)  # (R_global, L-1), rows sharded like the input
    return np.asarray(multihost_utils.global_array_to_host_local_array(out, mesh, spec))


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


def evaluate_hellaswag(model: GPT, examples_or_path: Any, *, batch_size: int = 8, mesh: Mesh | None = None,
                       limit: int | None = None, enc: Any = None, progress: bool = False) -> dict:
    """Score HellaSwag completion-style; returns identical totals on every process.

    examples_or_path: a hellaswag_val.jsonl-schema file, or a list of `Example`s, or of `Rendered`s
      (render once and pass those when evaluating every N training steps).
    batch_size: examples per process per step (each is 4 rows); with a mesh, 4 * batch_size must
      divide by the mesh's devices in this process.
    mesh: shard each batch's rows over the mesh's first axis (None: the default device), e.g.
      jaxgpt.train.sharding.make_mesh().
    enc: the tokenizer for rendering (default tiktoken gpt2).

    Returns {"acc", "acc_norm", "count", "correct", "correct_norm", "result", "seconds"}; `result`
    is the merged `Result` (per-example label / pred / pred_norm, ordered by example index).
    """
    check_eval_args(batch_size, limit)
    cfg = model.config
    pad_id = pad_token(cfg)
    rendered = prepare_rendered(examples_or_path, cfg, limit, enc, pad_id)
    if mesh is not None:
        n_local = len([d for d in mesh.devices.flat if d.process_index == jax.process_index()])
        if (N_ENDINGS * batch_size) % n_local:
            raise ValueError(f"a batch of {batch_size} examples is {N_ENDINGS * batch_size} rows, which does not "
                             f"divide over this process's {n_local} mesh devices; pick batch_size so that "
                             f"4 * batch_size is a multiple of {n_local}")
    length = pack_length(rendered, block_size=cfg.block_size)  # one shape for every batch: one compilation
    pid, nproc = jax.process_index(), jax.process_count()
    batches = list(iter_batches(rendered, batch_size, length, pid, nproc, pad_id))

    t0 = time.perf_counter()
    was_training = _set_eval(model)
    try:
        graphdef, state = nnx.split(model)
        if mesh is not None:
            state = _on_mesh(state, mesh)
        parts = []
        for batch in progress_bar(batches, progress):
            losses = _run(graphdef, state, batch.tokens.reshape(-1, length), mesh)  # (4N, L-1)
            parts.append(score_batch(batch, losses))
    finally:
        if was_training:
            model.train()
    result = _gather(parts, nproc)
    return {"acc": result.acc, "acc_norm": result.acc_norm, "count": result.n, "correct": result.correct,
            "correct_norm": result.correct_norm, "result": result, "seconds": time.perf_counter() - t0}


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
