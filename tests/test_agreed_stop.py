"""A signal that reaches ONE process stops every process at the same step (issue 12, items 5 and 6).

Two JAX processes (jax.distributed on 127.0.0.1, gloo) and two torch ranks (gloo): SIGTERM goes to
process 1 only. Both must stop after the same step, leave one complete checkpoint, exit 143, and do it
in bounded time (a hang, the failure this guards against, ends in the subprocess timeout). Process 1
prints no step lines (only process 0 logs); its stop message goes to stderr like any warning.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_train_gpt2 import SCRIPT, write_shards

from conftest import subprocess_env
from jaxgpt.common.checkpoint import checkpoint_exists

TIMEOUT = 300  # seconds per process (a loaded CI machine compiles the checkpoint's transposes slowly): a stop
# that is not agreed hangs in a collective instead
ARGS = ["--preset=tiny", "--padded_vocab_size=128", "--total_batch_tokens=64", "--seq_len=16", "--micro_batch=2",
        "--dtype=float32", "--max_steps=2000", "--warmup_steps=3", "--lr=1e-3", "--val_every=0", "--ckpt_every=0",
        "--sample_every=0", "--hellaswag_every=0", "--export_hf=false", "--plot=false", "--prefetch=0"]
STOPPED = re.compile(r"stopped by signal 15 after step (\d+); checkpoint saved in (\S+);")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_one_of_two(commands: list[list[str]], envs: list[dict], tmp: Path) -> list[tuple[int, str, str]]:
    """Start both processes, SIGTERM process 1 once process 0 has logged step 3; (exit code, stdout, stderr) each."""
    with contextlib.ExitStack() as stack:
        files = [tuple(stack.enter_context(open(tmp / f"{k}{i}.txt", "w+")) for k in ("out", "err")) for i in range(2)]
        procs = [subprocess.Popen(c, env=e, stdout=o, stderr=err, text=True)
                 for c, e, (o, err) in zip(commands, envs, files)]
        try:
            while not re.search(r"^step\s+3 ", (tmp / "out0.txt").read_text(), re.MULTILINE):
                if any(p.poll() is not None for p in procs):
                    break
                time.sleep(0.2)
            procs[1].send_signal(signal.SIGTERM)
            codes = [p.wait(timeout=TIMEOUT) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        return [(code, (tmp / f"out{i}.txt").read_text(), (tmp / f"err{i}.txt").read_text())
                for i, code in enumerate(codes)]


def _check(results: list[tuple[int, str, str]]) -> None:
    report = "\n----\n".join(f"exit {c}\n{o[-2000:]}\n{e[-2000:]}" for c, o, e in results)
    assert [c for c, _, _ in results] == [128 + signal.SIGTERM] * 2, report
    stops = [STOPPED.search(e) for _, _, e in results]
    assert all(stops), report
    assert stops[0].groups() == stops[1].groups(), report  # the same step, the same checkpoint
    step, path = int(stops[0].group(1)), Path(stops[0].group(2))
    assert 3 <= step < 2000 and path.name == f"step_{step + 1:08d}" and checkpoint_exists(path), report
    out0, out1 = results[0][1], results[1][1]
    assert re.search(rf"^step\s+{step} ", out0, re.MULTILINE), report  # process 0 logged up to the stop...
    assert not re.search(r"^(step|saved|sample)", out1, re.MULTILINE), out1[-2000:]  # ...process 1 printed no log lines


def test_jax_two_processes_stop_together(tmp_path):
    shards = write_shards(tmp_path / "shards")
    args = [*ARGS, f"--data_dir={shards}", f"--out_dir={tmp_path / 'run'}", f"--coordinator=127.0.0.1:{_port()}",
            "--num_processes=2"]
    commands = [[sys.executable, str(SCRIPT), *args, f"--process_id={i}"] for i in range(2)]
    _check(_stop_one_of_two(commands, [subprocess_env(1)] * 2, tmp_path))


def test_torch_two_ranks_stop_together(tmp_path):
    pytest.importorskip("torch")
    shards = write_shards(tmp_path / "shards")
    args = [*ARGS, "--framework=torch", f"--data_dir={shards}", f"--out_dir={tmp_path / 'run'}"]
    port = _port()
    # The two ranks as torchrun would start them (torchrun itself would turn one rank's exit into a group kill).
    envs = [subprocess_env(1, RANK=str(i), LOCAL_RANK=str(i), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                           MASTER_PORT=str(port)) for i in range(2)]
    commands = [[sys.executable, str(SCRIPT), *args]] * 2
    _check(_stop_one_of_two(commands, envs, tmp_path))
