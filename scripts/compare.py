"""Train the JAX model and its PyTorch twin side by side: same initial weights, same batches.

    python scripts/compare.py --preset poetry --steps 200 --data_dir=data/poetry
    python scripts/compare.py --preset poetry --steps 50 --data_dir=data/poetry --n_layer=2 --lr=1e-3
    python scripts/compare.py --preset wavenet --steps 200 --data ../shared/data/names.txt   # a makemore model

GPT presets take the preset's batch and optimiser and any --key=value override (data from
--data_dir, shards of scripts/prepare_data.py); makemore models read --data (one word per line).
Writes OUT/compare.csv and OUT/compare.png (default out/compare-PRESET) and prints the largest
relative loss difference; exit status 1 when some step exceeds --rtol (default 1e-4). Dropout is
off unless --dropout=P is given. See jaxgpt/common/compare.py.
"""

from __future__ import annotations

import argparse
import sys

from jaxgpt.common.compare import main

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)  # --key=value overrides must never match a flag prefix
    p.add_argument("--preset", default="poetry", help="a GPT preset (jaxgpt/common/recipes.py) or a makemore model")
    p.add_argument("--steps", type=int, default=200, help="training steps to run in each framework")
    p.add_argument("--data", default="", help="makemore models: a words file (default: names.txt)")
    p.add_argument("--out", default=None, help="output folder for compare.csv / compare.png")
    p.add_argument("--rtol", type=float, default=1e-4, help="allowed relative loss difference at every step")
    p.add_argument("--log-interval", type=int, default=10, help="steps between log lines")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    args, overrides = p.parse_known_args()
    sys.exit(main(args, overrides))
