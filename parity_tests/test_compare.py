"""scripts/compare.py (jaxgpt.common.compare): the JAX model and its torch twin, trained side by side from the
same weights on the same batches, give the same loss at every step (fp32, dropout off), and the tool writes
its CSV/plot."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import pytest

from conftest import data_file
from jaxgpt.common import compare
from jaxgpt.common.data.documents import DocSource
from jaxgpt.common.data.prepare import PrepareConfig, prepare
from parity_tests.helpers import GRAD_RTOL


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """The first 300 poems of the real corpus (about 250 KB) as shards of our BPE (300 ids)."""
    text = data_file("french_poetry/poems.txt").read_text(encoding="utf-8")
    d = tmp_path_factory.mktemp("poems")
    (d / "poems.txt").write_text("\n\n".join(text.split("\n\n")[:300]), encoding="utf-8")
    cfg = PrepareConfig(DocSource(files=(str(d / "poems.txt"),)), train_tokenizer=300, val_fraction=0.1)
    prepare(cfg, d / "shards", progress=False, log=lambda m: None)
    return d / "shards"


def run(preset: str, steps: int, out: Path, overrides: list[str]) -> int:
    args = argparse.Namespace(preset=preset, steps=steps, data="", out=str(out), rtol=1e-4, log_interval=10,
                              no_progress=True)
    return compare.main(args, overrides)


def test_short_compare_curves_agree(tmp_path, shards, capsys):
    # poetry-original: untied head with a bias, ReLU, dropout 0.2 in the preset (compare turns it off).
    # A short warm-up and a high lr so the weights move far from their init within the run.
    rc = run("poetry-original", 25, tmp_path / "cmp", [f"--data_dir={shards}", "--n_layer=2", "--n_embd=32",
             "--n_head=4", "--block_size=32", "--vocab_size=300", "--total_batch_tokens=256", "--lr=1e-2",
             "--warmup_steps=3", "--max_steps=25"])
    out = capsys.readouterr().out
    assert "dropout 0.0" in out and "batch 8x32" in out
    with open(tmp_path / "cmp" / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == compare.COLUMNS and len(rows) == 25
    lj, lt = (np.array([float(r[k]) for r in rows]) for k in ("loss_jax", "loss_torch"))
    rel = np.abs(lj - lt) / np.maximum(np.abs(lj), np.abs(lt))
    assert rel.max() <= GRAD_RTOL, f"max rel loss diff {rel.max():.3e} at step {rel.argmax()} (rtol {GRAD_RTOL})"
    assert lj[-1] < lj[0] - 0.5, "the run should actually train (loss falls), or agreement proves little"
    assert rc == 0 and "AGREE" in out
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 10_000


def test_unknown_preset_and_missing_data_are_errors(tmp_path, capsys):
    assert run("nope", 2, tmp_path, []) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert run("poetry", 2, tmp_path, ["--data_dir="]) == 2
    assert "pass --data_dir=DIR" in capsys.readouterr().err


def test_explicit_dropout_is_kept_and_reported_as_differing(tmp_path, shards, capsys):
    # The documented mode: --dropout=P keeps dropout on; the twins draw different masks, so they differ.
    assert run("poetry", 3, tmp_path / "c", [f"--data_dir={shards}", "--n_layer=1", "--n_embd=16", "--n_head=2",
               "--block_size=16", "--vocab_size=300", "--total_batch_tokens=128", "--dropout=0.5"]) == 1
    out = capsys.readouterr().out
    assert "dropout 0.5" in out and "DIFFER" in out
