"""RegexTokenizer: BPE inside regex chunks, with special tokens (GPT-2 / GPT-4 style).

Follows minbpe's `minbpe/regex.py`: the text is first split by a regex (so merges never cross
word / number / punctuation boundaries), each chunk is BPE-encoded on its own, and special
tokens are handled with tiktoken's semantics. Additions: the fast incremental trainer
(`trainer.py`), training on an iterable of documents (e.g. a list of poems), a chunk cache
for encoding, `encode_batch` over worker processes, and a pattern of "" meaning "no split"
(plain byte-level BPE between special tokens).

Typical use (the poetry stage):
    tok = RegexTokenizer("gpt4")
    tok.register_special_tokens(["<|endofpoem|>"])   # numbered after the learned vocab
    tok.train(poems, vocab_size=4096, verbose=True)   # vocab_size counts the special token
    ids = tok.encode(poem + "<|endofpoem|>", allowed_special="all")
    tok.save("out/poems")                             # out/poems.model + out/poems.vocab
    tok = load_tokenizer("out/poems.model")
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Collection, Iterable
from multiprocessing import get_context
from typing import Literal

import regex

from .base import Tokenizer, apply_merges
from .trainer import count_chunks, train_bpe

# The split patterns exactly as tiktoken 0.14 has them (r50k_base/gpt2 and cl100k_base), so a
# tokenizer trained with them and exported via `to_tiktoken` splits text the same way.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT4_SPLIT_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
                      r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
PATTERNS = {"gpt2": GPT2_SPLIT_PATTERN, "gpt4": GPT4_SPLIT_PATTERN, "none": ""}

AllowedSpecial = Literal["all", "none", "none_raise"] | Collection[str]


class RegexTokenizer(Tokenizer):
    """BPE tokenizer with a split pattern ("gpt2", "gpt4", "none"/"" or any regex) and specials."""

    def __init__(self, pattern: str | None = None, cache_size: int = 1 << 18) -> None:
        super().__init__()
        self.pattern = GPT4_SPLIT_PATTERN if pattern is None else PATTERNS.get(pattern, pattern)
        self.cache_size = cache_size  # max distinct chunks remembered by encode (then the cache resets)
        self._on_load()

    def _on_load(self) -> None:
        try:
            self._compiled = regex.compile(self.pattern) if self.pattern else None
        except regex.error as e:
            raise ValueError(f"invalid split pattern {self.pattern!r}: {e}") from None
        self._cache: dict[str, list[int]] = {}
        self._identity_bytes = self.byte_ids == list(range(256))
        self._byte_table = bytes(self.byte_ids) if max(self.byte_ids) < 256 else None

    def __getstate__(self) -> dict:  # picklable for worker processes: drop compiled regex + cache
        state = dict(self.__dict__)
        state.pop("_compiled", None)
        state.pop("_cache", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._on_load()

    def _split(self, text: str) -> list[str]:
        if self._compiled is None:
            return [text] if text else []
        return self._compiled.findall(text)

    # ----------------------------------------------------------------- training
    def train(self, text: str | Iterable[str], vocab_size: int, verbose: bool = False,
              num_workers: int = 1) -> None:
        """Learn merges so that the vocabulary has `vocab_size` ids, special tokens included.

        `text` is one string or an iterable of documents, each split on its own. Registered
        special tokens are cut out of the training text and renumbered after the learned
        tokens. A corpus with fewer distinct pairs than requested merges stops early with a
        warning that says how many merges were learned.
        """
        texts = [text] if isinstance(text, str) else list(text)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("train expects a string or an iterable of strings")
        n_special = len(self.special_tokens)
        if not isinstance(vocab_size, int) or vocab_size < 256 + n_special:
            raise ValueError(f"vocab_size={vocab_size} is too small: it must be >= 256 (the byte tokens)"
                             + (f" + {n_special} special tokens = {256 + n_special}" if n_special else ""))
        if not any(t.strip() for t in texts):
            raise ValueError("the training text is empty or only whitespace; pass real text to train on")
        if self.special_tokens:  # never learn merges inside special tokens
            special_re = regex.compile("|".join(regex.escape(s) for s in
                                                sorted(self.special_tokens, key=len, reverse=True)))
            texts = [part for t in texts for part in special_re.split(t)]
        num_merges = vocab_size - 256 - n_special
        chunks = count_chunks(texts, self.pattern, num_workers=num_workers,
                              safe_split=self.pattern in (GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN))
        pairs = train_bpe(chunks, num_merges, progress=verbose)
        if len(pairs) < num_merges:
            warnings.warn(f"the training text has too few distinct pairs: learned {len(pairs)} of "
                          f"{num_merges} merges, so the vocabulary has {256 + len(pairs) + n_special} "
                          f"ids instead of {vocab_size}; give more text or a smaller vocab_size",
                          stacklevel=2)
        self.merges = {pair: 256 + i for i, pair in enumerate(pairs)}
        self.byte_ids = list(range(256))
        self.vocab = self._build_vocab()
        specials, self.special_tokens = list(self.special_tokens), {}
        self.register_special_tokens(specials)
        self._on_load()
        if verbose:
            print(f"trained {len(pairs)} merges on {sum(chunks.values()):,} chunks "
                  f"({len(chunks):,} distinct); vocab size {self.vocab_size}")

    # ----------------------------------------------------------------- encoding
    def _encode_chunk(self, chunk: bytes) -> list[int]:
        """BPE on one chunk: repeatedly merge the adjacent pair with the lowest merge id."""
        if self._identity_bytes:
            ids = list(chunk)
        elif self._byte_table is not None:
            ids = list(chunk.translate(self._byte_table))
        else:
            ids = [self.byte_ids[b] for b in chunk]
        merges, inf = self.merges, float("inf")
        if len(ids) > 64:  # the heap version wins on long chunks (measured crossover ~100 bytes)
            return apply_merges(ids, merges)
        while len(ids) >= 2:
            pair = min(itertools.pairwise(ids), key=lambda p: merges.get(p, inf))
            idx = merges.get(pair)
            if idx is None:  # nothing left to merge
                break
            a, b = pair
            out, i, n = [], 0, len(ids)
            while i < n:  # inline `merge` (hot loop)
                if i < n - 1 and ids[i] == a and ids[i + 1] == b:
                    out.append(idx)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            ids = out
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ignoring special tokens (they are encoded as the plain text they are).

        Lone surrogates (not encodable as UTF-8) become U+FFFD first, as tiktoken does.
        """
        try:
            return self._encode_ordinary(text)
        except UnicodeEncodeError:
            return self._encode_ordinary(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))

    def _encode_ordinary(self, text: str) -> list[int]:
        cache, out = self._cache, []
        for chunk in self._split(text):
            ids = cache.get(chunk)
            if ids is None:
                ids = self._encode_chunk(chunk.encode("utf-8"))
                if len(chunk) <= 64:  # cache words, not huge chunks (e.g. pattern "none")
                    if len(cache) >= self.cache_size:
                        cache.clear()
                    cache[chunk] = ids
            out.extend(ids)
        return out

    def encode(self, text: str, allowed_special: AllowedSpecial = "none_raise",
               disallowed_special: Literal["all"] | Collection[str] = "all") -> list[int]:
        """Encode `text`, handling special tokens like tiktoken's `Encoding.encode`.

        allowed_special: "all", a set of special tokens, or "none_raise" (default, = set()):
          these are encoded as their special id. "none" (minbpe's) encodes every special token
          as ordinary text and never raises.
        disallowed_special: "all" (default: every special token not allowed) or a collection:
          if one of these appears in `text`, raise ValueError. Pass () to encode them as text.
        """
        specials = set(self.special_tokens)
        if allowed_special == "all":
            allowed = specials
        elif allowed_special in ("none", "none_raise"):
            allowed = set()
        elif isinstance(allowed_special, str):
            raise ValueError(f"allowed_special={allowed_special!r}: use 'all', 'none', 'none_raise' or a set")
        else:
            allowed = set(allowed_special)
            if unknown := allowed - specials:
                raise ValueError(f"allowed_special has unregistered tokens {sorted(unknown)}; "
                                 f"registered: {sorted(specials)}")
        if allowed_special == "none":
            disallowed: set[str] = set()
        elif disallowed_special == "all":
            disallowed = specials - allowed
        else:
            disallowed = set(disallowed_special)
        for s in disallowed:
            if s in text:
                raise ValueError(
                    f"the text contains the special token {s!r}, which is not allowed; pass "
                    f"allowed_special={{{s!r}}} (or 'all') to encode it as a special token, or "
                    f"disallowed_special=() / encode_ordinary to encode it as plain text")
        if not allowed:
            return self.encode_ordinary(text)
        special_re = "(" + "|".join(regex.escape(s) for s in sorted(allowed, key=len, reverse=True)) + ")"
        out: list[int] = []
        for i, part in enumerate(regex.split(special_re, text)):
            if i % 2:  # odd parts are the captured special tokens
                out.append(self.special_tokens[part])
            elif part:
                out.extend(self.encode_ordinary(part))
        return out

    def encode_batch(self, texts: Iterable[str], num_workers: int = 1, **encode_kwargs) -> list[list[int]]:
        """Encode many texts (e.g. every poem of a corpus), optionally in worker processes."""
        texts = list(texts)
        if num_workers <= 1 or len(texts) < 2:
            return [self.encode(t, **encode_kwargs) for t in texts]
        chunksize = max(1, len(texts) // (8 * num_workers))
        with get_context("spawn").Pool(num_workers, initializer=_set_worker, initargs=(self, encode_kwargs)) as pool:
            return pool.map(_worker_encode, texts, chunksize=chunksize)


_WORKER: tuple[RegexTokenizer, dict] | None = None


def _set_worker(tok: RegexTokenizer, kwargs: dict) -> None:
    global _WORKER
    _WORKER = (tok, kwargs)


def _worker_encode(text: str) -> list[int]:
    tok, kwargs = _WORKER
    return tok.encode(text, **kwargs)
