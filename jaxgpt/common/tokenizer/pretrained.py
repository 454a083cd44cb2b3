"""GPT-2 and GPT-4 tokenizers rebuilt from tiktoken's rank files (ids = tiktoken's ids).

Follows minbpe's `minbpe/gpt4.py`: tiktoken stores only `mergeable_ranks` (token bytes -> rank),
not the merges, so each merge is recovered by running BPE on a token's bytes using only the
lower ranks until two parts remain: those parts are the pair that made it. The 256 single-byte
tokens are permuted in both rank files (GPT-2's "!" is 0, cl100k's byte 0 is not rank 0): minbpe
shuffles bytes before encoding and unshuffles after decoding; here `byte_ids` maps byte -> rank
and `vocab` holds real bytes, so nothing needs undoing.

The split uses the character classes (letters, numbers, white space) of tiktoken's own regex
engine on every code point (split.py), so the ids equal tiktoken's for every text, not only on
the code points whose classes the Python `regex` module and tiktoken agree on.

Rank files come through tiktoken's own loader: offline, point TIKTOKEN_CACHE_DIR at a folder
holding them (the tests use ../shared/data/tiktoken_cache).
"""

from __future__ import annotations

import itertools
from functools import lru_cache

from .regex import RegexTokenizer
from .split import classes_of_tiktoken


def bpe(mergeable_ranks: dict[bytes, int], token: bytes, max_rank: int | None = None) -> list[bytes]:
    """tiktoken's BPE on raw bytes: merge the lowest-ranked adjacent pair, stopping at max_rank.

    Example (GPT-2 ranks): bpe(ranks, b"hello", max_rank=ranks[b"hello"]) -> [b"hell", b"o"].
    """
    parts = [bytes([b]) for b in token]
    while True:
        min_idx, min_rank = None, None
        for i, pair in enumerate(itertools.pairwise(parts)):
            rank = mergeable_ranks.get(pair[0] + pair[1])
            if rank is not None and (min_rank is None or rank < min_rank):
                min_idx, min_rank = i, rank
        if min_rank is None or (max_rank is not None and min_rank >= max_rank):
            return parts
        parts = parts[:min_idx] + [parts[min_idx] + parts[min_idx + 1]] + parts[min_idx + 2:]


def recover_merges(mergeable_ranks: dict[bytes, int]) -> dict[tuple[int, int], int]:
    """{(rank of left part, rank of right part): rank} for every multi-byte token.

    Example: recover_merges({b"a": 0, b"b": 1, b"ab": 2, b"aab": 3}) -> {(0, 1): 2, (0, 2): 3}
    (BPE on b"aab" below rank 3 stops at [b"a", b"ab"]: ranks 0 and 2 made token 3).
    """
    merges = {}
    for token, rank in mergeable_ranks.items():
        if len(token) == 1:
            continue
        parts = bpe(mergeable_ranks, token, max_rank=rank)
        if len(parts) != 2:
            raise ValueError(f"token {token!r} (rank {rank}) is not a merge of two lower-ranked tokens")
        merges[(mergeable_ranks[parts[0]], mergeable_ranks[parts[1]])] = rank
    return merges


@lru_cache(maxsize=4)
def _load(name: str) -> tuple[str, dict[tuple[int, int], int], tuple[int, ...], dict[str, int]]:
    import tiktoken

    try:
        enc = tiktoken.get_encoding(name)
    except ValueError as e:  # unknown name, or a cached file whose hash does not match
        raise ValueError(f"cannot load tiktoken encoding {name!r} ({e}); use 'gpt2', 'r50k_base' or "
                         "'cl100k_base' with intact rank files") from None
    except OSError as e:  # network failure while downloading the rank file (requests errors are OSErrors)
        raise RuntimeError(
            f"could not load tiktoken's {name!r} rank file ({type(e).__name__}); offline, set "
            "TIKTOKEN_CACHE_DIR to a folder holding tiktoken's cached files (e.g. shared/data/tiktoken_cache)"
        ) from None
    return _from_encoding(enc)


def _from_encoding(enc) -> tuple[str, dict[tuple[int, int], int], tuple[int, ...], dict[str, int]]:
    ranks: dict[bytes, int] = enc._mergeable_ranks  # tiktoken keeps them; there is no public getter
    byte_ids = tuple(ranks[bytes([b])] for b in range(256))
    return enc._pat_str, recover_merges(ranks), byte_ids, dict(enc._special_tokens)


def from_tiktoken(encoding) -> RegexTokenizer:
    """A RegexTokenizer with the ranks, pattern and special tokens of a tiktoken encoding
    (a name such as "gpt2" / "cl100k_base", or a `tiktoken.Encoding`). Encodes to tiktoken's ids."""
    pattern, merges, byte_ids, specials = _load(encoding) if isinstance(encoding, str) else _from_encoding(encoding)
    tok = RegexTokenizer(pattern)
    # the character classes of the tiktoken installed, probed once per process (split.py): equal to
    # the pinned tables unless tiktoken was upgraded, and then still exactly tiktoken's ids
    tok.unicode_classes = classes_of_tiktoken()
    tok.merges = dict(merges)
    tok.byte_ids = list(byte_ids)
    tok.vocab = tok._build_vocab()
    tok.register_special_tokens(specials)
    tok._on_load()
    return tok


class GPT2Tokenizer(RegexTokenizer):
    """GPT-2's tokenizer (tiktoken "gpt2" = r50k_base ranks, <|endoftext|> = 50256)."""

    def __init__(self) -> None:
        self.__dict__.update(from_tiktoken("gpt2").__getstate__())
        self._on_load()


class GPT4Tokenizer(RegexTokenizer):
    """GPT-4's tokenizer (tiktoken "cl100k_base", with its special tokens)."""

    def __init__(self) -> None:
        self.__dict__.update(from_tiktoken("cl100k_base").__getstate__())
        self._on_load()
