"""JAX's side of a training run: processes and devices (`connect`), then the trainer and what the loop calls.

Mirrored by `torchref/train/runtime.py`; both are reached through jaxgpt/common/frameworks.py, and
the framework-free loop (jaxgpt/common/loop.py) drives what `make_runtime` returns.

One process drives every local device: the mesh spans all devices of all processes (multi-host
via `jax.distributed`, see jaxgpt/train/sharding.py), each process loads micro_batch x its local
devices rows per micro-step, and the jitted step reduces the gradients over the mesh.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jaxgpt.common.attention import choose_attention
from jaxgpt.common.config import GPTConfig
from jaxgpt.common.loop import Cluster, Launch, Runtime
from jaxgpt.common.recipes import TrainConfig
from jaxgpt.common.schedule import OptimConfig


def connect(launch: Launch) -> Cluster:
    """Join the other processes (if any) and build the mesh; must run before anything touches a device."""
    from jaxgpt.train.sharding import init_distributed

    init_distributed(launch.coordinator, launch.num_processes, launch.process_id)
    import jax

    from jaxgpt.train.sharding import make_mesh

    mesh = make_mesh()
    return Cluster("jax", jax.process_index(), jax.process_count(), mesh.size, jax.local_device_count(),
                   jax.devices()[0].device_kind, mesh)


def make_runtime(model_cfg: GPTConfig, cfg: TrainConfig, optim: OptimConfig, cluster: Cluster,
                 grad_accum: int) -> Runtime:
    """The JAX Trainer on the cluster's mesh, with the loop's callbacks (barrier, fetch, HellaSwag)."""
    if cfg.compile == "true":
        raise ValueError("--compile=true is a torch option (JAX always compiles its step); drop it for --framework jax")

    from jaxgpt.train.sharding import barrier, stop_vote
    from jaxgpt.train.trainer import Trainer, fetch

    mesh = cluster.handle
    cache_note = use_compile_cache(cfg.compile_cache)
    attn_impl, why = attention_impl(cfg.attn, cfg.dtype, model_cfg)
    trainer = Trainer(model_cfg, optim, seed=cfg.seed, grad_accum=grad_accum, dtype=cfg.dtype, mesh=mesh,
                      fsdp=cfg.fsdp, attn_impl=attn_impl)

    scorers: dict[int, Any] = {}  # the run's tasks, packed at the first evaluation and kept

    def hellaswag(rendered: Sequence[Any]) -> dict:
        from jaxgpt.eval.hellaswag import HellaSwagEval

        if id(rendered) not in scorers:
            scorers[id(rendered)] = HellaSwagEval(rendered, model_cfg, mesh=mesh)
        return scorers[id(rendered)](trainer.model_view())

    # --async_checkpoint: save returns once the arrays are off the devices; orbax writes the files in the
    # background and the checkpoint is committed (meta.json, rename) when they are complete.
    return Runtime(trainer, cluster, barrier, fetch, async_dispatch=True, hellaswag=hellaswag,
                   save=functools.partial(trainer.save, asynchronous=cfg.async_checkpoint), setup=(f"attention: {why}", cache_note),
                   agree_stop=stop_vote(mesh) if cluster.num_processes > 1 else None)


DEFAULT_COMPILE_CACHE = "~/.cache/jaxgpt/xla"


def use_compile_cache(setting: str) -> str:
    """Turn on JAX's persistent compilation cache for --compile_cache (see TrainConfig); what was done, for the log.

    A folder that cannot be created or written is a warning, not an error: the run compiles as usual.
    """
    import jax

    if setting == "auto":
        if jax.default_backend() == "cpu":
            return "compilation cache off (CPU; --compile_cache=DIR turns it on)"
        setting = DEFAULT_COMPILE_CACHE
    if not setting:
        return "compilation cache off"
    folder = Path(setting).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError("not writable")
    except OSError as e:
        print(f"warning: --compile_cache={setting} cannot be used ({e}); compiling without a cache", file=sys.stderr)
        return "compilation cache off (its folder is not writable)"
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Every executable, however fast to compile: a start then compiles nothing at all (the small helpers
    # that place and fetch arrays add up to seconds), and what is cached does not depend on the load.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    return f"compilation cache {folder}"


def attention_impl(requested: str, dtype: str, model_cfg: GPTConfig) -> tuple[str | None, str]:
    """The Trainer's attn_impl for --attn on this process's first device, and why (logged at start)."""
    from jaxgpt.train.sharding import device_info

    info = device_info()
    kernel, why = choose_attention("jax", requested, info, dtype, model_cfg.n_embd // model_cfg.n_head)
    if requested == "auto" and info.platform == "cpu":
        return None, "causal_attention (heads first; the fastest on CPU)"  # jaxgpt/gpt.py's CPU default
    return kernel, why


def build_model(config: GPTConfig, weights: dict[str, Any], device: Any = None) -> Any:
    """A GPT (eval mode) holding `weights` (the weight table's numpy arrays), for evaluation and sampling."""
    from flax import nnx

    from jaxgpt.gpt import GPT

    model = GPT(config, rngs=nnx.Rngs(0))
    model.load_numpy(weights)
    model.eval()
    return model


def score_hellaswag(model: Any, rendered: Sequence[Any], batch_size: int, progress: bool = False) -> dict:
    """HellaSwag of a model on every device of this machine (rows sharded over a mesh when there are several)."""
    import jax

    from jaxgpt.eval.hellaswag import evaluate_hellaswag
    from jaxgpt.train.sharding import make_mesh

    mesh = make_mesh() if jax.device_count() > 1 else None
    return evaluate_hellaswag(model, rendered, batch_size=batch_size, mesh=mesh, progress=progress)
