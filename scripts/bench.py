"""Time one GPT training step in JAX, torch (eager) and torch.compile, side by side in one process.

    python scripts/bench.py --preset poetry --batch 32 --seq 128 --repeats 3      # CPU, the poetry GPT
    python scripts/bench.py --preset gpt2-cpu --repeats 3                         # CPU, GPT-2 shaped
    python scripts/bench.py --preset gpt2-124m --batch 16 --seq 1024              # a GPU (bf16, 50 steps)

Prints one JSON object per framework (step time min and median over the repeats, tokens/s, compile
time, MFU under our and llm.c's conventions, peak device memory, host page faults) and then the
JAX/other ratios. What is timed and how: jaxgpt/common/bench.py.
"""

from __future__ import annotations

import argparse
import sys

from jaxgpt.common.bench import FRAMEWORKS, BenchSettings, run
from jaxgpt.common.runlog import EXIT_BAD_INPUT, EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="gpt2-cpu")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS), help=f"comma-separated subset of {FRAMEWORKS}")
    p.add_argument("--batch", type=int, default=None, help="rows per micro-step (default 16 on a GPU, 4 on a CPU)")
    p.add_argument("--seq", type=int, default=None, help="sequence length (default: the preset's block_size)")
    p.add_argument("--dtype", default=None, help="float32 or bfloat16 (default bf16 on a GPU, fp32 on a CPU)")
    p.add_argument("--padded_vocab", type=int, default=None,
                   help="embedding/head rows (default: the preset's; GPT-2's 50257 padded to 50304); 0 = none")
    p.add_argument("--grad_accum", type=int, default=1, help="micro-steps per optimizer step")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps, the first compiles (>= 1)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per repeat (default 50 on a GPU, 10 on a CPU)")
    p.add_argument("--repeats", type=int, default=1, help="timed blocks per framework; min and median reported")
    p.add_argument("--recycle_host_memory", default="true", choices=("true", "false"),
                   help="reuse freed host memory across steps (jaxgpt/common/hostmem.py)")
    args = p.parse_args(argv)
    try:
        settings = BenchSettings(
            preset=args.preset, frameworks=tuple(f.strip() for f in args.frameworks.split(",") if f.strip()),
            batch=args.batch, seq=args.seq, dtype=args.dtype, padded_vocab=args.padded_vocab,
            grad_accum=args.grad_accum, warmup=args.warmup, steps=args.steps, repeats=args.repeats,
            recycle_host_memory=args.recycle_host_memory == "true")
    except ValueError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        run(settings)
    except ValueError as e:  # an unknown preset, a size that does not fit it
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
