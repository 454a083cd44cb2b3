"""scripts/compare.py's GPT-2 family: both twins from the same pretrained weights (--init_from, an HF directory), on the
same GPT-2-vocabulary shards, with the preset's gradient accumulation and the JAX batch sharded over 8 devices: every
step's loss agrees, and the first one is the pretrained model's own loss on that batch in both frameworks."""

from __future__ import annotations

import argparse
import csv

import numpy as np

from jaxgpt.common import compare
from jaxgpt.common.config import GPTConfig
from jaxgpt.common.weights import expected_shapes, save_hf_dir

CFG = GPTConfig(block_size=16, vocab_size=50257, n_layer=1, n_head=2, n_embd=16)


def test_gpt2_family_from_pretrained_weights_with_accumulation(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i, split in enumerate(["val", "train"]):
        tokens = rng.integers(0, 50256, 20_000)
        tokens[::200] = 50256  # documents of 200 tokens, which the preset shuffles within the shard
        np.save(tmp_path / f"edu_{split}_{i:06d}.npy", tokens.astype(np.uint16))
    hf = save_hf_dir(tmp_path / "hf", {k: rng.normal(0, 1.0, s).astype(np.float32)
                                       for k, s in expected_shapes(CFG).items()}, CFG)
    args = argparse.Namespace(preset="gpt2-cpu", steps=3, data="", out=str(tmp_path / "cmp"), rtol=1e-4,
                              log_interval=1, no_progress=True)
    rc = compare.main(args, [f"--data_dir={tmp_path}", f"--init_from={hf}", "--seq_len=16", "--total_batch_tokens=512",
                             "--micro_batch=2", "--dtype=float32", "--max_steps=3", "--warmup_steps=1"])
    out = capsys.readouterr().out
    assert rc == 0 and "AGREE" in out, out
    assert "batch 32x16 = 2 x 2 rows x 8 JAX device(s)" in out and f"from {hf}" in out
    with open(tmp_path / "cmp" / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    # Weights of std 1: logits of std ~5, a loss far above the ln(50257) = 10.8 of a fresh init (std 0.02).
    assert float(rows[0]["loss_jax"]) > 12 and float(rows[0]["rel_diff"]) < 1e-5
