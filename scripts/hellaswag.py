"""HellaSwag accuracy of a GPT-2-tokenizer model, in JAX or PyTorch (completion-style scoring).

    python scripts/hellaswag.py --checkpoint out/gpt2 --framework jax              # official val set
    python scripts/hellaswag.py --hf-dir out/gpt2/hf --framework torch \
        --data ../shared/data/hellaswag_val_sample.jsonl --limit 100

Model. --hf-dir DIR: a Hugging Face GPT-2 directory (config.json + model.safetensors, as
`save_pretrained(..., safe_serialization=True)`, our `GPT.save_hf` or a training run's export
writes it). --checkpoint DIR takes, in this order: such a directory; a run directory of
scripts/train_gpt2.py, whose final export RUN/hf (or RUN/export) is one; a training checkpoint
(RUN/checkpoints/step_*/, meta.json + orbax state or state.pt); or a run directory still training,
whose newest complete checkpoint is used. Weights are framework-free, so a checkpoint written by
either framework is scored by either (a training checkpoint is restored by the trainer that wrote
it, then handed over as GPT-2-named numpy arrays).

Data: --data FILE in the hellaswag_val.jsonl schema (only ctx, label, endings are used); without
it the official hellaswag_val.jsonl (10042 tasks) is downloaded once into $JAXGPT_CACHE/hellaswag.

Each task is rendered as context + " " + ending with the GPT-2 tokenizer; each ending is scored by
the summed (`acc`) and the mean (`acc_norm`) cross-entropy of its tokens; ties go to the lowest
ending index. A row longer than the model's block_size has its context cut from the LEFT (the
count of such tasks is printed). Reference for OpenAI's GPT-2 124M on the official file:
acc 0.2859, acc_norm 0.2955. See jaxgpt/common/data/hellaswag.py for the details.

Prints one line `hellaswag: acc A (c/n)  acc_norm B (c/n)` (and `count n`); --json FILE also
writes the per-task predictions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from jaxgpt.common.config import GPTConfig
from jaxgpt.common.data.hellaswag import hellaswag_file, load_examples, render_example
from jaxgpt.common.weights import config_from_hf

HF_FILES = ("config.json", "model.safetensors")


def _is_hf_dir(d: Path) -> bool:
    return all((d / f).is_file() for f in HF_FILES)


@dataclass(frozen=True)
class ModelSource:
    """What --checkpoint/--hf-dir point at: a Hugging Face directory, or a training checkpoint."""

    path: Path
    kind: str  # "hf" (config.json + model.safetensors) or "trainer" (checkpoints/step_*/ of our trainers)
    meta: dict | None = None  # the trainer checkpoint's meta.json (framework, config, step)

    def describe(self) -> str:
        if self.kind == "hf":
            return f"{self.path} (Hugging Face directory)"
        return f"{self.path} ({self.meta['framework']} training checkpoint, step {self.meta.get('step', '?')})"


def resolve_model(hf_dir: str | None, checkpoint: str | None) -> ModelSource:
    """--hf-dir DIR as given; --checkpoint DIR: an HF dir, RUN/hf or RUN/export, a step_* checkpoint,
    or RUN/checkpoints/ 's newest complete checkpoint, in that order."""
    if hf_dir is not None:
        d = Path(hf_dir)
        if not d.is_dir():
            raise FileNotFoundError(f"--hf-dir {d} not found")
        if not _is_hf_dir(d):
            raise FileNotFoundError(f"--hf-dir {d} lacks {' or '.join(f for f in HF_FILES if not (d / f).is_file())}; "
                                    "a Hugging Face GPT-2 directory needs config.json and model.safetensors")
        return ModelSource(d, "hf")
    from jaxgpt.common.checkpoint import META, CheckpointDir, check_complete, checkpoint_exists

    d = Path(checkpoint)
    if not d.is_dir():
        raise FileNotFoundError(f"--checkpoint {d} not found")
    for candidate in (d, d / "hf", d / "export"):  # train_gpt2.py exports the final model to RUN/hf
        if _is_hf_dir(candidate):
            return ModelSource(candidate, "hf")
    if (d / META).exists():
        return ModelSource(d, "trainer", check_complete(d))  # raises if incomplete (interrupted save)
    ckpts = CheckpointDir(d / "checkpoints")
    for step in reversed(ckpts.steps()):
        if checkpoint_exists(ckpts.path(step)):
            return ModelSource(ckpts.path(step), "trainer", check_complete(ckpts.path(step)))
    raise FileNotFoundError(
        f"--checkpoint {d} holds no model this script can read: expected a Hugging Face directory "
        f"(config.json + model.safetensors) in {d}, {d / 'hf'} or {d / 'export'}, a training checkpoint "
        f"({META} + state), or complete checkpoints under {d / 'checkpoints'}")


def trainer_weights(src: ModelSource) -> dict:
    """A training checkpoint's parameters as the framework-free GPT-2-named numpy table.

    Restored with the trainer of the framework that wrote it (orbax for JAX, state.pt for torch),
    so a JAX checkpoint can be scored in torch and vice versa.
    """
    from jaxgpt.common.schedule import OptimConfig

    try:
        config = GPTConfig.from_dict(src.meta["config"]["model"])
        optim = OptimConfig(**src.meta["config"]["optim"])
        framework = src.meta["framework"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"{src.path}: meta.json lacks the model/optimiser config ({e}); not a checkpoint of "
                         "scripts/train_gpt2.py") from None
    if framework == "jax":
        from jaxgpt.train.trainer import Trainer
    elif framework == "torch":
        from torchref.train.trainer import Trainer
    else:
        raise ValueError(f"{src.path}: unknown framework {framework!r} in meta.json")
    trainer = Trainer(config, optim)
    trainer.restore(src.path)
    return trainer.state_numpy()


def read_config(src: ModelSource) -> GPTConfig:
    """The model's GPTConfig, read before any framework is imported (so errors come fast)."""
    if src.kind == "trainer":
        try:
            return GPTConfig.from_dict(src.meta["config"]["model"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"{src.path}/meta.json holds no model config ({e})") from None
    path = src.path / "config.json"
    try:
        return config_from_hf(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError) as e:
        raise ValueError(f"{path} is not a valid GPT-2 config.json ({type(e).__name__}: {e})") from None


def _tokenizer():
    import tiktoken

    try:
        return tiktoken.get_encoding("gpt2")
    except Exception as e:  # noqa: BLE001 - tiktoken raises requests/OS errors of many kinds offline
        raise ValueError(f"cannot load the GPT-2 tokenizer ({type(e).__name__}: {e}); when offline, set "
                         "TIKTOKEN_CACHE_DIR to a folder holding its files (e.g. ../shared/data/tiktoken_cache)") from None


def evaluate(framework: str, src: ModelSource, rendered: list, batch_size: int, progress: bool) -> dict:
    """Load the model in `framework` and score the rendered tasks (the frameworks are imported here only)."""
    weights = trainer_weights(src) if src.kind == "trainer" else None
    if framework == "jax":
        import jax
        from flax import nnx

        from jaxgpt.eval import hellaswag as ev
        from jaxgpt.gpt import GPT

        if weights is None:
            model = GPT.from_hf(str(src.path))
        else:
            model = GPT(read_config(src), rngs=nnx.Rngs(0))
            model.load_numpy(weights)
        # Several local devices (GPUs, or simulated CPU devices): shard each batch's rows over them.
        mesh = ev.make_data_mesh() if jax.device_count() > 1 else None
        return ev.evaluate_hellaswag(model, rendered, batch_size=batch_size, mesh=mesh, progress=progress)
    import torch

    from torchref.eval import hellaswag as ev
    from torchref.gpt import GPT

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if weights is None:
        model = GPT.from_hf(str(src.path))
    else:
        model = GPT(read_config(src))
        model.load_numpy(weights)
    model = model.to(device)
    return ev.evaluate_hellaswag(model, rendered, batch_size=batch_size, device=device, progress=progress)


def write_json(path: Path, record: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record) + "\n")
    os.replace(tmp, path)  # never a half-written results file under the final name


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a Hugging Face GPT-2 dir; a training run dir (its final export RUN/hf, "
                     "else its newest complete checkpoint); or one RUN/checkpoints/step_* dir")
    src.add_argument("--hf-dir", help="Hugging Face GPT-2 dir (config.json + model.safetensors)")
    ap.add_argument("--framework", choices=["jax", "torch"], required=True)
    ap.add_argument("--data", help="local file in the hellaswag_val.jsonl schema (default: download the official val set)")
    ap.add_argument("--limit", type=int, help="score only the first N tasks")
    ap.add_argument("--batch-size", type=int, default=8, help="tasks per step (x4 rows); with several JAX devices "
                    "4*batch-size must divide by their number (default 8)")
    ap.add_argument("--json", help="also write acc, acc_norm, count and per-task predictions to this file")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        src = resolve_model(args.hf_dir, args.checkpoint)
        config = read_config(src)
        data = hellaswag_file(args.data)
        examples = load_examples(data, limit=args.limit)
        enc = _tokenizer()
        rendered = [render_example(ex, enc, config.block_size) for ex in examples]
        cut = sum(r.truncated > 0 for r in rendered)
        print(f"{len(rendered)} tasks from {data}; model {src.describe()}: {config.n_layer} layers, n_embd "
              f"{config.n_embd}, block_size {config.block_size}; scored in {args.framework}")
        if cut:
            print(f"note: {cut} task(s) exceed block_size {config.block_size}: their context was cut from the left")
        r = evaluate(args.framework, src, rendered, args.batch_size, not args.no_progress)
        res = r["result"]
        print(f"{res.summary()}  count {res.n}  ({r['seconds']:.1f} s)")
        if args.json:
            write_json(Path(args.json), {
                "framework": args.framework, "model": str(src.path), "data": str(data), "count": res.n,
                "acc": res.acc, "acc_norm": res.acc_norm, "correct": res.correct, "correct_norm": res.correct_norm,
                "truncated": cut, "index": res.index.tolist(), "label": res.label.tolist(),
                "pred": res.pred.tolist(), "pred_norm": res.pred_norm.tolist(),
            })
    except (ValueError, FileNotFoundError, TypeError, OSError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
