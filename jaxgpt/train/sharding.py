"""Data parallelism for the JAX trainer: a 1-D mesh, batch and parameter shardings, FSDP rules, multi-host.

References: the JAX sharding guide (`jax.make_mesh`, `NamedSharding`), nanodo (1-D "data" mesh,
batch on `P("data")`, error when the batch does not divide the devices), the Flax NNX GSPMD guide.

- One `Mesh` over every device of every process, axis "data". No pmap: the step is `jax.jit` with
  these shardings; its accumulation loop is a `jax.shard_map` with one psum of the gradients after
  it (jaxgpt/train/trainer.py), so the devices exchange gradients once per optimiser step.
- Data parallel (default): every parameter and optimiser leaf replicated, `P()`.
- FSDP (`fsdp=True`): each leaf of >= 2 dims (and its AdamW moments, which have its shape) is
  split over "data" along its largest dimension that the device count divides; XLA all-gathers
  the weights for the matmuls and reduce-scatters the gradients. Small or indivisible leaves stay
  replicated. This cuts parameter + optimiser memory by the device count (the 350M-1558M presets).
- Batches are (A, M, T): A accumulation micro-steps of M rows; M is split over "data".
  Each process passes only its own rows (`global_batch`), which is how multi-host data loading
  works: process p loads its slice (jaxgpt/common/data/loader.py) and never sees the others' tokens.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxgpt.common.attention import DeviceInfo

AXIS = "data"


def init_distributed(coordinator: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None) -> None:
    """`jax.distributed.initialize` from arguments or env vars JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID.

    Does nothing for a single process (no coordinator given or set). `coordinator="auto"`: read
    everything from the cluster (Slurm, Open MPI). On CPU the cross-process collectives use gloo.
    Must run before anything touches a jax device.
    """
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and os.environ.get("JAX_NUM_PROCESSES"):
        num_processes = int(os.environ["JAX_NUM_PROCESSES"])
    if process_id is None and os.environ.get("JAX_PROCESS_ID"):
        process_id = int(os.environ["JAX_PROCESS_ID"])
    if coordinator == "auto":
        _init_from_cluster(num_processes, process_id)
        return
    if not coordinator:
        if num_processes not in (None, 1):
            raise ValueError(f"num_processes={num_processes} needs a coordinator address (host:port of process 0): "
                             "pass --coordinator or set JAX_COORDINATOR_ADDRESS")
        return
    if num_processes is None or process_id is None:
        raise ValueError("a multi-process run needs all three of coordinator address, number of processes and "
                         "process id (flags --coordinator/--num_processes/--process_id or env vars "
                         "JAX_COORDINATOR_ADDRESS/JAX_NUM_PROCESSES/JAX_PROCESS_ID)")
    # Only affects the CPU backend (GPUs use NCCL): without it, CPU arrays cannot cross processes.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)


def _init_from_cluster(num_processes: int | None, process_id: int | None) -> None:
    """--coordinator=auto: JAX reads the coordinator, process count and id from the cluster's environment
    (Slurm's SLURM_* variables under srun, Open MPI's under mpirun, ...), as `jax.distributed.initialize()`
    with no arguments does."""
    if num_processes is not None or process_id is not None:
        raise ValueError("--coordinator=auto reads the number of processes and this process's id from the cluster; "
                         "drop --num_processes/--process_id (or give all three explicitly)")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # as below: CPU arrays across processes
    try:
        jax.distributed.initialize()
    except ValueError as e:  # no cluster environment detected: JAX asks for an explicit coordinator
        raise ValueError(f"--coordinator=auto found no cluster environment to read the processes from (JAX detects "
                         f"Slurm under srun, Open MPI under mpirun, ...: {e}); outside one, pass "
                         "--coordinator=HOST:PORT --num_processes=N --process_id=I") from None


def device_info(device: jax.Device | None = None) -> DeviceInfo:
    """What --attn=auto decides on (jaxgpt/common/attention.py): this process's first device by default."""
    d = device if device is not None else jax.local_devices()[0]
    return DeviceInfo(d.platform, d.device_kind, getattr(d, "compute_capability", None))  # NVIDIA GPUs only


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """1-D mesh over `devices` (default: every device of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.asarray(devices), (AXIS,), axis_types=(AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """(A, M, T) batches: rows M split over the data axis, micro-steps A and time T not split."""
    return NamedSharding(mesh, P(None, AXIS))


def eval_sharding(mesh: Mesh) -> NamedSharding:
    """(M, T) evaluation batches: rows split over the data axis."""
    return NamedSharding(mesh, P(AXIS))


def fsdp_spec(shape: tuple[int, ...], n: int) -> P:
    """Split the largest dimension that `n` divides (ties: the first); replicate if none or < 2-D."""
    if n == 1 or len(shape) < 2:
        return P()
    dims = sorted(range(len(shape)), key=lambda d: (-shape[d], d))
    for d in dims:
        if shape[d] % n == 0:
            return P(*([None] * d + [AXIS]))
    return P()


def state_shardings(state: Any, mesh: Mesh, fsdp: bool) -> Any:
    """A NamedSharding per leaf of a (model, optimiser) state: replicated, or FSDP by shape."""
    n = mesh.shape[AXIS]

    def spec(x: Any) -> NamedSharding:
        shape = tuple(getattr(x, "shape", ()))
        return NamedSharding(mesh, fsdp_spec(shape, n) if fsdp else P())

    return jax.tree.map(spec, state)


def check_batch(rows_per_process: int, accum: int, mesh: Mesh) -> int:
    """Rows per micro-step on this process; raise with the fix when the split is impossible."""
    local_devices = len([d for d in mesh.devices.flat if d.process_index == jax.process_index()])
    if rows_per_process % accum:
        raise ValueError(f"{rows_per_process} rows per process cannot be split into {accum} gradient-accumulation "
                         "micro-steps; make the batch a multiple of the accumulation steps")
    micro = rows_per_process // accum
    if micro % local_devices:
        raise ValueError(f"a micro-batch of {micro} rows per process does not divide over this process's "
                         f"{local_devices} devices; use a micro-batch that is a multiple of {local_devices}")
    return micro


def global_batch(local: np.ndarray, accum: int, mesh: Mesh) -> jax.Array:
    """This process's rows (R, T) -> the global (A, M, T) array sharded over the mesh.

    Local row r goes to micro-step r // (R/A): each process contributes R/A rows to every micro-step.
    """
    R, T = local.shape
    micro = check_batch(R, accum, mesh)
    local = np.asarray(local).reshape(accum, micro, T)  # (A, M_local, T)
    global_shape = (accum, micro * jax.process_count(), T)
    return jax.make_array_from_process_local_data(batch_sharding(mesh), local, global_shape)


def global_eval_batch(local: np.ndarray, mesh: Mesh) -> jax.Array:
    """This process's evaluation rows (R, T) -> the global (R * processes, T) array."""
    check_batch(local.shape[0], 1, mesh)
    global_shape = (local.shape[0] * jax.process_count(), local.shape[1])
    return jax.make_array_from_process_local_data(eval_sharding(mesh), np.asarray(local), global_shape)


def to_host(x: jax.Array) -> np.ndarray:
    """A numpy copy of a (possibly multi-process, possibly sharded) array, on every process."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    if x.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def barrier(name: str = "jaxgpt") -> None:
    """Wait for every process (no-op with one)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def stop_vote(mesh: Mesh) -> Any:
    """vote(signal) -> a replicated scalar, the largest signal number over all processes (0: none), not fetched.

    The loop's agreed stop (jaxgpt/common/loop.py, `Loop.agreed_signal`): one int per device, a jitted max
    over the mesh, i.e. one tiny all-reduce queued after the step it follows (no host round trip of its own).
    """
    import jax.numpy as jnp

    sharding = NamedSharding(mesh, P(AXIS))
    local = len([d for d in mesh.devices.flat if d.process_index == jax.process_index()])
    agree = jax.jit(jnp.max, out_shardings=NamedSharding(mesh, P()))

    def vote(signum: int) -> jax.Array:
        flags = np.full((local,), signum, np.int32)
        return agree(jax.make_array_from_process_local_data(sharding, flags, (mesh.size,)))

    return vote
