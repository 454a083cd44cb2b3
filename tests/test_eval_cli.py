"""scripts/eval.py (jaxgpt.common.evaluate): for the same checkpoint it gives the val loss and HellaSwag numbers the
training run logged, in the run's framework and in the other one; bits per byte from the manifest; bad input. One
tiny GPT-2-vocabulary torch run (the cheap framework to train) is shared by the module."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, data_file, tiktoken_encoding
from jaxgpt.common import training
from jaxgpt.common.checkpoint import CheckpointDir
from jaxgpt.common.data.documents import DocSource
from jaxgpt.common.data.prepare import PrepareConfig, prepare
from jaxgpt.common.evaluate import EvalArgs, eval_main, evaluate

# One worker runs this module (pyproject's --dist loadgroup): its module-scoped runs are then made once, not per worker.
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.xdist_group("eval-cli")]

TINY = ["--n_layer=1", "--n_embd=16", "--n_head=2", "--block_size=32", "--seq_len=32", "--total_batch_tokens=256",
        "--micro_batch=0", "--max_steps=2", "--warmup_steps=1", "--val_every=0", "--val_steps=3",
        "--hellaswag_every=0", "--hellaswag_limit=4", "--sample_every=0", "--ckpt_every=0", "--plot=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    tiktoken_encoding("gpt2")
    root = tmp_path_factory.mktemp("eval")
    text = "\n\n".join(f"Document {i}: the quick brown fox jumps over the lazy dog, {i * 7} times." * 3
                       for i in range(200))
    (root / "docs.txt").write_text(text, encoding="utf-8")
    prepare(PrepareConfig(DocSource(files=(str(root / "docs.txt"),)), val_fraction=0.1), root / "shards",
            progress=False, log=lambda m: None)
    hella = data_file("hellaswag_val_sample.jsonl")
    m = training.train("gpt2-cpu", [*TINY, f"--data_dir={root / 'shards'}", f"--out_dir={root / 'run'}",
                                     f"--hellaswag_file={hella}"], "torch", log=lambda m: None)
    return {"shards": root / "shards", "run": root / "run", "hella": hella, "metrics": m}


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_eval_equals_the_runs_own_numbers(trained, framework):
    """The run's final checkpoint, evaluated with the run's settings (steps = its val_steps), gives its logged val loss
    and HellaSwag accuracy: bit for bit in its own framework, to float rounding in the other."""
    m = trained["metrics"]
    r = evaluate(EvalArgs(str(CheckpointDir(trained["run"] / "checkpoints").path(2)), framework, str(trained["shards"]),
                          steps=3, hellaswag=str(trained["hella"]), limit=4))
    assert (r["val_rows"], r["seq_len"], r["dtype"]) == (8, 32, "float32")  # the run's batch, from its meta.json
    if framework == "torch":
        assert r["val_loss"] == m["val_loss"]
    else:
        assert r["val_loss"] == pytest.approx(m["val_loss"], rel=1e-5)
    assert r["val_bpb"] == pytest.approx(m["val_bpb"], rel=1e-5)
    assert r["hellaswag_acc_norm"] == m["hellaswag_acc_norm"] and r["hellaswag_count"] == 4


def test_cli_table_json_line_and_the_hf_export(trained):
    """One CLI smoke: the run directory (-> its HF export, evaluated with the run's settings from its checkpoints)."""
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "eval.py"), "--model", str(trained["run"]),
                        "--framework", "torch", f"--data_dir={trained['shards']}", "--steps=3"],
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    table, line = p.stdout.strip().rsplit("\n", 1)
    assert "val loss" in table and "bits/byte" in table and "(Hugging Face directory)" in table
    r = json.loads(line)
    assert r["val_loss"] == pytest.approx(trained["metrics"]["val_loss"], rel=1e-6)


def test_bad_input(trained, tmp_path, capsys):
    assert eval_main(EvalArgs(str(tmp_path), "torch", str(trained["shards"]))) == 1
    assert "holds no model" in capsys.readouterr().err
    assert eval_main(EvalArgs(str(trained["run"]), "torch")) == 2  # nothing to evaluate
    assert "nothing to evaluate" in capsys.readouterr().err
    poetry_like = tmp_path / "other"
    (poetry_like).mkdir()
    for f in trained["shards"].iterdir():
        (poetry_like / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((poetry_like / "manifest.json").read_text())
    manifest["tokenizer"]["vocab_size"] = 1024
    (poetry_like / "manifest.json").write_text(json.dumps(manifest))
    assert eval_main(EvalArgs(str(trained["run"]), "torch", str(poetry_like))) == 1
    assert "1024 ids, but the model has vocab_size=50257" in capsys.readouterr().err
