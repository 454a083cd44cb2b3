"""A mutation check of the test suite: plant one small bug at a time in a copy of the tree, run the tests
that guard it, and report whether they caught it.

A suite is only as good as the bugs it fails on. Each `Mutant` is one plausible bug in a core invariant
(causal masks, the AdamW decay mask, schedule endpoints, accumulation averaging, the loss's ignore index,
HellaSwag scoring, loader positions and epochs, checkpoint completeness, weight-table transposes, BPE
merge order, tiktoken's split patterns, makemore's BatchNorm, ...), written as an exact (file, old
snippet, new snippet) replacement that must match exactly once: when the code drifts, the mutant is an
error naming itself, never silently a no-op. Its `tests` are the few test selections that should
catch it (pytest arguments), so a full run stays well under 30 minutes on a 2-core machine.

The worktree is never modified: the check copies the tree (without .git, caches, virtualenvs) to a
temporary folder, applies each mutant there, runs pytest in a subprocess with that copy first on
PYTHONPATH, and restores the file before the next mutant.

It lives in the package (not under tests/) so that scripts/mutation_check.py stays a thin command line
that imports it, and so that tests/test_mutation.py can test the machinery itself; it imports no
framework. docs/TESTING.md records the latest result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Mutant:
    name: str  # short, unique; --only selects by it
    path: str  # file relative to the repository root
    old: str  # exact snippet, present exactly once in the file
    new: str  # what replaces it: the planted bug
    tests: tuple[str, ...]  # pytest node ids (or files) that must catch it
    why: str  # the invariant it breaks


@dataclass
class Outcome:
    name: str
    path: str
    tests: str
    status: str  # caught | SURVIVED | timeout (caught: the tests did not pass) | error (tests could not run)
    seconds: float
    detail: str = ""  # pytest's summary line, or the error

    @property
    def caught(self) -> bool:
        return self.status in ("caught", "timeout")


class MutantError(ValueError):
    """A mutant that cannot be planted: its snippet is missing, repeated, or changes nothing."""


def apply_mutant(root: Path, m: Mutant) -> str:
    """Plant `m` in the tree at `root`; returns the file's original text (to restore it)."""
    path = Path(root) / m.path
    if not path.is_file():
        raise MutantError(f"mutant {m.name!r}: {m.path} not found under {root}; update the mutant's path")
    text = path.read_text(encoding="utf-8")
    n = text.count(m.old)
    if n != 1:
        raise MutantError(f"mutant {m.name!r}: its snippet occurs {n} times in {m.path} (exactly once needed); "
                          f"the code changed: update the mutant's old snippet to the current code")
    if m.old == m.new:
        raise MutantError(f"mutant {m.name!r}: the new snippet equals the old one (no bug planted)")
    path.write_text(text.replace(m.old, m.new), encoding="utf-8")
    return text


def check_mutants(root: Path, mutants: Sequence[Mutant]) -> None:
    """Every mutant applies to `root` exactly as written (checked on the text, nothing written); names unique."""
    names = [m.name for m in mutants]
    if dups := sorted({n for n in names if names.count(n) > 1}):
        raise MutantError(f"mutant names repeated: {dups}")
    problems = []
    for m in mutants:
        path = Path(root) / m.path
        n = path.read_text(encoding="utf-8").count(m.old) if path.is_file() else -1
        if n != 1 or m.old == m.new:
            problems.append(f"{m.name} ({m.path}: " + ("file not found" if n < 0 else
                            f"snippet found {n} times" if n != 1 else "new == old") + ")")
    if problems:
        raise MutantError(f"{len(problems)} mutant(s) no longer match the code; update them: " + "; ".join(problems))


_SKIP = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", ".ci-venv",
                               "*.egg-info", ".hypothesis", "runs", "out", "log", "logs")


def copy_tree(src: Path, dst: Path) -> Path:
    """A working copy of the repository at `src` in `dst` (sources, tests, docs; no .git or caches)."""
    shutil.copytree(src, dst, ignore=_SKIP, symlinks=True)
    return dst


def run_tests(root: Path, tests: Sequence[str], timeout: float, env: dict[str, str]) -> tuple[str, str]:
    """(status, pytest's summary line) of `pytest -x tests` in `root`: passed / failed / timeout / error."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-n", "0", "-rs", *tests]
    try:
        p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return "timeout", f"over {timeout:.0f} s"
    lines = [ln.strip("= ") for ln in (p.stdout + p.stderr).strip().splitlines() if ln.strip()]
    summary = lines[-1] if lines else ""
    # pytest exits 0 when all passed, 1 when some failed; 2-5: interrupted, internal error, usage, nothing collected.
    status = {0: "passed", 1: "failed"}.get(p.returncode, "error")
    if status == "passed" and "skipped" in summary:
        status = "passed-with-skips"  # a skipped test catches nothing: not a clean pass
    return status, summary


def child_env(root: Path, data_dir: Path | None) -> dict[str, str]:
    """The environment of a test run in the copy: the copy first on PYTHONPATH, the real data folder."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if data_dir is not None:  # conftest looks next to the tree (../shared/data): the copy has no neighbour
        env["JAXGPT_TEST_DATA"] = str(data_dir)
    env.pop("JAXGPT_CI", None)
    return env


def default_data_dir(src: Path) -> Path | None:
    d = Path(os.environ.get("JAXGPT_TEST_DATA", Path(src).resolve().parent / "shared" / "data"))
    return d if d.is_dir() else None


def run_check(src: Path, mutants: Sequence[Mutant], *, timeout: float = 300.0, baseline: bool = True,
              report: Callable[[Outcome], None] = lambda o: None, workdir: Path | None = None) -> list[Outcome]:
    """Plant each mutant in a copy of `src`, run its tests, and return one Outcome per mutant (in order).

    baseline: first run the union of the selected tests on the unmutated copy; they must pass (otherwise a
    "caught" would mean nothing) and none may skip (a skipped test catches nothing).
    """
    src = Path(src).resolve()
    check_mutants(src, mutants)
    data_dir = default_data_dir(src)
    with tempfile.TemporaryDirectory(prefix="jaxgpt-mutants-", dir=workdir) as tmp:
        root = copy_tree(src, Path(tmp) / "tree")
        env = child_env(root, data_dir)
        if baseline:
            union = list(dict.fromkeys(t for m in mutants for t in m.tests))
            t0 = time.perf_counter()
            status, summary = run_tests(root, union, timeout * max(1, len(mutants)), env)
            report(Outcome("(baseline)", "-", " ".join(union), status, time.perf_counter() - t0, summary))
            if status != "passed":
                raise RuntimeError(f"the unmutated tree does not pass the selected tests cleanly ({status}: "
                                   f"{summary}); fix that first (with data in {data_dir or 'no data folder'})")
        out = []
        for m in mutants:
            original = apply_mutant(root, m)
            t0 = time.perf_counter()
            try:
                status, summary = run_tests(root, m.tests, timeout, env)
            finally:
                (root / m.path).write_text(original, encoding="utf-8")
            status = {"failed": "caught", "passed": "SURVIVED", "passed-with-skips": "SURVIVED"}.get(status, status)
            o = Outcome(m.name, m.path, " ".join(m.tests), status, time.perf_counter() - t0, summary)
            report(o)
            out.append(o)
        return out


def table(outcomes: Sequence[Outcome]) -> str:
    """A Markdown table: mutant, file, tests, result, seconds."""
    rows = ["| mutant | file | tests run | result | s |", "|---|---|---|---|---:|"]
    rows += [f"| {o.name} | {o.path} | {o.tests} | {o.status} | {o.seconds:.0f} |" for o in outcomes]
    return "\n".join(rows)


def save_jsonl(path: Path, outcome: Outcome) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(asdict(outcome)) + "\n")


def load_jsonl(path: Path) -> list[Outcome]:
    if not Path(path).is_file():
        return []
    return [Outcome(**json.loads(line)) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]


# ---- the catalogue -------------------------------------------------------------------------------------
# One entry per planted bug; `tests` are node ids, so each mutant runs for seconds, not minutes. When one
# survives, sharpen or add a test (tests/test_invariants.py holds those the issue added) and keep it here.

_ATT, _GPT, _HF = "parity_tests/test_attention.py", "parity_tests/test_gpt.py", "parity_tests/test_hf.py"
_OPT, _LOADER = "parity_tests/test_optimizer.py", "tests/test_loader.py"
_MM, _TOKTRAIN = "parity_tests/test_makemore.py", "tests/test_tokenizer_train.py"


def _m(name: str, path: str, old: str, new: str, tests: Sequence[str], why: str) -> Mutant:
    return Mutant(name, path, old, new, tuple(tests), why)


MUTANTS: list[Mutant] = [
    # -- causal masks, on every attention path
    _m("explicit-mask-sees-next", "jaxgpt/gpt.py",
       "jnp.where(jnp.tril(jnp.ones((T, T), dtype=bool)), att, -jnp.inf)",
       "jnp.where(jnp.tril(jnp.ones((T, T), dtype=bool), k=1), att, -jnp.inf)",
       [f"{_ATT}::test_training_attention_is_causal_with_dropout"],
       "the explicit (training, dropout) attention lets each position see one future token"),
    _m("kv-cache-mask-sees-next", "jaxgpt/gpt.py",
       "mask = jnp.arange(S)[None, :] <= (pos + jnp.arange(T))[:, None]",
       "mask = jnp.arange(S)[None, :] <= (pos + 1 + jnp.arange(T))[:, None]",
       [f"{_GPT}::test_kv_cache_logits"], "the KV-cache decode mask reads one slot ahead"),
    _m("fused-not-causal", "jaxgpt/gpt.py",
       "y = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation=self.attn_impl)",
       "y = jax.nn.dot_product_attention(q, k, v, is_causal=False, implementation=self.attn_impl)",
       [f"{_ATT}::test_explicit_path_matches_fused_path_and_torch_as_dropout_vanishes"],
       "the fused (GPU default) attention path is not causal"),
    _m("torch-sdpa-not-causal", "torchref/gpt.py",
       "dropout_p=self.dropout if self.training else 0.0, is_causal=True",
       "dropout_p=self.dropout if self.training else 0.0, is_causal=False",
       [f"{_GPT}::test_causality_future_token"], "torch's attention is not causal"),
    _m("torch-kv-cache-mask", "torchref/gpt.py",
       "mask = torch.arange(S, device=x.device)[None, :] <= (pos + torch.arange(T, device=x.device))[:, None]",
       "mask = torch.arange(S, device=x.device)[None, :] < (pos + torch.arange(T, device=x.device))[:, None]",
       [f"{_GPT}::test_kv_cache_logits"], "torch's KV-cache mask hides the token itself"),
    # -- optimiser: decay mask, schedule endpoints
    _m("decay-mask-all-vectors", "jaxgpt/train/optimizer.py", "lambda p: jnp.ndim(p) >= 2", "lambda p: jnp.ndim(p) >= 1",
       [f"{_OPT}::test_weight_decay_only_on_matrices"], "AdamW decays biases and LayerNorm gains"),
    _m("torch-decay-on-vectors", "torchref/train/optimizer.py",
       '{"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}',
       '{"params": [p for p in params if p.dim() < 2], "weight_decay": cfg.weight_decay}',
       [f"{_OPT}::test_weight_decay_only_on_matrices"], "torch's AdamW decays biases and gains"),
    _m("warmup-starts-at-zero", "jaxgpt/common/schedule.py", "return cfg.lr * (step + 1) / cfg.warmup_steps",
       "return cfg.lr * step / cfg.warmup_steps", [f"{_OPT}::test_lr_schedule_matches_lr_at"],
       "the warm-up's first step has learning rate 0 (nanoGPT's (it + 1))"),
    _m("cosine-ends-late", "jaxgpt/train/optimizer.py",
       "ratio = jnp.clip((step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps), 0.0, 1.0)",
       "ratio = jnp.clip((step - cfg.warmup_steps) / max(1, cfg.max_steps), 0.0, 1.0)",
       [f"{_OPT}::test_lr_schedule_matches_lr_at"], "the JAX cosine does not reach its floor at max_steps"),
    _m("floor-not-held-at-max-steps", "jaxgpt/train/optimizer.py",
       "cosine = jnp.where(step >= cfg.max_steps, min_lr, cosine)",
       "cosine = jnp.where(step > cfg.max_steps, min_lr, cosine)",
       [f"{_OPT}::test_lr_schedule_matches_lr_at"], "at step == max_steps (warm-up only) the peak, not the floor"),
    # -- gradient accumulation averages micro-steps; evaluation turns dropout off
    _m("jax-accumulation-sums", "jaxgpt/train/trainer.py", "grads = jax.tree.map(lambda g: g / A, gsum)",
       "grads = gsum", ["tests/test_train_gpt2.py::test_8_devices_equal_1_device_with_8x_accumulation"],
       "micro-step gradients summed, not averaged"),
    _m("torch-accumulation-sums", "torchref/train/trainer.py", "(loss / A).backward()", "loss.backward()",
       ["parity_tests/test_train_parity.py::test_jax_and_torch_recipes_give_the_same_20_step_trajectory"],
       "torch micro-step losses summed, not averaged"),
    _m("jax-eval-in-training-mode", "jaxgpt/train/trainer.py", "model, _ = nnx.merge(gd_eval, state)",
       "model, _ = nnx.merge(gd_train, state)", ["tests/test_train_gpt2.py::test_evaluation_turns_dropout_off"],
       "evaluation runs with dropout on"),
    # -- the loss: ignore index, padded logits
    _m("loss-keeps-ignored-targets", "jaxgpt/gpt.py", "valid = targets >= 0", "valid = targets >= -1",
       [f"{_GPT}::test_logits_and_loss"], "targets -1 (ignore_index) are scored"),
    _m("loss-pad-column-leaks", "jaxgpt/gpt.py",
       "masked = jnp.where(jnp.arange(logits.shape[-1]) < vocab_size, logits, -jnp.inf)",
       "masked = jnp.where(jnp.arange(logits.shape[-1]) <= vocab_size, logits, -jnp.inf)",
       [f"{_GPT}::test_logits_and_loss", f"{_GPT}::test_gradients"],
       "the first padded logit column takes probability in the loss"),
    _m("torch-loss-pad-column-leaks", "torchref/gpt.py", 'logits[..., vocab_size:] = float("-inf")',
       'logits[..., vocab_size + 1:] = float("-inf")', [f"{_GPT}::test_logits_and_loss", f"{_GPT}::test_gradients"],
       "torch: the first padded logit column takes probability in the loss"),
    # -- HellaSwag scoring
    _m("hellaswag-acc-uses-mean", "jaxgpt/common/data/hellaswag.py",
       "return Scores(sum_loss, mean_loss, sum_loss.argmin(-1), mean_loss.argmin(-1))",
       "return Scores(sum_loss, mean_loss, mean_loss.argmin(-1), sum_loss.argmin(-1))",
       ["tests/test_hellaswag_data.py::test_completion_scores_sum_mean_and_tie_break"], "acc and acc_norm swapped"),
    _m("hellaswag-mask-unshifted", "jaxgpt/common/data/hellaswag.py", "m = mask[..., 1:] != 0",
       "m = mask[..., :-1] != 0", ["tests/test_hellaswag_data.py::test_completion_scores_sum_mean_and_tie_break"],
       "the ending mask is not shifted to the predicted tokens"),
    _m("hellaswag-ending-positions-unshifted", "jaxgpt/common/data/hellaswag.py",
       "scored = batch.mask.reshape(groups, -1, L)[..., 1:] != 0",
       "scored = batch.mask.reshape(groups, -1, L)[..., :-1] != 0",
       ["tests/test_hellaswag_data.py::test_scoring_at_the_ending_positions_only_gives_the_same_predictions"],
       "the head runs one position before each ending token (issue 12's ending-only evaluation)"),
    _m("hellaswag-ending-losses-wrong-device-rows", "jaxgpt/eval/hellaswag.py",
       "x = x.reshape(G, -1, x.shape[-1])  # (G, R/G*(L-1), C): each device's rows stay on it",
       "x = x.transpose(1, 0, 2).reshape(G, -1, x.shape[-1])",
       ["parity_tests/test_hellaswag.py::test_the_head_at_the_endings_only_gives_every_position_s_losses"],
       "the JAX ending-only scorer reads another row's features"),
    # -- the loader: positions, epochs
    _m("loader-process-offset", "jaxgpt/common/data/loader.py",
       "start = self.position + self.process_index * B * T", "start = self.position + self.process_index * B",
       [f"{_LOADER}::test_processes_read_disjoint_slices_that_tile_the_global_batch"],
       "processes read overlapping slices of the global batch"),
    _m("loader-epoch-never-advances", "jaxgpt/common/data/loader.py",
       "return self.epoch + nxt // len(self.shards), nxt % len(self.shards)",
       "return self.epoch, nxt % len(self.shards)", [f"{_LOADER}::test_shard_order_shuffles_per_epoch_with_the_seed"],
       "the epoch counter never advances: every epoch reads the first epoch's order"),
    _m("loader-restore-forgets-epoch", "jaxgpt/common/data/loader.py",
       "        self._go(epoch, shard, position)\n        if self.current_file.name",
       "        self._go(0, shard, position)\n        if self.current_file.name",
       [f"{_LOADER}::test_resume_from_any_step_across_shard_and_epoch_boundaries"],
       "a restored loader restarts in epoch 0"),
    # -- checkpoints are complete or skipped
    _m("checkpoint-truncation-passes", "jaxgpt/common/checkpoint.py", 'if p.stat().st_size != entry.get("size"):',
       'if p.stat().st_size > entry.get("size"):',
       ["tests/test_train_gpt2.py::test_checkpoints_keep_last_k_and_fall_back_from_a_corrupt_one"],
       "a truncated checkpoint file counts as complete"),
    _m("checkpoint-manifest-ignored", "jaxgpt/common/checkpoint.py", 'files = meta.get("files", {})',
       "files = {}", ["tests/test_train_gpt2.py::test_checkpoints_keep_last_k_and_fall_back_from_a_corrupt_one"],
       "the file manifest is not checked at all"),
    _m("checkpoint-crc-ignored", "jaxgpt/common/checkpoint.py",
       "if verify and HASH in entry and file_crc32(p) != entry[HASH]:", "if False:",
       ["tests/test_nothing_lost.py::test_a_damaged_newest_checkpoint_is_named_skipped_and_written_again"],
       "damage that keeps a file's size goes unnoticed on resume"),
    _m("divergence-saves-non-finite", "jaxgpt/common/loop.py", "self.trainer.finite()", "True",
       ["tests/test_nothing_lost.py::test_non_finite_parameters_are_never_checkpointed_and_the_finite_one_is_kept"],
       "a checkpoint is written from non-finite parameters"),
    _m("run-folder-not-locked", "jaxgpt/common/resume.py", "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", "pass",
       ["tests/test_nothing_lost.py::test_a_second_run_into_a_folder_in_use_is_refused_and_changes_nothing"],
       "a second run into a folder in use prunes or deletes the first run's checkpoints"),
    _m("dp-allreduce-per-micro-step", "jaxgpt/train/trainer.py", "(accumulate if fsdp else per_device)", "accumulate",
       ["tests/test_grad_allreduce.py::test_the_8_device_step_all_reduces_after_the_accumulation_loop"],
       "data parallel: the gradients are all-reduced in every micro-step (plain jit)"),
    # -- the weight table's transposes
    _m("hf-export-no-transpose", "jaxgpt/common/weights.py",
       "        if _CONV1D.match(k):\n            w = w.T\n", "        if _CONV1D.match(k):\n            w = w\n",
       [f"{_HF}::test_our_save_hf_load"], "exported Conv1D weights keep our (out, in) layout"),
    _m("nnx-state-no-transpose", "jaxgpt/gpt.py", "out[name] = arr.T if transpose else arr", "out[name] = arr",
       [f"{_GPT}::test_weights_identical"], "state_numpy() leaves Flax kernels (in, out)"),
    # -- BPE: merge order, tie-breaks; tiktoken's split patterns
    _m("bpe-encode-right-to-left", "jaxgpt/common/tokenizer/base.py", "    heapq.heapify(heap)\n",
       "    heap.sort(key=lambda e: (e[0], -e[1]))\n", ["tests/test_tokenizer.py::test_heap_encoder_equals_minbpe_loop"],
       "equal merges applied right to left (minbpe's merge scans left to right)"),
    _m("bpe-reference-dict-order-tie", "jaxgpt/common/tokenizer/reference.py",
       "pair = max(stats, key=lambda p: (stats[p], -p[0], -p[1]))", "pair = max(stats, key=stats.get)",
       [f"{_TOKTRAIN}::test_fast_trainer_matches_reference_hypothesis"],
       "the reference trainer breaks ties by dict order (minbpe's rule), not by the smallest pair"),
    _m("bpe-trainer-stale-counts", "jaxgpt/common/tokenizer/trainer.py", "if c != -negc:", "if c < 0:",
       [f"{_TOKTRAIN}::test_tie_break_is_smallest_pair", f"{_TOKTRAIN}::test_fast_trainer_matches_reference_hypothesis"],
       "the fast trainer merges a pair by its stale count"),
    _m("gpt2-split-drops-re", "jaxgpt/common/tokenizer/split.py", r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++",
       r"'(?:[sdmt]|ll|ve)| ?\p{L}++", ["tests/test_tokenizer_tiktoken.py::test_split_patterns_are_tiktokens"],
       "the GPT-2 pattern forgets the 're contraction"),
    _m("gpt4-split-4-digits", "jaxgpt/common/tokenizer/split.py", r"\p{N}{1,3}+", r"\p{N}{1,4}+",
       ["tests/test_tokenizer_tiktoken.py::test_split_patterns_are_tiktokens"], "the GPT-4 pattern groups 4 digits"),
    # -- makemore: BatchNorm running statistics
    _m("bn-running-var-biased", "jaxgpt/makemore/layers.py", "var = x.var(axes, ddof=1)", "var = x.var(axes, ddof=0)",
       [f"{_MM}::test_twin_parity"], "BatchNorm uses the biased variance (the lecture: unbiased)"),
    _m("bn-momentum-swapped", "jaxgpt/makemore/layers.py",
       "self.running_mean[...] = (1 - m) * self.running_mean[...] + m * jax.lax.stop_gradient(mean)",
       "self.running_mean[...] = m * self.running_mean[...] + (1 - m) * jax.lax.stop_gradient(mean)",
       [f"{_MM}::test_twin_parity"], "the running mean keeps 10% of the old estimate instead of 90%"),
    _m("torch-bn-running-var-not-updated", "torchref/makemore/layers.py", "self.running_var.mul_(1 - m).add_(m * var)",
       "self.running_var.mul_(1.0)", [f"{_MM}::test_twin_parity"], "torch's running variance never moves"),
    # -- numerics: fp32 islands under bf16, tanh GELU, residual init
    # (dtype=None would be an equivalent mutant: LayerNorm's input, the residual stream, and its
    # parameters are fp32, so it still computes in fp32.)
    _m("layernorm-in-bf16", "jaxgpt/gpt.py", "use_bias=config.bias, dtype=jnp.float32, rngs=rngs)",
       "use_bias=config.bias, dtype=jnp.bfloat16, rngs=rngs)",
       ["tests/test_precision.py::test_jax_residual_stream_layernorm_and_loss_are_fp32"],
       "LayerNorm computes in bf16 (torch autocast keeps it fp32)"),
    _m("softmax-scores-in-bf16", "jaxgpt/gpt.py",
       "att = jnp.matmul(q, k.swapaxes(-1, -2), precision=precision, preferred_element_type=jnp.float32)",
       "att = jnp.matmul(q, k.swapaxes(-1, -2), precision=precision)",
       ["tests/test_precision.py::test_jax_op_dtypes_under_bf16"], "attention scores and softmax in bf16"),
    _m("gelu-exact", "jaxgpt/gpt.py", "jax.nn.gelu(h, approximate=True)", "jax.nn.gelu(h, approximate=False)",
       ["tests/test_invariants.py::test_mlp_activation_is_gpt2s_tanh_gelu"],
       "the exact erf GELU instead of GPT-2's tanh approximation (parity_tests/test_gpt.py::test_mlp let it pass)"),
    _m("torch-gelu-exact", "torchref/gpt.py", 'F.gelu(h, approximate="tanh")', "F.gelu(h)",
       ["tests/test_invariants.py::test_mlp_activation_is_gpt2s_tanh_gelu"], "torch's MLP uses the exact erf GELU"),
    # -- metrics the logs report
    _m("bits-per-byte-swapped", "jaxgpt/common/loop.py", "return nats_per_token / (bytes_per_token * math.log(2))",
       "return bytes_per_token / (nats_per_token * math.log(2))",
       ["tests/test_metrics.py::test_bits_per_byte_with_unequal_token_and_byte_counts"], "bits per byte inverted"),
    _m("bench-tokens-ignore-accumulation", "jaxgpt/common/bench.py", "tokens = s.grad_accum * s.batch * s.seq",
       "tokens = s.batch * s.seq", ["tests/test_bench.py::test_bench_records_fields_and_repeats"],
       "the benchmark's tokens/s forgets the accumulation micro-steps"),
]
