"""Bad input to the GPT twins and the weight table: every error names the problem and the fix.

Covers the config (n_embd % n_head), sequences longer than block_size, token ids outside the
vocabulary (padded rows included), checkpoint directories whose weights or config do not match
(missing key, extra key, wrong shape, config.json from another model), missing files,
transformers config options we cannot express, `load_numpy` mismatches, export of configs HF
GPT-2 cannot hold, and generate()'s arguments. Each case runs on both twins where both have it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file, save_file

from jaxgpt.common.config import PRESETS, GPTConfig
from jaxgpt.common.weights import check_weights, expected_shapes, load_hf_dir
from jaxgpt.gpt import GPT as JaxGPT
from torchref.gpt import GPT as TorchGPT

TINY = PRESETS["tiny"]  # block 16, vocab 99, 2 layers, 4 heads, n_embd 32
PADDED = GPTConfig(block_size=16, vocab_size=99, padded_vocab_size=128, n_layer=2, n_head=4, n_embd=32)
FRAMEWORKS = ["jax", "torch"]


def build(framework: str, cfg: GPTConfig = TINY):
    return JaxGPT(cfg, rngs=nnx.Rngs(0)) if framework == "jax" else TorchGPT(cfg)


def forward(model, idx: np.ndarray):
    if isinstance(model, torch.nn.Module):
        return model(torch.as_tensor(idx, dtype=torch.long))
    return model(np.asarray(idx, dtype=np.int32))


def from_hf(framework: str, path, **kw):
    return (JaxGPT if framework == "jax" else TorchGPT).from_hf(str(path), **kw)


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory) -> Path:
    """A valid HF GPT-2 directory written by torchref's save_hf (no transformers needed)."""
    path = tmp_path_factory.mktemp("good")
    torch.manual_seed(0)
    TorchGPT(TINY).save_hf(str(path))
    return path


def corrupt(good: Path, dest: Path, weights=None, config=None) -> Path:
    """A copy of `good` with its safetensors tensors and/or config.json dict edited."""
    shutil.copytree(good, dest)
    if weights:
        w = load_file(str(dest / "model.safetensors"))
        weights(w)
        save_file(w, str(dest / "model.safetensors"))
    if config:
        c = json.loads((dest / "config.json").read_text())
        config(c)
        (dest / "config.json").write_text(json.dumps(c))
    return dest


# ---- config ---------------------------------------------------------------------------------------

def test_n_embd_not_divisible_by_n_head():
    with pytest.raises(ValueError, match=r"n_embd=30 is not divisible by n_head=4.*pick n_head.*n_head=3"):
        GPTConfig(n_embd=30, n_head=4)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_layer": 0}, r"n_layer=0 must be >= 1"),
    ({"vocab_size": 99, "padded_vocab_size": 64}, r"padded_vocab_size=64 < vocab_size=99.*must be >= vocab_size"),
    ({"dropout": 1.0}, r"dropout=1.0 must be in \[0, 1\)"),
    ({"activation": "gelu"}, r"activation='gelu' is unknown; use one of"),
    ({"lm_head_bias": True}, r"lm_head_bias=True needs tie_embeddings=False"),
])
def test_other_bad_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**kwargs)


def test_unknown_config_field_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown GPTConfig fields \['n_layers'\]; known fields are .*'n_layer'"):
        GPTConfig.from_dict({**TINY.to_dict(), "n_layers": 3})


# ---- inputs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_sequence_longer_than_block_size(framework):
    with pytest.raises(ValueError, match=r"sequence length 17 exceeds block_size 16; crop the input to its last 16"):
        forward(build(framework), np.zeros((1, 17)))


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("cfg, bad", [(TINY, 99), (TINY, -1), (PADDED, 100)], ids=["vocab", "negative", "padded-row"])
def test_token_ids_outside_the_vocabulary(framework, cfg, bad):
    """Ids >= vocab_size are refused even where padded rows exist (they are not tokens)."""
    idx = np.array([[1, 2, bad]])
    with pytest.raises(ValueError, match=rf"token ids must be in \[0, 99\); got \[{bad}\]; check that the tokenizer"):
        forward(build(framework, cfg), idx)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("kwargs, match", [
    ({"temperature": -1.0}, r"temperature=-1.0 must be >= 0 \(0 means greedy\)"),
    ({"top_k": 0}, r"top_k=0 must be in \[1, vocab_size=99\]"),
    ({"top_k": 100}, r"top_k=100 must be in \[1, vocab_size=99\]"),
    ({"top_p": 0.0}, r"top_p=0.0 must be in \(0, 1\]"),
    ({"top_p": 1.5}, r"top_p=1.5 must be in \(0, 1\]"),
    ({"max_new_tokens": -1}, r"max_new_tokens=-1 must be >= 0"),
    ({"stop_token": 99}, r"stop_token=99 is not a token id of this model \(ids are 0..98\).*pass an id"),
    ({"idx": [1, 2, 3]}, r"idx must be a non-empty \(batch, time\) array.*shape \(3,\)"),
    ({"idx": [[1, 2, 300]]}, r"token ids must be in \[0, 99\); got \[300\]"),
])
def test_generate_arguments(framework, kwargs, match):
    args = {"idx": [[1, 2, 3]], "max_new_tokens": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        build(framework).generate(args.pop("idx"), args.pop("max_new_tokens"), **args)


# ---- checkpoint directories -----------------------------------------------------------------------

FIX = r"Fix: config\.json and model\.safetensors in .* describe different models; re-save the directory"


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("case, weights, config, match", [
    ("missing key", lambda w: w.pop("transformer.h.1.ln_2.bias"), None,
     r"missing \['transformer\.h\.1\.ln_2\.bias'\]"),
    ("extra key", lambda w: w.__setitem__("transformer.h.1.extra", np.zeros(3, np.float32)), None,
     r"unexpected \['transformer\.h\.1\.extra'\]"),
    ("wrong shape", lambda w: w.__setitem__("transformer.wpe.weight", np.zeros((32, 32), np.float32)), None,
     r"wrong shapes \(got != expected\) \['transformer\.wpe\.weight: \(32, 32\) != \(16, 32\)'\]"),
    ("config n_layer", None, lambda c: c.__setitem__("n_layer", 3),
     r"n_layer=3.*missing \['transformer\.h\.2\.attn\.c_attn\.bias'.*\(12 in all\)\]"),
    ("config n_embd", None, lambda c: c.update(n_embd=64),
     r"n_embd=64.*wrong shapes .*'transformer\.h\.0\.attn\.c_attn\.bias: \(96,\) != \(192,\)'.*\(28 in all\)\]"),
    ("config untied", None, lambda c: c.__setitem__("tie_word_embeddings", False),
     r"tie_embeddings=False\): missing \['lm_head\.weight'\]"),
])
def test_mismatched_checkpoint_dir(good_dir, tmp_path, framework, case, weights, config, match):
    path = corrupt(good_dir, tmp_path / "ckpt", weights, config)
    with pytest.raises(ValueError, match=rf"the weights in .*model\.safetensors do not match the config .*{match}\. {FIX}"):
        from_hf(framework, path)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("missing", ["config.json", "model.safetensors"])
def test_missing_file(good_dir, tmp_path, framework, missing):
    path = corrupt(good_dir, tmp_path / "ckpt")
    (path / missing).unlink()
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(missing)} not found: a Hugging Face GPT-2 directory "
                                               r"needs config\.json and model\.safetensors; .*re-save"):
        from_hf(framework, path)


def test_missing_safetensors_with_a_pickle_checkpoint(good_dir, tmp_path):
    path = corrupt(good_dir, tmp_path / "ckpt")
    (path / "model.safetensors").rename(path / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match=r"pytorch_model\.bin: load it in transformers and save_pretrained"):
        load_hf_dir(path)


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"checkpoint directory .*nowhere not found; pass the folder"):
        load_hf_dir(tmp_path / "nowhere")


@pytest.mark.parametrize("field, value, match", [
    ("model_type", "llama", r"model_type='llama'; only GPT-2 checkpoints"),
    ("activation_function", "gelu", r"activation_function='gelu' is not supported; use one of"),
    ("n_inner", 100, r"n_inner=100 is not 4\*n_embd"),
    ("scale_attn_by_inverse_layer_idx", True, r"scale_attn_by_inverse_layer_idx=true, which this model does not"),
    ("reorder_and_upcast_attn", True, r"reorder_and_upcast_attn=true, which this model does not implement"),
    ("add_cross_attention", True, r"add_cross_attention=true, which this model does not implement"),
    ("scale_attn_weights", False, r"scale_attn_weights=false .* only plain GPT-2 checkpoints"),
    ("n_head", 5, r"n_embd=32 is not divisible by n_head=5"),
    ("n_head", None, r"lacks the required field\(s\) \['n_head'\].*re-save"),
])
def test_unsupported_hf_config(good_dir, tmp_path, field, value, match):
    edit = (lambda c: c.pop(field)) if value is None else (lambda c: c.__setitem__(field, value))
    path = corrupt(good_dir, tmp_path / "ckpt", config=edit)
    with pytest.raises(ValueError, match=match) as err:
        load_hf_dir(path)
    if field != "n_head" or value is None:
        assert str(path / "config.json") in str(err.value), "the message must name the file"


def test_config_json_not_json(good_dir, tmp_path):
    path = corrupt(good_dir, tmp_path / "ckpt")
    (path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON .*re-save the checkpoint"):
        load_hf_dir(path)


def test_tied_config_with_a_different_head_is_refused(good_dir, tmp_path):
    """Dropping lm_head.weight for a tied config is lossless only if it equals wte: else refuse."""
    def edit(w):
        w["lm_head.weight"] = w["transformer.wte.weight"] + 1.0
    path = corrupt(good_dir, tmp_path / "ckpt", weights=edit)
    with pytest.raises(ValueError, match=r"lm_head\.weight differs from wte\.weight, but the config ties them.*"
                                         r"set tie_word_embeddings to false"):
        load_hf_dir(path)
    copy = corrupt(good_dir, tmp_path / "copy", weights=lambda w: w.update({"lm_head.weight": w["transformer.wte.weight"]}))
    assert load_hf_dir(copy)[0] == TINY  # an identical copy of wte is fine (transformers may write one)


def test_checkpoint_with_hf_buffers_and_fp16_loads(good_dir, tmp_path):
    """What real HF files hold and is fine: attention-mask buffers (skipped by name), fp16 tensors (cast)."""
    def edit(w):
        w["transformer.h.0.attn.bias"] = np.tril(np.ones((1, 1, 16, 16), np.float32))
        w["transformer.wpe.weight"] = w["transformer.wpe.weight"].astype(np.float16)
    path = corrupt(good_dir, tmp_path / "ckpt", weights=edit)
    cfg, weights = load_hf_dir(path)
    assert cfg == TINY and set(weights) == set(expected_shapes(TINY))
    assert all(w.dtype == np.float32 for w in weights.values())


# ---- numpy interchange and export -----------------------------------------------------------------

@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_load_numpy_mismatch(framework):
    model = build(framework)
    good = TorchGPT(TINY).state_numpy()
    missing = {k: v for k, v in good.items() if k != "transformer.wte.weight"}
    # Both twins validate through the one check (jaxgpt/common/weights.py check_weights): the same message.
    with pytest.raises(ValueError, match=r"missing \['transformer\.wte\.weight'\].*build the model with the config"):
        model.load_numpy(missing)
    with pytest.raises(ValueError, match=r"unexpected \['lm_head\.weight'\].*build the model with the config"):
        model.load_numpy(good | {"lm_head.weight": good["transformer.wte.weight"]})
    short = good | {"transformer.wte.weight": good["transformer.wte.weight"][:50]}
    with pytest.raises(ValueError, match=r"wrong shapes \(got != expected\) \['transformer\.wte\.weight: \(50, 32\) "
                                         r"!= \(99, 32\)'\].*build the model with the config"):
        model.load_numpy(short)


def test_check_weights_reports_every_problem_at_once():
    w = {k: np.zeros(s, np.float32) for k, s in expected_shapes(TINY).items()}
    w.pop("transformer.ln_f.bias")
    w["transformer.h.9.mlp.c_fc.weight"] = np.zeros((1,), np.float32)
    w["transformer.wte.weight"] = np.zeros((100, 32), np.float32)
    with pytest.raises(ValueError, match=r"missing \['transformer\.ln_f\.bias'\]; unexpected "
                                         r"\['transformer\.h\.9\.mlp\.c_fc\.weight'\]; wrong shapes .*\(100, 32\) != "
                                         r"\(99, 32\).*Fix: build the model with the config"):
        check_weights(w, TINY)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_export_refuses_what_hf_gpt2_cannot_hold(framework, tmp_path):
    with pytest.raises(ValueError, match=r"GPT2LMHeadModel has no head bias; export needs lm_head_bias=False"):
        build(framework, PRESETS["tiny-untied"]).save_hf(str(tmp_path / "out"))
    assert not (tmp_path / "out").exists(), "a refused export must not leave files behind"


def test_save_hf_onto_a_file_is_refused_and_the_file_kept(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    with pytest.raises(FileExistsError, match=r"notes\.txt exists and is not a directory; give save_hf a directory"):
        TorchGPT(TINY).save_hf(str(target))
    assert target.read_text() == "keep me"
