"""Byte-level BPE: the shared helpers and the Tokenizer base class (save / load / decode).

Follows Karpathy's minbpe (`minbpe/base.py`): two pure helpers with worked examples
(`get_stats`, `merge`), a base class that owns `merges`, `vocab` and special tokens, and the
minbpe v1 `.model` text format plus a human-readable `.vocab`. Differences from minbpe:
- `load` restores the split pattern (minbpe stores it but never recompiles it);
- `byte_ids` maps raw bytes to the ids of the 256 single-byte tokens, so tiktoken's rank
  files (whose byte tokens are permuted, e.g. GPT-2's "!" is id 0) load without a separate
  shuffle/unshuffle step: ids are tiktoken's ranks and `vocab` holds the real bytes;
- clear errors for unknown ids, bad model files and colliding special tokens.

Framework-free: imports neither jax nor torch.
"""

from __future__ import annotations

import heapq
import itertools
import os
import unicodedata
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

from .trainer import train_bpe

MODEL_HEADER = "minbpe v1"  # first line of every .model file we read or write


def get_stats(ids: list[int], counts: dict[tuple[int, int], int] | None = None) -> dict[tuple[int, int], int]:
    """Count consecutive pairs in `ids` (updating `counts` in place when given).

    Example: get_stats([1, 2, 3, 1, 2]) -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    Overlaps count: get_stats([5, 5, 5]) -> {(5, 5): 2}.
    """
    counts = {} if counts is None else counts
    for pair in itertools.pairwise(ids):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: list[int], pair: tuple[int, int], idx: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` by `idx`, scanning left to right.

    Example: merge([1, 2, 3, 1, 2], (1, 2), 4) -> [4, 3, 4]
    Overlaps resolve from the left: merge([5, 5, 5], (5, 5), 9) -> [9, 5].
    """
    out: list[int] = []
    i, n = 0, len(ids)
    a, b = pair
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(idx)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def apply_merges(ids: list[int], merges: dict[tuple[int, int], int]) -> list[int]:
    """BPE-encode `ids`: merge the pair with the lowest merge id, repeatedly, until none is left.

    Same result as minbpe's loop (`min` over `get_stats`, then `merge`), in O(n log n) instead of
    O(n x merges used), so long chunks (whitespace runs, pattern "none") stay fast. Positions are
    a linked list; a heap holds (merge id, position) and stale entries are skipped on pop. Equal
    ids pop left to right, as `merge` scans; a merge's result id is larger than its parts', so
    pairs it creates are merged later, as in the loop.
    Example (merges {(97, 97): 256}): apply_merges([97, 97, 97], merges) -> [256, 97].
    """
    n = len(ids)
    if n < 2:
        return list(ids)
    tok = list(ids)
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    prv = list(range(-1, n - 1))
    heap = [(m, i) for i, pair in enumerate(itertools.pairwise(tok)) if (m := merges.get(pair)) is not None]
    heapq.heapify(heap)
    while heap:
        z, p = heapq.heappop(heap)
        q = nxt[p]
        if tok[p] < 0 or q < 0 or merges.get((tok[p], tok[q])) != z:  # stale entry
            continue
        r = nxt[q]
        tok[p], tok[q], nxt[p] = z, -1, r
        if r >= 0:
            prv[r] = p
            if (m := merges.get((z, tok[r]))) is not None:
                heapq.heappush(heap, (m, p))
        left = prv[p]
        if left >= 0 and (m := merges.get((tok[left], z))) is not None:
            heapq.heappush(heap, (m, left))
    return [t for t in tok if t >= 0]


def check_text(text: object) -> None:
    """Encoders take str; bytes (a common slip) would fail deep inside the regex otherwise."""
    if not isinstance(text, str):
        raise TypeError(f"expected text as a str, got {type(text).__name__}; decode bytes first "
                        "(e.g. data.decode('utf-8'))")


def to_utf8(text: str) -> bytes:
    """UTF-8 bytes of `text`; lone surrogates (e.g. "\\ud800", which UTF-8 cannot hold) become
    U+FFFD first, exactly as tiktoken's `Encoding.encode` does, so both give the same ids.

    Example: to_utf8("é") -> b"\\xc3\\xa9";  to_utf8("a\\ud800") -> b"a\\xef\\xbf\\xbd".
    """
    check_text(text)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # rare: pay for the utf-16 round trip only then
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


def check_training_args(texts: list[str], vocab_size: int, n_special: int = 0) -> None:
    """The checks every `train` makes before any work, so bad input fails with a clear message."""
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("train expects a string or an iterable of strings")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 256 + n_special:
        raise ValueError(f"vocab_size={vocab_size!r} is too small: it must be an int >= 256 (the byte tokens)"
                         + (f" + {n_special} special tokens = {256 + n_special}" if n_special else ""))
    if not any(t.strip() for t in texts):
        raise ValueError("the training text is empty or only whitespace; pass real text to train on")


def replace_control_characters(s: str) -> str:
    """Escape control characters (e.g. "\\n" -> "\\u000a") so a token prints on one line."""
    return "".join(ch if unicodedata.category(ch)[0] != "C" else f"\\u{ord(ch):04x}" for ch in s)


def render_token(t: bytes) -> str:
    """Printable form of a token's bytes (invalid UTF-8 shown as U+FFFD) for the .vocab file."""
    return replace_control_characters(t.decode("utf-8", errors="replace"))


def _write_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`: an interrupted
    save leaves the old file (or none), never half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Tokenizer:
    """Base class: holds the learned merges, the vocabulary and the special tokens.

    Attributes:
      merges:          (id0, id1) -> new id; the new id is also the merge's priority (lower
                       merges first), which holds for trained tokenizers and tiktoken ranks alike.
      vocab:           id -> bytes, for every non-special id.
      special_tokens:  str -> id, e.g. {"<|endoftext|>": 50256}.
      pattern:         the split regex ("" for BasicTokenizer: no split).
      byte_ids:        256 ids: byte value b encodes as byte_ids[b] before merging.
    """

    def __init__(self) -> None:
        self.merges: dict[tuple[int, int], int] = {}
        self.pattern: str = ""
        self.special_tokens: dict[str, int] = {}
        self.byte_ids: list[int] = list(range(256))
        self.vocab: dict[int, bytes] = self._build_vocab()

    # ----------------------------------------------------------------- interface
    def train(self, text, vocab_size: int, verbose: bool = False) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement train")

    def encode(self, text: str, **kwargs) -> list[int]:
        raise NotImplementedError(f"{type(self).__name__} does not implement encode")

    def _learn(self, chunks: Mapping[bytes, int], vocab_size: int, verbose: bool) -> None:
        """Run the trainer on counted chunks and install the merges (ids 256, 257, ...).

        A corpus with fewer distinct pairs than requested merges stops early: that is not an
        error (the tokenizer works, just with a smaller vocabulary), so it warns with the count.
        """
        n_special = len(self.special_tokens)
        num_merges = vocab_size - 256 - n_special
        pairs = train_bpe(chunks, num_merges, progress=verbose)
        if len(pairs) < num_merges:
            warnings.warn(f"the training text has too few distinct pairs: learned {len(pairs)} of "
                          f"{num_merges} merges, so the vocabulary has {256 + len(pairs) + n_special} "
                          f"ids instead of {vocab_size}; give more text or a smaller vocab_size",
                          stacklevel=3)
        self.merges = {pair: 256 + i for i, pair in enumerate(pairs)}
        self.byte_ids = list(range(256))
        self.vocab = self._build_vocab()

    # ----------------------------------------------------------------- vocabulary
    def _build_vocab(self) -> dict[int, bytes]:
        """vocab from byte_ids + merges (merges applied in id order, so parents exist first)."""
        vocab = {idx: bytes([b]) for b, idx in enumerate(self.byte_ids)}
        for (p0, p1), idx in sorted(self.merges.items(), key=lambda kv: kv[1]):
            vocab[idx] = vocab[p0] + vocab[p1]
        return vocab

    @property
    def vocab_size(self) -> int:
        """Largest id + 1 (the embedding table size), like tiktoken's n_vocab. Equal to the number
        of tokens for trained tokenizers; larger for cl100k_base, whose special ids have gaps."""
        return max([*self.vocab, *self.special_tokens.values()]) + 1

    def register_special_tokens(self, special_tokens: Mapping[str, int] | Iterable[str]) -> None:
        """Add special tokens: a dict {token: id}, or a list of tokens numbered after the vocab.

        Ids must not collide with ordinary tokens (0 .. len(vocab)-1) or other special tokens.
        A list is the easy way: `tok.register_special_tokens(["<|endofpoem|>"])`.
        """
        if not isinstance(special_tokens, Mapping):
            if isinstance(special_tokens, str):
                raise TypeError(f"pass a list of special tokens, e.g. [{special_tokens!r}], not a bare string")
            start = max([len(self.vocab) - 1, *self.special_tokens.values()]) + 1
            new = [s for s in special_tokens if s not in self.special_tokens]
            special_tokens = {s: start + i for i, s in enumerate(dict.fromkeys(new))}
        merged = dict(self.special_tokens)
        for tok, idx in special_tokens.items():
            if not isinstance(tok, str) or not tok:
                raise ValueError(f"special token {tok!r} must be a non-empty string")
            if not isinstance(idx, int) or idx < 0:
                raise ValueError(f"special token {tok!r} has id {idx!r}; ids must be non-negative ints")
            if idx in self.vocab:
                raise ValueError(
                    f"special token {tok!r} id {idx} collides with the learned token {self.vocab[idx]!r}; "
                    f"use an id >= {len(self.vocab)} or pass a list of tokens to number them automatically")
            if tok in merged and merged[tok] != idx:
                raise ValueError(f"special token {tok!r} is already registered with id {merged[tok]}")
            merged[tok] = idx
        if len(set(merged.values())) != len(merged):
            raise ValueError(f"special token ids must be distinct, got {merged}")
        self.special_tokens = merged

    @property
    def inverse_special_tokens(self) -> dict[int, str]:
        return {v: k for k, v in self.special_tokens.items()}

    # ----------------------------------------------------------------- decoding
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The raw bytes of `ids` (may be partial UTF-8). Raises ValueError on an unknown id."""
        inv = self.inverse_special_tokens
        parts = []
        for idx in ids:
            if idx in self.vocab:
                parts.append(self.vocab[idx])
            elif idx in inv:
                parts.append(inv[idx].encode("utf-8"))
            else:
                raise ValueError(
                    f"invalid token id {idx!r}: this tokenizer knows ids 0..{len(self.vocab) - 1}"
                    + (f" and special ids {sorted(inv)}" if inv else ""))
        return b"".join(parts)

    def decode(self, ids: Iterable[int]) -> str:
        """ids -> text. Byte sequences that are not valid UTF-8 (e.g. half of a multi-byte
        character, as a model may sample) decode with errors="replace" to U+FFFD, like tiktoken."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # ----------------------------------------------------------------- save / load
    def save(self, file_prefix: str | Path) -> tuple[Path, Path]:
        """Write `prefix.model` (minbpe v1, for load) and `prefix.vocab` (for humans only).

        .model: "minbpe v1", the pattern, the number of special tokens, one "token id" line
        per special token, then one "id0 id1" line per merge (merge i creates id 256 + i).
        """
        if self.byte_ids != list(range(256)) or sorted(self.merges.values()) != list(
                range(256, 256 + len(self.merges))):
            raise ValueError(
                "this tokenizer's ids are not 0..255 bytes followed by merges (e.g. it was built from "
                "tiktoken ranks), which the minbpe v1 format cannot store; rebuild it with "
                "jaxgpt.common.tokenizer.from_tiktoken(...) instead of saving it")
        if "\n" in self.pattern or "\r" in self.pattern:
            raise ValueError("the split pattern contains a literal newline; write it as \\n in the regex")
        if bad := [s for s in self.special_tokens if "\n" in s or "\r" in s]:
            raise ValueError(f"special tokens {bad} contain a line break, which the one-token-per-line "
                             ".model format cannot store; use tokens without line breaks")
        if self.special_tokens and (first := min(self.special_tokens.values())) != len(self.vocab):
            raise ValueError(f"special token ids start at {first}, not right after the {len(self.vocab)} learned "
                             f"tokens, which the .model format needs (a gap is how load detects a truncated "
                             f"file); register the special tokens as a list to number them from {len(self.vocab)}")
        prefix = Path(file_prefix)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        model_file, vocab_file = prefix.with_name(prefix.name + ".model"), prefix.with_name(prefix.name + ".vocab")
        model = [f"{MODEL_HEADER}\n{self.pattern}\n{len(self.special_tokens)}\n",
                 *(f"{tok} {idx}\n" for tok, idx in self.special_tokens.items()),
                 *(f"{p0} {p1}\n" for (p0, p1), _ in sorted(self.merges.items(), key=lambda kv: kv[1]))]
        children = {idx: pair for pair, idx in self.merges.items()}
        vocab = []
        for idx, token in self.vocab.items():
            s = render_token(token)
            if idx in children:  # show how the token was made: [p0][p1] -> [token] id
                p0, p1 = children[idx]
                vocab.append(f"[{render_token(self.vocab[p0])}][{render_token(self.vocab[p1])}] -> [{s}] {idx}\n")
            else:
                vocab.append(f"[{s}] {idx}\n")
        vocab.extend(f"[{tok}] {idx} (special)\n" for tok, idx in self.special_tokens.items())
        _write_atomic(vocab_file, "".join(vocab))
        _write_atomic(model_file, "".join(model))  # last: a .model on disk is always complete
        return model_file, vocab_file

    def load(self, model_file: str | Path) -> None:
        """Read a .model file written by `save` (or by minbpe), restoring pattern and specials."""
        self.load_model(model_file, *read_model_file(model_file))

    def load_model(self, model_file: str | Path, pattern: str, special: dict[str, int],
                   merges: dict[tuple[int, int], int]) -> None:
        """Install a parsed .model (see `read_model_file`); `model_file` names it in errors."""
        self._check_model(model_file, pattern, special)  # before changing anything
        self.pattern = pattern
        self.merges = merges
        self.byte_ids = list(range(256))
        self.special_tokens = {}
        self.vocab = self._build_vocab()
        self.register_special_tokens(special)
        self._on_load()

    def _check_model(self, model_file: str | Path, pattern: str, special: dict[str, int]) -> None:
        """Hook: raise if this class cannot represent the model (BasicTokenizer has no pattern)."""

    def _on_load(self) -> None:
        """Hook for subclasses to rebuild derived state (compiled regex, caches)."""

    # ----------------------------------------------------------------- tiktoken export
    def to_tiktoken(self, name: str = "jaxgpt"):
        """This tokenizer as a `tiktoken.Encoding` (mergeable ranks = our ids, same pattern and
        special tokens), so trained vocabularies can use tiktoken's fast encoder.

        Pattern "" (no split) becomes r"[\\s\\S]+", one chunk holding the whole text: tiktoken
        has no "no split" mode and panics on an empty pattern.
        """
        import tiktoken

        ranks: dict[bytes, int] = {}
        for idx, token in self.vocab.items():
            if token in ranks:
                raise ValueError(f"tokens {ranks[token]} and {idx} have the same bytes {token!r}; "
                                 "tiktoken needs distinct tokens, so this vocabulary cannot be exported")
            ranks[token] = idx
        return tiktoken.Encoding(name, pat_str=self.pattern or r"[\s\S]+", mergeable_ranks=ranks,
                                 special_tokens=dict(self.special_tokens))


def read_model_file(model_file: str | Path) -> tuple[str, dict[str, int], dict[tuple[int, int], int]]:
    """Parse a minbpe v1 .model file into (pattern, special_tokens, merges), validating it.

    Besides the syntax, two checks catch a damaged file that would otherwise load and encode
    wrongly: every line ends with a line break (as `save` and minbpe write it), so a file cut in
    the middle of a line is refused; and the special tokens' ids start right after the last
    merge (`save` refuses anything else), so a file that lost merge lines -- whose special ids
    would still claim the old vocabulary size -- is refused too. A repeated merge line is refused.
    """
    path = Path(model_file)
    if path.suffix != ".model":
        raise ValueError(f"{path}: expected a .model file (the .vocab file is for reading only)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: tokenizer model file not found; train one with scripts/train_tokenizer.py")
    try:
        with open(path, encoding="utf-8", newline="") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (invalid UTF-8); only minbpe v1 .model files can be "
                         "loaded") from None
    if lines[0].endswith("\r"):  # a file re-saved with Windows line ends: the "\r" is not data
        lines = [line.removesuffix("\r") for line in lines]
    if lines[0] != MODEL_HEADER:
        raise ValueError(f"{path}: not a '{MODEL_HEADER}' model file (first line is {lines[0][:40]!r}); "
                         "only minbpe v1 files written by Tokenizer.save can be loaded")
    fix = "re-train it with scripts/train_tokenizer.py or restore a complete copy"
    if lines[-1]:  # the text after the last line break
        raise ValueError(f"{path}: line {len(lines)} ({lines[-1][:40]!r}) has no line break at its end: the file "
                         f"is truncated; {fix}")
    try:
        pattern = lines[1]
        n_special = int(lines[2])
        special = {}
        for line in lines[3:3 + n_special]:
            tok, idx = line.rsplit(" ", 1)  # the token itself may contain spaces
            special[tok] = int(idx)
        merges: dict[tuple[int, int], int] = {}
        idx = 256
        for lineno, line in enumerate(lines[3 + n_special:-1], start=4 + n_special):
            if not line.strip():
                continue
            p0, p1 = (int(x) for x in line.split())
            if not (0 <= p0 < idx and 0 <= p1 < idx):
                raise ValueError(f"line {lineno}: merge ({p0}, {p1}) refers to an id >= {idx} not yet defined")
            if (p0, p1) in merges:
                first = merges[(p0, p1)] - 256 + 4 + n_special
                raise ValueError(f"line {lineno}: merge ({p0}, {p1}) repeats line {first}; each pair is merged "
                                 f"once, so the file is corrupt or was edited by hand; {fix}")
            merges[(p0, p1)] = idx
            idx += 1
    except (IndexError, ValueError) as e:
        raise ValueError(f"{path}: malformed minbpe v1 model file ({e})") from None
    if special and (first := min(special.values())) != idx:
        what = (f"ids {idx}..{first - 1} are missing: merge lines were lost (the file is truncated)" if first > idx
                else f"id {first} is also a merge's id (the file is corrupt or was edited by hand)")
        raise ValueError(f"{path}: the merges end at id {idx - 1} but the special tokens start at id {first}, "
                         f"where Tokenizer.save puts them right after the merges; {what}; {fix}")
    return pattern, special, merges
