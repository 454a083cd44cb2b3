"""HellaSwag, framework-free: read + validate the jsonl, render, pack, score and combine.

Reference: karpathy/build-nanogpt `hellaswag.py` (completion-style scoring, as in its README:
GPT-2 124M gets acc 0.2859 / acc_norm 0.2955 on the official val set). Each framework's scorer
only runs the model: it turns a packed batch's tokens (N*4, L) into per-token cross-entropy
losses (N*4, L-1) (loss[:, j] = -log p(tokens[:, j+1] | tokens[:, :j+1])), and everything else
is here:

    examples = load_examples(hellaswag_file(args.data), limit=args.limit)
    rendered = [render_example(ex, enc, block_size) for ex in examples]
    for batch in iter_batches(rendered, batch_size, length, process_index, num_processes):
        losses = model_losses(batch.tokens.reshape(-1, length))        # framework code, (N*4, L-1)
        results.append(score_batch(batch, losses))
    total = combine_results(results)     # or all-gather per-process results, then combine
    print(total.summary())

Rendering (as build-nanogpt's render_example): ctx tokens = enc(ctx), ending tokens =
enc(" " + ending); row i = ctx + ending_i, mask 1 on the ending tokens. Truncation: when the
longest row exceeds `block_size`, tokens are dropped from the LEFT of the context, by the same
amount for all four rows (they keep one shared context), so the longest row is exactly
block_size. An ending that leaves no context token (len(ending) >= block_size) raises.

Scoring: sum_loss = sum of the ending tokens' losses, mean_loss = sum_loss / n ending tokens;
`acc` uses argmin(sum_loss), `acc_norm` argmin(mean_loss). Sums are taken in float64 on the
host. Tie-break: the lowest ending index wins (numpy argmin's rule, and torch/jnp argmin's).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jaxgpt.common.config import GPTConfig
from jaxgpt.common.data import cache_dir, download
from jaxgpt.common.data.documents import iter_jsonl

HELLASWAG_VAL_URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl"
N_ENDINGS = 4


@dataclass(frozen=True)
class Example:
    """One HellaSwag task: only the fields the scoring needs (others in the file are ignored)."""

    ctx: str
    endings: tuple[str, str, str, str]
    label: int  # index of the correct ending, 0-3
    line: int  # 1-based line in the source file, for error messages


def download_hellaswag(dest_dir: Path | None = None, url: str = HELLASWAG_VAL_URL, timeout: float = 30.0) -> Path:
    """Download hellaswag_val.jsonl into `dest_dir` (default cache_dir()/hellaswag) once; returns its path."""
    dest_dir = Path(dest_dir) if dest_dir is not None else cache_dir() / "hellaswag"
    path = dest_dir / "hellaswag_val.jsonl"
    if path.is_file():
        return path
    try:
        return download(url, path, timeout)
    except OSError as e:
        raise FileNotFoundError(f"could not download HellaSwag from {url} ({e}); when offline, pass a local "
                                "file in the hellaswag_val.jsonl schema with --data FILE") from None


def hellaswag_file(data: str | Path | None = None) -> Path:
    """`data` if given (must exist), else the cached/downloaded official val file."""
    if data is None:
        return download_hellaswag()
    p = Path(data)
    if not p.is_file():
        raise FileNotFoundError(f"HellaSwag file {p} not found; check --data")
    return p


def parse_example(rec: dict, lineno: int, where: str = "hellaswag") -> Example:
    """One jsonl record -> Example, or ValueError naming `where:lineno` and the problem."""
    at = f"{where}:{lineno}"
    missing = [k for k in ("ctx", "label", "endings") if k not in rec]
    if missing:
        raise ValueError(f"{at}: missing field(s) {missing}; a HellaSwag line needs ctx, label and endings")
    ctx, label, endings = rec["ctx"], rec["label"], rec["endings"]
    if isinstance(label, str) and label.strip().isdigit():  # some exports store the label as a string
        label = int(label)
    if not isinstance(ctx, str):
        raise ValueError(f"{at}: ctx must be a string, got {type(ctx).__name__}")  # noqa: TRY004
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < N_ENDINGS:
        raise ValueError(f"{at}: label {label!r} is not an ending index 0-3")
    if not isinstance(endings, list) or len(endings) != N_ENDINGS or not all(isinstance(e, str) for e in endings):
        n = len(endings) if isinstance(endings, list) else type(endings).__name__
        raise ValueError(f"{at}: endings must be a list of {N_ENDINGS} strings, got {n}")
    return Example(ctx, tuple(endings), label, lineno)


def load_examples(path: str | Path, limit: int | None = None) -> list[Example]:
    """Read and validate a hellaswag_val.jsonl-schema file (the one jsonl reader: jaxgpt/common/data/documents.py;
    blank lines skipped); the first `limit` tasks."""
    path = Path(path)
    out: list[Example] = []
    for lineno, rec in iter_jsonl(path):
        if limit is not None and len(out) >= limit:
            break
        out.append(parse_example(rec, lineno, str(path)))
    if not out:
        raise ValueError(f"{path} holds no HellaSwag examples; check --data")
    return out


def check_eval_args(batch_size: int, limit: int | None) -> None:
    """The argument checks of both frameworks' evaluate_hellaswag."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1 (examples per process per step)")
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit} must be >= 1 (or None for every example)")


@dataclass(frozen=True)
class Rendered:
    """One example as 4 token rows. tokens/mask: int32 (4, L), L = longest row; pad_id / 0 after a row ends."""

    tokens: np.ndarray  # (4, L)
    mask: np.ndarray  # (4, L), 1 on ending tokens
    label: int
    truncated: int  # context tokens dropped from the left to fit block_size


def render_example(ex: Example, enc, block_size: int | None = None, pad_id: int = 50256) -> Rendered:
    """build-nanogpt's render_example, plus left truncation of the context to fit `block_size`."""
    ctx = enc.encode(ex.ctx)
    ends = [enc.encode(" " + e) for e in ex.endings]  # " " + ending: GPT-2 tokenizes the space with the word
    longest = max(len(e) for e in ends)
    cut = 0
    if block_size is not None and len(ctx) + longest > block_size:
        if longest >= block_size:
            raise ValueError(f"line {ex.line}: an ending has {longest} tokens, which leaves no context within "
                             f"block_size {block_size}; use a model with a larger block_size")
        cut = len(ctx) + longest - block_size
        ctx = ctx[cut:]
    L = len(ctx) + longest
    tokens = np.full((N_ENDINGS, L), pad_id, dtype=np.int32)
    mask = np.zeros((N_ENDINGS, L), dtype=np.int32)
    for i, e in enumerate(ends):
        tokens[i, :len(ctx) + len(e)] = ctx + e
        mask[i, len(ctx):len(ctx) + len(e)] = 1
    return Rendered(tokens, mask, ex.label, cut)


@dataclass(frozen=True)
class Batch:
    """Fixed-shape pack of examples, so a jitted scorer compiles once."""

    tokens: np.ndarray  # (N, 4, length) int32; padding rows/columns hold pad_id
    mask: np.ndarray  # (N, 4, length) int32; 0 on padding
    labels: np.ndarray  # (N,) int32
    index: np.ndarray  # (N,) int64: the example's position in the rendered list; -1 for padding examples


def pack(rendered: Sequence[Rendered], indices: Sequence[int], batch_size: int, length: int,
         pad_id: int = 50256) -> Batch:
    """Pack rendered[i] for i in `indices` into arrays of batch_size examples x `length` tokens.

    Right padding changes no loss at real positions (causal attention). Padding examples carry
    mask 0 and index -1 and are dropped by score_batch.
    """
    if len(indices) > batch_size:
        raise ValueError(f"{len(indices)} examples do not fit a batch of {batch_size}")
    tokens = np.full((batch_size, N_ENDINGS, length), pad_id, dtype=np.int32)
    mask = np.zeros((batch_size, N_ENDINGS, length), dtype=np.int32)
    labels = np.zeros(batch_size, dtype=np.int32)
    index = np.full(batch_size, -1, dtype=np.int64)
    for j, i in enumerate(indices):
        r = rendered[i]
        L = r.tokens.shape[1]
        if L > length:
            raise ValueError(f"example {i} has {L} tokens, more than the pack length {length}; "
                             "render with block_size <= length")
        tokens[j, :, :L], mask[j, :, :L], labels[j], index[j] = r.tokens, r.mask, r.label, i
    return Batch(tokens, mask, labels, index)


def pack_length(rendered: Sequence[Rendered], bucket: int = 64, block_size: int | None = None) -> int:
    """One pad length for a whole evaluation: the longest row rounded up to `bucket` (capped at block_size)."""
    L = max(r.tokens.shape[1] for r in rendered)
    L = -(-L // bucket) * bucket
    return min(L, block_size) if block_size is not None else L


def iter_batches(rendered: Sequence[Rendered], batch_size: int, length: int, process_index: int = 0,
                 num_processes: int = 1, pad_id: int = 50256) -> Iterator[Batch]:
    """This process's batches: examples p, p+P, p+2P, ... in fixed-shape batches.

    Every process yields the same number of batches (the last ones padded), so collective
    calls inside a distributed scorer stay in step.
    """
    mine = list(range(process_index, len(rendered), num_processes))
    n_batches = -(-len(rendered) // (batch_size * num_processes))
    for b in range(n_batches):
        yield pack(rendered, mine[b * batch_size:(b + 1) * batch_size], batch_size, length, pad_id)


# Bytes of an evaluation batch's fp32 logits (and the ~2 same-size temporaries of their cross-entropy) when the
# device's memory size is unknown (CPU; JAX splits it among a host's simulated devices, which share its memory).
EVAL_BYTES_PER_DEVICE = 1 << 30


def examples_per_batch(length: int, vocab: int, devices: int, budget: int = EVAL_BYTES_PER_DEVICE,
                       n_examples: int | None = None, scored: int | None = None) -> int:
    """Examples per batch per process: as many as `budget` bytes of logits per device allow, over `devices`.

    Each example is 4 rows of `length` tokens whose `scored` positions (default all 4 x length; a scorer that
    runs the head at the endings only passes `max_scored`) need logits; those and their cross-entropy
    temporaries take about 3 x scored x vocab x 4 bytes. A multiple of `devices` (its rows then divide over
    them), at least `devices`, and no more than the `n_examples` to score (padding examples cost time only).

    >>> examples_per_batch(64, 50304, 1, budget=1 << 30)
    6
    """
    scored = N_ENDINGS * length if scored is None else max(1, scored)
    per_device = max(1, budget // (3 * scored * vocab * 4))
    n = per_device * devices
    if n_examples is not None:
        n = min(n, -(-n_examples // devices) * devices)
    return max(devices, n - n % devices)


def max_scored(rendered: Sequence[Rendered]) -> int:
    """The most ending tokens any one example has (its 4 rows together): the logit rows it needs."""
    return max(int(np.count_nonzero(r.mask)) for r in rendered)


@dataclass(frozen=True)
class Packed:
    """An evaluation's batches for this process, packed once: a training run scores them every N steps.

    `positions[i]` (groups, K) int32 lists where batch i's ending tokens sit, so a scorer runs the vocabulary-wide
    head only there (`ending_positions`); K is one width for every batch (one compilation).
    """

    batches: list[Batch]
    length: int  # the one pad length of every batch (one compilation)
    batch_size: int  # examples per batch
    positions: list[np.ndarray]  # per batch (groups, K) int32, -1 after each group's last ending token


def pack_batches(rendered: Sequence[Rendered], batch_size: int, length: int, process_index: int = 0,
                 num_processes: int = 1, pad_id: int = 50256, groups: int = 1) -> Packed:
    """iter_batches' batches, kept: what a scorer that evaluates more than once holds on to, with their
    ending positions for `groups` equal slices of rows (a scorer's local devices)."""
    batches = list(iter_batches(rendered, batch_size, length, process_index, num_processes, pad_id))
    width = ending_width(rendered, batch_size, groups, num_processes)
    positions = [np.full((groups, width), -1, dtype=np.int32) for _ in batches]
    for table, batch in zip(positions, batches):
        for g, found in enumerate(ending_positions(batch, groups)):
            table[g, :len(found)] = found
    return Packed(batches, length, batch_size, positions)


def ending_width(rendered: Sequence[Rendered], batch_size: int, groups: int = 1, num_processes: int = 1) -> int:
    """K of `Packed.positions`: the most ending tokens any group of rows holds, over every batch of every process
    (`iter_batches`' split), rounded up to a multiple of 8. The same on every process, as the jitted scorer's
    global (processes x groups, K) array of positions needs."""
    rows = np.array([r.mask.sum(1) for r in rendered], dtype=np.int64)  # (n, 4) ending tokens per row
    per_batch = N_ENDINGS * batch_size
    n_rows = -(-len(rendered) // (batch_size * num_processes)) * per_batch  # every process: the same batches
    width = 1
    for p in range(num_processes):
        mine = rows[p::num_processes].reshape(-1)
        mine = np.pad(mine, (0, n_rows - len(mine)))  # padding examples: no ending tokens
        width = max(width, int(mine.reshape(-1, per_batch // groups).sum(1).max()))
    return -(-width // 8) * 8  # a round shape for the gather and the head's matmul


def ending_positions(batch: Batch, groups: int = 1) -> list[np.ndarray]:
    """Where the ending tokens are scored, per group of rows: the only positions the head must run at.

    The batch's N*4 rows are cut into `groups` equal slices (a scorer's devices, each holding one slice); a
    slice's per-token losses (rows, length-1), flattened, are indexed by `r * (length-1) + j`, and position j
    scores token j+1 (the mask read shifted by one, as in `completion_scores`). Contexts and padding are
    about three quarters of a HellaSwag row: scoring only the endings cuts the (positions x vocabulary)
    logits, which dominate an evaluation's time and memory, about 4x.
    """
    N, n_end, L = batch.mask.shape
    if (N * n_end) % groups:
        raise ValueError(f"{N * n_end} rows do not divide into {groups} groups")
    scored = batch.mask.reshape(groups, -1, L)[..., 1:] != 0  # (groups, rows per group, L-1)
    return [np.flatnonzero(g).astype(np.int32) for g in scored]


def spread_losses(positions: np.ndarray, losses: np.ndarray, rows: int, length: int) -> np.ndarray:
    """A scorer's ending losses (groups, K) taken at `positions` (groups, K; -1 = none) -> per-token losses
    (rows, length-1) as `completion_scores` reads them, zero where nothing was scored (masked there)."""
    positions, losses = np.asarray(positions), np.asarray(losses, dtype=np.float64)
    groups = positions.shape[0]
    full = np.zeros((groups, rows // groups * (length - 1)), dtype=np.float64)
    for g in range(groups):
        keep = positions[g] >= 0
        full[g, positions[g][keep]] = losses[g][keep]
    return full.reshape(rows, length - 1)


@dataclass(frozen=True)
class Scores:
    """Per example (N,) and per ending (N, 4) results of completion scoring."""

    sum_loss: np.ndarray  # (N, 4) float64
    mean_loss: np.ndarray  # (N, 4) float64
    pred: np.ndarray  # (N,) argmin sum_loss: `acc`
    pred_norm: np.ndarray  # (N,) argmin mean_loss: `acc_norm`


def completion_scores(losses: np.ndarray, mask: np.ndarray) -> Scores:
    """Per-token losses (N*4, L-1) or (N, 4, L-1) and mask (N, 4, L) -> summed / mean ending losses + predictions.

    losses[.., j] scores token j+1, so the mask is shifted by one: mask[.., 1:]. Positions with
    mask 0 are ignored even if their loss is inf/nan (padding). Ties: lowest ending index wins.
    """
    mask = np.asarray(mask)
    N, n_end, L = mask.shape
    losses = np.asarray(losses, dtype=np.float64).reshape(N, n_end, L - 1)  # (N, 4, L-1)
    m = mask[..., 1:] != 0  # (N, 4, L-1)
    sum_loss = np.where(m, losses, 0.0).sum(-1)  # (N, 4)
    count = m.sum(-1)
    mean_loss = sum_loss / np.maximum(count, 1)
    return Scores(sum_loss, mean_loss, sum_loss.argmin(-1), mean_loss.argmin(-1))


@dataclass(frozen=True)
class Result:
    """Per-example predictions of (part of) an evaluation; combine parts with combine_results."""

    index: np.ndarray  # (n,) int64 example indices
    label: np.ndarray  # (n,) int64
    pred: np.ndarray  # (n,) int64
    pred_norm: np.ndarray  # (n,) int64

    @property
    def n(self) -> int:
        return len(self.index)

    @property
    def correct(self) -> int:
        return int((self.pred == self.label).sum())

    @property
    def correct_norm(self) -> int:
        return int((self.pred_norm == self.label).sum())

    @property
    def acc(self) -> float:
        return self.correct / max(self.n, 1)

    @property
    def acc_norm(self) -> float:
        return self.correct_norm / max(self.n, 1)

    def counts(self) -> np.ndarray:
        """[n, correct, correct_norm] int64: sum these across processes (all-reduce) for exact totals."""
        return np.array([self.n, self.correct, self.correct_norm], dtype=np.int64)

    def summary(self) -> str:
        return (f"hellaswag: acc {self.acc:.4f} ({self.correct}/{self.n})  "
                f"acc_norm {self.acc_norm:.4f} ({self.correct_norm}/{self.n})")


def score_batch(batch: Batch, losses: np.ndarray) -> Result:
    """A batch's per-token losses (N*4, length-1) -> Result for its real (non-padding) examples."""
    s = completion_scores(losses, batch.mask)
    real = batch.index >= 0
    as64 = lambda a: np.asarray(a, dtype=np.int64)[real]
    return Result(as64(batch.index), as64(batch.labels), as64(s.pred), as64(s.pred_norm))


def combine_results(parts: Sequence[Result]) -> Result:
    """Merge results from batches/processes into one, ordered by example index (counts stay exact).

    Raises if an example appears twice (a sharding bug would otherwise inflate the count).
    """
    cat = lambda f: np.concatenate([getattr(p, f) for p in parts]) if parts else np.zeros(0, np.int64)
    index = cat("index")
    order = np.argsort(index, kind="stable")
    if len(index) and (np.diff(index[order]) == 0).any():
        raise ValueError("an example was scored twice; each process must score a disjoint set")
    return Result(index[order], cat("label")[order], cat("pred")[order], cat("pred_norm")[order])


def counts_to_metrics(counts: np.ndarray) -> dict:
    """Summed counts() ([n, correct, correct_norm]) -> {'n', 'acc', 'acc_norm'}."""
    n, c, cn = (int(v) for v in counts)
    return {"n": n, "acc": c / max(n, 1), "acc_norm": cn / max(n, 1)}


EOT = 50256  # GPT-2's <|endoftext|>


def prepare_rendered(examples_or_path: Any, config: GPTConfig, limit: int | None, enc: Any, pad_id: int) -> list[Rendered]:
    """Path / Examples / Rendered -> the first `limit` rendered examples, checked against the vocabulary.

    The framework-free front half of both frameworks' `evaluate_hellaswag`.
    """
    if isinstance(examples_or_path, (str, Path)):
        items: Sequence[Any] = load_examples(hellaswag_file(examples_or_path), limit=limit)
    else:
        items = list(examples_or_path)[:limit]
    if not items:
        raise ValueError("no HellaSwag examples to evaluate; check the data file and --limit")
    if all(isinstance(x, Rendered) for x in items):
        rendered = list(items)
    elif all(isinstance(x, Example) for x in items):
        if enc is None:
            import tiktoken

            enc = tiktoken.get_encoding("gpt2")
        rendered = [render_example(ex, enc, config.block_size, pad_id) for ex in items]
    else:
        raise TypeError("examples_or_path must be a file path, or a list of Example or Rendered from "
                        "jaxgpt.common.data.hellaswag (load_examples / render_example)")
    # Inside a jitted forward an out-of-range id would be clamped silently: check on the host, where it is cheap.
    top = max(int(r.tokens.max()) for r in rendered)
    if top >= config.vocab_size:
        raise ValueError(f"rendered token id {top} >= the model's vocab_size {config.vocab_size}; the tokenizer "
                         "does not match the model (HellaSwag needs the GPT-2 tokenizer and vocab)")
    return rendered


def pad_token(config: GPTConfig) -> int:
    """Filler id for padding: GPT-2's <|endoftext|> when the vocabulary has it. Its value never
    matters (right padding under causal attention, mask 0), only that it is a valid id."""
    return min(EOT, config.vocab_size - 1)


def progress_bar(batches: list, progress: bool):
    """The batches, wrapped in a tqdm bar when `progress` (both frameworks' evaluate_hellaswag)."""
    if not progress:
        return batches
    from tqdm import tqdm

    return tqdm(batches, desc="hellaswag", unit="batch")
