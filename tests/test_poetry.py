"""The poetry stage through the one training path: shards of our BPE (scripts/prepare_data.py), then
scripts/train.py --preset poetry in both frameworks (exact resume after SIGKILL, SIGTERM -> 143, refused
resumes), bits per byte, samples during training, and scripts/sample.py across frameworks. Tiny model,
small synthetic corpus."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import script_compile_cache, subprocess_env
from jaxgpt.common import sampling, training
from jaxgpt.common.checkpoint import CheckpointDir, group
from jaxgpt.common.data.documents import DocSource
from jaxgpt.common.data.prepare import PrepareConfig, prepare, train_bpe_tokenizer
from jaxgpt.common.resume import read_train_state
from jaxgpt.common.runlog import read_log

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train.py"
VERSE = "le ciel la mer un soir mon cœur ô nuit les étoiles tremblent doucement sur l'onde où rêve une âme"
WORDS = VERSE.split()


def make_poems(n: int, seed: int = 0) -> list[str]:
    """Seeded verse-shaped nonsense with French letters: enough structure for BPE and a tiny model."""
    rng = np.random.default_rng(seed)
    poems = []
    for _ in range(n):
        lines = [" ".join(rng.choice(WORDS, size=rng.integers(4, 8))).capitalize() + rng.choice([",", ".", " !"])
                 for _ in range(rng.integers(2, 6))]
        poems.append("\n".join(lines))
    return poems


POEMS = make_poems(160)
# Most tests here read `full_runs` (a JAX and a torch run): one pytest-xdist worker runs this module, so the runs
# are made once (pyproject's --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_poetry")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The corpus as shards of our BPE (300 ids, trained on the train poems), 10% of the poems held out."""
    d = tmp_path_factory.mktemp("corpus")
    (d / "poems.txt").write_text("\n\n".join(POEMS) + "\n", encoding="utf-8")
    cfg = PrepareConfig(DocSource(files=(str(d / "poems.txt"),)), train_tokenizer=300, val_fraction=0.1)
    prepare(cfg, d / "shards", progress=False, log=lambda m: None)
    return d / "shards"


# 2 x 8 x 16 tokens per step: one row per simulated JAX device (conftest.py) in each of 2 accumulated micro-steps
# (torch: 16 micro-steps of one row), so an exact resume covers the accumulation too. Dropout on in both
# frameworks, so the dropout RNG state must resume exactly as well.
TINY = ["--n_layer=1", "--n_embd=16", "--n_head=2", "--block_size=16", "--vocab_size=300", "--total_batch_tokens=256",
        "--micro_batch=1",
        "--max_steps=6", "--warmup_steps=2", "--val_every=3", "--val_steps=1", "--final_val_steps=2", "--ckpt_every=3",
        "--sample_every=3", "--sample_tokens=6", "--plot=false", "--dropout=0.1"]


def args(data: Path, out: Path, framework: str, *extra: str) -> list[str]:
    return ["--preset", "poetry", "--framework", framework, f"--data_dir={data}", f"--out_dir={out}", *TINY, *extra]


def command(argv: list[str]) -> list[str]:
    """scripts/train.py with `argv`; a JAX run loads the steps its earlier runs compiled (conftest.script_compile_cache)."""
    cache = [script_compile_cache()] if argv[argv.index("--framework") + 1] == "jax" else []
    return [sys.executable, str(SCRIPT), *argv, *cache]


def train(argv: list[str]) -> subprocess.CompletedProcess:
    p = subprocess.run(command(argv), env=subprocess_env(8), capture_output=True, text=True, timeout=900, check=False)
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def final_state(out: Path) -> dict[str, np.ndarray]:
    ck = CheckpointDir(out / "checkpoints")
    meta = json.loads((ck.path(ck.steps()[-1]) / "meta.json").read_text())
    return read_train_state(ck.path(ck.steps()[-1]), meta)


@pytest.fixture(scope="module")
def full_runs(data, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """One uninterrupted tiny run per framework: (run folder, its stdout)."""
    runs = {}
    for fw in ("jax", "torch"):
        out = tmp_path_factory.mktemp("runs") / fw
        runs[fw] = out, train(args(data, out, fw)).stdout
    return runs


@pytest.mark.parametrize(("framework", "how"), [("jax", signal.SIGKILL), ("torch", signal.SIGKILL),
                                                ("torch", signal.SIGTERM)])
def test_interrupted_run_resumes_exactly(data, tmp_path, full_runs, framework, how):
    """SIGKILL: back to the last periodic checkpoint (step 3); SIGTERM: a checkpoint of the step in flight, exit 143."""
    out = tmp_path / "run"
    proc = subprocess.Popen(command(args(data, out, framework)), env=subprocess_env(8),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "saved checkpoint" in line and "step_00000003" in line:
            proc.send_signal(how)
            break
    rest = proc.communicate(timeout=900)[0]
    if how == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL, "".join(seen[-20:]) + rest
        assert CheckpointDir(out / "checkpoints").steps() == [3]
    else:
        assert proc.returncode == 143, "".join(seen[-20:]) + rest  # 128 + 15, as for the GPT-2 stage
        assert "stopped by signal 15" in rest and "continue with --resume" in rest
        assert CheckpointDir(out / "checkpoints").steps()[-1] > 3
    train(args(data, out, framework, "--resume"))
    want_dir = full_runs[framework][0]
    got, want = final_state(out), final_state(want_dir)
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want), \
        "resumed state differs from the uninterrupted run"
    losses = lambda d: [(r["step"], r["loss"]) for r in read_log(d / "train_log.csv") if "loss" in r]
    vals = lambda d: [(r["step"], r["val_loss"]) for r in read_log(d / "train_log.csv") if "val_loss" in r]
    assert losses(out) == losses(want_dir) and vals(out) == vals(want_dir)


def test_bits_per_byte_samples_and_the_run_folder(data, full_runs):
    out, stdout = full_runs["torch"]
    m = json.loads((out / "metrics.json").read_text())
    manifest = json.loads((data / "manifest.json").read_text())["splits"]["val"]
    # bits per byte = nats/token x tokens / (bytes x ln 2), over the val split of the manifest
    assert m["val_bpb"] == pytest.approx(m["val_loss"] * manifest["tokens"] / (manifest["bytes"] * math.log(2)))
    assert "sample at step 3:" in stdout and len(m["samples"]) == 1
    assert (out / "tokenizer.model").read_bytes() == (data / "tokenizer.model").read_bytes()
    assert (out / "hf" / "model.safetensors").is_file() and "bits/byte" in stdout


def main(argv: list[str]) -> int:
    """scripts/train.py in this process."""
    preset = argv[argv.index("--preset") + 1]
    framework = argv[argv.index("--framework") + 1]
    rest = [a for i, a in enumerate(argv) if a not in ("--preset", "--framework", "--resume")
            and argv[i - 1] not in ("--preset", "--framework")]
    return training.main(preset, rest, framework, resume="--resume" in argv)


def test_resume_refuses_a_changed_config_and_a_fresh_run_refuses_an_old_folder(data, full_runs, capsys):
    out = full_runs["jax"][0]
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert main(args(data, out, "jax", "--resume", "--lr=0.01", "--n_embd=32")) == 1
    err = capsys.readouterr().err
    # n_embd is the run's identity (refused, named); lr may change on a resume, and the refusal says so
    assert "another configuration" in err and "model.n_embd: 16 -> 32" in err and "these may change: lr 0.002 -> 0.01" in err
    assert main(args(data, out, "jax")) == 1
    err = capsys.readouterr().err
    assert "already holds checkpoints" in err and "pass --resume" in err
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*")}


def test_train_cli_errors(data, tmp_path, capsys):
    # The preset's vocabulary (1024) is not the shards' tokenizer's (300): one line naming both and the fix.
    assert main(["--preset", "poetry", "--framework", "jax", f"--data_dir={data}", f"--out_dir={tmp_path / 'a'}"]) == 1
    err = capsys.readouterr().err
    assert "made with the tokenizer 'trained (300 ids)' of 300 ids, but the model (--preset poetry) has " \
           "vocab_size=1024; pass --vocab_size=300" in err and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    assert main(args(tmp_path / "empty", tmp_path / "b", "jax")) == 1
    assert "no *_train_*.npy shards" in capsys.readouterr().err
    assert main(args(data, tmp_path / "c", "jax", "--resume")) == 1
    assert "--resume: no checkpoint in" in capsys.readouterr().err
    assert main(args(data, tmp_path / "d", "jax", "--n_layers=2")) == 2
    assert "unknown option --n_layers (did you mean --n_layer?)" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in ("a", "b", "d"))  # nothing written


# ---- sampling ------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["jax", "torch"])
def test_sample_same_text_in_both_frameworks(full_runs, capsys, source):
    texts = {}
    for fw in ("jax", "torch"):
        ckpt = CheckpointDir(full_runs[source][0] / "checkpoints")
        assert sampling.main(str(ckpt.path(6)), fw, "Le ciel", max_new_tokens=12, temperature=0) == 0
        texts[fw] = capsys.readouterr().out
    assert texts["jax"] == texts["torch"] and texts["jax"].startswith("Le ciel")


def test_sample_any_prompt_byte_fallback(full_runs, capsys):
    prompt = "L'univers 🌌 東京 \udcff <|endoftext|>"  # unseen characters, a stray surrogate, the separator's text
    assert sampling.main(str(full_runs["jax"][0]), prompt=prompt, max_new_tokens=5, temperature=0.8, top_k=20,
                         top_p=0.9, num_samples=2) == 0
    out = capsys.readouterr().out
    assert out.startswith("L'univers 🌌 東京 \ufffd <|endoftext|>") and "---" in out


def test_sample_errors(full_runs, tmp_path, capsys):
    other = train_bpe_tokenizer(POEMS[:50], 290, "gpt4")
    other.save(tmp_path / "other")
    assert sampling.main(str(full_runs["jax"][0]), tokenizer=str(tmp_path / "other.model")) == 1
    assert "has 290 ids but the model has vocab_size=300" in capsys.readouterr().err
    assert sampling.main(str(tmp_path)) == 1
    assert "holds no model" in capsys.readouterr().err
    assert sampling.main(str(full_runs["jax"][0]), top_p=1.5) == 1
    assert "top_p=1.5" in capsys.readouterr().err


def test_weights_are_the_same_from_either_reader(full_runs):
    """A run's final export and its last checkpoint hold the same parameters (read by name)."""
    from safetensors.numpy import load_file

    from jaxgpt.common.weights import from_hf

    out = full_runs["jax"][0]
    params = group(final_state(out), "params")
    cfg = json.loads((CheckpointDir(out / "checkpoints").path(6) / "meta.json").read_text())["config"]["model"]
    from jaxgpt.common.config import GPTConfig

    hf = from_hf(load_file(str(out / "hf" / "model.safetensors")), GPTConfig.from_dict(cfg))
    assert hf.keys() == params.keys() and all(np.array_equal(hf[k], params[k]) for k in params)


def test_poetry_batches_are_random_windows_over_the_train_split(data, monkeypatch):
    """batch_order=random (the poetry recipes): a 32-row step spans many poems; its state resumes exactly."""
    from jaxgpt.common.recipes import configs_for
    from jaxgpt.common.training import train_batches

    model, cfg, _ = configs_for("poetry", [f"--data_dir={data}", "--vocab_size=300"])
    assert cfg.batch_order == "random"
    loader = train_batches(cfg, model, 32, 0, 1)
    x, y = loader.next_batch()
    assert x.shape == (32, 128) and len({tuple(r) for r in x}) == 32
    sequential = train_batches(dataclasses.replace(cfg, batch_order="sequential"), model, 32, 0, 1)
    xs, ys = sequential.next_batch()
    # Sequential rows continue one another (4,096 consecutive tokens: a few poems); random rows do not.
    assert np.array_equal(ys[:-1, -1], xs[1:, 0])
    assert np.mean(y[:-1, -1] == x[1:, 0]) < 0.5
    state = loader.state()
    a = [loader.next_batch()[0] for _ in range(3)]
    again = train_batches(cfg, model, 32, 0, 1)
    again.load_state(state)
    assert all(np.array_equal(p, q) for p, q in zip(a, [again.next_batch()[0] for _ in range(3)]))
    monkeypatch.setattr("jaxgpt.common.training.RANDOM_ORDER_MAX_TOKENS", 100)
    with pytest.raises(ValueError, match="--batch_order=random loads the train split into memory"):
        train_batches(cfg, model, 32, 0, 1)
