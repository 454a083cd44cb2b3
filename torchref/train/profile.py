"""PyTorch's side of `--profile_steps` and of the peak-memory line: torch.profiler traces, CUDA memory stats.

Mirror of jaxgpt/train/profile.py; the framework-free part is jaxgpt/common/profile.py.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

import torch

_active: dict[str, object] = {}  # the profiler between start_trace and stop_trace, and where it writes


def start_trace(directory: Path) -> None:
    """Trace everything from now on (CPU, and CUDA kernels on a GPU); stop_trace writes a Chrome/Perfetto
    trace (chrome://tracing, ui.perfetto.dev) into `directory`."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    prof = torch.profiler.profile(activities=activities)
    prof.start()
    _active.update(prof=prof, directory=Path(directory))


def stop_trace() -> None:
    prof, directory = _active.pop("prof"), _active.pop("directory")
    prof.stop()
    directory.mkdir(parents=True, exist_ok=True)
    rank = os.environ.get("RANK", "0")
    prof.export_chrome_trace(str(directory / f"torch_trace_rank{rank}.json"))


def peak_memory() -> str:
    """The peak bytes allocated by torch on this process's GPU, or on a CPU the process's peak resident size."""
    if torch.cuda.is_available():
        return f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB on {torch.cuda.get_device_name()}"
    # ru_maxrss is in KiB on Linux: the whole process (Python, torch, the data), the best a CPU run offers
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB host memory (peak RSS)"
