"""Checkpoint directories, framework-free (shared by the JAX and torch trainers; no jax, no torch).

A checkpoint is a directory whose framework-specific files (orbax arrays, or torch.save's
state.pt) are written by the trainer, plus `meta.json` written LAST by this module. meta.json
holds the run's JSON metadata (step, data-loader position, config, ...) and a manifest of every
other file with its size, so a checkpoint is *complete* exactly when meta.json parses and every
listed file is there with its size (a crash mid-write, a truncated copy or a deleted file all fail).

Writes are atomic: everything goes into a hidden temporary directory beside the target, which
is renamed into place only when complete. An interrupted save therefore never damages the
previous checkpoint, and a reader never sees half a checkpoint.

Two layouts:
- one directory, replaced on each save (`save_atomic`, `checkpoint_exists`): the poetry stage;
- a run folder of `step_00001234/` directories keeping the last K (`CheckpointDir`): GPT-2. On
  resume the newest complete one is used; an incomplete or unreadable newest one is skipped with
  a message naming it, and the previous one is used (never deleted: it may be inspected).

Multi-process runs: every process calls `save` (the trainer's writer may be collective, e.g.
orbax's); only the primary process writes meta.json, renames and prunes; `barrier` (a callable)
keeps the others from racing ahead of the rename.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

META = "meta.json"
_STEP_DIR = re.compile(r"^step_(\d{8})$")


def _manifest(directory: Path) -> dict[str, int]:
    """{relative path: size in bytes} of every file under `directory` (meta.json excluded)."""
    return {str(p.relative_to(directory)): p.stat().st_size for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != META}


def write_meta(directory: Path, meta: dict[str, Any]) -> None:
    """Write meta.json (with the file manifest) last, via a temp file and rename."""
    directory = Path(directory)
    tmp = directory / (META + ".tmp")
    tmp.write_text(json.dumps({**meta, "files": _manifest(directory)}, indent=1))
    os.replace(tmp, directory / META)


def check_complete(directory: Path) -> dict[str, Any]:
    """The checkpoint's metadata, or ValueError saying why it is incomplete or corrupt."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"checkpoint {directory} does not exist")
    try:
        meta = json.loads((directory / META).read_text())
    except FileNotFoundError:
        raise ValueError(f"checkpoint {directory} is incomplete (no {META}: the save was interrupted)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"checkpoint {directory} has a corrupt {META} ({e})") from None
    files = meta.get("files", {})  # absent in checkpoints written before the manifest existed
    if not isinstance(files, dict):
        raise ValueError(f"checkpoint {directory}: {META} has a malformed file manifest")  # noqa: TRY004
    for rel, size in files.items():
        p = directory / rel
        if not p.is_file():
            raise ValueError(f"checkpoint {directory} is missing {rel}")
        if p.stat().st_size != size:
            raise ValueError(f"checkpoint {directory}: {rel} is {p.stat().st_size} bytes, {size} expected (truncated?)")
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
                         "pick another --out / --ckpt_dir or fix its permissions") from None


def save_atomic(directory: Path, write: Callable[[Path], None], meta: dict[str, Any] | None = None, *,
                is_primary: bool = True, barrier: Callable[[], None] = lambda: None) -> Path:
    """Let `write(tmp)` fill a temp directory, add meta.json, rename it to `directory` (replacing it).

    `meta` lives in the same directory as the arrays, so the model state and, e.g., the position
    in the data can never come from two different saves.
    """
    directory = Path(directory)
    tmp = directory.with_name("." + directory.name + ".tmp")
    if is_primary:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    write(tmp)
    barrier()
    if is_primary:
        write_meta(tmp, meta or {})
        if directory.exists():  # replace: move the old one aside first, so one complete copy always exists
            old = directory.with_name("." + directory.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    barrier()
    return directory


class CheckpointDir:
    """A run's `step_XXXXXXXX/` checkpoints: atomic saves, keep the last `keep`, newest-complete lookup."""

    def __init__(self, root: str | Path, keep: int = 3, *, is_primary: bool = True,
                 barrier: Callable[[], None] = lambda: None, log: Callable[[str], None] | None = None) -> None:
        if keep < 1:
            raise ValueError(f"keep={keep} must be >= 1 (the number of checkpoints kept)")
        self.root, self.keep, self.is_primary, self.barrier = Path(root), keep, is_primary, barrier
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))

    def path(self, step: int) -> Path:
        return self.root / f"step_{step:08d}"

    def steps(self) -> list[int]:
        """Steps of every step_ directory (complete or not), ascending."""
        if not self.root.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir())

    def save(self, step: int, write: Callable[[Path], None], meta: dict[str, Any]) -> Path:
        """Write checkpoint `step` atomically, then delete complete ones older than the last `keep`."""
        path = save_atomic(self.path(step), write, {**meta, "step": step}, is_primary=self.is_primary,
                           barrier=self.barrier)
        if self.is_primary:
            complete = [s for s in self.steps() if checkpoint_exists(self.path(s))]
            for s in complete[:-self.keep]:
                shutil.rmtree(self.path(s), ignore_errors=True)
        self.barrier()
        return path

    def restore_latest(self, restore: Callable[[Path, dict[str, Any]], None]) -> dict[str, Any] | None:
        """Call `restore(path, meta)` on the newest checkpoint that is complete and loads; its meta, or None.

        A newest checkpoint that is incomplete, corrupt, or whose `restore` raises is reported and
        the previous one is tried. Errors that say the checkpoint belongs to another config
        (`ConfigMismatch`) are not skipped: resuming someone else's run silently would be worse.
        """
        skipped = []
        for step in reversed(self.steps()):
            path = self.path(step)
            try:
                meta = check_complete(path)
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


class ConfigMismatch(ValueError):
    """A checkpoint written by a run with another configuration."""


def check_same_config(saved: dict[str, Any], current: dict[str, Any], where: Path | str) -> None:
    """Raise ConfigMismatch naming every field whose value differs between two flat-ish config dicts."""
    diffs = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"{key}.{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}"
                      for k in sorted(set(a) | set(b)) if a.get(k, "<absent>") != b.get(k, "<absent>")]
        elif a != b:
            diffs.append(f"{key}: {a!r} -> {b!r}")
    if diffs:
        raise ConfigMismatch(f"checkpoint {where} was written with another configuration ({'; '.join(diffs)}); "
                             "resume with the original settings, or start a new run in another directory")
