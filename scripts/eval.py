"""Evaluate any model: val loss (+ bits per byte) on shards and HellaSwag, in JAX or PyTorch, on every local device.

    python scripts/eval.py --model out/gpt2-124m-jax --data_dir=data/edu_fineweb10B --hellaswag official
    python scripts/eval.py --model out/poetry-torch/checkpoints/step_001000 --framework jax --data_dir=data/poetry
    python scripts/eval.py --model gpt2 --hellaswag ../shared/data/hellaswag_val_sample.jsonl --limit 100
    torchrun --nproc_per_node=8 scripts/eval.py --model out/gpt2-124m-jax --framework torch --data_dir=...

--model is a run directory of scripts/train.py (its export RUN/hf, else its newest checkpoint), one
RUN/checkpoints/step_*/ checkpoint of either framework, a Hugging Face GPT-2 directory, or a model
name found in the local Hugging Face cache (gpt2, gpt2-medium, ...). The val loss averages --steps
batches of --batch_size rows (all devices together) of --seq_len tokens, the first ones of the val
split; for a run's checkpoint they default to the run's own settings, so the figure is the one the
run logged (with its device count; a micro_batch override of the run is not recorded: pass
--batch_size). Bits per byte when the shards' manifest records their bytes. HellaSwag: --hellaswag
FILE (hellaswag_val.jsonl schema) or `official` (downloaded once), GPT-2-vocabulary models only.

Prints a table and one JSON line (for scripts); --json FILE also writes it. Exit 0, 1 bad input, 2 usage.
"""

from __future__ import annotations

import argparse
import sys

from jaxgpt.common.evaluate import EvalArgs, eval_main
from jaxgpt.common.frameworks import FRAMEWORKS

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="run dir, checkpoint dir, HF dir or cached model name")
    p.add_argument("--framework", choices=FRAMEWORKS, default=None, help="default: the checkpoint's, else jax")
    p.add_argument("--data_dir", default=None, help="shards of scripts/prepare_data.py: val loss on their val split")
    p.add_argument("--steps", type=int, default=None, help="val batches (default: the run's val_steps, else 20)")
    p.add_argument("--batch_size", type=int, default=None, help="rows per val batch, all devices (default: the run's)")
    p.add_argument("--seq_len", type=int, default=None, help="tokens per row (default: the run's, else block_size)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="default: the run's, else float32")
    p.add_argument("--hellaswag", default=None, help="hellaswag_val.jsonl-schema FILE, or 'official'")
    p.add_argument("--limit", type=int, default=None, help="HellaSwag: only the first N tasks")
    p.add_argument("--json", default=None, help="also write the results to this file")
    a = p.parse_args()
    sys.exit(eval_main(EvalArgs(a.model, a.framework, a.data_dir, a.steps, a.batch_size, a.seq_len, a.dtype,
                                a.hellaswag, a.limit, a.json)))
