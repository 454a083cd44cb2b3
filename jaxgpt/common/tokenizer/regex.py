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

from collections.abc import Collection, Iterable
from multiprocessing import get_context
from typing import Literal

import regex

from .base import Tokenizer, apply_merges, check_text, check_training_args, to_utf8
from .split import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, PATTERNS, TIKTOKEN_CLASSES, splitter
from .trainer import count_chunks

__all__ = ["GPT2_SPLIT_PATTERN", "GPT4_SPLIT_PATTERN", "PATTERNS", "RegexTokenizer"]

AllowedSpecial = Literal["all", "none", "none_raise"] | Collection[str]


class RegexTokenizer(Tokenizer):
    """BPE tokenizer with a split pattern ("gpt2", "gpt4", "none"/"" or any regex) and specials."""

    def __init__(self, pattern: str | None = None, cache_size: int = 1 << 18) -> None:
        super().__init__()
        self.pattern = GPT4_SPLIT_PATTERN if pattern is None else PATTERNS.get(pattern, pattern)
        self.cache_size = cache_size  # max distinct chunks remembered by encode (then the cache resets)
        # \p{L}, \p{N} and \s as tiktoken's engine sees them, on every code point (split.py); the
        # pretrained tokenizers take those of the installed tiktoken
        self.unicode_classes = TIKTOKEN_CLASSES
        self._on_load()

    def _on_load(self) -> None:
        self._splitter = splitter(self.pattern, self.unicode_classes)  # ValueError for a bad pattern
        self._cache: dict[str, list[int]] = {}
        self._token_ids = {token: idx for idx, token in self.vocab.items()}  # bytes -> id
        self._identity_bytes = self.byte_ids == list(range(256))
        self._byte_table = bytes(self.byte_ids) if max(self.byte_ids) < 256 else None

    def __getstate__(self) -> dict:  # picklable for worker processes: drop compiled regex + cache
        state = dict(self.__dict__)
        state.pop("_splitter", None)
        state.pop("_cache", None)
        state.pop("_token_ids", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("unicode_classes", TIKTOKEN_CLASSES)  # pickled before the attribute existed
        self._on_load()

    def _split(self, text: str) -> list[str]:
        """The chunks of `text`, split as tiktoken splits it."""
        return self._splitter.split(text)

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
        check_training_args(texts, vocab_size, len(self.special_tokens))
        texts = [to_utf8(t).decode("utf-8") for t in texts]  # lone surrogates -> U+FFFD, as encode does
        if self.special_tokens:  # never learn merges across or inside special tokens
            texts = [part for t in texts for part in self._special_regex(self.special_tokens).split(t)]
        # the GPT-2/GPT-4 patterns can be cut at some newlines without changing the chunks
        # (see trainer._safe_parts), which lets worker processes share one large text
        safe_split = self.pattern in (GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN)
        chunks = count_chunks(texts, self.pattern, num_workers=num_workers, safe_split=safe_split,
                              progress=verbose, classes=self.unicode_classes)
        self._learn(chunks, vocab_size, verbose)
        specials, self.special_tokens = list(self.special_tokens), {}
        self.register_special_tokens(specials)  # renumbered right after the learned tokens
        self._on_load()
        if verbose:
            print(f"trained {len(self.merges)} merges on {sum(chunks.values()):,} chunks "
                  f"({len(chunks):,} distinct); vocab size {self.vocab_size}")

    @staticmethod
    def _special_regex(specials: Iterable[str]) -> regex.Pattern:
        """Alternation of the special tokens, longest first (so "<|a|>x" wins over its prefix "<|a|>")."""
        return regex.compile("(" + "|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True)) + ")")

    # ----------------------------------------------------------------- encoding
    def _encode_chunk(self, chunk: bytes) -> list[int]:
        """BPE on one chunk: bytes -> byte token ids -> merge the lowest-id pair until none is left.

        A chunk that is itself a token encodes as that token without running BPE, as tiktoken
        does (its `encode_ordinary` looks the piece up first): faster, since most words of a
        trained vocabulary are tokens, and what makes our ids equal tiktoken's by construction.
        """
        if (idx := self._token_ids.get(chunk)) is not None:
            return [idx]
        if self._identity_bytes:  # trained tokenizers: byte b is id b
            ids = list(chunk)
        elif self._byte_table is not None:  # tiktoken ranks: a byte permutation, one C call
            ids = list(chunk.translate(self._byte_table))
        else:
            ids = [self.byte_ids[b] for b in chunk]
        # The heap version beats minbpe's min-then-merge loop even on short words (measured:
        # 0.28 s vs 0.48 s for the 33 k distinct chunks of 2 MB of French verse).
        return apply_merges(ids, self.merges)

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ignoring special tokens (they are encoded as the plain text they are).

        Lone surrogates (not encodable as UTF-8) become U+FFFD first, as tiktoken does.
        Each distinct chunk is BPE-encoded once and remembered (`cache_size` chunks), since
        natural text repeats its words: on French verse the cache turns ~1.1 M chunks per
        5 MB into ~50 k BPE runs.
        """
        check_text(text)
        try:
            return self._encode_ordinary(text)
        except UnicodeEncodeError:  # a lone surrogate: replace it by U+FFFD (as tiktoken) and redo
            return self._encode_ordinary(to_utf8(text).decode("utf-8"))

    def _encode_ordinary(self, text: str) -> list[int]:
        split = self._splitter
        chunks = split.fast(text)
        if split.covers(text, chunks) and (out := self._encode_chunks(chunks, exact=False)) is not None:
            return out
        # a chunk holds a code point the regex module classes unlike tiktoken, or a custom pattern
        # skipped characters (which may be such code points): split again, exactly
        return self._encode_chunks(split.exact(text), exact=True)

    def _encode_chunks(self, chunks: list[str], exact: bool) -> list[int] | None:
        """ids of `chunks`; for a fast split (not `exact`), None as soon as a chunk not seen before
        is suspect (split.py). The cache holds no suspect chunk, so cached chunks need no check:
        the check costs nothing on warm text. (A suspect chunk of an exact split is not cached:
        a fast split of another text may produce the same string wrongly.)
        A plain loop with one dict lookup per chunk: measured faster than gathering with set
        differences / itertools.chain, whose extra hashing costs more than it saves."""
        cache, out, suspect = self._cache, [], self._splitter.suspect
        for chunk in chunks:
            ids = cache.get(chunk)
            if ids is None:
                is_suspect = suspect(chunk)
                if is_suspect and not exact:
                    return None
                ids = self._encode_chunk(chunk.encode("utf-8"))
                if len(chunk) <= 64 and not is_suspect:  # remember words, not one-off long runs
                    if len(cache) >= self.cache_size:
                        cache.clear()  # bound memory; the next texts refill it with their words
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
        check_text(text)
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
        out: list[int] = []
        for i, part in enumerate(self._special_regex(allowed).split(text)):
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
