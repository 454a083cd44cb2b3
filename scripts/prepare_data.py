"""Tokenize a corpus into uint16 shards + manifest.json for scripts/train.py: FineWeb-Edu (GPT-2) or poetry (our BPE).

    python scripts/prepare_data.py --out data/edu_fineweb10B                 # FineWeb-Edu sample-10BT, tiktoken gpt2
    python scripts/prepare_data.py --files ../shared/data/french_poetry/poems.txt \
        --train_tokenizer 1024 --val_fraction 0.1 --out data/poetry           # the poetry stage: our BPE
    python scripts/prepare_data.py --files corpus.jsonl --tokenizer my.model --val_fraction 0.05 --out data/x
    python scripts/prepare_data.py --out data/edu_fineweb10B --verify        # re-hash finished shards

Default layout (build-nanogpt's fineweb.py): shard 0 is val, the rest train. --val_fraction F holds out
a seeded share of whole documents instead (both splits as their own shards). --train_tokenizer V
trains our BPE with V ids on the train documents only and saves it in the folder (tokenizer.model).
Re-running the same command after an interruption resumes: finished shards are kept, and the result
is byte-identical to an uninterrupted run. See jaxgpt/common/data/prepare.py for the format.
"""

from __future__ import annotations

import argparse
import os
import sys

from jaxgpt.common.data.documents import TXT_MODES
from jaxgpt.common.data.prepare import main


def _whole(s: str) -> int:
    v = float(s)  # accepts 1e8 as build-nanogpt writes it
    if v != int(v) or v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {s}")
    return int(v)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder for the shards and manifest.json")
    ap.add_argument("--files", nargs="+", help="local .txt/.jsonl/.json/.parquet files or folders (instead of --dataset)")
    ap.add_argument("--dataset", default="HuggingFaceFW/fineweb-edu", help="Hugging Face dataset, streamed")
    ap.add_argument("--name", default="sample-10BT", help="dataset config name")
    ap.add_argument("--split", default="train", help="dataset split")
    ap.add_argument("--text_field", default="", help="record field holding the text (default: text/content/poem)")
    ap.add_argument("--txt_mode", default="blank-line", choices=TXT_MODES,
                    help=".txt documents: blocks separated by blank lines, or each whole file")
    ap.add_argument("--tokenizer", default="gpt2", help="a tiktoken encoding (gpt2) or a .model file of ours")
    ap.add_argument("--train_tokenizer", type=_whole, default=0, metavar="VOCAB",
                    help="train our BPE with VOCAB ids on the train documents (needs --val_fraction)")
    ap.add_argument("--pattern", default="gpt4", help="split pattern of a trained tokenizer (gpt2, gpt4, none)")
    ap.add_argument("--val_fraction", type=float, default=0.0,
                    help="share of documents held out for val (seeded); 0 = shard 0 is val (build-nanogpt)")
    ap.add_argument("--split_seed", type=int, default=0, help="seed of the val split")
    ap.add_argument("--shard_size", type=_whole, default=100_000_000, help="tokens per shard (default 1e8)")
    ap.add_argument("--prefix", default="edufineweb", help="shard names PREFIX_{train,val}_NNNNNN.npy")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                    help="tokenizer processes (1 = tokenize in this process); default: CPU cores - 1")
    ap.add_argument("--verify", action="store_true", help="only re-hash the shards listed in --out's manifest")
    sys.exit(main(**vars(ap.parse_args())))
