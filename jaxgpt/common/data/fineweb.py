"""Text corpus -> uint16 GPT-2 token shards, interchangeable with build-nanogpt's fineweb.py.

Reference: karpathy/build-nanogpt `fineweb.py`. Same output: every document is prefixed with
<|endoftext|> (50256) and encoded with tiktoken `gpt2` (`encode_ordinary`, so a literal
"<|endoftext|>" inside a text is plain text), the token stream is cut every `shard_size` tokens,
shard 0 is `edufineweb_val_000000.npy` and the rest `edufineweb_train_{i:06d}.npy`, each an
`np.save` of a 1-D uint16 array (the last one shorter). What we add:

- atomic shard writes (temp file in the same folder + fsync + os.replace): a final shard name only
  ever holds a complete shard;
- `manifest.json`: run parameters, and per shard its token count, sha256 and the stream position
  after it (next document index, token offset inside that document);
- resume: a re-run with the same parameters keeps the finished shards, skips the documents they
  cover without tokenizing them, and continues. Shard contents depend only on the document stream
  and `shard_size` (never on `workers` or on where a run was interrupted), so a resumed run writes
  byte-identical shards to an uninterrupted one;
- bounded read-ahead: at most a few batches of documents are in flight, so streaming a 10B-token
  dataset does not pile text up in memory (multiprocessing's `imap` reads its input eagerly).

Documents come from a Hugging Face dataset (streamed with `datasets`) or local files:
- `.jsonl` / `.parquet`: one document per record, its `text_field` column;
- `.txt`: `txt_mode="blank-line"` (default) -- a document is a block of lines, blocks separated by
  one or more blank (whitespace-only) lines, lines joined with "\\n", no trailing newline; or
  `txt_mode="file"` -- the whole file, exactly as read, is one document.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from jaxgpt.common.data.loader import check_shard_file

EOT = 50256  # <|endoftext|> in the gpt2 encoding: the document separator
SHARD_PREFIX = "edufineweb"  # build-nanogpt's shard names, so its loader reads ours and vice versa
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
TEXT_SUFFIXES = (".txt", ".jsonl", ".parquet")


@dataclass(frozen=True)
class ShardConfig:
    """Everything that determines the shard bytes; stored in the manifest and checked on resume."""

    dataset: str | None = "HuggingFaceFW/fineweb-edu"  # HF dataset, streamed; used when `files` is empty
    name: str | None = "sample-10BT"  # HF dataset config name
    split: str = "train"  # HF dataset split
    files: tuple[str, ...] = ()  # local .txt/.jsonl/.parquet files (resolved paths); overrides `dataset`
    text_field: str = "text"  # record field holding the document text (jsonl, parquet, HF)
    txt_mode: str = "blank-line"  # .txt documents: "blank-line" blocks or the whole "file"
    shard_size: int = 100_000_000  # tokens per shard (1e8 as build-nanogpt: 200 MB per shard)
    encoding: str = "gpt2"  # tiktoken encoding name

    def params(self) -> dict:
        """The manifest's `params`: the config plus input file sizes (a changed input must not resume)."""
        p = asdict(self)
        p["files"] = [{"path": f, "bytes": os.path.getsize(f)} for f in self.files]
        return p


def shard_name(index: int) -> str:
    """'edufineweb_val_000000.npy' for shard 0, 'edufineweb_train_{index:06d}.npy' after."""
    split = "val" if index == 0 else "train"
    return f"{SHARD_PREFIX}_{split}_{index:06d}.npy"


# ----------------------------------------------------------------------------- documents


def expand_files(paths: Iterable[str | Path]) -> tuple[str, ...]:
    """Resolve --files arguments: files as given, folders expanded to their sorted text files."""
    out: list[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix in TEXT_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"folder {p} holds no {'/'.join(TEXT_SUFFIXES)} files; point --files at them")
            out += [str(q.resolve()) for q in found]
        elif not p.is_file():
            raise FileNotFoundError(f"input file {p} not found; check the --files path")
        elif p.suffix not in TEXT_SUFFIXES:
            raise ValueError(f"input file {p}: unsupported type {p.suffix!r}; use {', '.join(TEXT_SUFFIXES)}")
        elif p.stat().st_size == 0:
            raise ValueError(f"input file {p} is empty; remove it from --files")
        else:
            out.append(str(p.resolve()))
    if not out:
        raise ValueError("no input files given; pass --files FILE... or --dataset NAME")
    return tuple(out)


def _txt_documents(path: str, mode: str) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:  # universal newlines: \r\n -> \n
        if mode == "file":
            yield f.read()
            return
        block: list[str] = []
        for line in f:
            line = line.rstrip("\n")
            if line.strip():
                block.append(line)
            elif block:
                yield "\n".join(block)
                block = []
        if block:
            yield "\n".join(block)


def _check_text(value: object, where: str, text_field: str, fields: Iterable[str]) -> str:
    if text_field not in fields:
        raise ValueError(f"{where}: no field {text_field!r}; fields found: {sorted(fields)}; pass --text-field")
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {text_field!r} is {type(value).__name__}, not text")  # noqa: TRY004
    return value


def _jsonl_documents(path: str, text_field: str) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg}); fix or remove that line") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object per line")  # noqa: TRY004
            yield _check_text(rec.get(text_field), f"{path}:{lineno}", text_field, rec)


def _parquet_documents(path: str, text_field: str) -> Iterator[str]:
    import pyarrow.parquet as pq  # installed with `datasets`

    pf = pq.ParquetFile(path)
    _check_text("", path, text_field, pf.schema_arrow.names)
    for batch in pf.iter_batches(columns=[text_field], batch_size=1024):
        for i, text in enumerate(batch.column(0).to_pylist()):
            yield _check_text(text, f"{path}: row in batch {i}", text_field, [text_field])


def _hf_documents(cfg: ShardConfig, data_files: object = None) -> Iterator[str]:
    """Stream `cfg.dataset` with `datasets` (nothing is downloaded up front)."""
    from datasets import load_dataset

    ds = load_dataset(cfg.dataset, name=cfg.name, split=cfg.split, streaming=True, data_files=data_files)
    for i, rec in enumerate(ds):
        yield _check_text(rec.get(cfg.text_field), f"{cfg.dataset} record {i}", cfg.text_field, rec)


def iter_documents(cfg: ShardConfig, data_files: object = None) -> Iterator[str]:
    """The document stream of `cfg`, in a fixed order: files in the given order, records in file order."""
    if not cfg.files:
        if not cfg.dataset:
            raise ValueError("no input: pass --files FILE... or --dataset NAME")
        yield from _hf_documents(cfg, data_files)
        return
    for path in cfg.files:
        suffix = Path(path).suffix
        if suffix == ".txt":
            yield from _txt_documents(path, cfg.txt_mode)
        elif suffix == ".jsonl":
            yield from _jsonl_documents(path, cfg.text_field)
        else:
            yield from _parquet_documents(path, cfg.text_field)


# ----------------------------------------------------------------------------- tokenization

_enc = None  # the worker process's tiktoken encoding, set by _init_worker


def _init_worker(encoding: str) -> None:
    global _enc
    import tiktoken

    _enc = tiktoken.get_encoding(encoding)


def tokenize_batch(docs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Documents -> (all their tokens concatenated, uint16; tokens per document, int64).

    One result per batch rather than per document: fewer, larger pickles between processes.
    """
    flat: list[int] = []
    lengths = np.empty(len(docs), dtype=np.int64)
    for i, doc in enumerate(docs):
        toks = _enc.encode_ordinary(doc)
        flat.append(EOT)
        flat += toks
        lengths[i] = len(toks) + 1
    arr = np.asarray(flat, dtype=np.int64)
    # Checked with a raise, not `assert`: casting a too-large id to uint16 would silently wrap.
    if arr.size and (arr.min() < 0 or arr.max() >= 2**16):
        raise ValueError(f"token id {int(arr.max())} does not fit in uint16; this encoding needs wider shards")
    return arr.astype(np.uint16), lengths


def _batches(docs: Iterable[str], max_docs: int = 256, max_chars: int = 1 << 20) -> Iterator[list[str]]:
    batch: list[str] = []
    chars = 0
    for doc in docs:
        batch.append(doc)
        chars += len(doc)
        if len(batch) >= max_docs or chars >= max_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def tokenize_stream(docs: Iterable[str], encoding: str, workers: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """tokenize_batch over batches of `docs`, in order; `workers` > 1 uses a multiprocessing Pool.

    workers=1 tokenizes in this process (no pool), so it is a clean single-core baseline.
    """
    if workers <= 1:
        _init_worker(encoding)
        yield from map(tokenize_batch, _batches(docs))
        return
    import multiprocessing as mp

    # spawn, not fork: a forked child of a process that already runs JAX's or torch's thread pools
    # (a training script, the test suite) can deadlock on a lock held by a thread that was not copied.
    with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(encoding,)) as pool:
        pending: collections.deque = collections.deque()
        for batch in _batches(docs):
            pending.append(pool.apply_async(tokenize_batch, (batch,)))
            if len(pending) >= 4 * workers:  # backpressure: bounded read-ahead, results in order
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


# ----------------------------------------------------------------------------- files


class _HashingWriter:
    """File wrapper that hashes what np.save writes, so the sha256 costs no second read."""

    def __init__(self, f) -> None:
        self.f, self.sha = f, hashlib.sha256()

    def write(self, b: bytes) -> int:
        self.sha.update(b)
        return self.f.write(b)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_shard(path: Path, tokens: np.ndarray) -> str:
    """np.save `tokens` to `path` atomically; returns the file's sha256."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            w = _HashingWriter(f)
            np.save(w, tokens)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old name absent or the full shard
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return w.sha.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def _shard_ok(path: Path, n_tokens: int) -> bool:
    """A listed shard is kept on resume if its file is there, valid, and holds n_tokens."""
    try:
        return path.is_file() and check_shard_file(path) == n_tokens
    except ValueError:
        return False


def save_manifest(out: Path, manifest: dict) -> None:
    tmp = out / f".{MANIFEST}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, out / MANIFEST)


def load_manifest(out: Path) -> dict | None:
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); delete {out} and start over") from None


def check_params(manifest: dict, params: dict, out: Path) -> None:
    """Refuse to resume into `out` if it was made with other parameters, naming each differing field."""
    old = manifest.get("params", {})
    diff = [f"{k}: {old.get(k)!r} there, {params.get(k)!r} now" for k in sorted(set(old) | set(params))
            if old.get(k) != params.get(k)]
    if diff:
        raise ValueError(f"{out} holds shards made with other parameters ({'; '.join(diff)}); "
                         "use another --out, or the original parameters to resume")


def verify_shards(out: Path) -> list[str]:
    """Re-hash every shard listed in the manifest; returns the names whose file is missing or differs."""
    manifest = load_manifest(Path(out))
    if manifest is None:
        raise FileNotFoundError(f"no {MANIFEST} in {out}; is it a shard folder made by scripts/fineweb.py?")
    return [s["name"] for s in manifest["shards"]
            if not (Path(out) / s["name"]).is_file() or file_sha256(Path(out) / s["name"]) != s["sha256"]]


def _prepare_out(out: Path, cfg: ShardConfig) -> dict:
    """Create/check the output folder; returns the manifest to continue from."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create output folder {out} ({e.strerror}); choose another --out") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"output folder {out} is not writable; choose another --out or fix its permissions")
    for stale in out.glob(f".{SHARD_PREFIX}_*.tmp-*"):  # temp files of a killed run: never final names
        stale.unlink()
    params = cfg.params()
    manifest = load_manifest(out)
    if manifest is None:
        if any(out.glob(f"{SHARD_PREFIX}_*.npy")):
            raise ValueError(f"{out} holds {SHARD_PREFIX}_*.npy shards but no {MANIFEST}; use an empty --out")
        return {"format": MANIFEST_FORMAT, "params": params, "complete": False, "documents": None, "shards": []}
    check_params(manifest, params, out)
    # Keep the finished shards whose file is still there with the right size; redo from the first that is not.
    kept = []
    for s in manifest["shards"]:
        if not _shard_ok(out / s["name"], s["tokens"]):
            manifest["complete"] = False
            break
        kept.append(s)
    manifest["shards"] = kept
    return manifest


# ----------------------------------------------------------------------------- driver


@dataclass
class ShardRunSummary:
    """What build_shards did; tokens_per_s counts only tokens tokenized in this run."""

    out: Path
    shards: int  # shards in the folder (val + train)
    shards_written: int  # of which written by this run
    tokens: int  # tokens in all shards
    tokens_written: int
    documents: int
    seconds: float
    tokens_per_s: float
    resumed: bool = False
    names: list[str] = field(default_factory=list)


def build_shards(cfg: ShardConfig, out: str | Path, workers: int = 1, progress: bool = True,
                 on_shard: Callable[[dict], None] | None = None, data_files: object = None) -> ShardRunSummary:
    """Tokenize `cfg`'s documents into shards under `out`, resuming whatever a previous run finished.

    `on_shard(entry)` is called after each shard and the manifest are committed (tests use it to
    simulate an interruption). `data_files` is passed to `datasets.load_dataset` (HF path only).
    """
    if cfg.shard_size < 1:
        raise ValueError(f"--shard-size must be a positive number of tokens, got {cfg.shard_size}")
    if cfg.txt_mode not in ("blank-line", "file"):
        raise ValueError(f"--txt-mode must be 'blank-line' or 'file', got {cfg.txt_mode!r}")
    out = Path(out)
    manifest = _prepare_out(out, cfg)
    done = manifest["shards"]
    total_done = sum(s["tokens"] for s in done)
    if manifest["complete"]:
        return ShardRunSummary(out, len(done), 0, total_done, 0, manifest["documents"], 0.0, 0.0, True,
                               [s["name"] for s in done])
    start_doc, start_off = (done[-1]["next_doc"], done[-1]["next_offset"]) if done else (0, 0)
    n_kept = len(done)

    from tqdm import tqdm

    bar = tqdm(total=None, initial=total_done, unit="tok", unit_scale=True, disable=not progress,
               desc=f"shards -> {out}", dynamic_ncols=True)
    buf = np.empty(cfg.shard_size, dtype=np.uint16)
    fill, written, n_docs, t0 = 0, 0, start_doc, time.perf_counter()

    def commit(n: int, next_doc: int, next_offset: int) -> None:
        name = shard_name(len(done))
        sha = write_shard(out / name, buf[:n])
        entry = {"name": name, "split": "val" if not done else "train", "tokens": n, "sha256": sha,
                 "next_doc": next_doc, "next_offset": next_offset}
        done.append(entry)
        save_manifest(out, manifest)  # after the rename: a listed shard is always a complete file
        bar.set_postfix(shards=len(done))
        if on_shard is not None:
            on_shard(entry)

    docs = itertools.islice(iter_documents(cfg, data_files), start_doc, None)  # skipped, not tokenized
    try:
        for flat, lengths in tokenize_stream(docs, cfg.encoding, workers):
            ends = np.cumsum(lengths)
            pos = start_off if n_docs == start_doc else 0  # resume mid-document: drop what is already written
            bar.update(len(flat) - pos)
            written += len(flat) - pos
            while pos < len(flat):
                take = min(cfg.shard_size - fill, len(flat) - pos)
                buf[fill:fill + take] = flat[pos:pos + take]
                fill, pos = fill + take, pos + take
                if fill == cfg.shard_size:
                    # Stream position after this shard: the document holding token `pos` and the offset in it.
                    d = int(np.searchsorted(ends, pos, side="right"))
                    off = 0 if d == len(ends) else pos - int(ends[d - 1] if d else 0)
                    commit(fill, n_docs + d, off)
                    fill = 0
            n_docs += len(lengths)
        if n_docs == 0:
            raise ValueError("the input holds no documents; check --files / --dataset")
        if fill:
            commit(fill, n_docs, 0)
    finally:
        bar.close()
    manifest["complete"], manifest["documents"] = True, n_docs
    save_manifest(out, manifest)
    dt = time.perf_counter() - t0
    return ShardRunSummary(out, len(done), len(done) - n_kept, sum(s["tokens"] for s in done), written,
                           n_docs, dt, written / max(dt, 1e-9), n_kept > 0, [s["name"] for s in done])
