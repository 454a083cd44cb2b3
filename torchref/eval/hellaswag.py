"""HellaSwag scoring in PyTorch: the mirror of `jaxgpt/eval/hellaswag.py`.

References: karpathy/build-nanogpt `hellaswag.py` (completion-style scoring). Rendering, packing,
scoring and combining are the framework-free `jaxgpt/common/data/hellaswag.py`; only the forward pass
is torch: `token_losses` (rows (R, L) -> per-token cross-entropy (R, L-1), every position through the
head) and `_ending_losses`, which `HellaSwagEval` runs (the head only at the ending tokens).

Distribution: when torch.distributed is initialised (DDP), rank r scores examples r, r+W, ...
(`iter_batches`); the per-example predictions are all-gathered and merged by example index, and
the counts are checked against an all_reduce(SUM) of [n, correct, correct_norm], so every rank
returns the same exact totals.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

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
from torchref.gpt import GPT


@torch.no_grad()
def token_losses(model: GPT, tokens: np.ndarray, device: torch.device | str | None = None) -> np.ndarray:
    """Per-token losses (R, L-1) of token rows (R, L): loss[:, j] = -log p(tokens[:, j+1] | tokens[:, :j+1])."""
    return _dispatch(model, tokens, device).float().cpu().numpy()


@torch.no_grad()
def _dispatch(model: GPT, tokens: np.ndarray, device: torch.device | str | None) -> torch.Tensor:
    """One batch's per-token losses (R, L-1), left on the device (queued, on CUDA)."""
    device = device if device is not None else next(model.parameters()).device
    x = torch.as_tensor(np.asarray(tokens, dtype=np.int64), device=device)
    logits, _ = model(x[:, :-1])  # (R, L-1, V) fp32: the last token predicts nothing
    R, T, V = logits.shape
    # Flattened (R*(L-1), V) rows: the softmax runs over contiguous memory (3x faster on CPU than
    # cross_entropy over the strided class dim of logits.transpose(1, 2)).
    losses = F.cross_entropy(logits.reshape(R * T, V), x[:, 1:].reshape(R * T), reduction="none")
    return losses.view(R, T)


@torch.no_grad()
def _ending_losses(model: GPT, tokens: np.ndarray, positions: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """Rows (R, L) and ending positions (1, K) (-1: none) -> the losses there (1, K), left on the device: the
    trunk over every position, the vocabulary-wide head only at the endings (the JAX twin's function)."""
    x = torch.as_tensor(np.asarray(tokens, dtype=np.int64), device=device)
    at = torch.as_tensor(np.maximum(positions, 0).astype(np.int64), device=device)  # -1 reads position 0, unused
    G, K = at.shape
    h = model.hidden(x[:, :-1])  # (R, L-1, C)
    h = h.reshape(G, -1, h.shape[-1])  # (G, R/G*(L-1), C)
    h = torch.gather(h, 1, at[..., None].expand(G, K, h.shape[-1]))  # (G, K, C)
    logits = model.head(h)  # (G, K, V) fp32
    targets = torch.gather(x[:, 1:].reshape(G, -1), 1, at)
    return F.cross_entropy(logits.reshape(G * K, -1), targets.reshape(G * K), reduction="none").view(G, K)


def evaluate_hellaswag(model: GPT, examples_or_path: Any, *, batch_size: int | None = None, device: Any = None,
                       limit: int | None = None, enc: Any = None, progress: bool = False) -> dict:
    """Score HellaSwag completion-style; with DDP, identical totals on every rank.

    Same arguments and return value as the JAX twin, with `device` (default: the model's) in place
    of `mesh`. A DDP-wrapped model is unwrapped (scoring needs no gradient synchronisation).
    """
    model = getattr(model, "module", model)  # DistributedDataParallel -> the GPT inside
    return HellaSwagEval(examples_or_path, model.config, batch_size=batch_size, device=device, limit=limit,
                         enc=enc)(model, progress=progress)


class HellaSwagEval:
    """HellaSwag rendered and packed once, scored as often as needed (the JAX twin's class): every batch is
    queued on the device, then all the losses come back in one transfer."""

    def __init__(self, examples_or_path: Any, config: Any, *, batch_size: int | None = None, device: Any = None,
                 limit: int | None = None, enc: Any = None) -> None:
        check_eval_args(1 if batch_size is None else batch_size, limit)
        self.device = device
        pad_id = pad_token(config)
        rendered = prepare_rendered(examples_or_path, config, limit, enc, pad_id)
        length = pack_length(rendered, block_size=config.block_size)
        distributed = dist.is_available() and dist.is_initialized()
        rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
        if batch_size is None:
            batch_size = examples_per_batch(length, config.padded_vocab_size or config.vocab_size, 1,
                                            _device_budget(device), -(-len(rendered) // world), max_scored(rendered))
        self.packed = pack_batches(rendered, batch_size, length, rank, world, pad_id)

    def __call__(self, model: GPT, progress: bool = False) -> dict:
        model = getattr(model, "module", model)
        device = self.device if self.device is not None else next(model.parameters()).device
        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        length = self.packed.length
        try:
            pending = [_ending_losses(model, b.tokens.reshape(-1, length), positions, device)
                       for b, positions in progress_bar(list(zip(self.packed.batches, self.packed.positions)),
                                                        progress)]
        finally:
            model.train(was_training)
        losses = torch.stack(pending).float().cpu().numpy()  # one transfer for every batch
        rows = N_ENDINGS * self.packed.batch_size
        result = combine_results([score_batch(b, spread_losses(p, x, rows, length))
                                  for b, p, x in zip(self.packed.batches, self.packed.positions, losses)])
        if dist.is_available() and dist.is_initialized():
            result = _gather(result, dist.get_world_size(), device)
        return {"acc": result.acc, "acc_norm": result.acc_norm, "count": result.n, "correct": result.correct,
                "correct_norm": result.correct_norm, "result": result, "seconds": time.perf_counter() - t0}


def _device_budget(device: Any) -> int:
    """Bytes of evaluation logits: a quarter of a GPU's memory, the CPU default elsewhere."""
    if device is not None and torch.device(device).type == "cuda":
        return torch.cuda.get_device_properties(torch.device(device)).total_memory // 4
    return EVAL_BYTES_PER_DEVICE


def _gather(local: Result, world: int, device: Any) -> Result:
    """All-gather every rank's per-example results (padded to a common size) and merge them."""
    # The collectives need tensors on the backend's device (CUDA for NCCL, CPU for gloo).
    counts = torch.tensor(local.counts(), dtype=torch.int64, device=device)
    dist.all_reduce(counts)  # exact totals: sums of integers
    n = torch.tensor([local.n], dtype=torch.int64, device=device)
    dist.all_reduce(n, op=dist.ReduceOp.MAX)
    # Rows: index, label, pred, pred_norm; columns past this rank's count hold index -1 (dropped).
    table = torch.full((4, int(n)), -1, dtype=torch.int64, device=device)
    table[:, :local.n] = torch.as_tensor(np.stack([local.index, local.label, local.pred, local.pred_norm]))
    every = [torch.empty_like(table) for _ in range(world)]
    dist.all_gather(every, table)
    merged = []
    for t in every:
        t = t.cpu().numpy()
        merged.append(Result(*(t[i][t[0] >= 0] for i in range(4))))
    result = combine_results(merged)
    if not np.array_equal(result.counts(), counts.cpu().numpy()):  # the two routes must agree exactly
        raise RuntimeError(f"gathered counts {result.counts()} != all-reduced counts {counts.tolist()}")
    return result
