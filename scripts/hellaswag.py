"""HellaSwag accuracy of a GPT-2-tokenizer model, in JAX or PyTorch (completion-style scoring), with per-task output.

scripts/eval.py is the general tool (val loss, bits per byte and HellaSwag of any model in one table);
this is its HellaSwag part alone, kept for its per-task predictions (--json) and --batch-size. Both
render and score through jaxgpt/common/evaluate.py.

    python scripts/hellaswag.py --checkpoint out/gpt2-124m-jax --framework jax     # official val set
    python scripts/hellaswag.py --hf-dir out/gpt2-124m-jax/hf --framework torch \
        --data ../shared/data/hellaswag_val_sample.jsonl --limit 100

Model. --hf-dir DIR: a Hugging Face GPT-2 directory (config.json + model.safetensors). --checkpoint
DIR takes, in this order: such a directory; a run directory of scripts/train.py, whose final export
RUN/hf is one; a training checkpoint (RUN/checkpoints/step_*/); or a run directory still training,
whose newest complete checkpoint is used (jaxgpt/common/sources.py). A checkpoint written by either
framework is scored by either: its parameters are read by name.

Data: --data FILE in the hellaswag_val.jsonl schema (only ctx, label, endings are used); without
it the official hellaswag_val.jsonl (10042 tasks) is downloaded once into $JAXGPT_CACHE/hellaswag.
Each ending is scored by the summed (`acc`) and the mean (`acc_norm`) cross-entropy of its tokens;
ties go to the lowest ending index; a row longer than block_size loses context from the LEFT.
Reference for OpenAI's GPT-2 124M on the official file: acc 0.2859, acc_norm 0.2955.

Prints one line `hellaswag: acc A (c/n)  acc_norm B (c/n)  count n`; --json FILE also writes the
per-task predictions.
"""

from __future__ import annotations

import argparse
import sys

from jaxgpt.common.evaluate import hellaswag_main
from jaxgpt.common.frameworks import FRAMEWORKS

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a Hugging Face GPT-2 dir; a training run dir (its final export RUN/hf, "
                     "else its newest complete checkpoint); or one RUN/checkpoints/step_* dir")
    src.add_argument("--hf-dir", help="Hugging Face GPT-2 dir (config.json + model.safetensors)")
    ap.add_argument("--framework", choices=FRAMEWORKS, required=True)
    ap.add_argument("--data", help="local file in the hellaswag_val.jsonl schema (default: download the official val set)")
    ap.add_argument("--limit", type=int, help="score only the first N tasks")
    ap.add_argument("--batch-size", type=int, default=8, help="tasks per step (x4 rows); with several JAX devices "
                    "4*batch-size must divide by their number (default 8)")
    ap.add_argument("--json", help="also write acc, acc_norm, count and per-task predictions to this file")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = ap.parse_args()
    sys.exit(hellaswag_main(a.framework, a.checkpoint, a.hf_dir, a.data, a.limit, a.batch_size, a.json,
                            not a.no_progress))
