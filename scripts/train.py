"""Train a GPT: the poetry GPT or GPT-2 (124M..1558M), in JAX or PyTorch, through the one training loop.

    python scripts/prepare_data.py --files poems.txt --train_tokenizer 1024 --val_fraction 0.1 --out data/poetry
    python scripts/train.py --preset poetry --data_dir=data/poetry                 # JAX, every local device
    python scripts/train.py --preset poetry --framework torch ...                  # the PyTorch twin
    python scripts/train.py --preset gpt2-124m --data_dir=data/edu_fineweb10B      # GPT-2 on FineWeb-Edu shards
    torchrun --nproc_per_node=8 scripts/train.py --preset gpt2-124m --framework torch ...  # torch DDP
    # JAX across hosts: the same command on every host, plus
    #   --coordinator=HOST0:1234 --num_processes=N --process_id=I  (or JAX_COORDINATOR_ADDRESS/...)
    #   or, under Slurm's srun / Open MPI's mpirun: --coordinator=auto
    python scripts/train.py ... --resume                          # continue exactly (either framework's checkpoint)
    python scripts/train.py ... --force                           # replace an earlier run in OUT_DIR (else refused)

Settings are `--key=value` for any field of the preset's TrainConfig (jaxgpt/common/recipes.py: data,
batch, evaluations, checkpoints), OptimConfig (jaxgpt/common/schedule.py: lr, warmup_steps, max_steps,
...) or GPTConfig (jaxgpt/common/config.py: n_layer, dropout, ...). One log line per step on stdout and
a CSV row in OUT_DIR/train_log.csv (+ curves.png); checkpoints in OUT_DIR/checkpoints/step_*/; the
final model in OUT_DIR/hf; the final figures in OUT_DIR/metrics.json.
Exit codes: 0 done, 1 bad input (message, nothing overwritten), 2 usage, 3 non-finite loss, 128+N signal N.
"""

from __future__ import annotations

import argparse
import sys

from jaxgpt.common import training
from jaxgpt.common.frameworks import FRAMEWORKS
from jaxgpt.common.loop import Launch
from jaxgpt.common.recipes import RECIPES

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)  # --key=value overrides must never match a flag prefix
    p.add_argument("--preset", default="poetry", help="; ".join(f"{k}: {r.about}" for k, r in RECIPES.items()))
    p.add_argument("--framework", choices=FRAMEWORKS, default="jax")
    p.add_argument("--resume", action="store_true", help="continue from the newest good checkpoint in OUT_DIR")
    p.add_argument("--force", action="store_true", help="replace an earlier run's outputs in OUT_DIR (a fresh run "
                   "into such a folder is refused otherwise)")
    p.add_argument("--coordinator", default=None,
                   help="JAX multi-host: HOST:PORT of process 0, or auto (read from Slurm / Open MPI)")
    p.add_argument("--num_processes", type=int, default=None, help="JAX multi-host: number of processes")
    p.add_argument("--process_id", type=int, default=None, help="JAX multi-host: this process's index")
    args, overrides = p.parse_known_args()
    sys.exit(training.main(args.preset, overrides, args.framework, args.resume,
                           Launch(args.coordinator, args.num_processes, args.process_id), force=args.force))
