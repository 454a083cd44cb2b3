"""The one weight table: our parameters <-> Hugging Face GPT-2, through plain numpy arrays.

Framework-free (numpy + safetensors.numpy), shared by `jaxgpt` and `torchref`. Both models
expose `state_numpy()` / `load_numpy()` with GPT-2 names in torch layout, so the only
differences from a Hugging Face `GPT2LMHeadModel` checkpoint are listed here:

| our name (torch layout)                    | HF name                      | change            |
|--------------------------------------------|------------------------------|-------------------|
| transformer.h.{i}.attn.c_attn.weight (3C,C) | same                         | transpose: HF's Conv1D stores (in, out) |
| transformer.h.{i}.attn.c_proj.weight (C,C)  | same                         | transpose         |
| transformer.h.{i}.mlp.c_fc.weight (4C,C)    | same                         | transpose         |
| transformer.h.{i}.mlp.c_proj.weight (C,4C)  | same                         | transpose         |
| transformer.wte.weight (V_pad, C)           | same, (50257, C)             | padded rows cut / zero-filled |
| lm_head.weight (untied models only)         | lm_head.weight               | none              |
| everything else (LayerNorms, biases, wpe)   | same                         | none              |

HF's checkpoints also carry non-parameter buffers (`attn.bias`, `attn.masked_bias` in old
files): those are recognised and skipped by name; any other unknown key is an error, so a
conversion never silently drops or adds a parameter.

A checkpoint directory is `config.json` + `model.safetensors`, as `save_pretrained` writes it;
`transformers` is never imported here.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from jaxgpt.common.config import GPTConfig

# HF Conv1D layers keep (in, out) weights: these are the keys to transpose.
_CONV1D = re.compile(r"transformer\.h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$")
# Buffers HF GPT-2 checkpoints may contain that are not parameters (causal mask tables).
_HF_BUFFERS = re.compile(r"transformer\.h\.\d+\.attn\.(bias|masked_bias)$")


def expected_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter of our model for `config`, with its shape in torch layout."""
    C, V = config.n_embd, config.n_vocab_rows
    shapes: dict[str, tuple[int, ...]] = {
        "transformer.wte.weight": (V, C),
        "transformer.wpe.weight": (config.block_size, C),
        "transformer.ln_f.weight": (C,),
    }
    layer = {
        "ln_1.weight": (C,), "attn.c_attn.weight": (3 * C, C), "attn.c_proj.weight": (C, C),
        "ln_2.weight": (C,), "mlp.c_fc.weight": (4 * C, C), "mlp.c_proj.weight": (C, 4 * C),
    }
    if config.bias:
        shapes["transformer.ln_f.bias"] = (C,)
        layer |= {"ln_1.bias": (C,), "attn.c_attn.bias": (3 * C,), "attn.c_proj.bias": (C,),
                  "ln_2.bias": (C,), "mlp.c_fc.bias": (4 * C,), "mlp.c_proj.bias": (C,)}
    for i in range(config.n_layer):
        shapes |= {f"transformer.h.{i}.{k}": s for k, s in layer.items()}
    if not config.tie_embeddings:
        shapes["lm_head.weight"] = (V, C)
        if config.lm_head_bias:
            shapes["lm_head.bias"] = (V,)
    return shapes


def check_weights(weights: dict[str, np.ndarray], config: GPTConfig, source: str = "weights",
                  fix: str = "build the model with the config these weights were saved with") -> None:
    """Raise unless `weights` has exactly the parameters of `config`, with the right shapes.

    The message lists (up to 8 of) the missing keys, the unexpected keys and the wrong shapes,
    then `fix`: what the user should do about it.
    """
    want = expected_shapes(config)
    missing, unexpected = sorted(set(want) - set(weights)), sorted(set(weights) - set(want))
    wrong = [f"{k}: {tuple(weights[k].shape)} != {want[k]}" for k in sorted(set(want) & set(weights))
             if tuple(weights[k].shape) != want[k]]
    problems = [f"{what} {_first(keys)}" for what, keys in
                (("missing", missing), ("unexpected", unexpected), ("wrong shapes (got != expected)", wrong)) if keys]
    if problems:
        raise ValueError(
            f"{source} do not match the config (n_layer={config.n_layer}, n_head={config.n_head}, "
            f"n_embd={config.n_embd}, block_size={config.block_size}, vocab rows={config.n_vocab_rows}, "
            f"tie_embeddings={config.tie_embeddings}): {'; '.join(problems)}. Fix: {fix}."
        )


def _first(keys: list[str], n: int = 8) -> str:
    return str(keys[:n])[:-1] + (f", ... ({len(keys)} in all)]" if len(keys) > n else "]")


def to_hf(weights: dict[str, np.ndarray], config: GPTConfig) -> dict[str, np.ndarray]:
    """Our numpy state -> HF GPT2LMHeadModel state (Conv1D transposes, vocab padding removed)."""
    check_weights(weights, config, "model weights")
    out = {}
    for k, w in weights.items():
        if _CONV1D.match(k):
            w = w.T
        elif k in ("transformer.wte.weight", "lm_head.weight", "lm_head.bias"):
            w = w[: config.vocab_size]  # padded rows are never used: HF models have exactly vocab_size
        out[k] = np.ascontiguousarray(w, dtype=np.float32)
    return out


def from_hf(hf: dict[str, np.ndarray], config: GPTConfig, source: str = "checkpoint weights",
            fix: str = "build the config from the checkpoint's own config.json") -> dict[str, np.ndarray]:
    """HF GPT2LMHeadModel state -> our numpy state for `config` (padding rows zero-filled)."""
    out = {}
    for k, w in hf.items():
        if _HF_BUFFERS.match(k):
            continue
        if k == "lm_head.weight" and config.tie_embeddings:
            # Tied: the same matrix as wte (safetensors files usually omit it). Dropping it is only
            # lossless if it really is wte's copy.
            wte = hf.get("transformer.wte.weight", hf.get("wte.weight"))
            if wte is not None and not np.array_equal(np.asarray(w), np.asarray(wte)):
                raise ValueError(f"{source}: lm_head.weight differs from wte.weight, but the config ties them "
                                 "(tie_word_embeddings true); set tie_word_embeddings to false in config.json "
                                 "to load the separate head")
            continue
        name = k if k.startswith(("transformer.", "lm_head.")) else f"transformer.{k}"  # bare GPT2Model keys
        w = np.asarray(w, dtype=np.float32)
        if _CONV1D.match(name):
            w = w.T
        elif name in ("transformer.wte.weight", "lm_head.weight", "lm_head.bias") and w.shape[0] < config.n_vocab_rows:
            pad = np.zeros((config.n_vocab_rows - w.shape[0], *w.shape[1:]), np.float32)
            w = np.concatenate([w, pad])
        out[name] = w
    check_weights(out, config, source, fix)
    return out


# ---- Hugging Face config.json ----------------------------------------------------------------------

_ACT_TO_HF = {"gelu_tanh": "gelu_new", "relu": "relu"}


def hf_config_dict(config: GPTConfig) -> dict:
    """A transformers GPT2Config dict for our config (only configs HF GPT-2 can express)."""
    if not config.bias:
        raise ValueError("Hugging Face GPT-2 has no bias=False option; export needs bias=True")
    if config.lm_head_bias:
        raise ValueError("Hugging Face GPT2LMHeadModel has no head bias; export needs lm_head_bias=False")
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": config.vocab_size, "n_positions": config.block_size, "n_ctx": config.block_size,
        "n_embd": config.n_embd, "n_layer": config.n_layer, "n_head": config.n_head, "n_inner": None,
        "activation_function": _ACT_TO_HF[config.activation], "layer_norm_epsilon": config.ln_eps,
        "resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": config.dropout,
        "tie_word_embeddings": config.tie_embeddings, "initializer_range": 0.02,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
        # GPT-2's <|endoftext|>; only meaningful when the vocabulary has that id.
        "bos_token_id": 50256 if config.vocab_size > 50256 else None,
        "eos_token_id": 50256 if config.vocab_size > 50256 else None, "torch_dtype": "float32",
    }


def config_from_hf(d: dict, padded_vocab_size: int | None = None) -> GPTConfig:
    """Our GPTConfig from a transformers GPT-2 config.json dict, refusing what we cannot express."""
    if d.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"config.json has model_type={d.get('model_type')!r}; only GPT-2 checkpoints "
                         "(model_type 'gpt2', GPT2LMHeadModel weights) can be loaded")
    required = ("vocab_size", "n_embd", "n_layer", "n_head")
    if [k for k in required if k not in d]:
        raise ValueError(f"config.json lacks the required field(s) {[k for k in required if k not in d]}; a GPT-2 "
                         f"config.json needs {list(required)} (re-save the checkpoint with save_pretrained or save_hf)")
    act = d.get("activation_function", "gelu_new")
    acts = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}
    if act not in acts:
        raise ValueError(f"config.json activation_function={act!r} is not supported; use one of {sorted(acts)}")
    if d.get("n_inner") not in (None, 4 * d["n_embd"]):
        raise ValueError(f"config.json n_inner={d['n_inner']} is not 4*n_embd; this model has a fixed 4x MLP")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"):
        if d.get(flag):
            raise ValueError(f"config.json sets {flag}=true, which this model does not implement; only "
                             "plain GPT-2 checkpoints (the flag false or absent) can be loaded")
    if not d.get("scale_attn_weights", True):
        raise ValueError("config.json sets scale_attn_weights=false (no 1/sqrt(head_dim) in attention), which this "
                         "model does not implement; only plain GPT-2 checkpoints (scale_attn_weights true) can be loaded")
    return GPTConfig(
        block_size=d.get("n_positions", d.get("n_ctx", 1024)), vocab_size=d["vocab_size"],
        padded_vocab_size=padded_vocab_size, n_layer=d["n_layer"], n_head=d["n_head"], n_embd=d["n_embd"],
        dropout=0.0, bias=True, activation=acts[act], tie_embeddings=d.get("tie_word_embeddings", True),
        lm_head_bias=False, ln_eps=d.get("layer_norm_epsilon", 1e-5),
    )


def save_hf_dir(path: str | os.PathLike, weights: dict[str, np.ndarray], config: GPTConfig) -> Path:
    """Write `config.json` + `model.safetensors` that `GPT2LMHeadModel.from_pretrained` loads.

    Files are written to temporaries and renamed, so an interrupted save never leaves a
    half-written file under a final name.
    """
    from safetensors.numpy import save_file

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a directory; give save_hf a directory path "
                              "(it writes config.json and model.safetensors into it)")
    # Validate everything before touching the disk: a refused export leaves no file behind.
    hf_config = hf_config_dict(config)
    hf = to_hf(weights, config)
    if config.tie_embeddings:
        hf.pop("lm_head.weight", None)  # transformers re-ties it on load
    path.mkdir(parents=True, exist_ok=True)
    _atomic_write(path / "model.safetensors", lambda p: save_file(hf, str(p), metadata={"format": "pt"}))
    _atomic_write(path / "config.json", lambda p: p.write_text(json.dumps(hf_config, indent=2)))
    return path


def load_hf_dir(path: str | os.PathLike, padded_vocab_size: int | None = None) -> tuple[GPTConfig, dict[str, np.ndarray]]:
    """Read a Hugging Face GPT-2 directory -> (our config, our numpy state)."""
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {path} not found; pass the folder that save_pretrained "
                                "or save_hf wrote (it holds config.json and model.safetensors)")
    cfg_file, st_file = path / "config.json", path / "model.safetensors"
    for f in (cfg_file, st_file):
        if not f.is_file():
            hint = ("it holds the old pickle format pytorch_model.bin: load it in transformers and save_pretrained "
                    "it again, which writes model.safetensors" if (path / "pytorch_model.bin").is_file() else
                    "a sharded or partial download? re-save the model with save_pretrained or save_hf")
            raise FileNotFoundError(f"{f} not found: a Hugging Face GPT-2 directory needs config.json and "
                                    f"model.safetensors; {hint}")
    try:
        d = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_file} is not valid JSON ({e}); re-save the checkpoint with save_pretrained or save_hf") from e
    try:
        config = config_from_hf(d, padded_vocab_size)
    except ValueError as e:  # name the file: "config.json has ..." -> "/path/to/config.json has ..."
        msg = str(e)
        raise ValueError(f"{cfg_file}{msg[len('config.json'):]}" if msg.startswith("config.json") else msg) from None
    fix = (f"{cfg_file.name} and {st_file.name} in {path} describe different models; re-save the directory "
           "(save_pretrained / save_hf) or restore the config.json that came with these weights")
    return config, from_hf(load_file(str(st_file)), config, f"the weights in {st_file}", fix)


def _atomic_write(final: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
