"""The straightforward minbpe-style trainer: the oracle for jaxgpt.common.tokenizer.trainer.

Per merge it recounts every pair of every chunk (O(corpus x merges)), exactly like
minbpe's RegexTokenizer.train, except for the tie-break: among equally frequent pairs it picks
the smallest (id0, id1), the rule the fast trainer documents (minbpe's `max(stats,
key=stats.get)` picks the first-inserted pair instead, which depends on dict order).
"""

from __future__ import annotations

import regex

from jaxgpt.common.tokenizer.base import get_stats, merge


def reference_train(text: str, vocab_size: int, pattern: str) -> list[tuple[int, int]]:
    """Merges (in order, merge i -> id 256 + i) learned on `text` split by `pattern` ("" = no split)."""
    chunks = regex.findall(pattern, text) if pattern else [text]
    ids = [list(ch.encode("utf-8")) for ch in chunks]
    merges: list[tuple[int, int]] = []
    for i in range(vocab_size - 256):
        stats: dict[tuple[int, int], int] = {}
        for chunk_ids in ids:
            get_stats(chunk_ids, stats)
        if not stats:
            break
        pair = max(stats, key=lambda p: (stats[p], -p[0], -p[1]))
        ids = [merge(chunk_ids, pair, 256 + i) for chunk_ids in ids]
        merges.append(pair)
    return merges
