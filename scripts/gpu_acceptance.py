"""The GPU acceptance run: benchmark, gradient all-reduce placement, a short run in both frameworks, HellaSwag time.

    python scripts/gpu_acceptance.py --text ../shared/data/french_poetry/poems.txt \
        --hellaswag ../shared/data/hellaswag_val_sample.jsonl --out runs/acceptance     # ~6-8 min on one H100
    python scripts/gpu_acceptance.py --cpu-smoke ...   # the same parts at toy sizes, 8 simulated CPU devices

Writes OUT/acceptance.json and prints the markdown row for docs/BENCHMARKS.md section 9
(jaxgpt/common/acceptance.py says what each part measures). Exit 1 if a part failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from jaxgpt.common import acceptance

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", type=Path, default=Path("../shared/data/french_poetry/poems.txt"),
                   help="a local text to make GPT-2 shards from")
    p.add_argument("--hellaswag", type=Path, default=Path("../shared/data/hellaswag_val_sample.jsonl"),
                   help="HellaSwag tasks in the hellaswag_val.jsonl schema")
    p.add_argument("--out", type=Path, default=Path("runs/acceptance"))
    p.add_argument("--tiktoken-cache", type=Path, default=Path("../shared/data/tiktoken_cache"),
                   help="tiktoken's cached rank files, for machines without internet (used when the folder exists "
                        "and TIKTOKEN_CACHE_DIR is not set)")
    p.add_argument("--cpu-smoke", action="store_true", help="toy sizes on 8 simulated CPU devices (checks the command)")
    a = p.parse_args()
    if "TIKTOKEN_CACHE_DIR" not in os.environ and a.tiktoken_cache.is_dir():
        os.environ["TIKTOKEN_CACHE_DIR"] = str(a.tiktoken_cache.resolve())  # the subprocesses inherit it
    try:
        result = acceptance.run(acceptance.CPU_SMOKE if a.cpu_smoke else acceptance.GPU, a.text, a.hellaswag, a.out)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    failed = acceptance.failed_parts(result)
    print(json.dumps({k: result[k] for k in ("hlo", "hellaswag")}, indent=1))
    print(result["row"])
    print(f"wrote {a.out / 'acceptance.json'}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)
