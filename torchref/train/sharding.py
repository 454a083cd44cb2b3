"""Data parallelism for the torch trainer: torchrun process groups and DDP (mirror of jaxgpt/train/sharding.py).

References: the PyTorch DDP tutorial, build-nanogpt's `train_gpt2.py` (torchrun env vars, NCCL).
`torchrun --nproc_per_node=N` sets RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT; with
them set, `init_distributed` opens the process group (NCCL on GPU, gloo on CPU) and pins the GPU
of this local rank. Without them it is a single process and nothing is initialised.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from jaxgpt.common.attention import DeviceInfo


@dataclass(frozen=True)
class DistInfo:
    rank: int  # global rank (the data slice this process loads)
    local_rank: int  # rank on this host (which GPU it uses)
    world_size: int  # number of processes in all
    device: torch.device  # where this process's model lives

    @property
    def is_primary(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> DistInfo:
    """Open the process group from torchrun's environment (or do nothing for one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if world == 1:
        return DistInfo(0, 0, 1, torch.device(device or ("cuda" if use_cuda else "cpu")))
    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={world} but {missing} are not set; launch with torchrun "
                         "(e.g. `torchrun --nproc_per_node=8 scripts/train.py --framework torch ...`)")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, local_rank, world, dev)


def device_info(device: str | torch.device) -> DeviceInfo:
    """What --attn decides on (jaxgpt/common/attention.py), read from torch."""
    device = torch.device(device)
    if device.type != "cuda":
        return DeviceInfo(device.type, device.type)
    return DeviceInfo("cuda", torch.cuda.get_device_name(device), torch.cuda.get_device_capability(device))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def mean_across(t: torch.Tensor) -> torch.Tensor:
    """Average a tensor over all processes (for logging losses); identity for one process."""
    if is_distributed():
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= dist.get_world_size()
    return t


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def stop_vote(device: torch.device):
    """vote(signal) -> a one-element tensor, the largest signal number over all ranks (0: none).

    The loop's agreed stop (jaxgpt/common/loop.py, `Loop.agreed_signal`): one all_reduce(MAX) of an int per
    step; on CUDA it is queued after the step, and the loop reads it one step later (no extra wait).
    """

    def vote(signum: int) -> torch.Tensor:
        flag = torch.tensor([signum], dtype=torch.int32, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return flag

    return vote
