"""Framework-free data: corpora, shards and loaders shared by jaxgpt and torchref."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where downloaded corpora are cached: $JAXGPT_CACHE, else ~/.cache/jaxgpt."""
    return Path(os.environ.get("JAXGPT_CACHE", Path.home() / ".cache" / "jaxgpt"))
