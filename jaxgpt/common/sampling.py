"""Text in, text out around either framework's `generate`: samples during training and scripts/sample.py.

Framework-free. A sample starts a new document: its prompt is the document separator followed by
the prompt text (as every document of the training shards starts), and it ends at the next
separator or after `max_new_tokens`. The prompt is encoded as ordinary text (a typed
"<|endoftext|>" stays text), and a command-line argument that is not valid UTF-8 keeps its bytes
visible as U+FFFD instead of failing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def prompt_ids(codec: Any, prompt: str) -> list[int]:
    """[separator] + the prompt's ids. Any text encodes: the tokenizers are byte-level."""
    clean = prompt.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return [codec.eot_id] + codec.encode_ordinary(clean)


def generate_text(generate: Callable[..., np.ndarray], codec: Any, prompt: str, num_samples: int,
                  max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None, seed: int = 0) -> list[str]:
    """`num_samples` continuations of `prompt` (the prompt included), each cut at its document's end.

    `generate` is a Trainer's or a GPT's generate(idx, max_new_tokens, temperature=, top_k=, top_p=,
    seed=, stop_token=) -> (B, T0 + n) ids.
    """
    ids = np.asarray([prompt_ids(codec, prompt)] * num_samples, np.int32)  # (num_samples, T0)
    out = generate(ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                   stop_token=codec.eot_id)
    return [codec.decode([i for i in row[1:].tolist() if i != codec.eot_id]) for row in out]


def main(checkpoint: str, framework: str | None = None, prompt: str = "", max_new_tokens: int = 200,
         temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, tokenizer: str | None = None,
         num_samples: int = 1, seed: int = 0) -> int:
    """scripts/sample.py: print `num_samples` samples of a model source (jaxgpt/common/sources.py); exit code."""
    import sys

    from jaxgpt.common.frameworks import check_framework
    from jaxgpt.common.sources import codec_for, load_model, resolve_model

    try:
        if max_new_tokens < 1 or num_samples < 1:
            raise ValueError("--max-new-tokens and --num-samples must be >= 1")
        src = resolve_model(checkpoint)
        written_in = src.meta["framework"] if src.kind == "checkpoint" else None
        framework = check_framework(framework or written_in or "jax")
        codec = codec_for(src, tokenizer)
        model = load_model(framework, src)
        texts = generate_text(model.generate, codec, prompt, num_samples, max_new_tokens, temperature=temperature,
                              top_k=top_k, top_p=top_p, seed=seed)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"# {src.describe()}, sampled in {framework}", file=sys.stderr)
    for i, text in enumerate(texts):
        if i:
            print("\n---\n")
        print(text)
    return 0
