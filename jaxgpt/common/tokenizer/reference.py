"""The straightforward minbpe-style trainer: the readable definition the fast trainer must equal.

Per merge it recounts every pair of every chunk (O(corpus x merges)), exactly like minbpe's
RegexTokenizer.train, except for the tie-break: among equally frequent pairs it picks the
smallest (id0, id1), the rule trainer.py documents (minbpe's `max(stats, key=stats.get)` picks
the first-inserted pair instead, which depends on dict order). The tests check that both learn
identical merges; scripts/bench_tokenizer.py times both. Far too slow for real corpora.
"""

from __future__ import annotations

from .base import get_stats, merge
from .split import splitter


def reference_train(text: str, vocab_size: int, pattern: str) -> list[tuple[int, int]]:
    """Merges (in order, merge i -> id 256 + i) learned on `text` split by `pattern` ("" = no split).

    Example (Wikipedia's "aaabdaaabac"): reference_train("aaabdaaabac", 259, "")
      -> [(97, 97), (97, 98), (256, 257)]
    """
    chunks = splitter(pattern).split(text)  # the split RegexTokenizer uses (tiktoken's classes)
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
