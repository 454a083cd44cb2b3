"""Tokenize FineWeb-Edu (or local text files) into GPT-2 uint16 shards for train_gpt2.py.

    python scripts/fineweb.py --out data/edu_fineweb10B                       # sample-10BT, streamed
    python scripts/fineweb.py --files poems.txt --shard-size 1e6 --out data/poems --workers 2
    python scripts/fineweb.py --out data/edu_fineweb10B --verify              # re-hash finished shards

Re-running the same command after an interruption resumes: finished shards are kept, and the
result is byte-identical to an uninterrupted run. See jaxgpt/common/data/fineweb.py for the format.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys

from jaxgpt.common.data.fineweb import ShardConfig, build_shards, expand_files, verify_shards


def _shard_size(s: str) -> int:
    v = float(s)  # accepts 1e8 as build-nanogpt writes it
    if v != int(v) or v < 1:
        raise argparse.ArgumentTypeError(f"--shard-size must be a positive whole number of tokens, got {s}")
    return int(v)


def _cpu_seconds() -> tuple[float, float]:
    """(user + system) CPU seconds of this process and of its finished child processes (the pool)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder for the shards and manifest.json")
    ap.add_argument("--dataset", default="HuggingFaceFW/fineweb-edu", help="Hugging Face dataset, streamed")
    ap.add_argument("--name", default="sample-10BT", help="dataset config name")
    ap.add_argument("--split", default="train", help="dataset split")
    ap.add_argument("--files", nargs="+", help="local .txt/.jsonl/.parquet files or folders (instead of --dataset)")
    ap.add_argument("--text-field", default="text", help="record field holding the text (jsonl/parquet/dataset)")
    ap.add_argument("--txt-mode", default="blank-line", choices=["blank-line", "file"],
                    help=".txt documents: blocks separated by blank lines, or each whole file")
    ap.add_argument("--shard-size", type=_shard_size, default=100_000_000, help="tokens per shard (default 1e8)")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                    help="tokenizer processes (1 = tokenize in this process); default: CPU cores - 1")
    ap.add_argument("--verify", action="store_true", help="only re-hash the shards listed in --out's manifest")
    args = ap.parse_args(argv)
    try:
        if args.verify:
            bad = verify_shards(args.out)
            if bad:
                sys.exit(f"error: {len(bad)} shard(s) missing or with a wrong sha256: {bad}; "
                         "delete them and re-run the same command to rewrite them")
            print(f"all shards in {args.out} match the manifest")
            return
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        files = expand_files(args.files) if args.files else ()
        cfg = ShardConfig(dataset=None if files else args.dataset, name=None if files else args.name,
                          split=args.split, files=files, text_field=args.text_field, txt_mode=args.txt_mode,
                          shard_size=args.shard_size)
        load = os.getloadavg()[0]
        cpu0 = _cpu_seconds()
        s = build_shards(cfg, args.out, workers=args.workers, progress=True)
        cpu = [b - a for a, b in zip(cpu0, _cpu_seconds())]
    except (ValueError, FileNotFoundError, OSError) as e:
        sys.exit(f"error: {e}")
    if s.shards_written == 0 and s.resumed:
        print(f"{s.out}: already complete ({s.shards} shards, {s.tokens:,} tokens); nothing to do")
        return
    print(f"{'resumed: ' if s.resumed else ''}wrote {s.shards_written} shard(s) in {s.seconds:.1f} s, "
          f"{s.tokens_written:,} tokens at {s.tokens_per_s:,.0f} tokens/s ({args.workers} worker(s))")
    # CPU time per token tells a slow pipeline from a busy machine: it stays flat when workers are
    # added unless the parallel overhead grows, while tokens/s also depends on the cores we get.
    print(f"CPU {cpu[0]:.2f} s in this process + {cpu[1]:.2f} s in worker processes = "
          f"{1e9 * sum(cpu) / max(s.tokens_written, 1):.0f} ns/token, {sum(cpu) / max(s.seconds, 1e-9):.2f} cores "
          f"busy on average; load average {load:.2f} at the start")
    print(f"{s.out}: {s.shards} shards (1 val + {s.shards - 1} train), {s.tokens:,} tokens, "
          f"{s.documents:,} documents; manifest.json lists sizes and sha256")
    if s.shards == 1:
        print("note: everything fit in the val shard, so there are no train shards; use a smaller --shard-size")


if __name__ == "__main__":
    main()
