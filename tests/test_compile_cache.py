"""JAX's persistent compilation cache (`--compile_cache`, jaxgpt/train/runtime.py): a second start compiles nothing.

Two real runs of scripts/train.py (tiny preset, CPU) share a cache folder: the first fills it, the
second adds no entry (every jitted step came from the cache). A folder that cannot be used is a
warning and the run goes on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train.py"
ARGS = ["--preset=tiny", "--max_steps=3", "--val_every=0", "--ckpt_every=0", "--sample_every=0", "--export_hf=false",
        "--plot=false", "--total_batch_tokens=128", "--seq_len=16"]


def _shards(d: Path) -> Path:
    d.mkdir()
    t = np.random.default_rng(0).integers(0, 99, 4000).astype(np.uint16)
    for i, split in enumerate(["val", "train"]):
        np.save(d / f"tiny_{split}_{i:06d}.npy", t)
    return d


def _train(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    p = subprocess.run([sys.executable, str(SCRIPT), *ARGS, *args], capture_output=True, text=True, env=env,
                       timeout=600, check=False)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return p


def test_a_second_start_loads_every_step_from_the_cache(tmp_path):
    data, cache = _shards(tmp_path / "data"), tmp_path / "cache"
    first = _train(f"--data_dir={data}", f"--out_dir={tmp_path / 'a'}", f"--compile_cache={cache}")
    assert f"compilation cache {cache}" in first.stdout
    entries = sorted(p.name for p in cache.rglob("*") if p.is_file())
    assert entries, "the first run wrote nothing into the cache"
    _train(f"--data_dir={data}", f"--out_dir={tmp_path / 'b'}", f"--compile_cache={cache}")
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == entries, "the second run compiled again"


def test_an_unusable_cache_folder_is_a_warning(tmp_path, capsys):
    from jaxgpt.train.runtime import use_compile_cache

    (tmp_path / "file").write_text("not a folder")
    assert use_compile_cache(str(tmp_path / "file" / "cache")) == "compilation cache off (its folder is not writable)"
    assert "warning: --compile_cache=" in capsys.readouterr().err
    assert use_compile_cache("auto") == "compilation cache off (CPU; --compile_cache=DIR turns it on)"
    assert use_compile_cache("") == "compilation cache off"
