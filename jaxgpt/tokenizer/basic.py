"""BasicTokenizer: byte-level BPE on the raw bytes of the whole text (no split, no specials).

Follows minbpe's `minbpe/basic.py` (the algorithm of Sennrich et al. 2016 on bytes, as in
GPT-2 minus the regex split). Training uses the fast incremental trainer on one single chunk;
encoding merges the adjacent pair with the lowest merge id until none is left: `encode_slow` is
minbpe's loop, `encode` the same result with a heap (`apply_merges`), fast on long texts.
For special tokens or a split pattern use RegexTokenizer ("none" = no split, with specials).

Example (Wikipedia's BPE page):
    tok = BasicTokenizer(); tok.train("aaabdaaabac", 256 + 3)
    tok.encode("aaabdaaabac") -> [258, 100, 258, 97, 99]
"""

from __future__ import annotations

import itertools
import warnings

from .base import Tokenizer, apply_merges, merge
from .trainer import train_bpe


class BasicTokenizer(Tokenizer):
    """Byte-level BPE over the whole text."""

    def train(self, text: str, vocab_size: int, verbose: bool = False) -> None:
        """Learn vocab_size - 256 merges on `text` (warns if fewer pairs exist)."""
        if not isinstance(text, str):
            raise TypeError("BasicTokenizer.train expects one string; use RegexTokenizer for a list of texts")
        if not isinstance(vocab_size, int) or vocab_size < 256:
            raise ValueError(f"vocab_size={vocab_size} is too small: it must be >= 256 (the byte tokens)")
        if not text.strip():
            raise ValueError("the training text is empty or only whitespace; pass real text to train on")
        num_merges = vocab_size - 256
        pairs = train_bpe({text.encode("utf-8"): 1}, num_merges, progress=verbose)
        if len(pairs) < num_merges:
            warnings.warn(f"the training text is too short: learned {len(pairs)} of {num_merges} merges "
                          f"(vocabulary of {256 + len(pairs)} ids); give more text or a smaller vocab_size",
                          stacklevel=2)
        self.merges = {pair: 256 + i for i, pair in enumerate(pairs)}
        self.vocab = self._build_vocab()
        if verbose:
            print(f"trained {len(pairs)} merges on {len(text.encode('utf-8')):,} bytes")

    def register_special_tokens(self, special_tokens) -> None:
        if special_tokens:
            raise ValueError("BasicTokenizer has no special tokens; use RegexTokenizer('none') for "
                             "byte-level BPE with special tokens")

    def encode(self, text: str) -> list[int]:
        """text -> ids (lone surrogates become U+FFFD, as in tiktoken)."""
        try:
            ids = list(text.encode("utf-8"))
        except UnicodeEncodeError:
            ids = list(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8"))
        return apply_merges(ids, self.merges)

    def encode_slow(self, text: str) -> list[int]:
        """minbpe's loop, O(len x merges used): the readable definition `encode` must equal."""
        ids = list(text.encode("utf-8"))
        inf = float("inf")
        while len(ids) >= 2:
            pair = min(itertools.pairwise(ids), key=lambda p: self.merges.get(p, inf))
            if pair not in self.merges:
                break  # nothing else can be merged
            ids = merge(ids, pair, self.merges[pair])
        return ids
