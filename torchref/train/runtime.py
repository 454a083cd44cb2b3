"""torch's side of a training run: the mirror of `jaxgpt/train/runtime.py`.

One process per device under torchrun (DDP, torchref/train/sharding.py) or a single process; each
loads micro_batch rows per micro-step. Reached through jaxgpt/common/frameworks.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from jaxgpt.common.attention import choose_attention
from jaxgpt.common.config import GPTConfig
from jaxgpt.common.loop import Cluster, Launch, Runtime
from jaxgpt.common.recipes import TrainConfig
from jaxgpt.common.schedule import OptimConfig


def connect(launch: Launch) -> Cluster:
    """Open the torchrun process group (or nothing, for one process)."""
    from torchref.train.sharding import init_distributed

    if launch.coordinator or launch.num_processes or launch.process_id is not None:
        raise ValueError("--coordinator/--num_processes/--process_id are for JAX; launch torch processes with "
                         "torchrun (e.g. torchrun --nproc_per_node=8 scripts/train.py --framework torch ...)")
    info = init_distributed()
    torch.set_float32_matmul_precision("high")  # TF32 on GPUs for what autocast leaves in fp32 (build-nanogpt)
    name = torch.cuda.get_device_name(info.device) if info.device.type == "cuda" else "cpu"
    return Cluster("torch", info.rank, info.world_size, info.world_size, 1, name, info)


def make_runtime(model_cfg: GPTConfig, cfg: TrainConfig, optim: OptimConfig, cluster: Cluster,
                 grad_accum: int) -> Runtime:
    """The torch Trainer on this process's device, with the loop's callbacks (barrier, fetch, HellaSwag)."""
    for flag in ("fsdp", "async_checkpoint"):
        if getattr(cfg, flag):
            raise ValueError(f"--{flag}=true is a JAX option; drop it for --framework torch")
    from torchref.train.sharding import barrier, stop_vote
    from torchref.train.trainer import Trainer

    device = cluster.handle.device
    attn, why = attention_impl(cfg.attn, cfg.dtype, model_cfg, device)
    compile, compile_why = compile_choice(cfg.compile, device)
    trainer = Trainer(model_cfg, optim, seed=cfg.seed, grad_accum=grad_accum, dtype=cfg.dtype, device=device,
                      compile=compile, attn=attn)

    scorers: dict[int, Any] = {}  # the run's tasks, packed at the first evaluation and kept

    def hellaswag(rendered: Sequence[Any]) -> dict:
        from torchref.eval.hellaswag import HellaSwagEval

        if id(rendered) not in scorers:
            scorers[id(rendered)] = HellaSwagEval(rendered, model_cfg, device=device)
        return scorers[id(rendered)](trainer.model_view())

    return Runtime(trainer, cluster, barrier, float, async_dispatch=device.type == "cuda", hellaswag=hellaswag,
                   setup=(f"attention: {why}", compile_why),
                   agree_stop=stop_vote(device) if cluster.num_processes > 1 else None)


def compile_choice(setting: str, device: Any) -> tuple[bool, str]:
    """--compile (auto/true/false) on `device`: whether the Trainer compiles its step, and why (logged at start).

    auto = on CUDA (the compiled step is the fast one there), off elsewhere: on CPU, compiling costs
    minutes of a short run and the eager step is about as fast."""
    if setting == "auto":
        on = torch.device(device).type == "cuda"
        return on, f"torch.compile: {'on' if on else 'off'} (--compile=auto on {torch.device(device).type})"
    return setting == "true", f"torch.compile: {'on' if setting == 'true' else 'off'} (--compile={setting})"


def attention_impl(requested: str, dtype: str, model_cfg: GPTConfig, device: Any) -> tuple[str, str]:
    """The Trainer's attn (SDPA backend) for --attn on `device`, and why (logged at start)."""
    from torchref.train.sharding import device_info

    return choose_attention("torch", requested, device_info(device), dtype, model_cfg.n_embd // model_cfg.n_head)


def build_model(config: GPTConfig, weights: dict[str, Any], device: Any = None) -> Any:
    """A GPT (eval mode) holding `weights` (the weight table's numpy arrays), for evaluation and sampling."""
    from torchref.gpt import GPT

    model = GPT(config)
    model.load_numpy(weights)
    model.eval()
    return model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def score_hellaswag(model: Any, rendered: Sequence[Any], batch_size: int, progress: bool = False) -> dict:
    """HellaSwag of a model on its device."""
    from torchref.eval.hellaswag import evaluate_hellaswag

    return evaluate_hellaswag(model, rendered, batch_size=batch_size, device=next(model.parameters()).device,
                              progress=progress)
