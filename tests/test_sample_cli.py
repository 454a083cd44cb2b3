"""scripts/sample.py (jaxgpt.common.sampling): greedy output equals the model's `generate`, the text streams whole
characters only, a prompt longer than the block is cropped from the left (said once), the prompt can come from
stdin, bad input. A random tiny GPT-2-vocabulary model saved as an HF directory (numpy only)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, tiktoken_encoding
from jaxgpt.common import sampling
from jaxgpt.common.config import GPTConfig
from jaxgpt.common.data.codec import open_tokenizer
from jaxgpt.common.data.prepare import train_bpe_tokenizer
from jaxgpt.common.sources import load_model, resolve_model
from jaxgpt.common.weights import expected_shapes, save_hf_dir

# One worker runs this module (pyproject's --dist loadgroup): its module-scoped runs are then made once, not per worker.
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.xdist_group("sample-cli")]

CFG = GPTConfig(block_size=16, vocab_size=50257, n_layer=1, n_head=2, n_embd=16)
PROMPT = "Le ciel est"


@pytest.fixture(scope="module")
def hf(tmp_path_factory) -> Path:
    tiktoken_encoding("gpt2")
    rng = np.random.default_rng(0)
    weights = {k: rng.normal(0, 0.5, s).astype(np.float32) for k, s in expected_shapes(CFG).items()}
    return save_hf_dir(tmp_path_factory.mktemp("sample") / "hf", weights, CFG)


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_greedy_sample_equals_generate(hf, framework, capsys):
    codec = open_tokenizer("gpt2")
    ids = np.asarray([sampling.prompt_ids(codec, PROMPT)], np.int32)
    row = load_model(framework, resolve_model(hf)).generate(ids, 10, temperature=0, stop_token=codec.eot_id)[0]
    want = codec.decode([i for i in row[1:].tolist() if i != codec.eot_id])
    assert sampling.main(str(hf), framework, PROMPT, max_new_tokens=10, temperature=0, num_samples=2) == 0
    out = capsys.readouterr().out
    assert out == f"{want}\n\n---\n\n{want}\n"  # greedy: every sample the same


def test_streaming_writes_whole_characters_only():
    """Characters whose bytes span several GPT-2 tokens come out whole, never as U+FFFD halves."""
    codec = open_tokenizer("gpt2")
    text = "é東京😀 ok"
    ids = codec.encode_ordinary(text)
    assert len(ids) > len(text.split()) + 3  # several characters really are split across tokens
    writes: list[str] = []
    s = sampling.Streamer(codec, writes.append)
    for i in [*ids, codec.eot_id, ids[0]]:  # nothing after the separator
        s(np.asarray([i]))
    s.close()
    assert "".join(writes) == text and "\ufffd" not in "".join(writes)
    assert writes[0] == "é"  # the first character, as soon as its bytes are complete


def test_long_prompt_is_cropped_from_the_left_once(hf):
    codec = open_tokenizer("gpt2")
    warnings: list[str] = []
    ids = sampling.crop_prompt(list(range(40)), CFG.block_size, warnings.append)
    assert ids == list(range(24, 40)) and len(warnings) == 1 and "first 24 tokens" in warnings[0]
    assert sampling.crop_prompt([1, 2], CFG.block_size, warnings.append) == [1, 2] and len(warnings) == 1
    out: list[str] = []
    model = load_model("jax", resolve_model(hf))
    sampling.stream_samples(model.generate, codec, "mot " * 30, 2, 3, CFG.block_size, out.append, warnings.append,
                            temperature=0)
    assert len(warnings) == 2 and "".join(out).startswith("mot " * 30)  # once for both samples; prompt kept in print


def test_cli_prompt_from_stdin_and_bad_input(hf, tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, str(ROOT / "scripts" / "sample.py"), "--model", str(hf), "--framework", "torch",
           "--prompt", "-", "--max-new-tokens", "4", "--temperature", "0.8", "--top-k", "5", "--seed", "3"]
    p = subprocess.run(cmd, input="Bonjour ô nuit".encode(), capture_output=True, env=env, check=False)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    assert p.stdout.decode().startswith("Bonjour ô nuit")
    train_bpe_tokenizer(["le ciel la mer un soir mon cœur"] * 20, 270, "gpt4").save(tmp_path / "small")
    p = subprocess.run([*cmd[:-8], "--tokenizer", str(tmp_path / "small.model")], input=b"x", capture_output=True,
                       env=env, check=False)
    assert p.returncode == 1 and re.search(rb"small.model' has \d+ ids but the model has vocab_size=50257", p.stderr)
    assert p.stderr.decode().count("\n") == 1  # one line
