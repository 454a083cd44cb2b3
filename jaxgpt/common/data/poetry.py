"""French poetry corpus for the poetry GPT: loading, a split by poem, tokenization, bits per byte.

Framework-free (no jax, no torch): both training loops consume the numpy token arrays built here.

Sources (`load_poems(source)`):
- `"hf:manu/french_poetry"` (the original study's data, 1,821 poems, fields title/poet/text) through
  `datasets`, cleaned as that study did: the lines starting with "Poésie", "Poète" or "Recueil"
  and the line repeating the title are dropped;
- a text file with one poem per block of lines, poems separated by blank lines (the layout of
  `shared/data/french_poetry/poems.txt`, 13,825 public-domain poems);
- a `.jsonl` / `.json` / `.parquet` file holding one poem per record in a text field;
- a directory: every such file inside it, in sorted order.

The train/val split is by poem and seeded (a permutation of poem indices), so it does not depend on
the corpus order and never cuts a poem in two. The token stream joins poems with the tokenizer's
end-of-poem special token, so the model learns where a poem ends (and generation can stop there).

Bits per byte (`bits_per_byte`): nats/token * tokens / (bytes * ln 2) over the same text. It turns a
loss that depends on the tokenizer into one that does not, so vocab 400 and vocab 2048 compare.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxgpt.common.tokenizer.base import Tokenizer

EOP = "<|endofpoem|>"  # end-of-poem special token, the separator of the token stream
HF_DATASET = "manu/french_poetry"
HF_DROP_PREFIXES = ("Poésie", "Poète", "Recueil")  # metadata lines in manu/french_poetry's text field
TEXT_FIELDS = ("text", "content", "poem")  # accepted names of the text field, in order of preference
FILE_SUFFIXES = (".txt", ".jsonl", ".json", ".parquet")


# ---- loading ---------------------------------------------------------------------------------

def clean_hf_poem(text: str, title: str | None = None) -> str:
    """The original study's cleaning of a manu/french_poetry record: drop metadata and title lines.

    >>> clean_hf_poem("Le Lac\\nPoète : Lamartine\\nAinsi, toujours poussés\\n", title="Le Lac")
    'Ainsi, toujours poussés'
    """
    title = (title or "").strip()
    keep = []
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith(HF_DROP_PREFIXES) or (title and s == title):
            continue
        keep.append(line.rstrip())
    return "\n".join(keep)


def split_blank_lines(text: str) -> list[str]:
    """Poems of a text file: blocks of non-empty lines separated by one or more blank lines."""
    poems, cur = [], []
    for line in text.splitlines():
        if line.strip():
            cur.append(line.rstrip())
        elif cur:
            poems.append("\n".join(cur))
            cur = []
    if cur:
        poems.append("\n".join(cur))
    return poems


def _text_of(record: dict, where: str, field: str | None) -> str:
    names = (field,) if field else TEXT_FIELDS
    for name in names:
        if name in record:
            value = record[name]
            if not isinstance(value, str):
                raise ValueError(f"{where}: field {name!r} holds {type(value).__name__}, expected a string")
            return value
    raise ValueError(f"{where}: no text field {' / '.join(repr(n) for n in names)}; the fields found are "
                     f"{sorted(record)}; pass the right one with --text-field NAME")


def _records_poems(records: Sequence[dict], where: str, field: str | None) -> list[str]:
    poems = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            # bad file content, not a programming error: ValueError, which the CLIs report without a traceback
            raise ValueError(f"{where}: record {i} is a {type(rec).__name__}, expected an object with a text field")  # noqa: TRY004
        poems.append(_text_of(rec, f"{where} record {i}", field).strip())
    return poems


def _load_file(path: Path, field: str | None) -> list[str]:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return split_blank_lines(path.read_text(encoding="utf-8"))
    if suffix == ".jsonl":
        records = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg}); a .jsonl file holds "
                                         "one JSON object per line") from None
        return _records_poems(records, str(path), field)
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):  # {"poems": [...]} or a single record
            data = next((v for v in data.values() if isinstance(v, list)), [data])
        return _records_poems(data, str(path), field)
    if suffix == ".parquet":
        import pyarrow.parquet as pq  # a dependency of `datasets`; imported only when needed

        table = pq.read_table(path)
        name = field or next((n for n in TEXT_FIELDS if n in table.column_names), None)
        if name is None or name not in table.column_names:
            raise ValueError(f"{path}: no text column {field or ' / '.join(TEXT_FIELDS)}; the columns found are "
                             f"{table.column_names}; pass the right one with --text-field NAME")
        return [str(t).strip() for t in table.column(name).to_pylist() if t is not None]
    raise ValueError(f"{path}: unsupported corpus file type {suffix!r}; use one of {', '.join(FILE_SUFFIXES)}")


def load_hf_poems(name: str = HF_DATASET, field: str | None = None) -> list[str]:
    """manu/french_poetry (or a dataset like it) through `datasets`, cleaned as the original study did."""
    try:
        from datasets import load_dataset

        ds = load_dataset(name, split="train")
    except Exception as e:  # noqa: BLE001 -- offline, unknown name, hub error: all mean "use a local corpus"
        raise FileNotFoundError(
            f"could not load the Hugging Face dataset {name!r} ({type(e).__name__}: {str(e)[:200]}); "
            "when offline, pass a local corpus instead, e.g. --data ../shared/data/french_poetry/poems.txt"
        ) from None
    poems = []
    for i, rec in enumerate(ds):
        text = _text_of(rec, f"dataset {name} record {i}", field)
        poems.append(clean_hf_poem(text, rec.get("title")) if field is None or field == "text" else text)
    return poems


def load_poems(source: str | Path, text_field: str | None = None) -> list[str]:
    """Every non-empty poem of `source` ("hf:NAME", a file or a directory), in source order."""
    src = str(source)
    if src.startswith("hf:"):
        poems = load_hf_poems(src[3:], text_field)
    else:
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FILE_SUFFIXES)
            if not files:
                raise FileNotFoundError(f"{path}: the directory holds no corpus file ({', '.join(FILE_SUFFIXES)})")
            poems = [p for f in files for p in _load_file(f, text_field)]
        elif path.is_file():
            poems = _load_file(path, text_field)
        else:
            raise FileNotFoundError(f"corpus {path} not found; pass a text/jsonl/parquet file or a directory, "
                                    f"or hf:{HF_DATASET} to download the original study's dataset")
    poems = [p.strip() for p in poems if p and p.strip()]
    if not poems:
        raise ValueError(f"the corpus {src} is empty: no poem with any text in it; check the file and --text-field")
    return poems


def split_poems(poems: Sequence[str], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[str], list[str]]:
    """Deterministic (train, val) split by poem: a seeded permutation picks the val poems.

    Both lists keep the corpus order. At least one poem goes to each side.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction} must be in (0, 1)")
    n = len(poems)
    if n < 2:
        raise ValueError(f"need at least 2 poems to split into train and val, got {n}")
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    is_val = np.zeros(n, dtype=bool)
    is_val[np.random.default_rng(seed).permutation(n)[:n_val]] = True
    return [p for p, v in zip(poems, is_val) if not v], [p for p, v in zip(poems, is_val) if v]


# ---- tokens ----------------------------------------------------------------------------------

def train_tokenizer(train_poems: Sequence[str], vocab_size: int, *, pattern: str = "gpt4",
                    verbose: bool = False) -> Tokenizer:
    """Our byte-level BPE trained on the training poems, with EOP as its last id (vocab_size counts it)."""
    from jaxgpt.common.tokenizer.regex import RegexTokenizer

    tok = RegexTokenizer(pattern)
    tok.register_special_tokens([EOP])
    tok.train(list(train_poems), vocab_size=vocab_size, verbose=verbose)
    return tok


def encode_poems(tok: Tokenizer, poems: Sequence[str], num_workers: int = 1) -> np.ndarray:
    """One int32 token stream: poem_1 EOP poem_2 EOP ... poem_n EOP.

    Poems are encoded as ordinary text (a literal "<|endofpoem|>" inside a poem stays text), and the
    separator is the special id, so poem boundaries are never ambiguous.
    """
    if EOP not in tok.special_tokens:
        raise ValueError(f"the tokenizer has no {EOP!r} special token; train it with "
                         "jaxgpt.common.data.poetry.train_tokenizer or register the token before training")
    eop = tok.special_tokens[EOP]
    if hasattr(tok, "encode_batch"):
        parts = tok.encode_batch(poems, num_workers=num_workers, disallowed_special=())
    else:
        parts = [tok.encode(p) for p in poems]
    out = np.empty(sum(len(p) + 1 for p in parts), dtype=np.int32)
    i = 0
    for p in parts:
        out[i:i + len(p)] = p
        out[i + len(p)] = eop
        i += len(p) + 1
    return out


def text_bytes(poems: Sequence[str]) -> int:
    """UTF-8 bytes of the poems, counting one byte per end-of-poem separator (a newline's worth)."""
    return sum(len(p.encode("utf-8")) + 1 for p in poems)


def bits_per_byte(nats_per_token: float, n_tokens: int, n_bytes: int) -> float:
    """Loss per byte of text in bits: nats/token * tokens / (bytes * ln 2), tokenizer-independent.

    >>> round(bits_per_byte(math.log(2), 100, 100), 6)  # 1 bit per token, 1 token per byte
    1.0
    """
    if n_bytes <= 0:
        raise ValueError(f"n_bytes={n_bytes} must be > 0")
    return nats_per_token * n_tokens / (n_bytes * math.log(2))


@dataclass(frozen=True)
class PoetryData:
    """The tokenized corpus: train/val token streams and the byte counts for bits per byte."""

    train_tokens: np.ndarray  # int32 (N_train,), poems joined by EOP
    val_tokens: np.ndarray  # int32 (N_val,)
    train_bytes: int  # UTF-8 bytes of the train poems (+1 per separator)
    val_bytes: int
    n_train_poems: int
    n_val_poems: int

    def val_bits_per_byte(self, val_nats_per_token: float) -> float:
        return bits_per_byte(val_nats_per_token, len(self.val_tokens), self.val_bytes)

    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "train_tokens.npy", self.train_tokens)
        np.save(d / "val_tokens.npy", self.val_tokens)
        meta = {k: getattr(self, k) for k in ("train_bytes", "val_bytes", "n_train_poems", "n_val_poems")}
        (d / "data.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> PoetryData:
        d = Path(directory)
        missing = [n for n in ("train_tokens.npy", "val_tokens.npy", "data.json") if not (d / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{d}: missing {missing}; the tokenized corpus is written by scripts/train_gpt.py")
        meta = json.loads((d / "data.json").read_text())
        return cls(np.load(d / "train_tokens.npy"), np.load(d / "val_tokens.npy"), **meta)


def build_poetry_data(source: str | Path, vocab_size: int, *, tokenizer: Tokenizer | None = None,
                      val_fraction: float = 0.1, seed: int = 0, text_field: str | None = None,
                      num_workers: int = 1, verbose: bool = False) -> tuple[PoetryData, Tokenizer]:
    """Load, split by poem, train the tokenizer on the train split (unless given one), tokenize."""
    poems = load_poems(source, text_field)
    train, val = split_poems(poems, val_fraction, seed)
    if tokenizer is None:
        tokenizer = train_tokenizer(train, vocab_size, verbose=verbose)
    elif tokenizer.vocab_size != vocab_size:
        raise ValueError(f"the given tokenizer has {tokenizer.vocab_size} ids but the model expects vocab_size="
                         f"{vocab_size}; use the tokenizer saved with the model or retrain it")
    data = PoetryData(encode_poems(tokenizer, train, num_workers), encode_poems(tokenizer, val, num_workers),
                      text_bytes(train), text_bytes(val), len(train), len(val))
    return data, tokenizer
