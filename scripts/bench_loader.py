"""Shard-loader throughput, synchronous vs prefetched, file order vs shuffled shards and documents.

    nice -n 10 python scripts/bench_loader.py                      # 4 shards of 1e7 tokens, 64 x 1024 per step
    python scripts/bench_loader.py --consumer_ms=0,5,20 --steps=300 --dir=/mnt/fast

Writes the shards to a temporary folder (under --dir if given; removed at the end), reads --steps
batches per case while a simulated training step sleeps --consumer_ms, and prints one markdown row
per case as it finishes, then the table for docs/BENCHMARKS.md and one JSON line. The cases and
columns are described in jaxgpt/common/data/bench.py.
"""

from __future__ import annotations

import argparse
import sys

from jaxgpt.common.data.bench import LoaderBench, report, run_bench


def main(argv: list[str] | None = None) -> int:
    d = LoaderBench()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", type=int, default=d.shards, help="train shards to write")
    p.add_argument("--shard_tokens", type=int, default=d.shard_tokens, help="tokens per shard")
    p.add_argument("--mean_doc", type=int, default=d.mean_doc, help="mean document length in tokens")
    p.add_argument("--B", type=int, default=d.B, help="rows per batch")
    p.add_argument("--T", type=int, default=d.T, help="tokens per row")
    p.add_argument("--steps", type=int, default=d.steps, help="batches per case")
    p.add_argument("--consumer_ms", default=",".join(f"{c:g}" for c in d.consumer_ms),
                   help="comma-separated simulated step times in ms (0: the loader alone)")
    p.add_argument("--depth", type=int, default=d.depth, help="Prefetcher queue depth")
    p.add_argument("--seed", type=int, default=d.seed, help="data and shuffle seed")
    p.add_argument("--dir", default=None, help="where to create the temporary shard folder (default: the system's)")
    args = p.parse_args(argv)
    try:
        try:
            consumer = tuple(float(c) for c in args.consumer_ms.split(",") if c.strip())
        except ValueError:
            raise ValueError(f"--consumer_ms must be comma-separated numbers of ms, got {args.consumer_ms!r}") from None
        cfg = LoaderBench(args.shards, args.shard_tokens, args.mean_doc, args.B, args.T, args.steps, consumer,
                          args.depth, args.seed)
        cfg.check()
    except ValueError as e:
        p.error(str(e))  # exit 2: a usage error
    rows = run_bench(cfg, args.dir, log=lambda msg: print(msg, flush=True))
    print(report(cfg, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
