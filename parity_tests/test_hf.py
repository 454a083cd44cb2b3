"""The external reference: Hugging Face transformers' GPT2LMHeadModel, in both directions.

- HF save -> our load: a seeded, perturbed `GPT2LMHeadModel` written by `save_pretrained` loads in
  jaxgpt (`GPT.from_hf`) and torchref and gives HF's logits and loss (<= helpers.FWD_ATOL).
- our save -> HF load: `save_hf` from jaxgpt and from torchref loads in
  `GPT2LMHeadModel.from_pretrained` with no missing, unexpected or mismatched key, and gives our logits.
- round trips: a padded vocabulary (99 ids in 128 rows) through an HF directory, and the numpy
  interchange jax -> torch -> jax, bit for bit.

Our side never imports transformers (jaxgpt/common/weights.py reads and writes the files itself);
only these tests do. The HellaSwag scoring against HF's forward is in test_hellaswag.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from flax import nnx

from conftest import require_module
from jaxgpt.common.config import GPTConfig
from jaxgpt.common.weights import load_hf_dir
from jaxgpt.gpt import GPT as JaxGPT
from parity_tests.helpers import (
    FWD_ATOL,
    assert_close,
    assert_tree_close,
    hf_gpt2,
    hf_logits_loss,
    make_twins,
    shifted_targets,
)
from torchref.gpt import GPT as TorchGPT

transformers = require_module("transformers")  # a failure in CI, not a skip

B, T = 2, 16
HF_VARIANTS = {  # transformers' GPT-2 options our config expresses
    "gpt2": {"activation": "gelu_new", "tie": True},
    "untied-relu": {"activation": "relu", "tie": False},
}


def _idx(vocab_size: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab_size, (B, T))


def _ours(model, idx, tgt=None):
    """(logits, loss) of either twin as numpy / float."""
    if isinstance(model, torch.nn.Module):
        with torch.no_grad():
            logits, loss = model(torch.as_tensor(idx), None if tgt is None else torch.as_tensor(tgt))
        return logits.numpy(), None if loss is None else float(loss)
    logits, loss = model(np.asarray(idx), None if tgt is None else np.asarray(tgt))
    return np.asarray(logits), None if loss is None else float(loss)


@pytest.fixture(scope="module", params=list(HF_VARIANTS))
def hf_dir(request, tmp_path_factory):
    model = hf_gpt2(**HF_VARIANTS[request.param], seed=0)
    path = tmp_path_factory.mktemp(f"hf-{request.param}")
    model.save_pretrained(path)
    assert (path / "model.safetensors").is_file() and (path / "config.json").is_file()
    return request.param, model, path


@pytest.mark.parametrize("framework", ["jax", "torch"])
@pytest.mark.parametrize("padded", [None, 128], ids=["unpadded", "padded128"])
def test_hf_save_our_load(hf_dir, framework, padded):
    """HF -> ours: same logits and loss as transformers' forward, with or without vocab padding."""
    variant, hf, path = hf_dir
    GPT = JaxGPT if framework == "jax" else TorchGPT
    model = GPT.from_hf(str(path), padded_vocab_size=padded)
    model.eval()
    cfg = model.config
    assert (cfg.vocab_size, cfg.n_vocab_rows, cfg.tie_embeddings) == (99, padded or 99, HF_VARIANTS[variant]["tie"])
    assert cfg.activation == ("relu" if variant == "untied-relu" else "gelu_tanh")
    idx = _idx(99)
    want_logits, want_loss = hf_logits_loss(hf, idx)
    logits, loss = _ours(model, idx, shifted_targets(idx))
    assert_close(logits, want_logits, atol=FWD_ATOL, name=f"{framework} logits vs transformers")
    assert_close(loss, want_loss, atol=FWD_ATOL, name=f"{framework} loss vs transformers")


UNTIED_NO_BIAS = GPTConfig(block_size=16, vocab_size=99, n_layer=2, n_head=4, n_embd=32,
                           activation="relu", tie_embeddings=False)
OUR_CONFIGS = {
    "tiny": GPTConfig(block_size=16, vocab_size=99, n_layer=2, n_head=4, n_embd=32),
    "tiny-padded": GPTConfig(block_size=16, vocab_size=99, padded_vocab_size=128, n_layer=2, n_head=4, n_embd=32),
    "untied-relu": UNTIED_NO_BIAS,
}


@pytest.mark.parametrize("name", list(OUR_CONFIGS))
def test_our_save_hf_load(name, tmp_path):
    """Ours -> HF: from_pretrained accounts for every key and reproduces our logits (jax and torch saves)."""
    cfg = OUR_CONFIGS[name]
    jm, tm = make_twins(cfg, seed=1)
    idx = _idx(cfg.vocab_size)
    for framework, model in (("jax", jm), ("torch", tm)):
        path = tmp_path / framework
        model.save_hf(str(path))
        hf, info = transformers.GPT2LMHeadModel.from_pretrained(path, output_loading_info=True)
        hf.eval()
        for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
            assert not info.get(kind), f"{framework} save: transformers reports {kind} {info[kind]}"
        assert hf.config.vocab_size == cfg.vocab_size  # padded rows are not exported
        want, _ = _ours(model, idx)
        got, _ = hf_logits_loss(hf, idx)
        assert_close(got, want, atol=FWD_ATOL, name=f"transformers logits from the {framework} save ({name})")


def test_padded_vocab_round_trip(tmp_path):
    """128-row model -> HF dir (99 rows) -> 128-row model: real rows exact, padded rows zero-filled."""
    cfg = OUR_CONFIGS["tiny-padded"]
    jm, _ = make_twins(cfg, seed=2)
    jm.save_hf(str(tmp_path))
    back_cfg, back = load_hf_dir(tmp_path, padded_vocab_size=128)
    assert back_cfg == cfg
    orig = jm.state_numpy()
    wte = "transformer.wte.weight"
    assert back[wte].shape == orig[wte].shape == (128, cfg.n_embd)
    np.testing.assert_array_equal(back[wte][:99], orig[wte][:99])
    assert not back[wte][99:].any(), "padded rows must come back as zeros"
    assert_tree_close({k: v for k, v in back.items() if k != wte}, {k: v for k, v in orig.items() if k != wte},
                      atol=0.0, name="round trip through an HF directory")
    # Whatever the padded rows hold, they never reach the logits: both models agree.
    reloaded = JaxGPT.from_hf(str(tmp_path), padded_vocab_size=128)
    idx = _idx(99)
    assert_close(_ours(reloaded, idx)[0], _ours(jm, idx)[0], atol=0.0, name="logits after the round trip")


@pytest.mark.parametrize("name", ["tiny", "untied-relu"])
def test_numpy_round_trip_jax_torch(name):
    """jax -> numpy -> torch -> numpy -> jax is exact, with every key and shape accounted for."""
    cfg = dataclasses.replace(OUR_CONFIGS[name], padded_vocab_size=None)
    jm = JaxGPT(cfg, rngs=nnx.Rngs(7))
    a = jm.state_numpy()
    tm = TorchGPT(cfg)
    tm.load_numpy(a)
    b = tm.state_numpy()
    jm2 = JaxGPT(cfg, rngs=nnx.Rngs(8))
    jm2.load_numpy(b)
    assert_tree_close(a, b, atol=0.0, name="jax -> torch")
    assert_tree_close(a, jm2.state_numpy(), atol=0.0, name="jax -> torch -> jax")
    assert jm.num_params(non_embedding=False) == tm.num_params(non_embedding=False) == sum(v.size for v in a.values())
