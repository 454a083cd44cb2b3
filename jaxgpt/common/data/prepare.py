"""Text corpus -> uint16 token shards + manifest.json: the one data preparation of both GPT stages.

Reference: karpathy/build-nanogpt `fineweb.py`, whose output this reproduces by default: every
document is prefixed with the document separator (<|endoftext|>, 50256) and encoded with tiktoken
`gpt2` (`encode_ordinary`: a literal "<|endoftext|>" inside a text is plain text); the stream is cut
every `shard_size` tokens; shard 0 is `edufineweb_val_000000.npy`, the rest
`edufineweb_train_{i:06d}.npy`; each an `np.save` of a 1-D uint16 array (the last one shorter).
So shards of either tool work with the other's loader.

What we add:
- **Any tokenizer**: `tokenizer="gpt2"` (any tiktoken encoding of <= 65,536 ids), a `.model` of our
  BPE (copied into the folder as tokenizer.model), or `train_tokenizer=V`: our BPE trained with V
  ids on the TRAIN documents only, saved into the folder first (the poetry stage's flow).
- **A document-level val split** (`val_fraction > 0`): a seeded permutation picks the val
  documents (at least one on each side) and orders both splits (a sorted corpus is not read author
  by author); val and train are then two streams of whole documents,
  `{prefix}_val_{i:06d}.npy` and `{prefix}_train_{i:06d}.npy`. Needs the documents in memory: for
  corpora like the poetry one; FineWeb uses the default "first shard is val".
- **manifest.json**: the parameters (with each input file's size and CRC-32), the tokenizer
  (`TokenizerInfo`, with the sha256 of a .model file), per shard its tokens, documents, UTF-8
  bytes, sha256 and the stream position after it, and per split the totals (tokens, documents, bytes: what bits per byte needs). A document's bytes are
  its UTF-8 length + 1 (the separator stands for one newline's worth of text); a document cut by
  a shard boundary lends its shards floor(bytes x tokens-so-far / tokens) of them, exactly.
- **Atomic writes and resume**: a shard is written to a temp file, fsynced, then renamed; the
  manifest is rewritten after each shard. Re-running the same command refuses a folder made from
  other input (an input file whose size or CRC-32 changed, another tokenizer), keeps the finished
  shards (re-checked against their size and sha256; from the first that fails on, everything is
  rewritten), skips the documents they cover without tokenizing them, and writes byte-identical
  shards: their bytes depend only on the documents, the tokenizer and
  `shard_size`, never on `workers` or on where a run stopped.
- Bounded read-ahead: at most a few batches of documents are in flight.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jaxgpt.common.data.codec import TOKENIZER_FILE, Codec, TokenizerInfo, file_sha256, open_tokenizer
from jaxgpt.common.data.documents import DocSource, iter_documents, open_hf_dataset, record_text
from jaxgpt.common.data.loader import check_shard_file

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 2
SPLITS = ("train", "val")


@dataclass(frozen=True)
class PrepareConfig:
    """Everything that determines the shard bytes; stored in the manifest and checked on resume."""

    source: DocSource
    tokenizer: str = "gpt2"  # tiktoken encoding name, or a .model file of ours
    train_tokenizer: int = 0  # > 0: train our BPE with this many ids on the train documents (needs val_fraction)
    pattern: str = "gpt4"  # split pattern of a trained tokenizer (gpt2, gpt4, none or a regex)
    val_fraction: float = 0.0  # > 0: share of documents held out for val (seeded); 0: shard 0 is val
    split_seed: int = 0  # seed of the val split
    shard_size: int = 100_000_000  # tokens per shard (1e8 as build-nanogpt: 200 MB per shard)
    prefix: str = "edufineweb"  # shard names {prefix}_{split}_{index:06d}.npy (build-nanogpt's)

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ValueError(f"--shard_size must be a positive number of tokens, got {self.shard_size}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"--val_fraction={self.val_fraction} must be in [0, 1)")
        if self.train_tokenizer and not self.val_fraction:
            raise ValueError("--train_tokenizer needs --val_fraction > 0: the tokenizer is trained on the train "
                             "documents only, which are known only with a document-level split")
        if not self.prefix or "_" in self.prefix or "/" in self.prefix:
            raise ValueError(f"--prefix={self.prefix!r} must be non-empty, without '_' or '/'")

    def params(self) -> dict:
        """The manifest's `params`: the config plus each input file's fingerprint (a changed input must not resume)."""
        p = asdict(self)
        p["source"]["files"] = [input_fingerprint(f) for f in self.source.files]
        if self.train_tokenizer:
            p["tokenizer"] = None  # trained here: pattern and vocab size say which
        elif Path(self.tokenizer).is_file():
            p["tokenizer"] = {"file": self.tokenizer, "sha256": file_sha256(self.tokenizer)}
        return p


def input_fingerprint(path: str) -> dict:
    """An input file's path, size and CRC-32 of its content (jaxgpt/common/checkpoint.py `file_crc32`: the fastest
    hash measured here, ~0.5 s/GB; it catches an edit that keeps the size, which the size alone did not)."""
    from jaxgpt.common.checkpoint import file_crc32

    return {"path": path, "bytes": os.path.getsize(path), "crc32": file_crc32(Path(path))}


def changed_inputs(recorded: list[dict], now: list[dict] | None = None) -> list[str]:
    """The recorded input files that are gone or differ from `now` (default: fingerprinted again), as
    'PATH (what changed)'. Only the recorded keys are compared (manifests before content hashes hold sizes)."""
    problems = []
    for i, entry in enumerate(recorded):
        path = entry.get("path", "?")
        if now is None and not Path(path).is_file():
            problems.append(f"{path} (missing)")
            continue
        new = input_fingerprint(path) if now is None else now[i]
        diffs = [f"{k} {entry[k]} -> {new[k]}" for k in ("bytes", "crc32") if k in entry and entry[k] != new[k]]
        if diffs:
            problems.append(f"{path} ({', '.join(diffs)})")
    return problems


def shard_name(prefix: str, split: str, index: int) -> str:
    return f"{prefix}_{split}_{index:06d}.npy"


def split_documents(docs: Sequence[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic (train, val) split by document: a seeded permutation of the documents, the first
    round(n x fraction) of it val (at least one on each side), the rest train, both in that permuted order.

    The order matters for training: a corpus is often sorted (poems.txt is by author), and the shards
    are read in order, so writing the documents in a random order makes every stretch of the stream a
    sample of the whole corpus (what random windows gave before), with or without the loader's shuffles.
    """
    n = len(docs)
    if n < 2:
        raise ValueError(f"need at least 2 documents to split into train and val, got {n}")
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    order = np.random.default_rng(seed).permutation(n)
    return [docs[i] for i in order[n_val:]], [docs[i] for i in order[:n_val]]


def train_bpe_tokenizer(docs: Sequence[str], vocab_size: int, pattern: str, verbose: bool = False) -> Any:
    """Our byte-level BPE trained on `docs`, with <|endoftext|> (the separator) as its last id."""
    from jaxgpt.common.data.codec import EOT_TOKEN
    from jaxgpt.common.tokenizer import RegexTokenizer

    tok = RegexTokenizer(pattern)
    tok.register_special_tokens([EOT_TOKEN])
    tok.train(list(docs), vocab_size=vocab_size, verbose=verbose)
    return tok


# ----------------------------------------------------------------------------- tokenization

_codec: Codec | None = None  # the worker process's tokenizer, set by _init_worker


def _init_worker(spec: str) -> None:
    global _codec
    _codec = open_tokenizer(spec)


def tokenize_batch(docs: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Documents -> (their tokens, each prefixed with the separator, uint16; tokens per document; bytes per document).

    One result per batch rather than per document: fewer, larger pickles between processes.
    """
    flat: list[int] = []
    lengths = np.empty(len(docs), dtype=np.int64)
    nbytes = np.empty(len(docs), dtype=np.int64)
    for i, doc in enumerate(docs):
        toks = _codec.encode_ordinary(doc)
        flat.append(_codec.eot_id)
        flat += toks
        lengths[i] = len(toks) + 1
        nbytes[i] = len(doc.encode("utf-8", "surrogatepass")) + 1  # + the separator's byte
    arr = np.asarray(flat, dtype=np.int64)
    # Checked with a raise, not `assert`: casting a too-large id to uint16 would silently wrap.
    if arr.size and (arr.min() < 0 or arr.max() >= 2**16):
        raise ValueError(f"token id {int(arr.max())} does not fit in uint16; this tokenizer needs wider shards")
    return arr.astype(np.uint16), lengths, nbytes


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


def tokenize_stream(docs: Iterable[str], spec: str, workers: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """tokenize_batch over batches of `docs`, in order; `workers` > 1 uses a multiprocessing Pool.

    workers=1 tokenizes in this process (no pool), so it is a clean single-core baseline.
    """
    if workers <= 1:
        _init_worker(spec)
        yield from map(tokenize_batch, _batches(docs))
        return
    import multiprocessing as mp

    # spawn, not fork: a forked child of a process that already runs JAX's or torch's thread pools
    # (a training script, the test suite) can deadlock on a lock held by a thread that was not copied.
    with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(spec,)) as pool:
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


def _atomic_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def save_manifest(out: Path, manifest: dict) -> None:
    tmp = out / f".{MANIFEST}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, out / MANIFEST)


def load_manifest(out: str | Path) -> dict | None:
    """The folder's manifest.json, None when there is none; a malformed one is a ValueError."""
    path = Path(out) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); delete {out} and prepare the data again") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards", []), list):
        raise ValueError(f"{path} is not a manifest of scripts/prepare_data.py; use another --out")
    return manifest


def check_params(manifest: dict, params: dict, out: Path) -> None:
    """Refuse to resume into `out` if it was made with other parameters, naming each differing field."""
    from jaxgpt.common.checkpoint import config_diff

    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{out} holds shards of an older data format (manifest format "
                         f"{manifest.get('format')!r}, not {MANIFEST_FORMAT}); use another --out")
    recorded = manifest.get("params", {})
    files = (recorded.get("source") or {}).get("files") or []
    if [f.get("path") for f in files] == [f["path"] for f in params["source"]["files"]]:
        changed = changed_inputs(files, params["source"]["files"])
        if changed:
            raise ValueError(f"{out} was made from other input: {'; '.join(changed)} changed since its shards were "
                             f"written; prepare into a new --out, or delete {out} to start it again")
        # The inputs are the recorded ones: compare the rest (a manifest older than content hashes has sizes only).
        recorded = {**recorded, "source": {**recorded["source"], "files": params["source"]["files"]}}
    diff = config_diff(recorded, json.loads(json.dumps(params)))
    if diff:
        raise ValueError(f"{out} holds shards made with other parameters ({'; '.join(diff)}); "
                         "use another --out, or the original parameters to resume")


def _manifest_of(out: str | Path) -> dict:
    manifest = load_manifest(Path(out))
    if manifest is None:
        raise FileNotFoundError(f"no {MANIFEST} in {out}; is it a folder made by scripts/prepare_data.py?")
    return manifest


def verify_shards(out: str | Path) -> list[str]:
    """Re-hash every shard listed in the manifest; returns the names whose file is missing or differs."""
    return [s["name"] for s in _manifest_of(out)["shards"] if not _shard_ok(Path(out) / s["name"], s)]


def verify_inputs(out: str | Path) -> list[str]:
    """The input files recorded in the manifest that are missing or changed since ('PATH (what changed)')."""
    return changed_inputs(((_manifest_of(out).get("params") or {}).get("source") or {}).get("files") or [])


def _shard_ok(path: Path, entry: dict) -> bool:
    """A listed shard is kept on resume if its file is there, valid, holds its tokens and matches its sha256."""
    try:
        return (path.is_file() and check_shard_file(path) == entry["tokens"]
                and file_sha256(path) == entry["sha256"])
    except ValueError:
        return False


def _prepare_out(out: Path, cfg: PrepareConfig) -> dict:
    """Create/check the output folder; returns the manifest to continue from."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create output folder {out} ({e.strerror}); choose another --out") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"output folder {out} is not writable; choose another --out or fix its permissions")
    for stale in out.glob(".*.tmp-*"):  # temp files of a killed run: never final names
        stale.unlink()
    params = cfg.params()
    manifest = load_manifest(out)
    if manifest is None:
        if any(out.glob("*.npy")):
            raise ValueError(f"{out} holds .npy shards but no {MANIFEST}; use an empty --out")
        return {"format": MANIFEST_FORMAT, "params": params, "tokenizer": None, "complete": False, "shards": [],
                "splits": {}}
    check_params(manifest, params, out)
    return manifest


# ----------------------------------------------------------------------------- driver


@dataclass
class PrepareSummary:
    """What prepare() did; tokens_per_s counts only tokens tokenized in this run."""

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
    splits: dict = field(default_factory=dict)
    tokenizer: dict = field(default_factory=dict)


def _cumulative_bytes(p: int, ends: np.ndarray, lengths: np.ndarray, nbytes: np.ndarray,
                      before: np.ndarray) -> int:
    """UTF-8 bytes of the batch's tokens [0, p): whole documents, plus floor(B x k / L) of a document cut after k."""
    d = int(np.searchsorted(ends, p, side="right"))
    if d == len(ends):
        return int(before[-1] + nbytes[-1]) if len(ends) else 0
    k = p - int(ends[d - 1] if d else 0)
    return int(before[d]) + int(nbytes[d]) * k // int(lengths[d])


class _Replay:
    """Documents by count: a resume skips (reads, but does not tokenize) those the kept shards cover."""

    def __init__(self, docs: Iterable[str]) -> None:
        self.docs = docs

    def documents(self, start_doc: int, state: dict | None) -> Iterator[str]:
        return itertools.islice(self.docs, start_doc, None)

    def state_at(self, doc: int) -> dict | None:
        return None


class ResumableStream:
    """A streamed dataset's documents from any shard boundary, without reading anything before it.

    After each record it keeps `datasets`' IterableDataset.state_dict() (which file of the dataset, which
    record in it): the state "before document i" for each document in flight. The writer stores the
    state at each shard's end in the manifest (`stream_state`), and a resumed run hands it to
    load_state_dict() instead of reading the stream again from its first record: with FineWeb-Edu's
    parquet files, the files the finished shards came from are not downloaded again. A manifest
    without states (older versions) resumes by count, reading the stream up to its position.
    """

    def __init__(self, src: DocSource, data_files: Any = None) -> None:
        self.src, self.data_files = src, data_files
        self.states: dict[int, dict] = {}  # document index -> the dataset's state before it
        self.read = 0  # records read from the dataset by this run (tests: a resume reads only the rest)

    def documents(self, start_doc: int, state: dict | None) -> Iterator[str]:
        ds = open_hf_dataset(self.src, self.data_files)
        text = record_text(self.src)
        first = 0
        if start_doc and state is not None:
            ds.load_state_dict(state)
            first = start_doc
        for i, rec in enumerate(ds, start=first):
            self.read += 1
            if i < start_doc:
                continue
            self.states[i + 1] = ds.state_dict()  # what resumes at the next record
            yield text(rec, i)

    def state_at(self, doc: int) -> dict | None:
        """The state before document `doc` (a shard's end); the states of earlier documents are dropped."""
        state = self.states.get(doc)
        for i in [i for i in self.states if i <= doc]:
            del self.states[i]
        return state


class _StreamWriter:
    """One token stream -> consecutive shards `name(i)`, committed to the manifest one by one."""

    def __init__(self, out: Path, manifest: dict, stream: str, cfg: PrepareConfig, eot: int,
                 on_shard: Callable[[dict], None] | None, bar: Any) -> None:
        self.out, self.manifest, self.stream, self.cfg, self.eot = out, manifest, stream, cfg, eot
        self.on_shard, self.bar = on_shard, bar
        # Keep the finished shards whose file is still there, intact (sha256); redo from the first that is not.
        mine = [s for s in manifest["shards"] if s["stream"] == stream]
        kept = []
        for s in mine:
            if not _shard_ok(out / s["name"], s):
                break
            kept.append(s)
        manifest["shards"] = [s for s in manifest["shards"] if s["stream"] != stream] + kept
        self.done = kept
        self.complete = manifest.get("complete_streams", {}).get(stream, False) and len(kept) == len(mine)
        self.buf = np.empty(cfg.shard_size, dtype=np.uint16)
        self.fill = self.fill_bytes = 0
        self.written = self.shards_written = 0  # tokens and shards written by this run

    def split_of(self, index: int) -> str:
        """Stream "all" (build-nanogpt's layout): shard 0 is val, the rest train; else the stream is the split."""
        if self.stream == "all":
            return "val" if index == 0 else "train"
        return self.stream

    def name_of(self, index: int) -> str:
        return shard_name(self.cfg.prefix, self.split_of(index), index)

    def commit(self, next_doc: int, next_offset: int, state: dict | None = None) -> None:
        n, index = self.fill, len(self.done)
        name = self.name_of(index)
        sha = write_shard(self.out / name, self.buf[:n])
        entry = {"name": name, "stream": self.stream, "split": self.split_of(index), "tokens": n,
                 "documents": int(np.count_nonzero(self.buf[:n] == self.eot)), "bytes": self.fill_bytes,
                 "sha256": sha, "next_doc": next_doc, "next_offset": next_offset}
        if state is not None:  # where a resumed download continues (ResumableStream)
            entry["stream_state"] = state
        self.done.append(entry)
        self.shards_written += 1
        self.manifest["shards"].append(entry)
        save_manifest(self.out, self.manifest)  # after the rename: a listed shard is always a complete file
        self.bar.set_postfix(shards=len(self.manifest["shards"]))
        self.fill = self.fill_bytes = 0
        if self.on_shard is not None:
            self.on_shard(entry)

    def write(self, source: _Replay | ResumableStream, spec: str, workers: int) -> int:
        """Tokenize and write the stream from where the kept shards end; returns the number of documents."""
        self.manifest.setdefault("complete_streams", {})[self.stream] = False  # saved with the first shard
        start_doc, start_off = (self.done[-1]["next_doc"], self.done[-1]["next_offset"]) if self.done else (0, 0)
        n_docs = start_doc
        docs = source.documents(start_doc, self.done[-1].get("stream_state") if self.done else None)
        for flat, lengths, nbytes in tokenize_stream(docs, spec, workers):
            ends = np.cumsum(lengths)
            before = np.concatenate([[0], np.cumsum(nbytes)[:-1]])  # bytes of the batch's whole documents before each
            pos = start_off if n_docs == start_doc else 0  # resume mid-document: drop what is already written
            self.bar.update(len(flat) - pos)
            self.written += len(flat) - pos
            while pos < len(flat):
                take = min(self.cfg.shard_size - self.fill, len(flat) - pos)
                self.buf[self.fill:self.fill + take] = flat[pos:pos + take]
                self.fill_bytes += (_cumulative_bytes(pos + take, ends, lengths, nbytes, before)
                                    - _cumulative_bytes(pos, ends, lengths, nbytes, before))
                self.fill, pos = self.fill + take, pos + take
                if self.fill == self.cfg.shard_size:
                    # Stream position after this shard: the document holding token `pos` and the offset in it.
                    d = int(np.searchsorted(ends, pos, side="right"))
                    off = 0 if d == len(ends) else pos - int(ends[d - 1] if d else 0)
                    self.commit(n_docs + d, off, source.state_at(n_docs + d))
            n_docs += len(lengths)
        if n_docs == 0:
            what = "" if self.stream == "all" else f" for the {self.stream} split"
            raise ValueError(f"the input holds no documents{what}; check --files / --dataset")
        if self.fill:
            self.commit(n_docs, 0)
        self.manifest.setdefault("complete_streams", {})[self.stream] = True
        save_manifest(self.out, self.manifest)
        return n_docs


def _tokenizer(cfg: PrepareConfig, out: Path, manifest: dict, train_docs: Sequence[str] | None,
               log: Callable[[str], None]) -> tuple[TokenizerInfo, str]:
    """(the folder's tokenizer record, the spec workers open): tiktoken by name, or DATA/tokenizer.model."""
    local = out / TOKENIZER_FILE
    if cfg.train_tokenizer:
        recorded = manifest.get("tokenizer")
        if recorded and local.is_file() and file_sha256(local) == recorded["sha256"]:
            return TokenizerInfo.from_dict(recorded, str(out / MANIFEST)), str(local)  # trained by an earlier run
        log(f"training our BPE tokenizer ({cfg.train_tokenizer} ids, pattern {cfg.pattern}) on "
            f"{len(train_docs):,} train documents ...")
        tok = train_bpe_tokenizer(train_docs, cfg.train_tokenizer, cfg.pattern)
        tmp = out / ".tokenizer.tmp"
        tok.save(tmp)  # writes .tokenizer.tmp.model + .vocab, renamed into place
        os.replace(tmp.with_suffix(".tmp.vocab"), out / "tokenizer.vocab")
        os.replace(tmp.with_suffix(".tmp.model"), local)
    elif Path(cfg.tokenizer).is_file() or cfg.tokenizer.endswith(".model"):
        codec = open_tokenizer(cfg.tokenizer)  # validates it before anything is copied
        _atomic_copy(Path(cfg.tokenizer), local)
        vocab = Path(cfg.tokenizer).with_suffix(".vocab")
        if vocab.is_file():
            _atomic_copy(vocab, out / "tokenizer.vocab")
        return TokenizerInfo(**{**codec.info.to_dict(), "sha256": file_sha256(local)}), str(local)
    else:
        return open_tokenizer(cfg.tokenizer).info, cfg.tokenizer
    info = open_tokenizer(str(local)).info
    return TokenizerInfo(**{**info.to_dict(), "name": f"trained ({cfg.train_tokenizer} ids)"}), str(local)


def prepare(cfg: PrepareConfig, out: str | Path, workers: int = 1, progress: bool = True,
            on_shard: Callable[[dict], None] | None = None, data_files: Any = None,
            log: Callable[[str], None] = print) -> PrepareSummary:
    """Tokenize cfg's documents into shards under `out`, resuming whatever a previous run finished.

    `on_shard(entry)` is called after each shard and the manifest are committed (tests use it to
    simulate an interruption). `data_files` is passed to `datasets.load_dataset` (HF path only).
    """
    out = Path(out)
    manifest = _prepare_out(out, cfg)
    t0 = time.perf_counter()
    if cfg.val_fraction:
        docs = list(iter_documents(cfg.source, data_files=data_files))
        train_docs, val_docs = split_documents(docs, cfg.val_fraction, cfg.split_seed)
        streams = [("val", _Replay(val_docs)), ("train", _Replay(train_docs))]
    else:
        train_docs = None
        src = cfg.source
        streams = [("all", _Replay(iter_documents(src)) if src.files else ResumableStream(src, data_files))]
    manifest["complete"] = False  # until every stream is written (saved with the tokenizer record below)
    info, spec = _tokenizer(cfg, out, manifest, train_docs, log)
    if manifest["tokenizer"] not in (None, info.to_dict()):
        raise ValueError(f"{out} holds shards made with another tokenizer ({manifest['tokenizer']}); use another --out")
    manifest["tokenizer"] = info.to_dict()
    save_manifest(out, manifest)

    from tqdm import tqdm

    bar = tqdm(total=None, initial=sum(s["tokens"] for s in manifest["shards"]), unit="tok", unit_scale=True,
               disable=not progress, desc=f"shards -> {out}", dynamic_ncols=True)
    written = n_docs = n_kept = new_shards = 0
    try:
        for stream, docs in streams:
            w = _StreamWriter(out, manifest, stream, cfg, info.eot_id, on_shard, bar)
            n_kept += len(w.done)
            if w.complete:
                n_docs += manifest["stream_documents"][stream]
                continue
            n = w.write(docs, spec, workers)
            manifest.setdefault("stream_documents", {})[stream] = n
            written, n_docs, new_shards = written + w.written, n_docs + n, new_shards + w.shards_written
    finally:
        bar.close()
    rank = {name: i for i, (name, _) in enumerate(streams)}  # a rewritten shard goes back to its place
    manifest["shards"].sort(key=lambda s: (rank[s["stream"]], int(s["name"][-10:-4])))  # by shard index
    manifest["splits"] = {split: {k: sum(s[k] for s in manifest["shards"] if s["split"] == split)
                                  for k in ("tokens", "documents", "bytes")} | {
                              "shards": sum(s["split"] == split for s in manifest["shards"])} for split in SPLITS}
    manifest["complete"] = True
    save_manifest(out, manifest)
    dt = time.perf_counter() - t0
    shards = manifest["shards"]
    return PrepareSummary(out, len(shards), new_shards, sum(s["tokens"] for s in shards), written, n_docs,
                          dt, written / max(dt, 1e-9), n_kept > 0, [s["name"] for s in shards], manifest["splits"],
                          manifest["tokenizer"])


# ----------------------------------------------------------------------------- reading a folder


@dataclass(frozen=True)
class DataInfo:
    """What training needs to know about a data folder (from its manifest, if it has one)."""

    path: Path
    tokenizer: TokenizerInfo | None  # None: no manifest (e.g. build-nanogpt's own shards)
    splits: dict  # {"train": {"tokens", "documents", "bytes", "shards"}, "val": {...}}; {} without a manifest

    def bytes_per_token(self, split: str) -> float | None:
        s = self.splits.get(split)
        return s["bytes"] / s["tokens"] if s and s.get("tokens") and s.get("bytes") else None


def read_data_info(data_dir: str | Path) -> DataInfo:
    """The folder's DataInfo; an incomplete or foreign manifest is a ValueError saying what to do."""
    path = Path(data_dir)
    manifest = load_manifest(path)
    if manifest is None:
        return DataInfo(path, None, {})
    where = str(path / MANIFEST)
    if manifest.get("format") != MANIFEST_FORMAT or not manifest.get("tokenizer"):
        raise ValueError(f"{where} is of an older format (no tokenizer record); re-create {path} with "
                         "scripts/prepare_data.py (its shards are still valid build-nanogpt shards without it)")
    if not manifest.get("complete"):
        raise ValueError(f"{path} is incomplete (the preparation was interrupted); re-run the same "
                         "scripts/prepare_data.py command to finish it")
    return DataInfo(path, TokenizerInfo.from_dict(manifest["tokenizer"], where), manifest.get("splits", {}))


# ----------------------------------------------------------------------------- the command line


def _cpu_seconds() -> tuple[float, float]:
    """(user + system) CPU seconds of this process and of its finished child processes (the pool)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def main(out: str, files: Sequence[str] | None = None, dataset: str = "HuggingFaceFW/fineweb-edu",
         name: str | None = "sample-10BT", split: str = "train", text_field: str = "", txt_mode: str = "blank-line",
         tokenizer: str = "gpt2", train_tokenizer: int = 0, pattern: str = "gpt4", val_fraction: float = 0.0,
         split_seed: int = 0, shard_size: int = 100_000_000, prefix: str = "edufineweb", workers: int = 1,
         verify: bool = False) -> int:
    """scripts/prepare_data.py: prepare (or --verify) a folder, print what was done; exit code 0 or 1."""
    from jaxgpt.common.data.documents import expand_files

    try:
        if verify:
            changed, bad = verify_inputs(out), verify_shards(out)
            if changed:
                print(f"error: the input of {out} changed since its shards were made: {'; '.join(changed)}; prepare "
                      f"the changed input into a new --out", file=sys.stderr)
            if bad:
                print(f"error: {len(bad)} shard(s) missing or with a wrong sha256: {bad}; re-run the same command "
                      "to rewrite them", file=sys.stderr)
            if changed or bad:
                return 1
            print(f"all shards in {out} match the manifest, and its input files their fingerprints")
            return 0
        if workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}")
        paths = expand_files(files) if files else ()
        source = DocSource(files=paths, dataset=None if paths else dataset, name=None if paths else name,
                           split=split, text_field=text_field, txt_mode=txt_mode)
        cfg = PrepareConfig(source, tokenizer, train_tokenizer, pattern, val_fraction, split_seed, shard_size, prefix)
        load = os.getloadavg()[0]
        cpu0 = _cpu_seconds()
        s = prepare(cfg, out, workers=workers, progress=True)
        cpu = [b - a for a, b in zip(cpu0, _cpu_seconds())]
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    tok = s.tokenizer
    if s.shards_written == 0 and s.resumed:
        print(f"{s.out}: already complete ({s.shards} shards, {s.tokens:,} tokens); nothing to do")
        return 0
    print(f"{'resumed: ' if s.resumed else ''}wrote {s.shards_written} shard(s) in {s.seconds:.1f} s, "
          f"{s.tokens_written:,} tokens at {s.tokens_per_s:,.0f} tokens/s ({workers} worker(s))")
    # CPU time per token tells a slow pipeline from a busy machine: it stays flat when workers are
    # added unless the parallel overhead grows, while tokens/s also depends on the cores we get.
    print(f"CPU {cpu[0]:.2f} s in this process + {cpu[1]:.2f} s in worker processes = "
          f"{1e9 * sum(cpu) / max(s.tokens_written, 1):.0f} ns/token, {sum(cpu) / max(s.seconds, 1e-9):.2f} cores "
          f"busy on average; load average {load:.2f} at the start")
    print(f"tokenizer {tok['name']} ({tok['kind']}, {tok['vocab_size']} ids, separator {tok['eot_token']} = "
          f"{tok['eot_id']})")
    for sp in SPLITS:
        t = s.splits[sp]
        print(f"{sp}: {t['shards']} shard(s), {t['tokens']:,} tokens, {t['documents']:,} documents, "
              f"{t['bytes']:,} bytes ({t['bytes'] / max(t['tokens'], 1):.3f} bytes/token)")
    if not s.splits["train"]["shards"]:
        print("note: everything fit in the val shard, so there are no train shards; use a smaller --shard_size")
    return 0
