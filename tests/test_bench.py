"""scripts/bench.py prints one JSON object per framework plus the JAX/torch ratio (tiny preset, CPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench


def test_bench_prints_side_by_side_json(capsys):
    # torch-compile is left out here only for time (its CPU compile takes minutes); it is the same code path
    # as torch with compile=True, exercised by the documented benchmark command.
    assert bench.main(["--preset", "tiny", "--frameworks", "jax,torch", "--steps", "1", "--warmup", "1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r.get("framework") for r in lines[:2]] == ["jax", "torch"]
    for r in lines[:2]:
        assert r["preset"] == "tiny" and r["batch"] == 4 and r["seq"] == 16 and r["tokens_per_s"] > 0
        assert r["step_ms"] > 0 and r["mfu"] is None  # no known peak for a CPU
    assert lines[2]["jax/torch_tokens_per_s"] > 0


def test_bench_rejects_unknown_framework(capsys):
    assert bench.main(["--preset", "tiny", "--frameworks", "jax,mxnet"]) == 1
    assert "unknown frameworks ['mxnet']" in capsys.readouterr().err
