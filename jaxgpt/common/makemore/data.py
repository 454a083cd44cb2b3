"""Words, vocabulary, splits, batches and sampling for makemore, framework-free (numpy only).

Shared by jaxgpt.makemore and torchref.makemore. The vocabulary is the lectures' 27 symbols:
'.' (index 0) marks both the start and the end of a name, then 'a'..'z' (1..26).

Two dataset layouts:
- windows (lectures 1-5): every character of every name is a target, its input the previous
  `block_size` characters, padded on the left with '.': "emma" -> ... -> [., ., .] -> e, ...
- sequences (makemore.py): a name is one row, x = [., e, m, m, a, ., ...], y = [e, m, m, a, ., -1, ...];
  -1 marks padding that the loss ignores.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jaxgpt.common.data import cache_dir, download
from jaxgpt.common.makemore.torch_rng import TorchGenerator

CHARS = "." + "abcdefghijklmnopqrstuvwxyz"
STOI = {c: i for i, c in enumerate(CHARS)}
ITOS = dict(enumerate(CHARS))
NAMES_URL = "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"


class DataError(ValueError):
    """A data file that cannot be used as is; the message names the file, line and fix."""


def encode(word: str) -> list[int]:
    return [STOI[c] for c in word]


def decode(ids) -> str:
    return "".join(ITOS[int(i)] for i in ids)


def parse_words(lines: list[str], source: str = "<data>", lowercase: bool = False, strip: bool = False) -> list[str]:
    """Clean words from lines of text, one word a line; blank lines are skipped.

    lowercase: fold A-Z to a-z first. strip: drop every character outside a-z (after lowercasing)
    instead of failing. Without them a character outside the vocabulary is an error naming it.
    """
    words = []
    for lineno, line in enumerate(lines, 1):
        w = line.strip()
        if lowercase:
            w = w.lower()
        if strip:
            w = "".join(c for c in w if c in STOI and c != ".")
        if not w:
            continue
        bad = next((c for c in w if c not in STOI or c == "."), None)
        if bad is not None:
            raise DataError(f"{source}:{lineno}: character {bad!r} in {w!r} is outside the vocabulary "
                            f"(a-z); pass --lowercase to fold capitals and/or --strip to drop other characters")
        words.append(w)
    if not words:
        raise DataError(f"{source}: no words found (the file is empty or blank); give a file with one word per line")
    return words


def read_words(path: str | Path, lowercase: bool = False, strip: bool = False) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} not found; pass --data PATH to a file with one word per line")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e}); give a plain text file with one word per line") from None
    return parse_words(text.splitlines(), str(path), lowercase, strip)


def census_names() -> list[str]:
    """The US-census (1990) first names bundled by the `names` package, lower-cased, unique, in file order."""
    import names  # a declared dependency; only needed for the offline fallback

    pkg = Path(names.__file__).parent
    seen: dict[str, None] = {}
    for fname in ("dist.female.first", "dist.male.first"):
        for line in (pkg / fname).read_text().splitlines():
            if line.strip():
                w = line.split()[0].lower()
                if w.isalpha() and w.isascii():
                    seen.setdefault(w, None)
    return list(seen)


def default_words(cache: Path | None = None, url: str = NAMES_URL, timeout: float = 10.0,
                  log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> tuple[list[str], str]:
    """The canonical names.txt: from the cache, else downloaded (and cached), else the census lists.

    Returns (words, description of what was used); `log` reports which source it was.
    """
    if cache is None:
        cache = cache_dir() / "makemore"
    path = cache / "names.txt"
    if path.is_file():
        log(f"data: makemore names.txt from the cache {path}")
        return read_words(path), f"names.txt ({path})"
    try:
        words = read_words(download(url, path, timeout))
        log(f"data: makemore names.txt downloaded from {url}, cached at {path}")
        return words, f"names.txt (downloaded, {path})"
    except (OSError, ValueError) as e:
        path.unlink(missing_ok=True)  # a download that is not a word list stays out of the cache
        words = census_names()
        log(f"data: offline ({type(e).__name__}: {e}); using the US-census first names of the `names` package "
            f"({len(words)} names) instead of makemore's names.txt. Losses are not comparable to the lectures'.")
        return words, f"US-census first names ({len(words)}, `names` package; offline fallback)"


VAL_SEED = 1337  # the validation carve-out's permutation; fixed, so every run selects on the same names


def split_words(words: list[str], scheme: str = "lecture", seed: int | None = None,
                val_fraction: float = 0.0) -> tuple[list[str], list[str], list[str]]:
    """(train, val, test) word lists.

    lecture: random.seed(42); random.shuffle(words); 80% / 10% / 10% (lectures 2-5).
    makemore: makemore.py's own split: torch.manual_seed(3407); rp = torch.randperm(len(words));
    test = the last min(1000, 10%) words of that order, train the rest. With the default seed these
    are exactly makemore.py's test words, so its reported test loss is comparable. makemore.py has
    no validation set and reports its test loss, so val is the test set there, unless
    `val_fraction` > 0: then round(val_fraction * len(train)) of the training words, chosen by a
    permutation seeded with VAL_SEED, become the validation set (names.txt, 0.1: 3,103 of 31,033),
    so that a recipe can be chosen without looking at the test names.
    """
    words = list(words)
    if len(words) < 10:
        raise DataError(f"{len(words)} words are too few to split into train/val/test; give at least 10")
    if scheme == "lecture":
        if val_fraction:
            raise DataError("val_fraction applies to the makemore split (the lecture split has its own 10% val)")
        random.Random(42 if seed is None else seed).shuffle(words)  # = random.seed(42); random.shuffle
        n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
        return words[:n1], words[n1:n2], words[n2:]
    if scheme == "makemore":
        rp = TorchGenerator(3407 if seed is None else seed).randperm(len(words))
        n_test = min(1000, int(len(words) * 0.1))
        train = [words[i] for i in rp[:-n_test]]
        test = [words[i] for i in rp[-n_test:]]
        if not val_fraction:
            return train, test, test
        if not 0 < val_fraction <= 0.5:
            raise DataError(f"val_fraction must be in (0, 0.5], got {val_fraction}")
        n_val = max(1, round(val_fraction * len(train)))
        is_val = np.zeros(len(train), bool)
        is_val[np.random.default_rng(VAL_SEED).permutation(len(train))[:n_val]] = True
        return ([w for w, v in zip(train, is_val) if not v], [w for w, v in zip(train, is_val) if v], test)
    raise DataError(f"unknown split {scheme!r}; use 'lecture' or 'makemore'")


def build_windows(words: list[str], block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """X (N, block_size) int32 contexts and Y (N,) int32 next characters, as in lecture 2."""
    if block_size < 1:
        raise DataError(f"context length must be >= 1, got {block_size}")
    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ix in encode(w) + [0]:
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return np.array(X, np.int32).reshape(-1, block_size), np.array(Y, np.int32)


def build_sequences(words: list[str], block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """X, Y (N, block_size) int32: makemore.py's CharDataset rows (-1 in Y = ignored padding)."""
    longest = max(len(w) for w in words)
    if longest + 1 > block_size:
        raise DataError(f"a word of {longest} characters needs block_size >= {longest + 1}, got {block_size}")
    X = np.zeros((len(words), block_size), np.int32)
    Y = np.full((len(words), block_size), -1, np.int32)
    for i, w in enumerate(words):
        ix = encode(w)
        X[i, 1: 1 + len(ix)] = ix
        Y[i, : len(ix)] = ix
        Y[i, len(ix)] = 0  # the end token
    return X, Y


def batch_indices(rng: np.random.Generator, n: int, steps: int, batch_size: int) -> np.ndarray:
    """(steps, batch_size) random example indices; both frameworks draw batches from these."""
    return rng.integers(0, n, size=(steps, batch_size), dtype=np.int32)


BATCH_BLOCK = 1000  # steps per block of batch indices drawn from one generator (see step_batches)


def step_batches(seed: int, start: int, k: int, n: int, batch_size: int) -> np.ndarray:
    """(k, batch_size) example indices of steps start .. start+k-1: the batches of a training run.

    Step s's batch is row s % BATCH_BLOCK of the block default_rng((seed, s // BATCH_BLOCK)) draws,
    so it depends on (seed, step) only: JAX's 1000-step chunks and torch's 100-step ones see the
    same batches, and a resumed run sees the batches the uninterrupted run would have seen.
    """
    rows, s = [], start
    while s < start + k:
        b = s // BATCH_BLOCK
        block = np.random.default_rng((seed, b)).integers(0, n, size=(BATCH_BLOCK, batch_size), dtype=np.int32)
        lo, hi = s - b * BATCH_BLOCK, min(BATCH_BLOCK, start + k - b * BATCH_BLOCK)
        rows.append(block[lo:hi])
        s = b * BATCH_BLOCK + hi
    return np.concatenate(rows) if rows else np.zeros((0, batch_size), np.int32)


def step_seed(seed: int, step: int) -> int:
    """A 63-bit seed for (run seed, step): torch's per-step dropout generator (exact on resume)."""
    return int(np.random.SeedSequence((seed, step)).generate_state(2, np.uint64)[0] >> np.uint64(1))


def sample_words(logits_fn: Callable[[np.ndarray], np.ndarray], block_size: int, windowed: bool, n: int,
                 rng: np.random.Generator, max_len: int | None = None, temperature: float = 1.0,
                 top_k: int | None = None) -> list[str]:
    """Sample `n` names at once from a model, whatever its framework (makemore.py's `generate`).

    logits_fn: (n, block_size) int32 -> logits as numpy; (n, V) for window models (the next
    character), (n, block_size, V) for sequence models (every position; causal, so later
    positions are padding that does not matter). Each step divides the logits by `temperature`
    (0: greedy, the most likely character), keeps the `top_k` most likely characters (None: all)
    and draws from the softmax, in float64 numpy: the same seed and weights give the same names
    in either framework.
    """
    from jaxgpt.common.config import check_sampling_args

    check_sampling_args(temperature, top_k, None, len(CHARS))
    max_len = max_len or (block_size - 1 if not windowed else 50)
    ctx = np.zeros((n, block_size), np.int32)
    out = np.zeros((n, max_len), np.int32)
    done = np.zeros(n, bool)
    for t in range(max_len):
        logits = np.asarray(logits_fn(ctx), np.float64)
        logits = logits if windowed else logits[:, t]
        if temperature == 0:
            ix = logits.argmax(-1).astype(np.int32)
        else:
            logits = logits / temperature
            if top_k is not None:  # makemore.py: logits below the k-th largest become -inf
                kth = np.sort(logits, axis=-1)[:, -top_k][:, None]
                logits = np.where(logits < kth, -np.inf, logits)
            p = np.exp(logits - logits.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            ix = np.array([rng.choice(len(row), p=row) for row in p], np.int32)
        ix[done] = 0
        out[:, t] = ix
        done |= ix == 0
        if done.all():
            break
        if windowed:
            ctx = np.concatenate([ctx[:, 1:], ix[:, None]], axis=1)
        else:
            ctx[:, t + 1] = ix
    return [decode(row).split(".")[0] for row in out]
