"""Evaluating a trained model outside training: val loss, bits per byte and HellaSwag of any model source.

Framework-free (the framework is imported through jaxgpt/common/frameworks.py). What scripts/eval.py
runs (and scripts/hellaswag.py, its HellaSwag-only alias). The model comes from any source of
jaxgpt/common/sources.py (a run or checkpoint of either framework, an HF directory, a cached model
name); it is evaluated by the framework's training runtime, the same Trainer.eval_loss and HellaSwag
scorer the training loop uses, on every local device (and every process under a launcher): with the
run's batch (`--batch_size` rows of `--seq_len`, the run's defaults) and `--steps` = its val_steps,
the figures are those the run logged. The scoring itself is jaxgpt/eval/hellaswag.py or its torch
twin, the rendering jaxgpt/common/data/hellaswag.py.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jaxgpt.common.config import UsageError
from jaxgpt.common.loop import Launch, bits_per_byte, write_json
from jaxgpt.common.sources import ModelSource, load_model, resolve_hf, resolve_model


def render_hellaswag(config: Any, data: str | None, limit: int | None) -> tuple[Path, list]:
    """(the file, its first `limit` tasks rendered with the GPT-2 tokenizer for a model of `config`)."""
    from jaxgpt.common.data.codec import open_tokenizer
    from jaxgpt.common.data.hellaswag import hellaswag_file, load_examples, pad_token, render_example

    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    path = hellaswag_file(data)
    enc = open_tokenizer("gpt2").impl
    return path, [render_example(ex, enc, config.block_size, pad_token(config)) for ex in load_examples(path, limit)]


def hellaswag(framework: str, src: ModelSource, data: str | None = None, limit: int | None = None,
              batch_size: int = 8, progress: bool = True, log=print) -> dict:
    """Score HellaSwag (the official val file, downloaded once, or `data`) for a model source in `framework`.

    Returns the scorer's dict plus "data" and "truncated" (tasks whose context was cut to fit block_size).
    """
    from jaxgpt.common.frameworks import runtime

    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    config = src.config()
    path, rendered = render_hellaswag(config, data, limit)
    cut = sum(r.truncated > 0 for r in rendered)
    log(f"{len(rendered)} tasks from {path}; model {src.describe()}: {config.n_layer} layers, n_embd "
        f"{config.n_embd}, block_size {config.block_size}; scored in {framework}")
    if cut:
        log(f"note: {cut} task(s) exceed block_size {config.block_size}: their context was cut from the left")
    r = runtime(framework).score_hellaswag(load_model(framework, src), rendered, batch_size, progress)
    return {**r, "data": str(path), "truncated": cut}


def hellaswag_main(framework: str, checkpoint: str | None = None, hf_dir: str | None = None, data: str | None = None,
                   limit: int | None = None, batch_size: int = 8, json_path: str | None = None,
                   progress: bool = True) -> int:
    """scripts/hellaswag.py: print `hellaswag: acc ... acc_norm ...`, optionally write --json; exit code."""
    try:
        src = resolve_hf(hf_dir) if hf_dir is not None else resolve_model(checkpoint)
        r = hellaswag(framework, src, data, limit, batch_size, progress)
    except (ValueError, FileNotFoundError, TypeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    res = r["result"]
    print(f"{res.summary()}  count {res.n}  ({r['seconds']:.1f} s)")
    if json_path:
        write_json(Path(json_path), {
            "framework": framework, "model": str(src.path), "data": r["data"], "count": res.n,
            "acc": res.acc, "acc_norm": res.acc_norm, "correct": res.correct, "correct_norm": res.correct_norm,
            "truncated": r["truncated"], "index": res.index.tolist(), "label": res.label.tolist(),
            "pred": res.pred.tolist(), "pred_norm": res.pred_norm.tolist(),
        })
    return 0


# ---- scripts/eval.py ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalArgs:
    """What scripts/eval.py was asked (None: the model's run's own setting, see `defaults`)."""

    model: str
    framework: str | None = None
    data_dir: str | None = None
    steps: int | None = None  # val batches; None = the run's val_steps (20 without a run)
    batch_size: int | None = None  # rows per val batch over all devices; None = the run's
    seq_len: int | None = None  # None = the run's, else the model's block_size
    dtype: str | None = None  # None = the run's compute dtype, else float32
    hellaswag: str | None = None  # a hellaswag_val.jsonl-schema file, or "official" (downloaded once)
    limit: int | None = None
    json_path: str | None = None


def run_settings(src: ModelSource) -> dict:
    """The training run's settings a faithful evaluation reuses (from the checkpoint's meta.json), or {}."""
    meta = src.meta
    if meta is None and src.run_dir is not None:  # RUN/hf: its run's newest checkpoint knows them
        from jaxgpt.common.checkpoint import CheckpointDir, check_complete

        ckpts = CheckpointDir(src.run_dir / "checkpoints")
        for step in reversed(ckpts.steps()):
            try:
                meta = check_complete(ckpts.path(step))
                break
            except ValueError:
                continue
    if not meta:
        return {}
    train = (meta.get("config") or {}).get("train") or {}
    out = {k: train[k] for k in ("data_dir", "seq_len", "dtype", "total_batch_tokens") if k in train}
    if meta.get("preset"):
        from jaxgpt.common.recipes import RECIPES

        recipe = RECIPES.get(meta["preset"])
        if recipe is not None:  # not recorded per run: the preset's (an override of these is not known here)
            out |= {"micro_batch": recipe.train.micro_batch, "val_steps": recipe.train.val_steps}
    return out


def val_rows(settings: dict, seq_len: int, n_devices: int) -> int:
    """The rows of one val batch of the run (all devices): micro_batch per device, or the whole step's batch."""
    micro = settings.get("micro_batch", 0)
    if micro:
        return micro * n_devices
    return max(1, settings.get("total_batch_tokens", 8 * seq_len) // seq_len)


def evaluate(a: EvalArgs, launch: Launch | None = None) -> dict:
    """The figures of scripts/eval.py for `a`, computed on every device of the runtime (see the module docstring)."""
    from jaxgpt.common.data.loader import ShardLoader
    from jaxgpt.common.frameworks import check_framework, runtime
    from jaxgpt.common.recipes import TrainConfig
    from jaxgpt.common.schedule import OptimConfig

    src = resolve_model(a.model)
    config = src.config()
    settings = run_settings(src)
    framework = check_framework(a.framework or (src.meta or {}).get("framework") or "jax")
    data_dir = a.data_dir
    if not data_dir and not a.hellaswag:
        raise UsageError("nothing to evaluate: pass --data_dir (val loss) and/or --hellaswag FILE")
    seq_len = a.seq_len or settings.get("seq_len") or config.block_size
    if seq_len > config.block_size:
        raise ValueError(f"--seq_len={seq_len} exceeds the model's block_size {config.block_size}")
    steps = a.steps or settings.get("val_steps", 20)
    for name, v in (("--steps", steps), ("--batch_size", a.batch_size), ("--limit", a.limit)):
        if v is not None and v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    info = None
    if data_dir:
        from jaxgpt.common.data.loader import list_shards
        from jaxgpt.common.data.prepare import read_data_info

        info = read_data_info(data_dir)
        list_shards(info.path, "val")
        tok = info.tokenizer
        if tok is not None and tok.vocab_size != config.vocab_size:
            raise ValueError(f"the shards in {data_dir} were made with the tokenizer {tok.name!r} of {tok.vocab_size} "
                             f"ids, but the model has vocab_size={config.vocab_size}; evaluate on data made with the "
                             "model's tokenizer")
    tasks = render_hellaswag(config, None if a.hellaswag == "official" else a.hellaswag, a.limit)[1] \
        if a.hellaswag else None
    weights = src.weights()  # read (and checked) before any device is touched

    fw = runtime(framework)
    cluster = fw.connect(launch or Launch())
    rows = a.batch_size or val_rows(settings, seq_len, cluster.n_devices)
    if rows % cluster.n_devices:
        raise ValueError(f"--batch_size={rows} rows do not split over {cluster.n_devices} devices; pass a multiple "
                         f"of {cluster.n_devices}")
    cfg = TrainConfig(total_batch_tokens=rows * seq_len, micro_batch=0, seq_len=seq_len,
                      dtype=a.dtype or settings.get("dtype", "float32"), compile_cache="")
    rt = fw.make_runtime(config, cfg, OptimConfig(max_steps=1, warmup_steps=0), cluster, 1)
    rt.trainer.load_numpy(weights)
    out: dict[str, Any] = {"model": str(src.path), "framework": framework, "devices": cluster.n_devices,
                           "dtype": cfg.dtype, "process_index": cluster.process_index}
    if info is not None:
        per = rows // cluster.num_processes
        val = ShardLoader(info.path, "val", per, seq_len, cluster.process_index, cluster.num_processes,
                          vocab_size=config.vocab_size)
        losses = [rt.trainer.eval_loss(*val.next_batch()) for _ in range(steps)]
        out |= {"data_dir": str(info.path), "val_steps": steps, "val_rows": rows, "seq_len": seq_len,
                "val_loss": sum(losses) / steps}  # as the training loop averages its val batches
        bpt = info.bytes_per_token("val")
        out["val_bpb"] = bits_per_byte(out["val_loss"], bpt) if bpt else None
    if tasks is not None:
        r = rt.hellaswag(tasks)
        out |= {"hellaswag_acc": r["acc"], "hellaswag_acc_norm": r["acc_norm"], "hellaswag_count": r["count"],
                "hellaswag_correct": r["correct"], "hellaswag_correct_norm": r["correct_norm"]}
    return out


def table(r: dict, describe: str) -> str:
    """The human-readable result of scripts/eval.py."""
    lines = [f"model      {describe}", f"framework  {r['framework']}, {r['devices']} device(s), {r['dtype']}"]
    if "val_loss" in r:
        lines.append(f"val loss   {r['val_loss']:.4f}   ({r['val_steps']} batches of {r['val_rows']} x {r['seq_len']} "
                     f"tokens from {r['data_dir']})")
        if r["val_bpb"] is not None:
            lines.append(f"bits/byte  {r['val_bpb']:.4f}")
    if "hellaswag_acc" in r:
        n = r["hellaswag_count"]
        lines.append(f"hellaswag  acc {r['hellaswag_acc']:.4f} ({r['hellaswag_correct']}/{n})  acc_norm "
                     f"{r['hellaswag_acc_norm']:.4f} ({r['hellaswag_correct_norm']}/{n})")
    return "\n".join(lines)


def eval_main(a: EvalArgs, launch: Launch | None = None) -> int:
    """scripts/eval.py: the table, then one JSON line (and --json FILE); exit 0, 1 bad input, 2 usage."""
    from jaxgpt.common.runlog import EXIT_BAD_INPUT, EXIT_USAGE

    try:
        r = evaluate(a, launch)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if r.pop("process_index"):  # several processes computed it together; the first one reports
        return 0
    print(table(r, resolve_model(a.model).describe()))
    print(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}))
    if a.json_path:
        write_json(Path(a.json_path), r)
    return 0
