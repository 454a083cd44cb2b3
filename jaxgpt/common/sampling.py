"""Text in, text out around either framework's `generate`: samples during training and scripts/sample.py.

Framework-free. A sample starts a new document: its prompt is the document separator followed by
the prompt text (as every document of the training shards starts), and it ends at the next
separator or after `max_new_tokens`. The prompt is encoded as ordinary text (a typed
"<|endoftext|>" stays text), and a command-line argument that is not valid UTF-8 keeps its bytes
visible as U+FFFD instead of failing.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxgpt.common.config import check_sampling_args


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


def token_bytes(codec: Any, token: int) -> bytes:
    """The bytes of one token (tiktoken's or our BPE's): a character may span several tokens."""
    impl = codec.impl
    if hasattr(impl, "decode_single_token_bytes"):
        return impl.decode_single_token_bytes(token)
    return impl.decode_bytes([token])


class Streamer:
    """Writes one sample's text as its tokens arrive, only whole UTF-8 characters (the rest waits for its
    next bytes), and nothing from the document separator on: the same text as `codec.decode` of the ids."""

    def __init__(self, codec: Any, write: Callable[[str], Any]) -> None:
        self.codec, self.write, self.ended = codec, write, False
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def __call__(self, ids: np.ndarray) -> None:
        token = int(ids[0])
        if self.ended or token == self.codec.eot_id:
            self.ended = True
            return
        if text := self.decoder.decode(token_bytes(self.codec, token)):
            self.write(text)

    def close(self) -> None:
        if text := self.decoder.decode(b"", final=True):
            self.write(text)


def crop_prompt(ids: list[int], block_size: int, warn: Callable[[str], Any]) -> list[int]:
    """The last block_size ids of a prompt longer than the model's context (said once through `warn`)."""
    if len(ids) <= block_size:
        return ids
    warn(f"note: the prompt is {len(ids)} tokens, longer than the model's block_size {block_size}: its first "
         f"{len(ids) - block_size} tokens were cropped")
    return ids[-block_size:]


def stream_samples(generate: Callable[..., np.ndarray], codec: Any, prompt: str, num_samples: int, max_new_tokens: int,
                   block_size: int, write: Callable[[str], Any], warn: Callable[[str], Any], *,
                   temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                   seed: int = 0) -> list[np.ndarray]:
    """Write `num_samples` samples (sample i with seed + i), each the prompt then its text as generated; their ids."""
    ids = crop_prompt(prompt_ids(codec, prompt), block_size, warn)
    head = codec.decode(prompt_ids(codec, prompt)[1:])
    rows = []
    for i in range(num_samples):
        if i:
            write("\n---\n\n")
        write(head)
        streamer = Streamer(codec, write)
        rows.append(generate(np.asarray([ids], np.int32), max_new_tokens, temperature=temperature, top_k=top_k,
                             top_p=top_p, seed=seed + i, stop_token=codec.eot_id, on_token=streamer)[0])
        streamer.close()
        write("\n")
    return rows


def read_prompt(prompt: str) -> str:
    """--prompt TEXT, or `-`: the whole of stdin (bytes that are not UTF-8 stay visible as U+FFFD)."""
    if prompt != "-":
        return prompt
    import sys

    return sys.stdin.buffer.read().decode("utf-8", "replace")


def main(checkpoint: str, framework: str | None = None, prompt: str = "", max_new_tokens: int = 200,
         temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, tokenizer: str | None = None,
         num_samples: int = 1, seed: int = 0) -> int:
    """scripts/sample.py: stream `num_samples` samples of a model source (jaxgpt/common/sources.py); exit code."""
    import sys

    from jaxgpt.common.frameworks import check_framework
    from jaxgpt.common.sources import codec_for, load_model, resolve_model

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    try:
        if max_new_tokens < 1 or num_samples < 1:
            raise ValueError("--max-new-tokens and --num-samples must be >= 1")
        src = resolve_model(checkpoint)
        written_in = src.meta["framework"] if src.kind == "checkpoint" else None
        framework = check_framework(framework or written_in or "jax")
        codec = codec_for(src, tokenizer)
        config = src.config()
        check_sampling_args(temperature, top_k, top_p, config.vocab_size, max_new_tokens=max_new_tokens)
        text = read_prompt(prompt)
        model = load_model(framework, src)
        print(f"# {src.describe()}, sampled in {framework}", file=sys.stderr)
        stream_samples(model.generate, codec, text, num_samples, max_new_tokens, config.block_size, write,
                       lambda m: print(m, file=sys.stderr), temperature=temperature, top_k=top_k, top_p=top_p,
                       seed=seed)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
