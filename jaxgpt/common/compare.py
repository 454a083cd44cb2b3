"""The JAX model and its PyTorch twin trained side by side: same initial weights, same batches.

What scripts/compare.py runs (framework-free here; both frameworks are imported lazily). Both twins
start from one set of weights (the torch model's seeded init, copied into the JAX model through the
weight table) and take the same numpy batch at every step, so in fp32 their loss curves must
coincide. Writes, in OUT:
    compare.csv   step, loss_jax, loss_torch, abs_diff, rel_diff, grad_norm_jax, grad_norm_torch,
                  time_jax_s, time_torch_s (one row per step, written as it goes)
    compare.png   both loss curves; |loss_jax - loss_torch| on a log axis; step time of each
and returns the largest relative difference and steps/s of each framework.

Dropout mode: dropout is switched OFF (dropout=0.0) whatever the preset says, because the two
frameworks draw their dropout masks from different random generators and could only agree in
distribution. Passing --dropout=P explicitly keeps dropout on (then expect the curves to agree only
statistically). Matmuls run at the highest fp32 precision on both sides; the two steps alternate,
so both frameworks see the same machine load.

Model families plug in through `FAMILIES`: a family says which presets it knows and builds a `Pair`
(two trainers with `step(x, y) -> (loss, grad_norm)` and `state_numpy()`, plus the batch source).
GPT presets (jaxgpt/common/recipes.py), the GPT-2 family among them, train on shards of
scripts/prepare_data.py (--data_dir=DIR) with the preset's batch (total_batch_tokens / seq_len rows,
its micro-batch and accumulation; JAX over every local device), optimiser and compute dtype (bf16 for
GPT-2: expect a gap of bf16 rounding, pass a matching --rtol), optionally from pretrained weights
(--init_from=...); makemore models on names.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from jaxgpt.common.frameworks import make_trainer, module
from jaxgpt.common.hostmem import recycle_freed_memory
from jaxgpt.common.recipes import RECIPES, configs_for


@dataclass
class Pair:
    """What compare needs from a model family: two twins holding the same weights, and their batches."""

    jax: Any  # trainer: step(x, y) -> (loss, grad_norm) as floats; state_numpy() -> {name: array}
    torch: Any
    next_batch: Callable[[], tuple[np.ndarray, np.ndarray]]  # numpy batch fed to both twins
    description: str  # one line for the console: model, size, data


def build_gpt_pair(args: argparse.Namespace, overrides: list[str]) -> Pair:
    """A GPT preset (the poetry GPT, GPT-2 124M..1558M, ...): its recipe (model, batch, optimiser, compute dtype) on the
    train shards of --data_dir. The JAX twin shards each batch over every local device (1..N) with the preset's
    micro-batch and gradient accumulation; the torch twin (one device) takes the same rows in the same micro-steps.
    Both start from the torch twin's seeded init, or from --init_from's weights (jaxgpt/common/finetune.py)."""
    from jaxgpt.common.recipes import batch_layout
    from jaxgpt.common.training import train_batches

    explicit_dropout = any(o.split("=", 1)[0].lstrip("-").replace("-", "_") == "dropout" for o in overrides)
    cfg, train, optim = configs_for(args.preset, overrides + ([] if explicit_dropout else ["--dropout=0.0"]))
    if not train.data_dir:
        raise ValueError(f"--preset {args.preset} trains on shards: pass --data_dir=DIR (scripts/prepare_data.py)")
    rows = train.total_batch_tokens // train.seq_len
    loader = train_batches(train, cfg, rows, 0, 1)  # the preset's batches (its batch_order), one process
    weights = None
    if train.init_from:
        from jaxgpt.common.finetune import init_weights

        weights = init_weights(train.init_from, cfg)
    mesh = module("jax", "train.sharding").make_mesh()  # every local device
    devices = mesh.size
    micro, accum = batch_layout(train.total_batch_tokens, train.micro_batch, train.seq_len, devices)
    torch_side = make_trainer("torch", cfg, optim, weights=weights, seed=train.seed, dtype=train.dtype, grad_accum=accum)
    jax_side = make_trainer("jax", cfg, optim, weights=torch_side.state_numpy(), seed=train.seed, dtype=train.dtype,
                            grad_accum=accum, mesh=mesh)
    n_params = sum(v.size for v in torch_side.state_numpy().values())
    desc = (f"GPT {args.preset}: {cfg.n_layer} layers, n_embd {cfg.n_embd}, vocab {cfg.vocab_size}, "
            f"{n_params / 1e6:.2f}M params, dropout {cfg.dropout}, {train.dtype}; batch {rows}x{train.seq_len} = "
            f"{accum} x {micro} rows x {devices} JAX device(s), torch on {torch_side.device}; lr {optim.lr} (warm-up "
            f"{optim.warmup_steps}, cosine to step {optim.max_steps}); data {train.data_dir}"
            + (f"; from {train.init_from}" if train.init_from else ""))
    return Pair(jax_side, torch_side, loader.next_batch, desc)


def build_makemore_pair(args: argparse.Namespace, overrides: list[str]) -> Pair:
    """A makemore model (scripts/makemore.py's recipe and split): names.txt unless --data is a file."""
    from jaxgpt.common.makemore import data
    from jaxgpt.common.makemore.config import get_preset
    from jaxgpt.makemore.train import Trainer as JaxTrainer
    from torchref.makemore.train import Trainer as TorchTrainer

    if overrides:
        raise ValueError(f"makemore models take no --key=value overrides, got {overrides}")
    p = get_preset(args.preset)
    words, desc = (data.read_words(args.data), args.data) if Path(args.data).is_file() else data.default_words()
    train_words = data.split_words(words, p.train.split)[0]
    mcfg = p.model if p.model.is_window else replace(p.model, block_size=max(map(len, words)) + 1)
    X, Y = (data.build_windows if mcfg.is_window else data.build_sequences)(train_words, mcfg.block_size)
    torch_side = TorchTrainer(mcfg, p.train)
    jax_side = JaxTrainer(mcfg, p.train)
    jax_side.load_numpy(torch_side.state_numpy())
    rng = np.random.default_rng(0)
    batch = p.train.batch_size or len(X)

    def next_batch() -> tuple[np.ndarray, np.ndarray]:
        ix = data.batch_indices(rng, len(X), 1, batch)[0]
        return X[ix], Y[ix]

    return Pair(jax_side, torch_side, next_batch, f"makemore {args.preset}: {torch_side.num_params():,} params, "
                f"{p.train.optimizer} lr {p.train.lr}, batch {batch}; {desc}")


def _makemore_models():
    from jaxgpt.common.makemore.config import MODELS

    return [m for m in MODELS if m != "bigram"]  # the count model has no training steps


# family name -> (its preset names, the builder of a Pair). Makemore models register here too.
FAMILIES: dict[str, tuple[Callable[[], Any], Callable[[argparse.Namespace, list[str]], Pair]]] = {
    "gpt": (lambda: RECIPES.keys(), build_gpt_pair),
    "makemore": (_makemore_models, build_makemore_pair),
}


def find_builder(preset: str) -> Callable[[argparse.Namespace, list[str]], Pair]:
    for names, builder in FAMILIES.values():
        if preset in names():
            return builder
    known = sorted(n for names, _ in FAMILIES.values() for n in names())
    raise ValueError(f"unknown preset {preset!r}; compare.py knows: {', '.join(known)}")


def set_highest_precision() -> None:
    """fp32 matmuls at full precision on both sides (JAX and torch may otherwise use TF32/bf16 passes)."""
    import jax
    import torch

    jax.config.update("jax_default_matmul_precision", "highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


COLUMNS = ["step", "loss_jax", "loss_torch", "abs_diff", "rel_diff", "grad_norm_jax", "grad_norm_torch",
           "time_jax_s", "time_torch_s"]


def plot(rows: list[dict], path: Path, title: str, rtol: float) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    step = [r["step"] for r in rows]
    fig, ax = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    ax[0].plot(step, [r["loss_jax"] for r in rows], label="JAX (Flax NNX)")
    ax[0].plot(step, [r["loss_torch"] for r in rows], "--", label="PyTorch")
    ax[0].set_ylabel("train loss (nats/token)")
    ax[0].legend()
    ax[0].set_title("\n".join(textwrap.wrap(title, 95)), fontsize=8)
    # An exact zero cannot sit on a log axis: draw it at 1e-9, below any fp32 gap between losses near 1.
    ax[1].semilogy(step, [max(r["abs_diff"], 1e-9) for r in rows], color="C3", label="|loss_jax - loss_torch|")
    ax[1].semilogy(step, [rtol * max(r["loss_jax"], r["loss_torch"]) for r in rows], "k--", lw=1,
                   label=f"allowed: rtol {rtol:g} x loss")
    ax[1].set_ylabel("abs difference (nats/token)")
    ax[1].legend(loc="center right", fontsize=8)
    ax[2].plot(step[1:], [1e3 * r["time_jax_s"] for r in rows[1:]], label="JAX")
    ax[2].plot(step[1:], [1e3 * r["time_torch_s"] for r in rows[1:]], label="PyTorch")
    ax[2].set_ylabel("step time (ms)")
    ax[2].set_xlabel("step (step 0, which compiles, left out of the timing panel)")
    ax[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compare(args: argparse.Namespace, overrides: list[str]) -> dict:
    """Train both twins `args.steps` steps side by side; the summary (see the module docstring)."""
    if args.steps < 1:
        raise ValueError(f"--steps={args.steps} must be >= 1")
    set_highest_precision()
    pair = find_builder(args.preset)(args, overrides)
    print(pair.description)
    out = Path(args.out or f"out/compare-{args.preset}")
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    interrupted = False
    with open(out / "compare.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        try:
            for step in tqdm(range(args.steps), desc="jax | torch", disable=args.no_progress):
                x, y = pair.next_batch()
                t0 = time.perf_counter()
                lj, nj = pair.jax.step(x, y)  # floats: the step has finished when they return
                t1 = time.perf_counter()
                lt, nt = pair.torch.step(x, y)
                t2 = time.perf_counter()
                diff = abs(lj - lt)
                row = {"step": step, "loss_jax": lj, "loss_torch": lt, "abs_diff": diff,
                       "rel_diff": diff / max(abs(lj), abs(lt), 1e-30), "grad_norm_jax": nj, "grad_norm_torch": nt,
                       "time_jax_s": t1 - t0, "time_torch_s": t2 - t1}
                writer.writerow(row)
                f.flush()  # an interrupted comparison keeps every finished step
                rows.append(row)
                if not (math.isfinite(lj) and math.isfinite(lt)):
                    tqdm.write(f"step {step}: non-finite loss (jax {lj}, torch {lt}); stopping")
                    break
                if step % args.log_interval == 0 or step == args.steps - 1:
                    tqdm.write(f"step {step:5d} | loss jax {lj:.6f} torch {lt:.6f} | rel diff {row['rel_diff']:.2e} | "
                               f"dt jax {1e3 * (t1 - t0):.0f}ms torch {1e3 * (t2 - t1):.0f}ms")
        except KeyboardInterrupt:
            interrupted = True
            print(f"interrupted after {len(rows)} steps; writing what was measured")
    if not rows:
        raise ValueError("no step finished; nothing to compare")
    plot(rows, out / "compare.png", pair.description, args.rtol)
    wj, wt = pair.jax.state_numpy(), pair.torch.state_numpy()
    # Per tensor: max |diff| / max |value|. Expect the largest on parameters whose gradient is zero in
    # exact arithmetic (the key bias of attention: softmax ignores a per-query constant): AdamW divides
    # their rounding-noise gradients by sqrt(v) and turns them into full-size steps of random sign.
    rel_w = {k: float(np.max(np.abs(wj[k] - wt[k]))) / max(float(np.max(np.abs(wt[k]))), 1e-30) for k in wt}
    worst_w = max(rel_w, key=rel_w.get)
    weight_rel = rel_w[worst_w]
    timed = rows[1:] or rows  # step 0 compiles the JAX step: leave it out of the throughput
    worst = max(rows, key=lambda r: r["rel_diff"])
    summary = {
        "steps": len(rows), "max_rel_diff": worst["rel_diff"], "worst_step": worst["step"],
        "max_abs_diff": max(r["abs_diff"] for r in rows), "final_weight_max_rel_diff": weight_rel,
        "final_weight_worst": worst_w,
        "steps_per_s_jax": len(timed) / sum(r["time_jax_s"] for r in timed),
        "steps_per_s_torch": len(timed) / sum(r["time_torch_s"] for r in timed),
        "agree": worst["rel_diff"] <= args.rtol and all(math.isfinite(r["loss_jax"]) for r in rows),
        "interrupted": interrupted, "out": str(out),
    }
    print(f"wrote {out / 'compare.csv'} and {out / 'compare.png'}")
    print(f"{summary['steps']} steps: max rel loss diff {summary['max_rel_diff']:.2e} (step {summary['worst_step']}), "
          f"max abs {summary['max_abs_diff']:.2e}; final weights max rel diff {weight_rel:.2e} ({worst_w})")
    print(f"steps/s: jax {summary['steps_per_s_jax']:.3f}, torch {summary['steps_per_s_torch']:.3f} "
          f"(jax/torch = {summary['steps_per_s_jax'] / summary['steps_per_s_torch']:.2f}x)")
    print(f"AGREE: every step within rtol {args.rtol}" if summary["agree"]
          else f"DIFFER: step {worst['step']} exceeds rtol {args.rtol}")
    return summary


def main(args: argparse.Namespace, overrides: list[str]) -> int:
    """scripts/compare.py: exit 0 when every step agrees within --rtol, 1 when not, 2 on bad input."""
    recycle_freed_memory()  # before either framework starts its threads (jaxgpt/common/hostmem.py)
    try:
        summary = compare(args, overrides)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if summary["agree"] else 1
