"""Time one GPT training step in JAX, torch (eager) and torch.compile, side by side in one process.

    python scripts/bench.py --preset gpt2-cpu --frameworks jax,torch,torch-compile      # CPU
    python scripts/bench.py --preset gpt2-124m --batch 16 --seq 1024                    # a GPU (bf16)

Each framework runs the full training step of the GPT-2 recipe (forward, backward, clip, AdamW;
jaxgpt/train/trainer.py and its torch twin) on random tokens: `--warmup` steps first (compilation),
then `--steps` timed steps, dispatched back to back and synchronised once at the end. Prints one
JSON object per framework (preset, batch, seq, dtype, device, tokens/s, step ms, MFU when the
device's bf16 peak is known, peak device memory on GPUs) and then the JAX/torch ratios.
MFU: 6N + 12*L*H*Q*T FLOPs per token over the bf16 dense peak (jaxgpt/common/metrics.py).
Both frameworks use one device (the first), so the figures compare per device.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # leave GPU memory for the torch runs

import numpy as np

from jaxgpt.common.config import get_preset
from jaxgpt.common.metrics import mfu
from jaxgpt.common.schedule import OptimConfig

FRAMEWORKS = ("jax", "torch", "torch-compile")


def _tokens(rows: int, seq: int, vocab: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, (rows, seq + 1)).astype(np.int32)


def bench_jax(cfg, optim, batch, seq, dtype, warmup, steps) -> dict:
    import jax

    from jaxgpt.train.sharding import make_mesh
    from jaxgpt.train.trainer import Trainer, fetch

    dev, n = jax.local_devices()[0], 1
    gpu = jax.default_backend() == "gpu"
    trainer = Trainer(cfg, optim, dtype=dtype, mesh=make_mesh([dev]),
                      attn_impl="cudnn" if gpu and dtype == "bfloat16" else None)
    toks = _tokens(batch * n, seq, cfg.vocab_size, 0)
    x, y = toks[:, :-1], toks[:, 1:]
    for _ in range(warmup):
        fetch(trainer.dispatch(x, y)[0])
    t0 = time.perf_counter()
    for _ in range(steps):
        loss, _ = trainer.dispatch(x, y)
    fetch(loss)
    dt = (time.perf_counter() - t0) / steps
    stats = dev.memory_stats() or {}
    return _record("jax", cfg, batch * n, seq, dtype, dev.device_kind, n, dt, stats.get("peak_bytes_in_use"))


def bench_torch(cfg, optim, batch, seq, dtype, warmup, steps, compile: bool) -> dict:
    import torch

    from torchref.train.trainer import Trainer

    torch.set_float32_matmul_precision("high")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    trainer = Trainer(cfg, optim, dtype=dtype, device=device, compile=compile)
    toks = _tokens(batch, seq, cfg.vocab_size, 0)
    x, y = toks[:, :-1], toks[:, 1:]
    for _ in range(warmup):
        float(trainer.dispatch(x, y)[0])
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss, _ = trainer.dispatch(x, y)
    float(loss)
    dt = (time.perf_counter() - t0) / steps
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else None
    return _record("torch-compile" if compile else "torch", cfg, batch, seq, dtype, name, 1, dt, peak)


def _record(framework, cfg, rows, seq, dtype, device, n_devices, dt, peak_bytes) -> dict:
    tps = rows * seq / dt
    m = mfu(tps, cfg, seq, device, n_devices)
    return {"framework": framework, "batch": rows, "seq": seq, "dtype": dtype, "device": device,
            "n_devices": n_devices, "tokens_per_s": round(tps, 1), "step_ms": round(dt * 1e3, 2),
            "mfu": None if m is None else round(m, 4),
            "peak_mem_gib": None if peak_bytes is None else round(peak_bytes / 2**30, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="gpt2-cpu")
    p.add_argument("--frameworks", default="jax,torch,torch-compile", help=f"comma-separated subset of {FRAMEWORKS}")
    p.add_argument("--batch", type=int, default=None, help="rows per device (default 16 on GPU, 4 on CPU)")
    p.add_argument("--seq", type=int, default=None, help="sequence length (default: the preset's block_size)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="default bf16 on GPU, fp32 on CPU")
    p.add_argument("--padded_vocab", type=int, default=None,
                   help="embedding/head rows (default: the preset's; GPT-2's 50257 padded to 50304); 0 = none")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation)")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    args = p.parse_args(argv)
    try:
        frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
        bad = [f for f in frameworks if f not in FRAMEWORKS]
        if bad or not frameworks:
            raise ValueError(f"unknown frameworks {bad}; choose from {', '.join(FRAMEWORKS)}")
        import dataclasses

        base = get_preset(args.preset)
        pad = args.padded_vocab
        if pad is None:
            pad = base.padded_vocab_size or (50304 if base.vocab_size == 50257 else 0)
        if pad and pad < base.vocab_size:
            raise ValueError(f"--padded_vocab={pad} is below the preset's vocab_size {base.vocab_size}")
        cfg = dataclasses.replace(base, padded_vocab_size=pad or None)
        seq = args.seq or cfg.block_size
        if not 1 <= seq <= cfg.block_size:
            raise ValueError(f"--seq={seq} must be in [1, block_size={cfg.block_size}]")
        if args.steps < 1 or args.warmup < 1:
            raise ValueError("--steps and --warmup must be >= 1")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    gpu = _has_gpu()
    batch = args.batch or (16 if gpu else 4)
    dtype = args.dtype or ("bfloat16" if gpu else "float32")
    optim = OptimConfig()
    results = {}
    for fw in frameworks:
        if fw == "jax":
            r = bench_jax(cfg, optim, batch, seq, dtype, args.warmup, args.steps)
        else:
            r = bench_torch(cfg, optim, batch, seq, dtype, args.warmup, args.steps, compile=fw == "torch-compile")
        r = {"preset": args.preset, **r}
        results[fw] = r
        print(json.dumps(r), flush=True)
    if "jax" in results:
        ratios = {f"jax/{fw}_tokens_per_s": round(results["jax"]["tokens_per_s"] / results[fw]["tokens_per_s"], 3)
                  for fw in results if fw != "jax"}
        if ratios:
            print(json.dumps({"preset": args.preset, **ratios}), flush=True)
    return 0


def _has_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    sys.exit(main())
