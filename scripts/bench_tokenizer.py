"""Tokenizer benchmarks: fast trainer vs the minbpe-style reference, encoder vs tiktoken.

    nice -n 10 python scripts/bench_tokenizer.py --data ../shared/data/french_poetry/poems.txt

1. Train vocab 4096 with the GPT-4 pattern on the first --train-mb MB (our trainer).
2. The reference trainer (tests/bpe_reference.py) on doubling input sizes until the next size
   would not fit in --ref-budget seconds; our trainer on the same inputs; merges must match.
3. Encoding throughput on the first --encode-mb MB: ours vs tiktoken with the same ranks (our
   trained 4096 vocabulary exported with to_tiktoken, and cl100k_base); ids must match.
Prints markdown tables (copied into docs/bench_tokenizer.md).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from jaxgpt.tokenizer import RegexTokenizer, from_tiktoken

ROOT = Path(__file__).resolve().parent.parent


def first_bytes(path: Path, n: int) -> str:
    """The first n bytes of a UTF-8 file, cut back to a line end."""
    with open(path, "rb") as f:
        data = f.read(n)
    return data[:data.rfind(b"\n") + 1].decode("utf-8")


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description="tokenizer benchmarks")
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/french_poetry/poems.txt"))
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--train-mb", type=float, default=5.0)
    ap.add_argument("--encode-mb", type=float, default=10.0)
    ap.add_argument("--ref-budget", type=float, default=600.0,
                    help="stop the reference ladder when the next run would take longer than this")
    ap.add_argument("--ref-start-kb", type=int, default=32)
    args = ap.parse_args()
    path = Path(args.data)
    if not path.is_file():
        sys.exit(f"error: {path} not found; pass --data to a UTF-8 text file")
    sys.path.insert(0, str(ROOT / "tests"))
    from bpe_reference import reference_train  # the slow oracle lives with the tests

    # 1. our trainer on the full job
    text = first_bytes(path, int(args.train_mb * 1e6))
    tok = RegexTokenizer("gpt4")
    _, dt = timed(tok.train, text, args.vocab_size)
    print(f"## train: vocab {args.vocab_size}, GPT-4 pattern, {len(text.encode()) / 1e6:.2f} MB\n")
    print(f"ours: {dt:.2f} s ({len(tok.merges)} merges)\n")

    # 2. reference ladder
    print("| input | merges | reference | ours | speed-up | merges identical |\n|---|---|---|---|---|---|")
    warnings.simplefilter("ignore")  # small inputs learn fewer merges; the table says how many
    size = args.ref_start_kb * 1000
    while True:
        sub = first_bytes(path, size)
        ref, t_ref = timed(reference_train, sub, args.vocab_size, tok.pattern)
        small = RegexTokenizer("gpt4")
        _, t_ours = timed(small.train, sub, args.vocab_size)
        same = ref == sorted(small.merges, key=small.merges.get)
        print(f"| {len(sub.encode()) / 1e3:.0f} kB | {len(ref)} | {t_ref:.1f} s | {t_ours:.2f} s | "
              f"{t_ref / t_ours:.0f}x | {same} |", flush=True)
        size *= 2
        if 2.1 * t_ref > args.ref_budget:  # the reference is linear in the input: next run too long
            break

    # 3. encoding throughput
    big = first_bytes(path, int(args.encode_mb * 1e6))
    mb = len(big.encode()) / 1e6
    print(f"\n## encode: {mb:.2f} MB, encode_ordinary, one process\n")
    print("| ranks | ours (cold cache) | ours (warm cache) | tiktoken | ids identical |\n|---|---|---|---|---|")
    for name, ours in [(f"trained {args.vocab_size}", tok), ("cl100k_base", from_tiktoken("cl100k_base"))]:
        enc = ours.to_tiktoken() if name.startswith("trained") else __import__("tiktoken").get_encoding(name)
        ours._cache.clear()
        ids, t_cold = timed(ours.encode_ordinary, big)
        _, t_warm = timed(ours.encode_ordinary, big)
        ref_ids, t_tt = timed(enc.encode_ordinary, big)
        print(f"| {name} | {mb / t_cold:.1f} MB/s | {mb / t_warm:.1f} MB/s | {mb / t_tt:.1f} MB/s | "
              f"{ids == ref_ids} |", flush=True)
    docs = big.split("\n\n")
    tok._cache.clear()
    _, t_b = timed(tok.encode_batch, docs, num_workers=2)
    print(f"\nencode_batch of {len(docs):,} poems, 2 worker processes (trained {args.vocab_size}): "
          f"{mb / t_b:.1f} MB/s")


if __name__ == "__main__":
    main()
