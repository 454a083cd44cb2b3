"""Train GPT-2 (124M..1558M) on FineWeb-Edu shards: the GPT-2 reproduction recipe, JAX or PyTorch.

    python scripts/train_gpt2.py --data_dir=data/edu_fineweb10B              # JAX, every local device
    python scripts/train_gpt2.py --framework torch ...                       # one torch process
    torchrun --nproc_per_node=8 scripts/train_gpt2.py --framework torch ...  # torch DDP
    # JAX across hosts: the same command on every host, plus
    #   --coordinator=HOST0:1234 --num_processes=N --process_id=I  (or JAX_COORDINATOR_ADDRESS/...)
    python scripts/train_gpt2.py --resume ...                                # continue exactly

Settings are `--key=value` for any field of TrainConfig (jaxgpt/common/loop.py: batch, data, evals,
checkpoints), OptimConfig (jaxgpt/common/schedule.py: lr, warmup_steps, max_steps, ...) or GPTConfig
(jaxgpt/common/config.py, applied to --preset). One log line per step goes to stdout and a CSV row to
OUT_DIR/train_log.csv; checkpoints go to OUT_DIR/checkpoints/step_*/; the final model to OUT_DIR/hf.
Exit codes: 0 done, 1 bad input (message, nothing overwritten), 3 non-finite loss, 128+N signal N.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from jaxgpt.common.config import GPTConfig, apply_overrides, get_preset
from jaxgpt.common.data.loader import ShardLoader
from jaxgpt.common.loop import Runtime, Stop, TrainConfig, grad_accum_steps, run
from jaxgpt.common.schedule import OptimConfig

FRAMEWORKS = ("jax", "torch")


def build_configs(overrides: list[str]) -> tuple[TrainConfig, GPTConfig, OptimConfig]:
    preset = next((a.split("=", 1)[1] for a in overrides if a.startswith("--preset=")), TrainConfig.preset)
    cfg, optim, model_cfg = apply_overrides([TrainConfig(), OptimConfig(), get_preset(preset)], overrides)
    model_cfg = cfg.model_config(model_cfg)
    return cfg, model_cfg, optim


def loaders(cfg: TrainConfig, model_cfg: GPTConfig, rows: int, val_rows: int, pid: int, nproc: int):
    train = ShardLoader(cfg.data_dir, "train", rows, cfg.seq_len, pid, nproc, vocab_size=model_cfg.vocab_size,
                        shuffle_seed=cfg.shuffle_seed)
    val = ShardLoader(cfg.data_dir, "val", val_rows, cfg.seq_len, pid, nproc, vocab_size=model_cfg.vocab_size)
    return train, val


def sampler(trainer: Any, cfg: TrainConfig, model_cfg: GPTConfig):
    if not cfg.sample_every:
        return None
    if model_cfg.vocab_size != 50257:
        raise ValueError(f"--sample_every needs the GPT-2 vocabulary (50257), the model has {model_cfg.vocab_size}; "
                         "set --sample_every=0")
    import tiktoken

    enc = tiktoken.get_encoding("gpt2")
    prompt = enc.encode(cfg.sample_prompt)

    def sample() -> list[str]:
        out = trainer.generate(np.asarray([prompt] * 4, np.int32), cfg.sample_tokens, top_k=50, seed=trainer.step_count)
        return [enc.decode(row.tolist()) for row in out]

    return sample


def jax_runtime(cfg: TrainConfig, model_cfg: GPTConfig, optim: OptimConfig, args: argparse.Namespace):
    """(Runtime, accumulation steps, train loader, val loader) on a mesh over every device of every process."""
    from jaxgpt.train.sharding import init_distributed

    init_distributed(args.coordinator, args.num_processes, args.process_id)  # before any device is touched
    import jax

    from jaxgpt.train.sharding import barrier, make_mesh
    from jaxgpt.train.trainer import Trainer, fetch

    mesh = make_mesh()
    n_local = jax.local_device_count()
    accum = grad_accum_steps(cfg.total_batch_tokens, cfg.micro_batch, cfg.seq_len, mesh.size)
    rows = cfg.micro_batch * n_local  # this process's rows per micro-step
    # Data problems (missing shards, ...) are reported before the model is built.
    train, val = loaders(cfg, model_cfg, rows * accum, rows, jax.process_index(), jax.process_count())
    gpu = jax.default_backend() == "gpu"
    trainer = Trainer(model_cfg, optim, seed=cfg.seed, grad_accum=accum, dtype=cfg.dtype, mesh=mesh, fsdp=cfg.fsdp,
                      attn_impl="cudnn" if gpu and cfg.dtype == "bfloat16" else None)
    hellaswag = None
    if cfg.hellaswag_file and cfg.hellaswag_every:
        from jaxgpt.common.data.hellaswag import load_examples
        from jaxgpt.eval.hellaswag import evaluate_hellaswag

        examples = load_examples(cfg.hellaswag_file, cfg.hellaswag_limit or None)

        def hellaswag() -> float:
            return evaluate_hellaswag(trainer.model_view(), examples, batch_size=n_local * 2, mesh=mesh)["acc_norm"]

    rt = Runtime(trainer, jax.process_index(), jax.process_count(), mesh.size, jax.devices()[0].device_kind,
                 barrier, fetch, hellaswag, sampler(trainer, cfg, model_cfg))
    return rt, accum, train, val


def torch_runtime(cfg: TrainConfig, model_cfg: GPTConfig, optim: OptimConfig, args: argparse.Namespace):
    """The same for torch: one torchrun process per device (or a single process)."""
    import torch

    from torchref.train.sharding import barrier, init_distributed
    from torchref.train.trainer import Trainer

    info = init_distributed()
    torch.set_float32_matmul_precision("high")  # TF32 on GPUs for what autocast leaves in fp32 (build-nanogpt)
    accum = grad_accum_steps(cfg.total_batch_tokens, cfg.micro_batch, cfg.seq_len, info.world_size)
    train, val = loaders(cfg, model_cfg, cfg.micro_batch * accum, cfg.micro_batch, info.rank, info.world_size)
    trainer = Trainer(model_cfg, optim, seed=cfg.seed, grad_accum=accum, dtype=cfg.dtype, device=info.device,
                      compile=cfg.compile)
    hellaswag = None
    if cfg.hellaswag_file and cfg.hellaswag_every:
        from jaxgpt.common.data.hellaswag import load_examples
        from torchref.eval.hellaswag import evaluate_hellaswag

        examples = load_examples(cfg.hellaswag_file, cfg.hellaswag_limit or None)

        def hellaswag() -> float:
            return evaluate_hellaswag(trainer.model_view(), examples, batch_size=8, device=info.device)["acc_norm"]

    name = torch.cuda.get_device_name(info.device) if info.device.type == "cuda" else "cpu"
    rt = Runtime(trainer, info.rank, info.world_size, info.world_size, name, barrier, float, hellaswag,
                 sampler(trainer, cfg, model_cfg), async_dispatch=info.device.type == "cuda")
    return rt, accum, train, val


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", choices=FRAMEWORKS, default="jax")
    p.add_argument("--resume", action="store_true", help="continue from the newest good checkpoint in OUT_DIR")
    p.add_argument("--coordinator", default=None, help="JAX multi-host: HOST:PORT of process 0")
    p.add_argument("--num_processes", type=int, default=None, help="JAX multi-host: number of processes")
    p.add_argument("--process_id", type=int, default=None, help="JAX multi-host: this process's index")
    args, overrides = p.parse_known_args(argv)
    try:
        cfg, model_cfg, optim = build_configs(overrides)
        make = jax_runtime if args.framework == "jax" else torch_runtime
        rt, accum, train_loader, val_loader = make(cfg, model_cfg, optim, args)
        rt.log(f"{args.framework}: {model_cfg.n_layer} layers, {rt.n_devices} devices in {rt.num_processes} "
               f"process(es), {cfg.total_batch_tokens:,} tokens/step = {cfg.micro_batch} rows x {cfg.seq_len} x "
               f"{rt.n_devices} devices x {accum} accumulation steps, {cfg.dtype}{', FSDP' if cfg.fsdp else ''}")
        result = run(cfg, model_cfg, optim, rt, train_loader, val_loader, args.resume)
    except Stop as e:
        print(f"{'error: ' if e.code == 3 else ''}{e}", file=sys.stderr, flush=True)
        return e.code
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    rt.log(f"done: step {result['step']}, val loss {result['val_loss']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

