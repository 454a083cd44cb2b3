"""scripts/plot_runs.py (jaxgpt.common.plots): two train_log.csv overlaid (loss vs step and wall-clock, tok/s,
HellaSwag), the per-run summary, and bad input (nothing written). Synthetic logs in the training loop's format."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from jaxgpt.common.loop import CSV_FIELDS
from jaxgpt.common.plots import plot_runs
from jaxgpt.common.runlog import CsvLog


def write_log(d: Path, speed: float, hellaswag: bool) -> Path:
    """Ten steps of `speed` tok/s (dt_ms = 1000 tokens / speed), val at steps 5 and 10, HellaSwag at 10."""
    d.mkdir(parents=True)
    log = CsvLog(d / "train_log.csv", CSV_FIELDS)
    log.start()
    for step in range(10):
        log.append({"step": step, "loss": 5.0 - 0.1 * step, "lr": 1e-3, "dt_ms": 1e6 / speed, "tok_per_s": speed})
        if step in (4, 9):
            log.append({"step": step + 1, "val_loss": 5.0 - 0.1 * step,
                        "hellaswag_acc_norm": 0.25 if hellaswag and step == 9 else None})
    return d


def test_two_runs_overlaid_with_their_summaries(tmp_path):
    a, b = write_log(tmp_path / "a", 2000.0, True), write_log(tmp_path / "b", 500.0, False)
    s = plot_runs([a, b / "train_log.csv"], tmp_path / "out" / "runs.png", ["jax", "torch"])
    assert (tmp_path / "out" / "runs.png").stat().st_size > 20_000
    assert s["jax"] == {"step": 9, "loss": pytest.approx(4.1), "val_loss": pytest.approx(4.1), "tok_per_s": 2000.0,
                        "train_seconds": pytest.approx(5.0), "hellaswag_acc_norm": 0.25}
    assert s["torch"]["train_seconds"] == pytest.approx(20.0) and s["torch"]["hellaswag_acc_norm"] is None


def test_bad_input_writes_nothing(tmp_path):
    a = write_log(tmp_path / "a", 1000.0, False)
    out = tmp_path / "runs.png"
    with pytest.raises(FileNotFoundError, match="nowhere not found; pass a run folder"):
        plot_runs([a, tmp_path / "nowhere"], out)
    (tmp_path / "other.csv").write_text("step,val_loss\n1,2.0\n")
    with pytest.raises(ValueError, match="has no training rows"):
        plot_runs([a, tmp_path / "other.csv"], out)
    with pytest.raises(ValueError, match="at least two runs"):
        plot_runs([a], out)
    assert not out.exists()


def test_cli(tmp_path):
    a, b = write_log(tmp_path / "a", 1000.0, False), write_log(tmp_path / "b", 800.0, False)
    script = str(ROOT / "scripts" / "plot_runs.py")
    p = subprocess.run([sys.executable, script, str(a), str(b), "--out", str(tmp_path / "r.png")],
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    assert "1,000 tok/s (median), 10.0 s training" in p.stdout and (tmp_path / "r.png").is_file()
    p = subprocess.run([sys.executable, script, str(a)], capture_output=True, text=True, check=False)
    assert p.returncode == 2 and "at least two runs" in p.stderr
