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
from pathlib import Path

from .base import Tokenizer, apply_merges, check_training_args, merge, to_utf8


class BasicTokenizer(Tokenizer):
    """Byte-level BPE over the whole text."""

    def train(self, text: str, vocab_size: int, verbose: bool = False) -> None:
        """Learn vocab_size - 256 merges on `text` (warns if fewer pairs exist)."""
        if not isinstance(text, str):
            raise TypeError("BasicTokenizer.train expects one string; use RegexTokenizer for a list of texts")
        check_training_args([text], vocab_size)
        data = to_utf8(text)
        self._learn({data: 1}, vocab_size, verbose)
        if verbose:
            print(f"trained {len(self.merges)} merges on {len(data):,} bytes")

    def register_special_tokens(self, special_tokens) -> None:
        if special_tokens:
            raise ValueError("BasicTokenizer has no special tokens; use RegexTokenizer('none') for "
                             "byte-level BPE with special tokens")

    def _check_model(self, model_file: str | Path, pattern: str, special: dict[str, int]) -> None:
        if pattern or special:  # we would silently ignore them and encode differently
            raise ValueError(f"{model_file} has a split pattern or special tokens, which BasicTokenizer "
                             "ignores; load it with jaxgpt.common.tokenizer.load_tokenizer (or RegexTokenizer)")

    def encode(self, text: str) -> list[int]:
        """text -> ids (lone surrogates become U+FFFD, as in tiktoken)."""
        return apply_merges(list(to_utf8(text)), self.merges)

    def encode_slow(self, text: str) -> list[int]:
        """minbpe's loop, O(len x merges used): the readable definition `encode` must equal."""
        ids = list(to_utf8(text))
        inf = float("inf")
        while len(ids) >= 2:
            pair = min(itertools.pairwise(ids), key=lambda p: self.merges.get(p, inf))
            if pair not in self.merges:
                break  # nothing else can be merged
            ids = merge(ids, pair, self.merges[pair])
        return ids
