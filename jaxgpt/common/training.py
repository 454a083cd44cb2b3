"""What `scripts/train.py` does: one GPT training run, any preset, either framework.

    configs (preset + --key=value) -> data checks (framework-free, before anything heavy) ->
    the framework's processes and devices -> loaders -> Trainer -> resume or start -> Loop.run

Framework-free: the framework is imported only through jaxgpt/common/frameworks.py, so a JAX run
never imports torch. Every problem with the input is a ValueError/FileNotFoundError with the fix,
raised before anything is written; `main` turns them into one `error:` line and the exit codes
of jaxgpt/common/runlog.py (1 bad input, 3 diverged, 128+N signal N).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from jaxgpt.common import frameworks
from jaxgpt.common.checkpoint import CheckpointDir, check_writable
from jaxgpt.common.config import GPTConfig, UsageError
from jaxgpt.common.data.codec import TOKENIZER_FILE, load_codec, open_tokenizer
from jaxgpt.common.data.loader import Prefetcher, ShardLoader, TokenArrayLoader, list_shards
from jaxgpt.common.data.prepare import DataInfo, read_data_info
from jaxgpt.common.finetune import check_vocab, init_source, init_weights
from jaxgpt.common.hostmem import recycle_freed_memory
from jaxgpt.common.loop import Launch, Loop, RunData, primary_only
from jaxgpt.common.monitor import check_monitor
from jaxgpt.common.profile import parse_profile_steps
from jaxgpt.common.recipes import TrainConfig, batch_layout, configs_for
from jaxgpt.common.resume import RunFolderLock, check_run_folder, replace_run, run_identity, start_step
from jaxgpt.common.runlog import EXIT_BAD_INPUT, EXIT_USAGE, Stop
from jaxgpt.common.schedule import OptimConfig

GPT2_VOCAB = 50257
GPT2_ENCODINGS = ("gpt2", "r50k_base")  # the same ranks and ids: HellaSwag's tokenizer


def check_data(data: DataInfo, model: GPTConfig, preset: str) -> None:
    """The shards' tokenizer must be the model's vocabulary (one line naming both and the fix)."""
    for split in ("train", "val"):
        list_shards(data.path, split)  # missing folder / shards: FileNotFoundError saying how to make them
    tok = data.tokenizer
    if tok is not None and tok.vocab_size != model.vocab_size:
        raise ValueError(f"the shards in {data.path} were made with the tokenizer {tok.name!r} of {tok.vocab_size} ids, "
                         f"but the model (--preset {preset}) has vocab_size={model.vocab_size}; pass "
                         f"--vocab_size={tok.vocab_size}, or prepare the data with a {model.vocab_size}-id tokenizer")


def check_export(model: GPTConfig, cfg: TrainConfig) -> None:
    """Refuse at the start, not after training, a model that a Hugging Face GPT-2 directory cannot hold."""
    if cfg.export_hf:
        from jaxgpt.common.weights import hf_config_dict

        try:
            hf_config_dict(model)
        except ValueError as e:
            raise ValueError(f"{e}; pass --export_hf=false") from None


def check_observers(cfg: TrainConfig, optim: OptimConfig) -> None:
    """--wandb_project without wandb, a malformed --profile_steps or one outside 0..max_steps: refused before
    anything is written (a resumed run's own start is checked again once it is known)."""
    check_monitor(cfg.wandb_project)
    parse_profile_steps(cfg.profile_steps, 0, optim.max_steps)


def text_codec(data: DataInfo, model: GPTConfig, cfg: TrainConfig, log: Callable[[str], None]) -> Any:
    """The tokenizer that decodes samples, or None when there are none to decode."""
    if not cfg.sample_every:
        return None
    if data.tokenizer is not None:
        return load_codec(data.tokenizer, data.path)
    if model.vocab_size == GPT2_VOCAB:  # build-nanogpt's shards come without a manifest
        log(f"note: {data.path} has no manifest.json; samples assume the GPT-2 tokenizer (vocab 50257)")
        return open_tokenizer("gpt2")
    raise ValueError(f"{data.path} has no manifest.json, so the tokenizer that decodes samples is unknown; make the "
                     "shards with scripts/prepare_data.py, or pass --sample_every=0")


def hellaswag_tasks(data: DataInfo, model: GPTConfig, cfg: TrainConfig) -> list | None:
    """HellaSwag rendered once for the run (GPT-2 tokenizer), or None."""
    if not cfg.hellaswag_file:
        return None
    tok = data.tokenizer
    if model.vocab_size != GPT2_VOCAB or (tok is not None and (tok.kind, tok.name) not in
                                          [("tiktoken", n) for n in GPT2_ENCODINGS]):
        raise ValueError(f"--hellaswag_file is scored with the GPT-2 tokenizer, but this model's data uses "
                         f"{tok.name if tok else f'a {model.vocab_size}-id vocabulary'}; pass --hellaswag_file=''")
    from jaxgpt.common.data.hellaswag import hellaswag_file, load_examples, pad_token, render_example

    enc = open_tokenizer("gpt2").impl
    examples = load_examples(hellaswag_file(cfg.hellaswag_file), cfg.hellaswag_limit or None)
    return [render_example(ex, enc, model.block_size, pad_token(model)) for ex in examples]


RANDOM_ORDER_MAX_TOKENS = 1_000_000_000  # --batch_order=random loads the train split: 2 GB of uint16 at most


def export_tokenizer(hf_dir: Path, data: DataInfo, model: GPTConfig, log: Callable[[str], None]) -> None:
    """Write the shards' tokenizer (GPT-2's for manifest-less GPT-2-vocabulary shards) into the HF export."""
    from jaxgpt.common.hf_tokenizer import save_tokenizer

    if data.tokenizer is not None:
        codec = load_codec(data.tokenizer, data.path)
    elif model.vocab_size == GPT2_VOCAB:
        codec = open_tokenizer("gpt2")
    else:
        log(f"note: {data.path} has no manifest.json, so {hf_dir} has no tokenizer files (the tokenizer is unknown)")
        return
    save_tokenizer(hf_dir, codec, model.block_size)


def train_batches(cfg: TrainConfig, model: GPTConfig, rows: int, pid: int, nproc: int,
                  eot_id: int | None = None) -> Any:
    """This process's source of `rows` training rows per step, in cfg.batch_order (see TrainConfig), read
    cfg.prefetch batches ahead in a background thread (the same batches and states as without).
    `eot_id`: the document separator of the shards' tokenizer (None: GPT-2's, the loader's default)."""
    source = _train_source(cfg, model, rows, pid, nproc, eot_id)
    return Prefetcher(source, cfg.prefetch) if cfg.prefetch else source


def val_batches(cfg: TrainConfig, model: GPTConfig, rows: int, pid: int, nproc: int) -> ShardLoader:
    """The val split in file order (never document-shuffled): every evaluation reads the same first batches."""
    return ShardLoader(cfg.data_dir, "val", rows, cfg.seq_len, pid, nproc, vocab_size=model.vocab_size)


def _train_source(cfg: TrainConfig, model: GPTConfig, rows: int, pid: int, nproc: int, eot_id: int | None) -> Any:
    if cfg.batch_order == "sequential":
        # eot_id None: shards without our manifest are build-nanogpt's, GPT-2 tokens (the loader's default id)
        return ShardLoader(cfg.data_dir, "train", rows, cfg.seq_len, pid, nproc, vocab_size=model.vocab_size,
                           shuffle_seed=cfg.shuffle_seed, doc_shuffle_seed=cfg.doc_shuffle_seed,
                           **({} if eot_id is None else {"eot_id": eot_id}))
    shards = list_shards(cfg.data_dir, "train")
    arrays = [np.load(p, mmap_mode="r") for p in shards]
    total = sum(len(a) for a in arrays)
    if total > RANDOM_ORDER_MAX_TOKENS:
        raise ValueError(f"--batch_order=random loads the train split into memory, and {cfg.data_dir} holds {total:,} "
                         "train tokens; use --batch_order=sequential for a corpus this size")
    return TokenArrayLoader(np.concatenate(arrays), rows, cfg.seq_len, seed=cfg.seed, process_index=pid,
                            num_processes=nproc, vocab_size=model.vocab_size)


def train(preset: str, overrides: list[str], framework: str = "jax", resume: bool = False,
          launch: Launch | None = None, log: Callable[[str], None] = lambda m: print(m, flush=True),
          force: bool = False) -> dict:
    """Train `preset` (with --key=value overrides) in `framework`; the final metrics (metrics.json).

    A fresh run into a folder holding an earlier run's outputs is refused unless `force` (then they are
    deleted once everything else has been checked, so a refused run changes nothing)."""
    frameworks.check_framework(framework)
    model_cfg, cfg, optim = configs_for(preset, overrides)
    if not cfg.data_dir:
        raise ValueError("no --data_dir: pass the folder of shards made by scripts/prepare_data.py")
    data = read_data_info(cfg.data_dir)
    if cfg.init_from and data.tokenizer is not None:
        check_vocab(cfg.init_from, model_cfg, data.tokenizer.name, data.tokenizer.vocab_size, cfg.data_dir)
    check_data(data, model_cfg, preset)
    check_export(model_cfg, cfg)
    check_observers(cfg, optim)
    codec = text_codec(data, model_cfg, cfg, log)
    tasks = hellaswag_tasks(data, model_cfg, cfg)
    out = Path(cfg.out_dir or f"out/{preset}-{framework}")
    replaced = check_run_folder(out, resume, force)

    fw = frameworks.runtime(framework)
    cluster = fw.connect(launch or Launch())
    log = primary_only(log, cluster)  # from here on, only process 0 prints
    micro, accum = batch_layout(cfg.total_batch_tokens, cfg.micro_batch, cfg.seq_len, cluster.n_devices)
    rows = micro * cluster.local_devices  # this process's rows per micro-step
    pid, nproc = cluster.process_index, cluster.num_processes
    train_loader = train_batches(cfg, model_cfg, rows * accum, pid, nproc,
                                 data.tokenizer.eot_id if data.tokenizer else None)
    val_loader = val_batches(cfg, model_cfg, rows, pid, nproc)
    rt = fw.make_runtime(model_cfg, cfg, optim, cluster, accum)
    rt.log = log
    rt.probe = frameworks.module(framework, "train.profile")  # --profile_steps traces, the peak-memory figure
    lock = None
    if rt.primary:
        check_writable(out)
        lock = RunFolderLock(out, log)  # before --force deletes anything: never another live run's outputs
    try:
        if rt.primary:
            replace_run(replaced, log)
        rt.barrier()
        ckpts = CheckpointDir(out / "checkpoints", cfg.keep, is_primary=rt.primary, barrier=rt.barrier, log=log,
                              keep_every=cfg.keep_every)
        identity = run_identity(model_cfg, cfg, optim, data.tokenizer.to_dict() if data.tokenizer else None)
        start = start_step(ckpts, rt.trainer, train_loader, identity, resume, log)
        if cfg.init_from and start == 0:
            rt.trainer.load_numpy(init_weights(cfg.init_from, model_cfg))
            log(f"initialised from {init_source(cfg.init_from).describe()} "
                "(weights only: fresh optimiser and schedule)")
        if rt.primary and data.tokenizer is not None and data.tokenizer.kind == "bpe":
            shutil.copyfile(data.path / TOKENIZER_FILE, out / TOKENIZER_FILE)  # the run folder decodes its samples
        log(f"{framework}: {preset}, {model_cfg.n_layer} layers, {cluster.n_devices} devices in {nproc} process(es), "
            f"{cfg.total_batch_tokens:,} tokens/step = {micro} rows x {cfg.seq_len} x {cluster.n_devices} devices x "
            f"{accum} accumulation steps ({cfg.batch_order} rows), {cfg.dtype}{', FSDP' if cfg.fsdp else ''}; "
            f"data {data.path}" + (f" ({data.tokenizer.name}, {data.tokenizer.vocab_size} ids)" if data.tokenizer else ""))
        for line in rt.setup:
            log(line)
        run = RunData(train_loader, val_loader, codec, data.bytes_per_token("val"), tasks)
        loop = Loop(model_cfg, cfg, optim, rt, run, out, ckpts, {"preset": preset, "config": identity})
        metrics = loop.run(start)
        if rt.primary and cfg.export_hf:  # the tokenizer beside the weights: transformers can use RUN/hf alone
            export_tokenizer(out / "hf", data, model_cfg, log)
    finally:
        if isinstance(train_loader, Prefetcher):
            train_loader.close()  # its reader thread, with what it read ahead
        if lock is not None:
            lock.release()
    bpb = f", {metrics['val_bpb']:.4f} bits/byte" if metrics.get("val_bpb") is not None else ""
    speed = f", {metrics['steps_per_s']:.2f} steps/s" if metrics.get("steps_per_s") else ""
    log(f"done: step {metrics['step']}, val loss {metrics['val_loss']:.4f}{bpb}{speed}")
    return metrics


def main(preset: str, overrides: list[str], framework: str = "jax", resume: bool = False,
         launch: Launch | None = None, force: bool = False) -> int:
    """`train` with the CLI's conventions: one `error:` line on stderr and an exit code, no traceback."""
    # First, before a framework starts its threads: CPU steps reuse their freed buffers (hostmem.py; a step of
    # the poetry GPT spent a fifth of its time faulting fresh pages in without it). Harmless on GPU hosts.
    recycle_freed_memory()
    try:
        train(preset, overrides, framework, resume, launch, force=force)
    except Stop as e:
        print(f"{'error: ' if e.code == 3 else ''}{e}", file=sys.stderr, flush=True)
        return e.code
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    return 0
