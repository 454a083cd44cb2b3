"""Tokenizer benchmarks: fast trainer vs the minbpe-style reference, encoder vs tiktoken.

    nice -n 10 python scripts/bench_tokenizer.py --data ../shared/data/french_poetry/poems.txt

1. Train vocab 4096 with the GPT-4 pattern on the first --train-mb MB with our trainer
   (`RegexTokenizer.train`: chunk counting + incremental BPE), end to end from the text.
2. The reference trainer (jaxgpt/common/tokenizer/reference.py, minbpe's recount-everything loop) on
   --ref-start-kb, then on the largest input predicted (it is linear in the input) to finish
   within --ref-budget CPU seconds; our trainer on the same inputs; the merges must be identical.
3. Encoding throughput on the first --encode-mb MB, encode_ordinary in one process: ours (cold
   and warm chunk cache) vs tiktoken with the same ranks (our trained vocabulary exported with
   `to_tiktoken`, and cl100k_base); the ids must be identical. Then `encode_batch` over poems.

Every time is given as wall seconds and CPU seconds of this process (`time.process_time`): the
machine is shared, so the wall time depends on the load; the CPU time much less. Prints markdown
(section 3 of docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_CACHE = ROOT.parent / "shared" / "data" / "tiktoken_cache"
if _CACHE.is_dir():  # offline: tiktoken's rank files for cl100k_base (set before tiktoken loads)
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(_CACHE))

import tiktoken

from jaxgpt.common.tokenizer import RegexTokenizer, from_tiktoken
from jaxgpt.common.tokenizer.reference import reference_train


def first_bytes(path: Path, n: int) -> str:
    """The first n bytes of a UTF-8 file, cut back to a line end."""
    with open(path, "rb") as f:
        data = f.read(n)
    return data[:data.rfind(b"\n") + 1].decode("utf-8")


def timed(fn, *args, **kwargs):
    """(result, wall seconds, CPU seconds of this process)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0, time.process_time() - c0


def load() -> str:
    return subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip().split("load average:")[-1]


def train_ours(text: str, vocab_size: int) -> list[tuple[int, int]]:
    tok = RegexTokenizer("gpt4")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small inputs may learn fewer merges; the table says how many
        tok.train(text, vocab_size)
    return sorted(tok.merges, key=tok.merges.get)


def main() -> None:
    ap = argparse.ArgumentParser(description="tokenizer benchmarks")
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/french_poetry/poems.txt"))
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--train-mb", type=float, default=5.0)
    ap.add_argument("--encode-mb", type=float, default=10.0)
    ap.add_argument("--ref-budget", type=float, default=600.0,
                    help="CPU seconds the largest reference run may take (predicted, with a 15%% margin)")
    ap.add_argument("--ref-start-kb", type=int, default=64)
    args = ap.parse_args()
    path = Path(args.data)
    if not path.is_file():
        sys.exit(f"error: {path} not found; pass --data to a UTF-8 text file")
    print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"tiktoken {tiktoken.__version__}; load average at start: {load()}\n")

    # 1. our trainer on the full job
    text = first_bytes(path, int(args.train_mb * 1e6))
    tok = RegexTokenizer("gpt4")
    _, wall, cpu = timed(tok.train, text, args.vocab_size)
    print(f"## train: vocab {args.vocab_size}, GPT-4 pattern, {len(text.encode()) / 1e6:.2f} MB\n")
    print(f"ours: {wall:.2f} s wall, {cpu:.2f} s CPU ({len(tok.merges)} merges)\n")

    # 2. the reference at a small size, then at the largest size its budget allows
    print("| input | merges | reference wall / CPU | ours wall / CPU | speed-up (CPU) | merges identical |\n"
          "|---|---|---|---|---|---|")
    size, final = args.ref_start_kb * 1000, False
    while True:
        sub = first_bytes(path, size)
        ref, r_wall, r_cpu = timed(reference_train, sub, args.vocab_size, tok.pattern)
        ours, o_wall, o_cpu = timed(train_ours, sub, args.vocab_size)
        print(f"| {len(sub.encode()) / 1e3:.0f} kB | {len(ref)} | {r_wall:.1f} s / {r_cpu:.1f} s | "
              f"{o_wall:.2f} s / {o_cpu:.2f} s | {r_cpu / o_cpu:.0f}x | {ref == ours} |", flush=True)
        if final:
            break
        size = int(size * 0.85 * args.ref_budget / r_cpu) // 10_000 * 10_000  # linear in the input
        final = True
    print(f"\nload average after training: {load()}")

    # 3. encoding throughput
    big = first_bytes(path, int(args.encode_mb * 1e6))
    mb = len(big.encode()) / 1e6
    print(f"\n## encode: {mb:.2f} MB, encode_ordinary, one process (MB/s by wall / by CPU time)\n")
    print("| ranks | ours, cold cache | ours, warm cache | tiktoken | ids identical |\n|---|---|---|---|---|")
    for name, ours_tok in [(f"trained {args.vocab_size}", tok), ("cl100k_base", from_tiktoken("cl100k_base"))]:
        enc = ours_tok.to_tiktoken() if name.startswith("trained") else tiktoken.get_encoding(name)
        ours_tok._cache.clear()
        ids, c_wall, c_cpu = timed(ours_tok.encode_ordinary, big)
        _, w_wall, w_cpu = timed(ours_tok.encode_ordinary, big)
        ref_ids, t_wall, t_cpu = timed(enc.encode_ordinary, big)
        print(f"| {name} | {mb / c_wall:.1f} / {mb / c_cpu:.1f} | {mb / w_wall:.1f} / {mb / w_cpu:.1f} | "
              f"{mb / t_wall:.1f} / {mb / t_cpu:.1f} | {ids == ref_ids} |", flush=True)
    docs = big.split("\n\n")
    tok._cache.clear()
    batch, b_wall, _ = timed(tok.encode_batch, docs, num_workers=2)
    assert batch == [tok.encode(d) for d in docs[:200]] + batch[200:]
    print(f"\nencode_batch of {len(docs):,} poems, 2 worker processes (trained {args.vocab_size}): "
          f"{mb / b_wall:.1f} MB/s wall (workers start cold: spawn + empty caches)")
    print(f"\nload average at the end: {load()}")


if __name__ == "__main__":
    main()
