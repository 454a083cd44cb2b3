"""Shard-loader throughput: synchronous vs prefetched, file order vs shuffled (scripts/bench_loader.py).

Shards of random GPT-2 ids with documents of geometric length (mean `mean_doc` tokens, each
starting with <|endoftext|>) are written to a temporary folder, then each case reads `steps`
batches from a fresh `ShardLoader` (wrapped in a `Prefetcher` for the prefetched cases) while a
simulated consumer sleeps `consumer_ms` after every batch (a training step on the device). A
synchronous loader adds its read time (and, at each shard switch, the scan of the new shard's ids
and documents) to every step; a prefetched one reads while the consumer works.

Per case: steps/s and tokens/s over the whole run (the consumer's sleeps included, so a loaded
machine's oversleeping shows in them equally for every case), and what the loader costs the step
loop: the consumer's total, mean and largest wait inside `next_batch` (the largest is a shard
switch when it is not hidden). The first shard is opened when the
loader is built, as a training run does before its first step, and is not timed. The shards were
just written, so they are read from the page cache, as on a machine with enough memory for them.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from jaxgpt.common.data.loader import GPT2_EOT, Prefetcher, ShardLoader


@dataclass(frozen=True)
class LoaderBench:
    shards: int = 4  # train shards written
    shard_tokens: int = 10_000_000  # tokens per shard (FineWeb-Edu's are 1e8)
    mean_doc: int = 1_000  # mean document length in tokens (FineWeb-Edu's is about 1,000)
    B: int = 64  # rows per batch
    T: int = 1024  # tokens per row
    steps: int = 700  # batches per case: 64 x 1024 tokens x 700 = 1.15 epochs of 4 x 1e7 (152 steps per shard)
    consumer_ms: tuple[float, ...] = (0.0, 5.0)  # simulated step times; 0 = the loader alone
    depth: int = 2  # Prefetcher queue depth
    seed: int = 0  # data and shuffle seed

    def check(self) -> None:
        """Raise ValueError naming the first bad setting."""
        for name in ("shards", "shard_tokens", "mean_doc", "B", "T", "steps", "depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.shard_tokens < self.B * self.T + 1:
            raise ValueError(f"--shard_tokens {self.shard_tokens} is less than one batch (B*T+1 = "
                             f"{self.B * self.T + 1}); raise it or lower --B / --T")
        if not self.consumer_ms or min(self.consumer_ms) < 0:
            raise ValueError(f"--consumer_ms needs one or more times >= 0, got {self.consumer_ms}")


def make_shards(out: Path, cfg: LoaderBench) -> list[Path]:
    """`cfg.shards` uint16 shards named like scripts/prepare_data.py's train shards."""
    rng = np.random.default_rng(cfg.seed)
    paths = []
    for i in range(cfg.shards):
        tokens = rng.integers(0, GPT2_EOT, size=cfg.shard_tokens, dtype=np.uint16)
        lengths = rng.geometric(1 / cfg.mean_doc, size=2 * cfg.shard_tokens // cfg.mean_doc + 16)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        tokens[starts[starts < cfg.shard_tokens]] = GPT2_EOT
        paths.append(out / f"bench_train_{i:06d}.npy")
        np.save(paths[-1], tokens)
    return paths


def time_run(loader, steps: int, consumer_s: float) -> dict:
    """Read `steps` batches, sleeping `consumer_s` after each; the time spent waiting for each batch."""
    waits = np.empty(steps)
    t0 = time.perf_counter()
    for i in range(steps):
        t = time.perf_counter()
        loader.next_batch()
        waits[i] = time.perf_counter() - t
        if consumer_s:
            time.sleep(consumer_s)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "wait_s": waits.sum(), "mean_wait_ms": 1e3 * waits.mean(), "max_wait_ms": 1e3 * waits.max()}


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def run_bench(cfg: LoaderBench, workdir: str | Path | None = None, log=print) -> list[dict]:
    """Every (consumer time, order, loader) case; one dict per case."""
    cfg.check()
    rows = []
    with tempfile.TemporaryDirectory(dir=workdir, prefix="bench_loader_") as d:
        t0 = time.perf_counter()
        make_shards(Path(d), cfg)
        log(f"wrote {cfg.shards} shards of {cfg.shard_tokens:,} tokens in {d} ({time.perf_counter() - t0:.1f} s)")
        for consumer_ms in cfg.consumer_ms:
            for order in ("file", "shuffled"):
                for mode in ("sync", "prefetch"):
                    seeds = {"shuffle_seed": cfg.seed, "doc_shuffle_seed": cfg.seed} if order == "shuffled" else {}
                    loader = ShardLoader(d, "train", cfg.B, cfg.T, **seeds)
                    if mode == "prefetch":
                        loader = Prefetcher(loader, cfg.depth)
                    load = load_average()
                    r = time_run(loader, cfg.steps, consumer_ms / 1e3)
                    if mode == "prefetch":
                        loader.close()
                    r.update(consumer_ms=consumer_ms, order=order, loader=mode, steps=cfg.steps, load=load,
                             steps_per_s=cfg.steps / r["wall_s"], tokens_per_s=cfg.steps * cfg.B * cfg.T / r["wall_s"])
                    rows.append(r)
                    log(format_row(r))
    return rows


HEADER = ("| consumer ms/step | order | loader | steps/s | M tokens/s | total wait s | mean wait ms | max wait ms | "
          "load |\n|---|---|---|---|---|---|---|---|---|")


def format_row(r: dict) -> str:
    load = "?" if r["load"] is None else f"{r['load']:.2f}"
    return (f"| {r['consumer_ms']:g} | {r['order']} | {r['loader']} | {r['steps_per_s']:.1f} | "
            f"{r['tokens_per_s'] / 1e6:.2f} | {r['wait_s']:.3f} | {r['mean_wait_ms']:.3f} | {r['max_wait_ms']:.1f} | "
            f"{load} |")


def report(cfg: LoaderBench, rows: list[dict]) -> str:
    """Markdown for docs/BENCHMARKS.md (machine, date, settings, table) and one JSON line."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"
    lines = [f"{when}; {machine}", "", HEADER, *map(format_row, rows), "",
             json.dumps({"config": asdict(cfg), "rows": rows})]
    return "\n".join(lines)
