"""Fine-tuning: `--init_from=SOURCE` starts a training run from pretrained weights instead of a random init.

Framework-free. SOURCE is anything jaxgpt/common/sources.py resolves: a Hugging Face GPT-2 directory
(any size), a model name found in the local Hugging Face cache (`gpt2`, `gpt2-medium`, ...), a run
of scripts/train.py or one of its checkpoints, written by either framework. Only the parameters are
taken: the optimiser state, the step and the schedule start afresh (it is a new run).

The model's architecture comes from SOURCE (config.json, or the checkpoint's meta.json): the preset
contributes only what does not change the weights' shapes (dropout, and the embedding padding when
the vocabulary is the same). An explicit `--n_layer=...` (or any shape field) that contradicts
SOURCE is refused, as is data made with a tokenizer of another size. `init_from` is part of the
run's identity: a `--resume` with another SOURCE is refused (jaxgpt/common/training.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from jaxgpt.common.config import GPTConfig
from jaxgpt.common.sources import ModelSource, resolve_model
from jaxgpt.common.weights import check_weights

# The GPTConfig fields that shape the weights (or change what they compute): SOURCE decides them.
ARCH_FIELDS = ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "bias", "activation", "tie_embeddings",
               "lm_head_bias", "ln_eps")
_VOCAB_ROWS = ("transformer.wte.weight", "lm_head.weight", "lm_head.bias")


def init_source(spec: str) -> ModelSource:
    """--init_from's model source, or one error line naming what to pass instead."""
    try:
        return resolve_model(spec)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"--init_from: {e}") from None


def model_config(run_model: GPTConfig, spec: str, overrides: Sequence[str] = ()) -> GPTConfig:
    """The run's GPTConfig when it starts from `spec`: SOURCE's shapes, the run's dropout (and padding, same vocab)."""
    src = init_source(spec)
    pre = src.config()
    given = {o.lstrip("-").partition("=")[0] for o in overrides}
    clash = [f"--{f}={getattr(run_model, f)} (it has {getattr(pre, f)})" for f in ARCH_FIELDS
             if f in given and getattr(run_model, f) != getattr(pre, f)]
    if clash:
        raise ValueError(f"--init_from {spec} fixes the model's shape, but {', '.join(clash)} contradicts it; drop "
                         f"{'that override' if len(clash) == 1 else 'those overrides'}")
    padded = pre.padded_vocab_size or (run_model.padded_vocab_size if run_model.vocab_size == pre.vocab_size else None)
    return dataclasses.replace(pre, dropout=run_model.dropout, padded_vocab_size=padded)


def check_vocab(spec: str, model: GPTConfig, tokenizer_name: str | None, tokenizer_vocab: int | None,
                data_dir: str) -> None:
    """Data made with a tokenizer of another size cannot train the pretrained model (ids would mean other tokens)."""
    if tokenizer_vocab is not None and tokenizer_vocab != model.vocab_size:
        raise ValueError(f"--init_from {spec} has vocab_size={model.vocab_size}, but the shards in {data_dir} were made "
                         f"with the tokenizer {tokenizer_name!r} of {tokenizer_vocab} ids; prepare the data with the "
                         "model's own tokenizer (scripts/prepare_data.py --tokenizer gpt2 for GPT-2 models)")


def fit_vocab_rows(weights: dict[str, np.ndarray], config: GPTConfig) -> dict[str, np.ndarray]:
    """The embedding (and untied head) rows cut or zero-padded to config.n_vocab_rows: the padding rows past
    vocab_size are never predicted nor looked up, so any padding of the source can become the run's."""
    out = dict(weights)
    for k in _VOCAB_ROWS:
        if k in out:
            w = out[k][: config.vocab_size]
            pad = np.zeros((config.n_vocab_rows - w.shape[0], *w.shape[1:]), w.dtype)
            out[k] = np.concatenate([w, pad]) if len(pad) else w
    return out


def init_weights(spec: str, model: GPTConfig) -> dict[str, np.ndarray]:
    """SOURCE's parameters (numpy, the weight table's names) shaped for the run's `model`."""
    src = init_source(spec)
    weights = fit_vocab_rows(src.weights(), model)
    check_weights(weights, model, f"--init_from {spec}", "pass a model of the same architecture")
    return weights
