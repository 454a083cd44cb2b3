"""JAX multi-host launch: `--coordinator=auto` reads the processes from the cluster (jaxgpt/train/sharding.py).

Real processes on this machine: two processes given a Slurm environment (as srun sets it) join one
JAX cluster over gloo without any address on their command line; outside a cluster, auto is a clear
error. Subprocesses, because jax.distributed can be initialised once per process.
"""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = ("from jaxgpt.train.sharding import init_distributed; import jax\n"
         "init_distributed({args}); print('cluster', jax.process_index(), jax.process_count(), len(jax.devices()))")


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_", "PMI_", "JAX_COORDINATOR"))}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1", **extra)
    return env


def test_coordinator_auto_joins_the_processes_of_a_slurm_job():
    job = str(os.getpid() % 4000 + 10_000)  # JAX's Slurm port: 61440 + job id % 4096, so one per test run
    procs = [subprocess.Popen([sys.executable, "-c", PROBE.format(args='"auto"')], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env=_env(SLURM_JOB_ID=job, SLURM_STEP_NODELIST="127.0.0.1", SLURM_NTASKS="2",
                                       SLURM_PROCID=str(i), SLURM_LOCALID=str(i), SLURM_STEP_NUM_NODES="1"))
             for i in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n----\n".join(o[-2000:] for o in outs)
    got = sorted(line for o in outs for line in o.splitlines() if line.startswith("cluster"))
    assert got == ["cluster 0 2 2", "cluster 1 2 2"], outs


def test_coordinator_auto_outside_a_cluster_says_what_to_pass():
    p = subprocess.run([sys.executable, "-c", PROBE.format(args='"auto"')], capture_output=True, text=True,
                       env=_env(), timeout=300, check=False)
    assert p.returncode != 0
    assert ("--coordinator=auto found no cluster environment to read the processes from" in p.stderr
            and "pass --coordinator=HOST:PORT --num_processes=N --process_id=I" in p.stderr), p.stderr[-2000:]
    p = subprocess.run([sys.executable, "-c", PROBE.format(args='"auto", 2, 0')], capture_output=True, text=True,
                       env=_env(), timeout=300, check=False)
    assert p.returncode != 0 and "drop --num_processes/--process_id" in p.stderr, p.stderr[-2000:]
