"""--profile_steps=A:B (issue 13): a profiler trace in the run folder, both frameworks; compile time and
peak memory in the log and metrics.json; a bad or out-of-run --profile_steps refused before anything is written."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from jaxgpt.common import training
from jaxgpt.common.profile import parse_profile_steps

# One worker runs this module (pyproject's --dist loadgroup): its module-scoped runs are then made once, not per worker.
pytestmark = pytest.mark.xdist_group("profile")

TINY = ["--padded_vocab_size=128", "--total_batch_tokens=128", "--seq_len=16", "--dtype=float32", "--warmup_steps=1",
        "--max_steps=3", "--val_every=0", "--val_steps=1", "--sample_every=0", "--hellaswag_every=0",
        "--export_hf=false", "--plot=false", "--prefetch=0", "--ckpt_every=0", "--tensorboard=false"]


@pytest.fixture(scope="module")
def shards(tiny_shards) -> Path:
    return tiny_shards


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_a_trace_of_the_chosen_steps_appears_in_the_run_folder(framework, shards, tmp_path):
    pytest.importorskip(framework)
    out, lines = tmp_path / "run", []
    m = training.train("tiny", [*TINY, f"--data_dir={shards}", f"--out_dir={out}", "--profile_steps=1:3"], framework,
                       log=lines.append)
    traces = [p for p in (out / "profile").rglob("*") if p.is_file()]
    if framework == "jax":  # XLA's profile (XProf) and the Perfetto/Chrome trace of the same events
        assert {p.suffix for p in traces} >= {".pb", ".gz"}
        (trace,) = [p for p in traces if p.name.endswith(".trace.json.gz")]
        events = json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]
    else:
        (trace,) = traces
        assert trace.name == "torch_trace_rank0.json"
        events = json.loads(trace.read_text())["traceEvents"]
    assert len(events) > 10
    assert sum("profiled steps 1..2" in line for line in lines) == 1
    # compile time (the first step's extra seconds) and peak memory: logged and in metrics.json
    assert any(line.startswith("compile: the first step took ") for line in lines)
    assert m["compile_seconds"] >= 0 and f"peak memory: {m['peak_memory']}" in lines
    assert m["peak_memory"] == "n/a" if framework == "jax" else "GiB host memory (peak RSS)" in m["peak_memory"]
    assert json.loads((out / "metrics.json").read_text())["peak_memory"] == m["peak_memory"]


@pytest.mark.parametrize("spec,message", [
    ("2:9", "lies outside the steps this run trains (0..2); pick A:B with 0 <= A < B <= 3"),
    ("3", "is not A:B with whole numbers A < B"),
    ("2:2", "is not A:B with whole numbers A < B"),
])
def test_a_bad_profile_steps_is_one_line_and_writes_nothing(spec, message, shards, tmp_path, capsys):
    out = tmp_path / "run"
    assert training.main("tiny", [*TINY, f"--data_dir={shards}", f"--out_dir={out}", f"--profile_steps={spec}"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --profile_steps=") and message in err
    assert not out.exists()


def test_a_resumed_session_checks_the_steps_against_its_own_start():
    assert parse_profile_steps("12:15", 10, 20) == (12, 15)
    with pytest.raises(ValueError, match=r"outside the steps this run trains \(10..19\)"):
        parse_profile_steps("5:8", 10, 20)
