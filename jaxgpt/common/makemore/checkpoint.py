"""makemore checkpoints: one .npz file, framework-free, written atomically, validated on load.

Layout (format "jaxgpt-makemore-v2"; numpy's .npz is a zip of .npy arrays, each with a CRC-32 that
the zip reader checks, so a flipped byte is found on load):
- `__meta__`: a JSON string: format, model (ModelConfig fields), train (TrainConfig fields: the
  schedule, so --load continues *that* schedule), step, seed, framework that wrote it, data
  description, val loss at the save, lecture_rng;
- one array per model variable, under the names both frameworks' `state_numpy()` use (parameters,
  BatchNorm running statistics, bigram counts): a file written by JAX loads in torch and back;
- `__opt__.count`, `__opt__.mu.<name>`, `__opt__.nu.<name>`: AdamW's step count and moments (absent for
  SGD, which keeps no state), so a resumed AdamW run continues exactly.

Version 1 files (no train config, no optimizer state) still load: the caller falls back to the
preset's schedule and fresh moments. Anything else is a CheckpointError naming the file and the fix.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "jaxgpt-makemore-v2"
OLD_FORMATS = ("jaxgpt-makemore-v1",)
OPT_PREFIX = "__opt__."
_FIX = "pass a file written by scripts/makemore.py --save (or RUN/checkpoint.npz of an --out run)"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (missing, truncated, corrupt, not ours); the message says which and why."""


def save(path: str | Path, weights: dict[str, np.ndarray], meta: dict[str, Any],
         optimizer: dict[str, np.ndarray] | None = None) -> None:
    """Write the checkpoint atomically (temp file, fsync, rename): an interrupted save leaves the old one.

    A state holding NaN or inf is refused (ValueError): a diverged run must never replace a good checkpoint.
    """
    path = Path(path)
    bad = [k for k, v in {**weights, **(optimizer or {})}.items() if not np.all(np.isfinite(v))]
    if bad:
        raise ValueError(f"refusing to write {path}: non-finite values in {', '.join(bad[:5])}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    arrays = {**weights, **{OPT_PREFIX + k: v for k, v in (optimizer or {}).items()}}
    with open(tmp, "wb") as f:
        np.savez(f, __meta__=np.array(json.dumps({"format": FORMAT, **meta})), **arrays)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def load(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(meta, weights, optimizer state) of a checkpoint, or CheckpointError saying what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; {_FIX}")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic == b"\x93NUMPY":
        raise CheckpointError(f"{path} is a single numpy array (.npy), not a makemore checkpoint; {_FIX}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a makemore checkpoint (not an .npz archive: truncated, or another "
                              f"kind of file); {_FIX}")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "__meta__" not in f.files:
                raise CheckpointError(f"{path} is an .npz archive but not a makemore checkpoint (no __meta__); {_FIX}")
            meta = json.loads(str(f["__meta__"]))
            arrays = {k: f[k] for k in f.files if k != "__meta__"}
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path} is damaged ({type(e).__name__}: {e}); use an intact copy or train again") from None
    if not isinstance(meta, dict) or meta.get("format") not in (FORMAT, *OLD_FORMATS):
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path} is not a makemore checkpoint (format {got!r}, expected {FORMAT!r}); {_FIX}")
    for key in ("model", "step"):
        if key not in meta:
            raise CheckpointError(f"{path}: the metadata has no {key!r}; the file was edited or is not ours; {_FIX}")
    bad = [k for k, v in arrays.items() if v.dtype.kind == "f" and not np.all(np.isfinite(v))]
    if bad:
        raise CheckpointError(f"{path} holds non-finite values in {', '.join(bad[:5])}; use an earlier checkpoint")
    weights = {k: v for k, v in arrays.items() if not k.startswith(OPT_PREFIX)}
    optimizer = {k[len(OPT_PREFIX):]: v for k, v in arrays.items() if k.startswith(OPT_PREFIX)}
    return meta, weights, optimizer
