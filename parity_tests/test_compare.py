"""scripts/compare.py: the JAX model and its torch twin, trained side by side from the same weights on
the same batches, give the same loss at every step (fp32, dropout off), and the tool writes its CSV/plot."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

from parity_tests.helpers import GRAD_RTOL

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import compare

from conftest import data_file


@pytest.fixture(scope="module")
def poems_file(tmp_path_factory) -> Path:
    """The first 300 poems of the real corpus (about 250 KB): a tokenizer trains on it in a second."""
    text = data_file("french_poetry/poems.txt").read_text(encoding="utf-8")
    path = tmp_path_factory.mktemp("poems") / "poems.txt"
    path.write_text("\n\n".join(text.split("\n\n")[:300]), encoding="utf-8")
    return path


def test_short_compare_curves_agree(tmp_path, poems_file, capsys):
    # poetry-original: untied head with a bias, ReLU, dropout 0.2 in the preset (compare turns it off).
    # A short warm-up and a high lr so the weights move far from their init within the run.
    argv = ["--preset", "poetry-original", "--steps", "25", "--data", str(poems_file),
            "--out", str(tmp_path / "cmp"), "--no-progress", "--n_layer=2", "--n_embd=32", "--n_head=4",
            "--block_size=32", "--vocab_size=300", "--batch_size=8", "--lr=1e-2", "--warmup_steps=3",
            "--max_steps=25"]
    rc = compare.main(argv)
    out = capsys.readouterr().out
    assert "dropout 0.0" in out
    with open(tmp_path / "cmp" / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == compare.COLUMNS and len(rows) == 25
    lj, lt = (np.array([float(r[k]) for r in rows]) for k in ("loss_jax", "loss_torch"))
    rel = np.abs(lj - lt) / np.maximum(np.abs(lj), np.abs(lt))
    assert rel.max() <= GRAD_RTOL, f"max rel loss diff {rel.max():.3e} at step {rel.argmax()} (rtol {GRAD_RTOL})"
    assert lj[-1] < lj[0] - 0.5, "the run should actually train (loss falls), or agreement proves little"
    assert rc == 0 and "AGREE" in out
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 10_000


def test_unknown_preset_lists_the_known_ones(capsys):
    assert compare.main(["--preset", "nope", "--steps", "2"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_explicit_dropout_is_kept_and_reported_as_differing(tmp_path, poems_file, capsys):
    # The documented mode: --dropout=P keeps dropout on; the twins draw different masks, so they differ.
    argv = ["--preset", "poetry", "--steps", "3", "--data", str(poems_file), "--out", str(tmp_path / "c"),
            "--no-progress", "--n_layer=1", "--n_embd=16", "--n_head=2", "--block_size=16", "--vocab_size=300",
            "--batch_size=8", "--dropout=0.5"]
    assert compare.main(argv) == 1
    out = capsys.readouterr().out
    assert "dropout 0.5" in out and "DIFFER" in out
