"""Checkpoints, framework-free: atomic run folders of named training states (no jax, no torch here).

A checkpoint is a directory `RUN/checkpoints/step_XXXXXXXX/` holding the trainer's state, plus
`meta.json` written LAST by this module. meta.json holds the run's JSON metadata (step, framework,
state format, data-loader position, config) and a manifest of every other file with its size and
CRC-32, so a checkpoint is *complete* exactly when meta.json parses and every listed file is there
with its size (a crash mid-write, a truncated copy or a deleted file all fail), and *intact* when
each file's content also matches its CRC-32 (checked on resume: damage that keeps the size fails).

**The state, by name** (the same names and layouts in both frameworks; `load_train_state_numpy` /
`train_state_numpy` of either Trainer take and give this flat dict of numpy arrays):

    params/<name>     every parameter: the weight table's name and torch layout (jaxgpt/common/weights.py),
                      e.g. params/transformer.h.0.attn.c_attn.weight (3C, C), fp32
    opt/mu/<name>     AdamW's first moment of that parameter (same shape and layout)
    opt/nu/<name>     AdamW's second moment
    step              int64 scalar: optimiser steps taken (the schedule and AdamW's bias correction)
    rng/...           the dropout RNG, framework-specific: JAX rng/<module path>.rngs.key (raw uint32 key
                      data) and .count; torch rng/cpu (and rng/cuda), torch.get_rng_state()'s bytes

On disk: JAX writes this tree with orbax into `state/` (format "orbax-named-v1": nested as
{"params": {name: array}, "opt": {"mu": ..., "nu": ...}, "rng": ..., "step": ...}, each array
sharded as in training, so multi-host saves are collective); torch writes `state.safetensors`
(format "safetensors-named-v1", flat keys as above), which numpy reads without torch. A checkpoint
resumes in the other framework: parameters, AdamW moments, step and data position cross over
exactly; the dropout RNG stream cannot (the two frameworks draw differently) and restarts from the
run's seed, which changes nothing when dropout is 0. Checkpoints written before this layout
(orbax leaves keyed "00000", ..., or torch.save's state.pt) are refused, saying what to do.

Writes are atomic: everything goes into a hidden temporary directory beside the target, which is
renamed into place only when complete. An interrupted save therefore never damages the previous
checkpoint, and a reader never sees half a checkpoint. With an asynchronous writer (JAX
`--async_checkpoint`: `write` returns a handle with `wait()`), the rename and meta.json happen in
`commit()`, after the background write has finished: the same completeness guarantee, later.

`CheckpointDir` keeps the last K (plus milestones: with `keep_every=N`, every checkpoint at a step
divisible by N stays, outside the count); on resume the newest intact one is used; an incomplete, damaged
or unreadable newest one is skipped with a message naming it, and the previous one is used (never
deleted: it may be inspected; the run writes that step again when it gets there). Multi-process runs: every process calls `save` (the writer may be
collective, e.g. orbax's); only the primary process writes meta.json, renames and prunes;
`barrier` (a callable) keeps the others from racing ahead of the rename.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

META = "meta.json"
ORBAX_FORMAT = "orbax-named-v1"  # JAX: the named tree in state/ (jaxgpt/train/trainer.py)
SAFETENSORS_FORMAT = "safetensors-named-v1"  # torch: state.safetensors
SAFETENSORS_FILE = "state.safetensors"
_STEP_DIR = re.compile(r"^step_(\d{8})$")


HASH = "crc32"  # the manifest's content hash (zlib's, streamed): see `file_crc32`
_CHUNK = 1 << 22


def file_crc32(path: Path) -> str:
    """The CRC-32 of a file's bytes, as 8 hex digits, read in 4 MiB chunks.

    Why CRC-32: the manifest guards against accidental damage (a bad disk, a partial copy, a stray
    write), which a 32-bit CRC detects except with probability 2**-32, and every burst of up to 32
    bits always; it is the fastest of the hashes measured on our CPU (docs/BENCHMARKS.md, "Checkpoint
    hashing and input fingerprints": reading a cached 1.49 GB GPT-2 124M state, ~0.95 s/GB vs ~1.4 for
    sha256 and ~2.3-3.3 for blake2b), so a save or a resume of that checkpoint pays ~1.4 s for it. It is
    no defence against deliberate tampering; nothing here is.
    """
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def _manifest(directory: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {"size": bytes, "crc32": hex}} of every file under `directory` (meta.json excluded)."""
    return {str(p.relative_to(directory)): {"size": p.stat().st_size, HASH: file_crc32(p)}
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != META}


def write_meta(directory: Path, meta: dict[str, Any]) -> None:
    """Write meta.json (with the file manifest) last, via a temp file and rename."""
    directory = Path(directory)
    tmp = directory / (META + ".tmp")
    tmp.write_text(json.dumps({**meta, "files": _manifest(directory)}, indent=1))
    os.replace(tmp, directory / META)


def check_complete(directory: Path, verify: bool = False) -> dict[str, Any]:
    """The checkpoint's metadata, or ValueError saying why it is incomplete or corrupt.

    Sizes are always checked (cheap: listing, pruning); `verify` also re-hashes every file against the
    manifest (a resume, a model loaded for evaluation), which catches damage that keeps the size.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"checkpoint {directory} does not exist")
    try:
        meta = json.loads((directory / META).read_text())
    except FileNotFoundError:
        raise ValueError(f"checkpoint {directory} is incomplete (no {META}: the save was interrupted)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"checkpoint {directory} has a corrupt {META} ({e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"checkpoint {directory} has a corrupt {META} (not a JSON object)")  # noqa: TRY004
    files = meta.get("files", {})  # absent in checkpoints written before the manifest existed
    if not isinstance(files, dict):
        raise ValueError(f"checkpoint {directory}: {META} has a malformed file manifest")  # noqa: TRY004
    for rel, entry in files.items():
        entry = entry if isinstance(entry, dict) else {"size": entry}  # manifests before hashes: sizes only
        p = directory / rel
        if not p.is_file():
            raise ValueError(f"checkpoint {directory} is missing {rel}")
        if p.stat().st_size != entry.get("size"):
            raise ValueError(f"checkpoint {directory}: {rel} is {p.stat().st_size} bytes, {entry.get('size')} "
                             "expected (truncated?)")
        if verify and HASH in entry and file_crc32(p) != entry[HASH]:
            raise ValueError(f"checkpoint {directory}: the content of {rel} does not match its {HASH} in {META} "
                             "(damaged on disk or in a copy)")
    return meta


def checkpoint_exists(directory: Path) -> bool:
    """True for a complete checkpoint directory (see `check_complete`)."""
    try:
        check_complete(directory)
        return True
    except ValueError:
        return False


def check_writable(directory: Path) -> None:
    """Raise ValueError (with the fix) unless files can be created in `directory` (created if missing)."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ValueError(f"checkpoint directory {directory} is not writable ({e.strerror or e}); "
                         "pick another --out_dir or fix its permissions") from None


class ConfigMismatch(ValueError):
    """A checkpoint that belongs to another run (configuration, format): never skipped silently."""


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Fields that differ between two (nested) config dicts, as 'name: old -> new' (the one config diff).

    >>> config_diff({"optim": {"lr": 1e-3}, "seed": 0}, {"optim": {"lr": 2e-3}, "seed": 0})
    ['optim.lr: 0.001 -> 0.002']
    """
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += config_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            diffs.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return diffs


def check_same_config(saved: dict[str, Any], current: dict[str, Any], where: Path | str) -> None:
    """Raise ConfigMismatch naming every field whose value differs between two config dicts."""
    diffs = config_diff(saved, current)
    if diffs:
        raise ConfigMismatch(f"checkpoint {where} was written with another configuration ({'; '.join(diffs)}); "
                             "resume with the original settings, or start a new run in another directory")


class PendingSave:
    """A checkpoint whose files are being written (in the background, for an asynchronous writer)."""

    def __init__(self, directory: Path, tmp: Path, meta: dict[str, Any], handle: Any) -> None:
        self.directory, self.tmp, self.meta, self.handle = directory, tmp, meta, handle


def begin_save(directory: Path, write: Callable[[Path], Any], meta: dict[str, Any] | None = None, *,
               is_primary: bool = True, barrier: Callable[[], None] = lambda: None) -> PendingSave:
    """Let `write(tmp)` start filling a temp directory beside `directory`; `commit_save` finishes it.

    `meta` is captured now (e.g. the data position of this step), so the arrays and the position
    can never come from two different steps, whenever the write completes.
    """
    directory = Path(directory)
    tmp = directory.with_name("." + directory.name + ".tmp")
    if is_primary:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    return PendingSave(directory, tmp, dict(meta or {}), write(tmp))


def commit_save(p: PendingSave, *, is_primary: bool = True, barrier: Callable[[], None] = lambda: None) -> Path:
    """Wait for the write, add meta.json, rename the temp directory to its name (replacing an older one)."""
    if p.handle is not None:
        p.handle.wait()
    barrier()
    if is_primary:
        write_meta(p.tmp, p.meta)
        if p.directory.exists():  # replace: move the old one aside first, so one complete copy always exists
            old = p.directory.with_name("." + p.directory.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(p.directory, old)
            os.replace(p.tmp, p.directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(p.tmp, p.directory)
    barrier()
    return p.directory


def save_atomic(directory: Path, write: Callable[[Path], Any], meta: dict[str, Any] | None = None, *,
                is_primary: bool = True, barrier: Callable[[], None] = lambda: None) -> Path:
    """Write a checkpoint directory completely: `write(tmp)`, meta.json, rename (waits for an async writer)."""
    return commit_save(begin_save(directory, write, meta, is_primary=is_primary, barrier=barrier),
                       is_primary=is_primary, barrier=barrier)


class CheckpointDir:
    """A run's `step_XXXXXXXX/` checkpoints: atomic saves, keep the last `keep`, newest-complete lookup."""

    def __init__(self, root: str | Path, keep: int = 3, *, is_primary: bool = True,
                 barrier: Callable[[], None] = lambda: None, log: Callable[[str], None] | None = None,
                 keep_every: int = 0) -> None:
        if keep < 1:
            raise ValueError(f"keep={keep} must be >= 1 (the number of checkpoints kept)")
        if keep_every < 0:
            raise ValueError(f"keep_every={keep_every} must be >= 0 (0 = no milestone checkpoints)")
        self.root, self.keep, self.is_primary, self.barrier = Path(root), keep, is_primary, barrier
        self.keep_every = keep_every  # milestones: steps divisible by it are never pruned (and not counted in keep)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.pending: PendingSave | None = None  # an asynchronous save not committed yet

    def path(self, step: int) -> Path:
        return self.root / f"step_{step:08d}"

    def steps(self) -> list[int]:
        """Steps of every step_ directory (complete or not), ascending; a pending save is not one yet."""
        if not self.root.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir())

    def save(self, step: int, write: Callable[[Path], Any], meta: dict[str, Any]) -> Path:
        """Write checkpoint `step` atomically (committing an earlier pending one first).

        A synchronous `write` is committed at once; an asynchronous one (it returns a handle with
        `wait()`) stays pending until the next save or `commit()`. Then older ones are pruned.
        """
        self.commit()
        pending = begin_save(self.path(step), write, {**meta, "step": step}, is_primary=self.is_primary,
                             barrier=self.barrier)
        self.pending = pending
        if pending.handle is None:
            self.commit()
        return pending.directory

    def commit(self) -> None:
        """Finish the pending save (wait, meta.json, rename), then delete complete ones beyond the last `keep`."""
        if self.pending is None:
            return
        pending, self.pending = self.pending, None
        commit_save(pending, is_primary=self.is_primary, barrier=self.barrier)
        if self.is_primary:
            self.prune()
        self.barrier()

    def milestone(self, step: int) -> bool:
        return self.keep_every > 0 and step % self.keep_every == 0

    def prune(self) -> None:
        """Delete the complete checkpoints beyond the newest `keep`, except milestones and the newest finite one."""
        complete = [s for s in self.steps() if checkpoint_exists(self.path(s)) and not self.milestone(s)]
        protected = self.newest_finite()  # the one a diverged run goes back to: never pruned
        for s in complete[:-self.keep]:
            if s != protected:
                shutil.rmtree(self.path(s), ignore_errors=True)

    def newest_finite(self) -> int | None:
        """The step of the newest complete checkpoint whose writer checked its state finite (meta "finite")."""
        for step in reversed(self.steps()):
            try:
                if check_complete(self.path(step)).get("finite"):
                    return step
            except ValueError:
                continue
        return None

    def restore_latest(self, restore: Callable[[Path, dict[str, Any]], None]) -> dict[str, Any] | None:
        """Call `restore(path, meta)` on the newest checkpoint that is complete and loads; its meta, or None.

        A newest checkpoint that is incomplete, corrupt, or whose `restore` raises is reported and
        the previous one is tried. Errors that say the checkpoint belongs to another run or format
        (`ConfigMismatch`) are not skipped: resuming someone else's run silently would be worse.
        """
        skipped = []
        for step in reversed(self.steps()):
            path = self.path(step)
            try:
                meta = check_complete(path, verify=True)
                restore(path, meta)
            except ConfigMismatch:
                raise
            except Exception as e:  # noqa: BLE001 - any failure to read it means: use the previous one
                self.log(f"warning: skipping checkpoint {path}: {e}")
                skipped.append(path.name)
                continue
            if skipped:
                self.log(f"resuming from the previous checkpoint {path} (skipped: {', '.join(skipped)})")
            return meta
        if skipped:
            raise ValueError(f"no usable checkpoint in {self.root}: every one failed ({', '.join(skipped)}); "
                             "start without --resume (into a new directory) or restore a backup")
        return None


# ---- the named training state ------------------------------------------------------------------------

def check_train_state(state: dict[str, np.ndarray], config: Any, source: str) -> None:
    """Raise (one line, with the fix) unless `state` holds exactly config's parameters and their moments."""
    from jaxgpt.common.weights import check_weights

    fix = "resume with the preset and --key=value settings of the run that wrote it"
    for prefix in ("params", "opt/mu", "opt/nu"):
        check_weights(group(state, prefix), config, f"{source}: {prefix}", fix)
    if "step" not in state:
        raise ValueError(f"{source}: no 'step' entry; the checkpoint is damaged or not a training state")


def group(state: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The entries under `prefix/`, without it: group(state, "params") -> {name: array}."""
    return {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + "/")}


def write_safetensors_state(directory: Path, state: dict[str, np.ndarray]) -> None:
    """The named state as DIR/state.safetensors (numpy in, numpy out: readable without any framework)."""
    from safetensors.numpy import save_file

    save_file({k: np.array(v, order="C") for k, v in state.items()}, str(Path(directory) / SAFETENSORS_FILE))  # 0-d stays 0-d


def read_safetensors_state(directory: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        return load_file(str(Path(directory) / SAFETENSORS_FILE))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise ValueError(f"{Path(directory) / SAFETENSORS_FILE} cannot be read ({type(e).__name__}: {e})") from None


class LegacyCheckpoint(ConfigMismatch):
    """A checkpoint written before states were stored by name."""


def check_named(meta: dict[str, Any], directory: Path) -> str:
    """The checkpoint's state format, or LegacyCheckpoint saying how to carry the run over."""
    fmt = meta.get("state_format")
    if fmt in (ORBAX_FORMAT, SAFETENSORS_FORMAT):
        return fmt
    raise LegacyCheckpoint(
        f"checkpoint {directory} has the old format (written before jaxgpt stored training states by name: "
        "orbax leaves keyed by index, or torch.save's state.pt), which this version cannot read. To carry the "
        "run over, finish or export it with the version that wrote it (`git checkout 3c277c1`, then its "
        "train_gpt2.py --resume, which writes RUN/hf at the end; Hugging Face exports are read by every version), "
        "or start a new run in another --out_dir")
