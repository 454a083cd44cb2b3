"""HellaSwag scoring end to end: scripts/hellaswag.py (jaxgpt.common.evaluate) in both frameworks, its errors, and evaluation
split over 2 processes (JAX: 2 x 4 CPU devices with jax.distributed; torch: 2 gloo ranks) giving
exactly the one-process numbers on every process.

The models are tiny and random: these tests check plumbing and exact combination, not accuracy.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, data_file, subprocess_env, tiktoken_encoding
from jaxgpt.common.config import GPTConfig
from jaxgpt.common.evaluate import hellaswag_main

SCRIPT = ROOT / "scripts" / "hellaswag.py"


# Tiny torch models: one intra-op thread (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sample() -> Path:
    return data_file("hellaswag_val_sample.jsonl")


def save_tiny(path: Path, vocab_size: int = 50257, block_size: int = 64) -> Path:
    """A random tiny GPT-2 as a Hugging Face directory (what training runs export)."""
    import torch

    from torchref.gpt import GPT

    torch.manual_seed(0)
    GPT(GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=1, n_head=2, n_embd=16)).save_hf(str(path))
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})


def cli(*args: str) -> int:
    """scripts/hellaswag.py in this process (so the JAX side shards over the 8 simulated devices)."""
    import argparse

    ap = argparse.ArgumentParser()
    for flag in ("--checkpoint", "--hf-dir", "--framework", "--data", "--json"):
        ap.add_argument(flag)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--batch-size", type=int, default=8)
    a = ap.parse_args(args)
    return hellaswag_main(a.framework, a.checkpoint, a.hf_dir, a.data, a.limit, a.batch_size, a.json, progress=False)


def save_checkpoint(trainer, run: Path, step: int) -> None:
    """What the training loop writes: RUN/checkpoints/step_XXXXXXXX/ (meta.json + the named state)."""
    import dataclasses

    from jaxgpt.common.checkpoint import CheckpointDir

    meta = {"framework": trainer.framework, "state_format": trainer.state_format,
            "config": {"model": trainer.config.to_dict(), "optim": dataclasses.asdict(trainer.optim)}}
    CheckpointDir(run / "checkpoints").save(step, trainer.save, json.loads(json.dumps(meta)))


def test_cli_jax_checkpoint_and_torch_export_give_the_same_predictions(tmp_path, sample, capsys):
    """In-process, so the JAX side shards over the 8 simulated devices (a mesh) as on a multi-GPU host."""
    from jaxgpt.common.schedule import OptimConfig
    from jaxgpt.train.trainer import Trainer

    # block_size 40: 2 of the first 8 sample rows are longer, so their context is cut from the left.
    trainer = Trainer(GPTConfig(block_size=40, vocab_size=50257, n_layer=1, n_head=2, n_embd=16), OptimConfig(), seed=3)
    save_checkpoint(trainer, tmp_path / "run", 5)
    trainer.save_hf(tmp_path / "hf")  # the same weights as a Hugging Face directory
    common = ["--data", str(sample), "--limit", "8", "--batch-size", "4"]
    assert cli("--checkpoint", str(tmp_path / "run"), "--framework", "jax", "--json", str(tmp_path / "j.json"),
               *common) == 0
    text = capsys.readouterr().out
    assert "8 tasks from" in text and "(jax training checkpoint, step 5)" in text
    assert "2 task(s) exceed block_size 40: their context was cut from the left" in text
    assert cli("--hf-dir", str(tmp_path / "hf"), "--framework", "torch", "--json", str(tmp_path / "t.json"),
               *common) == 0
    assert "(Hugging Face directory)" in capsys.readouterr().out
    j, t = (json.loads((tmp_path / f).read_text()) for f in ("j.json", "t.json"))
    assert j["count"] == t["count"] == 8 and j["index"] == list(range(8)) and j["truncated"] == 2
    assert (j["pred"], j["pred_norm"], j["acc"], j["acc_norm"]) == (t["pred"], t["pred_norm"], t["acc"], t["acc_norm"])
    assert f"hellaswag: acc {j['acc']:.4f} ({j['correct']}/8)  acc_norm {j['acc_norm']:.4f}" in text
    assert "count 8" in text


def test_cli_torch_checkpoint_run_dir_and_its_hf_export(tmp_path, sample, capsys):
    from jaxgpt.common.schedule import OptimConfig
    from torchref.train.trainer import Trainer

    trainer = Trainer(GPTConfig(block_size=64, vocab_size=50257, n_layer=1, n_head=2, n_embd=16), OptimConfig(), seed=4)
    run = tmp_path / "run"
    save_checkpoint(trainer, run, 7)
    common = ["--checkpoint", str(run), "--data", str(sample), "--limit", "8"]
    assert cli(*common, "--framework", "torch", "--json", str(tmp_path / "ckpt.json")) == 0
    assert "(torch training checkpoint, step 7)" in capsys.readouterr().out
    assert cli(*common, "--framework", "jax", "--json", str(tmp_path / "ckpt_jax.json")) == 0  # read by name in JAX
    trainer.save_hf(run / "hf")  # a finished run: its final export is preferred
    assert cli(*common, "--framework", "torch", "--json", str(tmp_path / "hf.json")) == 0
    assert f"model {run / 'hf'} (Hugging Face directory)" in capsys.readouterr().out
    a, b, c = (json.loads((tmp_path / f).read_text()) for f in ("ckpt.json", "ckpt_jax.json", "hf.json"))
    assert (a["pred"], a["pred_norm"], a["count"]) == (b["pred"], b["pred_norm"], 8) == (c["pred"], c["pred_norm"], 8)


def test_cli_errors_are_clear_and_exit_non_zero(tmp_path, sample, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"ctx": "a", "label": 0, "endings": ["a", "b", "c", "d"]}) + "\n{oops\n")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    small = save_tiny(tmp_path / "small", vocab_size=1000)
    model = save_tiny(tmp_path / "model")
    cases = [
        (["--hf-dir", str(tmp_path / "nope")], "--hf-dir .*nope not found"),
        (["--hf-dir", str(tmp_path / "half")], "lacks model.safetensors"),
        (["--checkpoint", str(tmp_path)], "holds no model: expected a Hugging Face directory"),
        (["--hf-dir", str(model), "--data", str(tmp_path / "missing.jsonl")], "missing.jsonl not found; check --data"),
        (["--hf-dir", str(model), "--data", str(bad)], r"bad.jsonl:2: invalid JSON"),
        (["--hf-dir", str(model), "--data", str(sample), "--limit", "0"], "--limit must be >= 1"),
        (["--hf-dir", str(small), "--data", str(sample), "--limit", "2"], r">= the model's vocab_size 1000"),
    ]
    for args, message in cases:
        assert cli(*args, "--framework", "torch") == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and re.search(message, err), (message, err)
    # As a user sees it: one line on stderr, exit status 1, no traceback.
    r = run_cli("--hf-dir", str(tmp_path / "nope"), "--framework", "jax")
    assert r.returncode == 1 and r.stderr.startswith("error: --hf-dir") and "Traceback" not in r.stderr


# One process of a 2-process evaluation: prints its result as JSON on the last line.
CHILD = r"""
import json, sys
framework, rank, port, model_dir, data, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
import tiktoken
from jaxgpt.common.data.hellaswag import load_examples

class ModEnc:  # gpt2 ids folded into a 512-id vocabulary: a cheap head, rows as real as the sample's
    enc = tiktoken.get_encoding("gpt2")
    def encode(self, text):
        return [t % 512 for t in self.enc.encode(text)]

examples = load_examples(data, limit=limit)
if framework == "jax":
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=rank)
    from jaxgpt.eval import hellaswag as ev
    from jaxgpt.gpt import GPT
    from jaxgpt.train.sharding import make_mesh
    assert jax.device_count() == 8 and jax.local_device_count() == 4
    r = ev.evaluate_hellaswag(GPT.from_hf(model_dir), examples, batch_size=4, mesh=make_mesh(), enc=ModEnc())
else:
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)  # 2 ranks on 2 cores
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    from torchref.eval import hellaswag as ev
    from torchref.gpt import GPT
    r = ev.evaluate_hellaswag(GPT.from_hf(model_dir), examples, batch_size=4, enc=ModEnc())
    dist.destroy_process_group()
res = r["result"]
print(json.dumps({"count": r["count"], "correct": r["correct"], "correct_norm": r["correct_norm"], "acc": r["acc"],
                  "index": res.index.tolist(), "pred": res.pred.tolist(), "pred_norm": res.pred_norm.tolist()}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mod_model(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("mod") / "hf", vocab_size=512, block_size=128)


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_two_processes_give_every_process_the_one_process_numbers(framework, mod_model, sample):
    limit = 37  # 19 + 18 tasks: the processes hold different counts, and the last batches are padded
    enc = tiktoken_encoding("gpt2")

    class ModEnc:
        def encode(self, text: str) -> list[int]:
            return [t % 512 for t in enc.encode(text)]

    from jaxgpt.common.data.hellaswag import load_examples
    from jaxgpt.eval import hellaswag as jhs
    from jaxgpt.gpt import GPT

    one = jhs.evaluate_hellaswag(GPT.from_hf(str(mod_model)), load_examples(sample, limit=limit), batch_size=4,
                                 enc=ModEnc())
    want = {"count": limit, "correct": one["correct"], "correct_norm": one["correct_norm"], "acc": one["acc"],
            "index": list(range(limit)), "pred": one["result"].pred.tolist(),
            "pred_norm": one["result"].pred_norm.tolist()}
    assert len(set(want["pred"])) > 1  # a random model whose choices vary: equality below is a real check

    port = str(free_port())
    env = subprocess_env(4)  # 4 simulated devices per process
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, framework, str(rank), port, str(mod_model), str(sample),
                               str(limit)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for rank in range(2)]
    outs = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        assert p.returncode == 0, stderr[-3000:]
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert outs[0] == outs[1] == want
