"""Framework-free data, shared by jaxgpt and torchref.

    documents.py  the one document reader (txt / jsonl / json / parquet / Hugging Face streaming)
    prepare.py    corpus -> uint16 token shards + manifest.json (scripts/prepare_data.py)
    codec.py      a data folder's tokenizer: tiktoken by name or our BPE .model
    loader.py     ShardLoader: batches for training, exact resume
    hellaswag.py  HellaSwag reading, rendering and scoring arithmetic
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path


def cache_dir() -> Path:
    """Where downloaded corpora are cached: $JAXGPT_CACHE, else ~/.cache/jaxgpt."""
    return Path(os.environ.get("JAXGPT_CACHE", Path.home() / ".cache" / "jaxgpt"))


def download(url: str, path: Path, timeout: float = 30.0) -> Path:
    """Fetch `url` into `path`: streamed to a temp file beside it, then renamed, so an interrupted
    download never leaves a partial file under the final name. Raises OSError when it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
