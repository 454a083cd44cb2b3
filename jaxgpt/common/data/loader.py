"""Framework-free training batches (numpy int32), shared by the JAX and the torch training loops.

Two sources with one interface (`BatchSource`: `next_batch`, `state`, `load_state`), and a wrapper
that reads either of them ahead in a background thread (`Prefetcher`).

The shard stream (`ShardLoader`). Memory-mapped uint16 `.npy` shards of a folder (scripts/prepare_data.py
output, or build-nanogpt's) are read one after another, like build-nanogpt's `DataLoaderLite`. A
step's global batch is B*T*num_processes consecutive tokens (+1 for the targets) starting at
`position` in the current shard's stream; process p takes tokens
[position + p*B*T, position + (p+1)*B*T + 1), so processes read disjoint slices and together exactly
what one process with num_processes*B rows would read. Unlike DataLoaderLite, the decision to move
to the next shard is made on the global position, so all processes switch shards at the same step;
the tail of a shard too short for one more global batch is not read. A shard too short for one
global batch is skipped (with a warning).

Order. Two independent, seeded, per-epoch shuffles, both off by default (validation must stay in
file order):
- `shuffle_seed`: the order of the shards in epoch e is a permutation drawn from (seed, e);
- `doc_shuffle_seed`: inside each shard, the documents are permuted, drawn from (seed, e, shard),
  and the shard's stream is its documents concatenated in that order. A document starts at an
  `eot_id` token (GPT-2's <|endoftext|> = 50256 by default; our own BPE data has another id) and
  runs to the next one; a shard that begins mid-document (scripts/prepare_data.py cuts the token stream
  every shard_size tokens) has that leading fragment as a document of its own. The stream has the
  shard's length, so positions, shard switches and batch counts are those of the unshuffled stream.
llm.c shuffles inside a shard too, but it permutes fixed-size global-batch samples with an RNG it
does not save; we permute documents, and every permutation is recomputed from (seed, epoch, shard),
so a state of three integers resumes it exactly. The permuted shard is never copied: a `DocOrder`
keeps one source offset and one stream offset per document (~1e5 documents in a 1e8-token FineWeb-Edu
shard: ~2 MB, against 200 MB for a permuted copy), and a batch gathers the spans it covers.

State. `state()` is a small JSON-able dict, identical on every process: epoch, shard (index in the
epoch's order), position (in the shard's stream), the shard's name and the settings that define the
stream (seeds, eot_id, number of shards, tokens per global step). `load_state()` checks the settings
and continues exactly; a state saved with P processes of B rows loads into P' processes of B' rows
when P*B == P'*B'.

Prefetching. `Prefetcher(loader, depth=2)` runs `loader.next_batch()` in a daemon thread, up to
`depth` batches ahead, and hands the consumer the same batches in the same order. Its `state()` is
the state the synchronous loader had after the batch the consumer last received (the thread
records it with every batch), never the read-ahead position. As soon as the loader enters a shard,
a second thread scans the next one (`prepare_next_shard`: token-id check, document index), while
the reader goes on producing batches, so the switch to a 1e8-token shard (~0.2 s of scanning) no
longer stalls a step, and the shard's pages are in the page cache by then. An error is raised in the
consumer at the batch where the synchronous loader raises it (a background scan that fails is
redone at the switch, which raises).

Validation. On construction every shard's header is read: a non-.npy file, a dtype other than
uint16, a shape other than 1-D, or a file size that disagrees with the header (truncated or with
trailing bytes) raises ValueError naming the file. Token ids are checked against `vocab_size`
over the FULL shard (not a sample), by default the first time each shard is opened
(`check_tokens="open"`): one pass over memory that we read anyway for training (~0.1 s per 1e8
tokens). `"eager"` checks every shard at construction, `"none"` skips the check.

`TokenArrayLoader`: one in-memory 1-D token array (the poetry stage), random windows as nanoGPT's
`get_batch`, drawn from a seeded numpy Generator whose state is saved.
"""

from __future__ import annotations

import copy
import queue
import threading
import warnings
import weakref
from collections import OrderedDict
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

import numpy as np

GPT2_EOT = 50256  # <|endoftext|> in the gpt2 encoding: scripts/prepare_data.py puts it before every document
_SCAN_CHUNK = 1 << 24  # tokens per pass of a shard scan: bounds its temporaries (~32 MB) on 1e8-token shards
_INDEX_CACHE = 3  # shards whose document index is kept: the current, the next (prefetched) and one spare


class BatchSource(Protocol):
    """What a training loop needs from a data source (both frameworks)."""

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]: ...  # x, y: int32 (B, T)

    def state(self) -> dict: ...  # JSON-able; same on every process

    def load_state(self, state: dict) -> None: ...


def read_npy_header(path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, shape, data offset in bytes) of a .npy file, read without loading the data."""
    try:
        with open(path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _fortran, dtype = read(f)
            return dtype, shape, f.tell()
    except (ValueError, OSError) as e:
        raise ValueError(f"shard {path} is not a readable .npy file ({e}); re-create it with scripts/prepare_data.py") from None


def check_shard_file(path: Path) -> int:
    """Validate a shard's header and size; returns its number of tokens."""
    dtype, shape, offset = read_npy_header(path)
    if dtype != np.dtype("<u2"):
        raise ValueError(f"shard {path} has dtype {dtype}, expected uint16 ('<u2'); shards must hold GPT-2 ids "
                         "as uint16 (scripts/prepare_data.py writes them so)")
    if len(shape) != 1:
        raise ValueError(f"shard {path} has shape {shape}, expected a 1-D token array")
    n = shape[0]
    size, want = path.stat().st_size, offset + 2 * n
    if size != want:
        what = "truncated" if size < want else "longer than its header says"
        raise ValueError(f"shard {path} is {what}: {size} bytes on disk, {want} expected for {n} tokens; "
                         "re-create it (scripts/prepare_data.py resumes and rewrites it)")
    return n


def check_token_range(tokens: np.ndarray, vocab_size: int, where: str, *, offset: int = 0) -> None:
    """Raise if any id is >= vocab_size (or negative), naming the first offending position.

    `offset` is added to the reported position (when `tokens` is a chunk of a longer array)."""
    if tokens.size == 0:
        return
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= vocab_size:
        i = int(np.argmax((tokens < 0) | (tokens >= vocab_size)))
        raise ValueError(f"{where}: token id {int(tokens[i])} at position {offset + i} is outside [0, {vocab_size}); "
                         f"the data was made with another tokenizer or vocab_size is wrong")


def scan_shard(tokens: np.ndarray, where: str, *, vocab_size: int | None = None,
               eot_id: int | None = None) -> np.ndarray | None:
    """One pass over a shard, in chunks: check ids against `vocab_size` (if given) and return the
    document start offsets (if `eot_id` is given; else None).

    Starts are the positions of `eot_id`, plus 0 when the shard does not begin with one (its leading
    fragment is then a document of its own). Example with eot = 9: [4, 9, 5, 6, 9, 7] -> [0, 1, 4].
    """
    found = []
    for lo in range(0, len(tokens), _SCAN_CHUNK):
        chunk = tokens[lo:lo + _SCAN_CHUNK]
        if vocab_size is not None:
            check_token_range(chunk, vocab_size, where, offset=lo)
        if eot_id is not None:
            found.append(np.flatnonzero(chunk == eot_id) + lo)
    if eot_id is None:
        return None
    starts = np.concatenate([np.zeros(1, np.int64), *found]).astype(np.int64)
    return starts[1:] if len(starts) > 1 and starts[1] == 0 else starts  # 0 listed once


def _scan_file(path: Path, vocab_size: int | None, eot_id: int | None) -> tuple[bool, np.ndarray | None]:
    """scan_shard of a shard file, touching no loader state (run in a background thread):
    (whether the ids were checked, the document starts or None)."""
    _, shape, offset = read_npy_header(path)
    tokens = np.asarray(np.memmap(path, dtype=np.uint16, mode="r", offset=offset, shape=shape))
    return vocab_size is not None, scan_shard(tokens, f"shard {path}", vocab_size=vocab_size, eot_id=eot_id)


@dataclass(frozen=True)
class DocOrder:
    """A shard's documents in a permuted order, kept as spans of the file rather than a copy.

    The k-th document of the permuted stream is file tokens [src[k], src[k] + cum[k+1] - cum[k])
    and occupies stream offsets [cum[k], cum[k+1]). Example: starts [0, 3, 5] of an 8-token shard
    (lengths 3, 2, 3) permuted as [2, 0, 1] give src [5, 0, 3] and cum [0, 3, 6, 8].
    """

    src: np.ndarray  # (D,) int64: file offset of the k-th document of the stream
    cum: np.ndarray  # (D+1,) int64: stream offset of the k-th document; cum[-1] = tokens in the shard

    @classmethod
    def permute(cls, starts: np.ndarray, n_tokens: int, rng: np.random.Generator) -> DocOrder:
        lengths = np.diff(starts, append=n_tokens)  # (D,)
        perm = rng.permutation(len(starts))
        return cls(starts[perm], np.concatenate([np.zeros(1, np.int64), np.cumsum(lengths[perm])]))

    def read(self, tokens: np.ndarray, a: int, b: int) -> np.ndarray:
        """Stream tokens [a, b) as int32: one copy per document span the range touches."""
        out = np.empty(b - a, np.int32)
        k0 = int(np.searchsorted(self.cum, a, side="right")) - 1  # the document holding stream offset a
        k1 = int(np.searchsorted(self.cum, b, side="left"))  # one past the document holding offset b-1
        src, cum = self.src[k0:k1].tolist(), self.cum[k0:k1 + 1].tolist()  # Python ints: a cheap loop
        for s, c0, c1 in zip(src, cum, cum[1:]):
            lo, hi = max(a, c0), min(b, c1)
            out[lo - a:hi - a] = tokens[s + lo - c0:s + hi - c0]
        return out


def list_shards(data_dir: str | Path, split: str) -> list[Path]:
    """Sorted `*_{split}_*.npy` files of `data_dir` (build-nanogpt's naming)."""
    d = Path(data_dir)
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if not d.is_dir():
        raise FileNotFoundError(f"data folder {d} not found; create shards with "
                                f"`python scripts/prepare_data.py --out {d}` or pass the right folder")
    shards = sorted(p for p in d.iterdir() if p.suffix == ".npy" and f"_{split}_" in p.name)
    if not shards:
        found = sorted(p.name for p in d.iterdir())[:5]
        raise FileNotFoundError(f"no *_{split}_*.npy shards in {d} (found: {found or 'nothing'}); "
                                "create them with scripts/prepare_data.py")
    return shards


def _check_batch_args(B: int, T: int, process_index: int, num_processes: int) -> None:
    if B < 1 or T < 1:
        raise ValueError(f"batch size B={B} and sequence length T={T} must be positive")
    if not 0 <= process_index < num_processes:
        raise ValueError(f"process_index {process_index} must be in [0, num_processes={num_processes})")


def _check_state(state: dict, expected: dict) -> None:
    diff = [f"{k}: {state.get(k)!r} in the state, {v!r} here" for k, v in expected.items() if state.get(k) != v]
    if diff:
        raise ValueError(f"data-loader state does not match this loader ({'; '.join(diff)}); "
                         "resume with the same data and batch settings")


class ShardLoader:
    """Memory-mapped shards of one split, each process reading its disjoint slice of every global batch.

    Not thread-safe: one thread at a time (Prefetcher's thread while it runs, else the caller).
    """

    def __init__(self, data_dir: str | Path, split: str, B: int, T: int, process_index: int = 0,
                 num_processes: int = 1, *, vocab_size: int = 50257, shuffle_seed: int | None = None,
                 check_tokens: str = "open", doc_shuffle_seed: int | None = None, eot_id: int = GPT2_EOT) -> None:
        _check_batch_args(B, T, process_index, num_processes)
        if check_tokens not in ("open", "eager", "none"):
            raise ValueError(f"check_tokens must be 'open', 'eager' or 'none', got {check_tokens!r}")
        if not 0 <= eot_id < 2 ** 16:
            raise ValueError(f"eot_id {eot_id} cannot occur in uint16 shards; pass the tokenizer's end-of-text id")
        self.B, self.T, self.split = B, T, split
        self.process_index, self.num_processes = process_index, num_processes
        self.vocab_size, self.shuffle_seed, self.check_tokens = vocab_size, shuffle_seed, check_tokens
        self.doc_shuffle_seed, self.eot_id = doc_shuffle_seed, eot_id
        self.global_tokens = B * T * num_processes  # tokens consumed per step by all processes together
        all_shards = list_shards(data_dir, split)
        sizes = {p: check_shard_file(p) for p in all_shards}
        self.shards = [p for p in all_shards if sizes[p] >= self.global_tokens + 1]
        small = [p.name for p in all_shards if p not in self.shards]
        if not self.shards:
            raise ValueError(f"every {split} shard in {data_dir} is shorter than one global batch "
                             f"(B*T*num_processes+1 = {self.global_tokens + 1} tokens); use smaller B or T")
        if small:
            warnings.warn(f"skipping {split} shards shorter than one global batch: {small}", stacklevel=2)
        self._checked: set[Path] = set()  # shards whose token ids were checked (once per loader)
        self._starts: OrderedDict[Path, np.ndarray] = OrderedDict()  # document starts of recent shards
        self._jobs: dict[Path, Future] = {}  # background scans (prepare_next_shard), merged when the shard opens
        if check_tokens == "eager":
            for p in self.shards:
                self._load(p)
        self.reset()

    def _order(self, epoch: int) -> np.ndarray:
        n = len(self.shards)
        if self.shuffle_seed is None:
            return np.arange(n)
        # Seeded by (seed, epoch) so any epoch's order is recomputed from the state alone.
        return np.random.default_rng([self.shuffle_seed, epoch]).permutation(n)

    def _load(self, path: Path, index: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """The shard's tokens (memory-mapped), their ids checked on first use; with `index`, also its
        document starts (cached for the last few shards: recomputing them is a pass over the file)."""
        job = self._jobs.pop(path, None)
        # A background scan of this shard: wait for it if still running, and keep what it found. One that
        # failed (or was cancelled) is ignored: the scan below redoes it and raises here, in order.
        if job is not None and not job.cancelled() and job.exception() is None:
            checked, found = job.result()
            if checked:
                self._checked.add(path)
            if found is not None:
                self._keep_index(path, found)
        _, shape, offset = read_npy_header(path)
        # A plain ndarray view of the map: slicing a np.memmap builds a memmap object per slice (~10x the
        # cost of an ndarray slice), which adds up in DocOrder.read's one slice per document.
        tokens = np.asarray(np.memmap(path, dtype=np.uint16, mode="r", offset=offset, shape=shape))
        check, starts = self._needs(path, index)
        if check or starts is None and index:
            found = scan_shard(tokens, f"shard {path}", vocab_size=self.vocab_size if check else None,
                               eot_id=self.eot_id if starts is None and index else None)
            if check:
                self._checked.add(path)
            if found is not None:
                starts = self._keep_index(path, found)
        if index:
            self._starts.move_to_end(path)  # the most recently used stays cached
        return tokens, starts

    def _needs(self, path: Path, index: bool) -> tuple[bool, np.ndarray | None]:
        """(whether the shard's ids still need the check, its cached document starts or None)."""
        return self.check_tokens != "none" and path not in self._checked, self._starts.get(path) if index else None

    def _keep_index(self, path: Path, starts: np.ndarray) -> np.ndarray:
        if len(starts) < 2:
            warnings.warn(f"shard {path} holds no document boundary (eot_id {self.eot_id} after its first token): "
                          "document shuffling leaves it in order; check eot_id", stacklevel=4)
        self._starts[path] = starts
        while len(self._starts) > _INDEX_CACHE:
            self._starts.popitem(last=False)
        return starts

    def _go(self, epoch: int, shard: int, position: int) -> None:
        order = self._order(epoch)
        file_index = int(order[shard])
        tokens, starts = self._load(self.shards[file_index], index=self.doc_shuffle_seed is not None)
        docs = None
        if starts is not None:  # seeded by (seed, epoch, shard file) so the state alone recomputes it
            rng = np.random.default_rng([self.doc_shuffle_seed, epoch, file_index])
            docs = DocOrder.permute(starts, len(tokens), rng)
        # Assigned only once the shard opened: a failed open leaves the loader where it was.
        self.epoch, self.shard, self.position, self.order = epoch, shard, position, order
        self.tokens, self.docs = tokens, docs

    @property
    def current_file(self) -> Path:
        return self.shards[self.order[self.shard]]

    def reset(self) -> None:
        """Back to the first batch of epoch 0 (e.g. before each validation pass)."""
        self._go(0, 0, 0)

    def _next_place(self) -> tuple[int, int]:
        """(epoch, shard) after the current shard."""
        nxt = self.shard + 1
        return self.epoch + nxt // len(self.shards), nxt % len(self.shards)

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """This process's (x, y), int32 (B, T); y is x shifted left by one token."""
        if self.position + self.global_tokens + 1 > len(self.tokens):  # next global batch does not fit
            self._go(*self._next_place(), 0)
        B, T = self.B, self.T
        start = self.position + self.process_index * B * T
        if self.docs is None:
            buf = np.asarray(self.tokens[start:start + B * T + 1], dtype=np.int32)
        else:
            buf = self.docs.read(self.tokens, start, start + B * T + 1)
        self.position += self.global_tokens
        return buf[:-1].reshape(B, T), buf[1:].reshape(B, T)  # (B, T), (B, T)

    def prepare_next_shard(self, executor: Executor | None = None) -> None:
        """Check (and index) the shard that follows the current one ahead of the switch to it: now, or
        as a job on `executor` (Prefetcher's scan thread) that the switch then waits for and keeps.
        Cheap when it is done or under way. Call it from the thread that calls next_batch.

        A problem found here is not raised: the switch scans the shard again and raises then, so an
        error surfaces at the same batch with or without prefetching."""
        epoch, shard = self._next_place()
        path = self.shards[int(self._order(epoch)[shard])]
        index = self.doc_shuffle_seed is not None
        check, starts = self._needs(path, index)
        job = self._jobs.get(path)
        if not (check or starts is None and index) or (job is not None and not job.cancelled()):
            return
        if executor is not None:
            self._jobs[path] = executor.submit(_scan_file, path, self.vocab_size if check else None,
                                               self.eot_id if starts is None and index else None)
            return
        try:
            self._load(path, index)
        except (ValueError, OSError):
            pass

    def state(self) -> dict:
        return {"kind": "shards", "split": self.split, "epoch": self.epoch, "shard": self.shard,
                "position": self.position, "shard_name": self.current_file.name,
                "num_shards": len(self.shards), "shuffle_seed": self.shuffle_seed,
                "doc_shuffle_seed": self.doc_shuffle_seed, "eot_id": self.eot_id,
                "global_tokens": self.global_tokens}

    def load_state(self, state: dict) -> None:
        expected = {"kind": "shards", "split": self.split, "num_shards": len(self.shards),
                    "shuffle_seed": self.shuffle_seed, "doc_shuffle_seed": self.doc_shuffle_seed,
                    "global_tokens": self.global_tokens}
        if self.doc_shuffle_seed is not None:  # the id only shapes the stream when documents are shuffled
            expected["eot_id"] = self.eot_id
        _check_state(state, expected)  # (states saved before doc shuffling existed lack both: None, off)
        epoch, shard, position = (int(state[k]) for k in ("epoch", "shard", "position"))
        if epoch < 0 or not 0 <= shard < len(self.shards):
            raise ValueError(f"data-loader state epoch {epoch} / shard index {shard} out of range")
        self._go(epoch, shard, position)
        if self.current_file.name != state["shard_name"]:
            raise ValueError(f"data-loader state points at shard {state['shard_name']}, but this folder gives "
                             f"{self.current_file.name} at that place; the shard folder changed since the state "
                             "was saved")
        if not 0 <= position <= len(self.tokens):
            raise ValueError(f"data-loader state position {position} is outside shard {state['shard_name']} "
                             f"({len(self.tokens)} tokens); the shard folder changed since the state was saved")


class TokenArrayLoader:
    """Random windows of one in-memory token array (nanoGPT's get_batch), with a saveable Generator.

    Every process draws the same B*num_processes window starts from the shared seed and keeps
    rows [p*B, (p+1)*B): distinct draws per process, and the union equals a one-process run.
    """

    def __init__(self, tokens: np.ndarray, B: int, T: int, *, seed: int = 0, process_index: int = 0,
                 num_processes: int = 1, vocab_size: int | None = None) -> None:
        _check_batch_args(B, T, process_index, num_processes)
        tokens = np.asarray(tokens)
        if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"tokens must be a 1-D integer array, got {tokens.dtype} with shape {tokens.shape}")
        if len(tokens) < T + 1:
            raise ValueError(f"{len(tokens)} tokens are too few for windows of T+1 = {T + 1}; use a smaller T")
        if vocab_size is not None:
            check_token_range(tokens, vocab_size, "token array")
        self.tokens, self.B, self.T = tokens, B, T
        self.process_index, self.num_processes = process_index, num_processes
        self.rng = np.random.default_rng(seed)

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        B, T = self.B, self.T
        starts = self.rng.integers(0, len(self.tokens) - T, size=B * self.num_processes)  # global draw
        mine = starts[self.process_index * B:(self.process_index + 1) * B]
        rows = self.tokens[mine[:, None] + np.arange(T + 1)].astype(np.int32)  # (B, T+1)
        return rows[:, :-1], rows[:, 1:]  # (B, T), (B, T)

    def state(self) -> dict:
        # PCG64 state: plain ints (128-bit ones included), which json handles exactly.
        return {"kind": "array", "n_tokens": len(self.tokens), "rows": self.B * self.num_processes,
                "T": self.T, "rng": self.rng.bit_generator.state}

    def load_state(self, state: dict) -> None:
        _check_state(state, {"kind": "array", "n_tokens": len(self.tokens), "rows": self.B * self.num_processes,
                             "T": self.T})
        self.rng.bit_generator.state = state["rng"]


# ---------------------------------------------------------------------------------------------------
# Prefetching

_POLL_S = 0.05  # how often a blocked put/get looks at the stop flag / the thread's liveness


def _put(q: queue.Queue, item: tuple, stop: threading.Event) -> None:
    """q.put that gives up once `stop` is set (the consumer is gone or rewinding)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return
        except queue.Full:
            continue


def _read_ahead(loader: BatchSource, q: queue.Queue, stop: threading.Event, scans: Executor | None) -> None:
    """Prefetch thread body: (batch, loader state right after it, None) items, then (None, None, error)
    if the loader raises. Holds no reference to the Prefetcher, so dropping it stops the thread."""
    try:
        while not stop.is_set():
            item = (loader.next_batch(), loader.state(), None)
            if scans is not None:
                loader.prepare_next_shard(scans)  # a no-op but right after a shard switch
            _put(q, item, stop)
    except Exception as e:  # noqa: BLE001 -- every error goes to the consumer, which raises it
        e.add_note("(raised in the data prefetch thread; every batch before it was delivered in order)")
        _put(q, (None, None, e), stop)


def _halt(thread: threading.Thread, q: queue.Queue, stop: threading.Event, scans: Executor | None) -> None:
    stop.set()
    while True:  # drop what was read ahead (frees the batches; unblocks nothing, puts poll `stop`)
        try:
            q.get_nowait()
        except queue.Empty:
            break
    thread.join()  # the loader is used by one thread at a time: wait until the reader has let go
    if scans is not None:  # a scan in progress finishes (<1 s); a cancelled one is redone when needed
        scans.shutdown(wait=True, cancel_futures=True)


class Prefetcher:
    """A BatchSource that reads `loader` ahead in a background thread: the same batches, in the same
    order, with the synchronous loader's `state()` after the batch last returned.

        train = Prefetcher(ShardLoader(...), depth=2)   # then use it as the loader; train.close() at the end

    Up to `depth` batches wait in a queue (plus one the thread is handing over). When the loader
    has `prepare_next_shard` (ShardLoader), a second thread scans the next shard while the first
    reads. `load_state`, `reset` and `close` stop the threads and drop what was read ahead; the next
    `next_batch` starts them again from the consumer's position. The reader is a daemon thread, and
    both are also stopped when the Prefetcher is garbage-collected or the interpreter exits, so they
    never hold a process open.
    """

    def __init__(self, loader: BatchSource, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"prefetch depth must be at least 1, got {depth}")
        self.loader, self.depth = loader, depth
        self._state = loader.state()  # the state after the last batch handed out (now: none yet)
        self._worker: tuple[threading.Thread, queue.Queue, threading.Event] | None = None
        self._finalizer: weakref.finalize | None = None
        self._ahead = False  # the loader may be past self._state (a thread ran since the last rewind)

    def _start(self) -> None:
        if self._ahead:  # a previous thread read ahead of the consumer: rewind to what it received
            self.loader.load_state(self._state)
        q: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()
        scans = None
        if hasattr(self.loader, "prepare_next_shard"):
            scans = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jaxgpt-scan")
        thread = threading.Thread(target=_read_ahead, args=(self.loader, q, stop, scans), name="jaxgpt-prefetch",
                                  daemon=True)
        thread.start()
        self._worker, self._ahead = (thread, q, stop), True
        self._finalizer = weakref.finalize(self, _halt, thread, q, stop, scans)  # on close, GC or interpreter exit

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        if self._worker is None:
            self._start()
        thread, q, _ = self._worker
        while True:
            try:
                batch, state, error = q.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if not thread.is_alive() and q.empty():  # cannot happen unless the thread was killed: no hang
                    self.close()
                    raise RuntimeError("the data prefetch thread ended without a batch or an error") from None
        if error is not None:
            self.close()  # the thread has finished; a later call retries from the consumer's position
            raise error
        self._state = state
        return batch

    @property
    def ready(self) -> int:
        """Batches read ahead and waiting (0 when the thread is stopped): `depth` means the consumer is
        the bottleneck, 0 at every call means the loader is."""
        return 0 if self._worker is None else self._worker[1].qsize()

    def state(self) -> dict:
        return copy.deepcopy(self._state)  # the caller may keep or change it; ours must stay as received

    def load_state(self, state: dict) -> None:
        self.close()
        self.loader.load_state(state)
        self._state, self._ahead = self.loader.state(), False

    def reset(self) -> None:
        self.close()
        self.loader.reset()
        self._state, self._ahead = self.loader.state(), False

    def close(self) -> None:
        """Stop the thread (its read-ahead batches are dropped; `state()` does not change)."""
        if self._finalizer is not None:
            self._finalizer()  # runs _halt once
        self._worker = self._finalizer = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
