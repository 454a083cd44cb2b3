"""JAX's side of `--profile_steps` and of the peak-memory line: jax.profiler traces and device memory stats.

Mirrored by torchref/train/profile.py; the framework-free part (which steps, when to start and stop,
the log lines) is jaxgpt/common/profile.py.
"""

from __future__ import annotations

from pathlib import Path

import jax


def start_trace(directory: Path) -> None:
    """Trace everything from now on: XLA's xplane.pb (TensorBoard's profile plugin, XProf) and a Perfetto
    trace.json.gz (ui.perfetto.dev), under directory/plugins/profile/<time>/."""
    jax.profiler.start_trace(str(directory), create_perfetto_trace=True)


def stop_trace() -> None:
    jax.profiler.stop_trace()


def peak_memory() -> str:
    """The peak bytes in use on this process's first device since the start, or "n/a" where the backend keeps
    no statistics (JAX's CPU backend)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return "n/a" if peak is None else f"{peak / 2**30:.2f} GiB on {jax.local_devices()[0].device_kind}"
