"""Framework-free training batches (numpy int32), shared by the JAX and the torch training loops.

Two sources with one interface (`BatchSource`: `next_batch`, `state`, `load_state`):

- `ShardLoader`: memory-mapped uint16 `.npy` shards of a folder (scripts/prepare_data.py output, or
  build-nanogpt's), read in order like build-nanogpt's `DataLoaderLite`. A step's global batch is
  B*T*num_processes consecutive tokens (+1 for the targets) starting at `position` in the current
  shard; process p takes tokens [position + p*B*T, position + (p+1)*B*T + 1), so processes read
  disjoint slices and together exactly what one process with num_processes*B rows would read.
  Unlike DataLoaderLite, the decision to move to the next shard is made on the global position,
  so all processes switch shards at the same step. A shard too short for one global batch is
  skipped (with a warning). Shard order is sorted by name, or a seeded permutation per epoch.
- `TokenArrayLoader`: one in-memory 1-D token array (the poetry stage), random windows as
  nanoGPT's `get_batch`, drawn from a seeded numpy Generator whose state is saved.

`state()` is a small JSON-able dict, identical on every process; `load_state()` continues exactly.

Validation. On construction every shard's header is read: a non-.npy file, a dtype other than
uint16, a shape other than 1-D, or a file size that disagrees with the header (truncated or with
trailing bytes) raises ValueError naming the file. Token ids are checked against `vocab_size`
over the FULL shard (not a sample), by default the first time each shard is opened
(`check_tokens="open"`): one pass over memory that we read anyway for training (~0.1 s per 1e8
tokens). `"eager"` checks every shard at construction, `"none"` skips the check.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Protocol

import numpy as np


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


def check_token_range(tokens: np.ndarray, vocab_size: int, where: str) -> None:
    """Raise if any id is >= vocab_size (or negative), naming the first offending position."""
    if tokens.size == 0:
        return
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= vocab_size:
        i = int(np.argmax((tokens < 0) | (tokens >= vocab_size)))
        raise ValueError(f"{where}: token id {int(tokens[i])} at position {i} is outside [0, {vocab_size}); "
                         f"the data was made with another tokenizer or vocab_size is wrong")


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
    """Memory-mapped shards of one split, each process reading its disjoint slice of every global batch."""

    def __init__(self, data_dir: str | Path, split: str, B: int, T: int, process_index: int = 0,
                 num_processes: int = 1, *, vocab_size: int = 50257, shuffle_seed: int | None = None,
                 check_tokens: str = "open") -> None:
        _check_batch_args(B, T, process_index, num_processes)
        if check_tokens not in ("open", "eager", "none"):
            raise ValueError(f"check_tokens must be 'open', 'eager' or 'none', got {check_tokens!r}")
        self.B, self.T, self.split = B, T, split
        self.process_index, self.num_processes = process_index, num_processes
        self.vocab_size, self.shuffle_seed, self.check_tokens = vocab_size, shuffle_seed, check_tokens
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
        self._checked: set[Path] = set()
        if check_tokens == "eager":
            for p in self.shards:
                self._open(p)
        self.reset()

    def _order(self, epoch: int) -> np.ndarray:
        n = len(self.shards)
        if self.shuffle_seed is None:
            return np.arange(n)
        # Seeded by (seed, epoch) so any epoch's order is recomputed from the state alone.
        return np.random.default_rng([self.shuffle_seed, epoch]).permutation(n)

    def _open(self, path: Path) -> np.memmap:
        _, shape, offset = read_npy_header(path)
        tokens = np.memmap(path, dtype=np.uint16, mode="r", offset=offset, shape=shape)
        if self.check_tokens != "none" and path not in self._checked:
            check_token_range(tokens, self.vocab_size, f"shard {path}")
            self._checked.add(path)
        return tokens

    def _go(self, epoch: int, shard: int, position: int) -> None:
        self.epoch, self.shard, self.position = epoch, shard, position
        self.order = self._order(epoch)
        self.tokens = self._open(self.shards[self.order[shard]])

    def reset(self) -> None:
        """Back to the first batch of epoch 0 (e.g. before each validation pass)."""
        self._go(0, 0, 0)

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """This process's (x, y), int32 (B, T); y is x shifted left by one token."""
        if self.position + self.global_tokens + 1 > len(self.tokens):  # next global batch does not fit
            nxt = self.shard + 1
            self._go(self.epoch + nxt // len(self.shards), nxt % len(self.shards), 0)
        B, T = self.B, self.T
        start = self.position + self.process_index * B * T
        buf = np.asarray(self.tokens[start:start + B * T + 1], dtype=np.int32)
        self.position += self.global_tokens
        return buf[:-1].reshape(B, T), buf[1:].reshape(B, T)  # (B, T), (B, T)

    def state(self) -> dict:
        return {"kind": "shards", "split": self.split, "epoch": self.epoch, "shard": self.shard,
                "position": self.position, "shard_name": self.shards[self.order[self.shard]].name,
                "num_shards": len(self.shards), "shuffle_seed": self.shuffle_seed,
                "global_tokens": self.global_tokens}

    def load_state(self, state: dict) -> None:
        _check_state(state, {"kind": "shards", "split": self.split, "num_shards": len(self.shards),
                             "shuffle_seed": self.shuffle_seed, "global_tokens": self.global_tokens})
        if not 0 <= state["shard"] < len(self.shards):
            raise ValueError(f"data-loader state shard index {state['shard']} out of range")
        self._go(int(state["epoch"]), int(state["shard"]), int(state["position"]))
        name = self.shards[self.order[self.shard]].name
        if name != state["shard_name"]:
            raise ValueError(f"data-loader state points at shard {state['shard_name']}, but this folder gives "
                             f"{name} at that place; the shard folder changed since the state was saved")


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
