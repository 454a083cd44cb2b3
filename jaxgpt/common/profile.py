"""`--profile_steps=A:B`: a profiler trace of training steps A..B-1 in the run folder, either framework.

Framework-free: which steps, when the trace starts and stops, and the log lines. The tracing itself
is the framework's (jaxgpt/train/profile.py: jax.profiler, XProf/Perfetto files;
torchref/train/profile.py: torch.profiler, a Chrome trace), reached through
jaxgpt/common/frameworks.py. The trace starts before step A is dispatched and stops once step B-1
has been computed (the loop waits for it), so it holds B-A whole steps; skip the first steps of a
session, which compile, unless compilation is what you want to see (nanodo traces steps the same way).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROFILE_DIR = "profile"  # inside the run folder


def parse_profile_steps(spec: str, start: int, max_steps: int) -> tuple[int, int] | None:
    """(A, B) of "A:B" (steps A..B-1, as a Python slice), checked against this session's steps start..max_steps-1.

    >>> parse_profile_steps("5:8", 0, 20)
    (5, 8)
    """
    if not spec:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", spec)
    if not m or int(m.group(1)) >= int(m.group(2)):
        raise ValueError(f"--profile_steps={spec!r} is not A:B with whole numbers A < B (it traces steps A..B-1); "
                         "e.g. --profile_steps=10:13")
    a, b = int(m.group(1)), int(m.group(2))
    if a < start or b > max_steps:
        raise ValueError(f"--profile_steps={spec} lies outside the steps this run trains ({start}..{max_steps - 1}); "
                         f"pick A:B with {start} <= A < B <= {max_steps}")
    return a, b


class StepProfiler:
    """Starts the framework's trace before step A, stops it after step B-1 (the loop's `wait` makes it computed)."""

    def __init__(self, steps: tuple[int, int] | None, backend: Any, directory: Path, log: Callable[[str], None]) -> None:
        self.steps, self.backend, self.directory, self.log = steps, backend, Path(directory), log
        self.active = False

    def before(self, step: int) -> None:
        if self.steps and step == self.steps[0]:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.backend.start_trace(self.directory)
            self.active = True

    def after(self, step: int, wait: Callable[[], None]) -> None:
        if self.active and step == self.steps[1] - 1:
            self.stop(wait)

    def stop(self, wait: Callable[[], None] = lambda: None) -> None:
        """Finish the trace (also when the run stops early, so the steps traced so far are kept)."""
        if not self.active:
            return
        wait()
        self.backend.stop_trace()
        self.active = False
        files = sorted(p for p in self.directory.rglob("*") if p.is_file())
        self.log(f"profiled steps {self.steps[0]}..{self.steps[1] - 1}: {len(files)} trace file(s) in {self.directory}"
                 " (open with TensorBoard's profile plugin / XProf, or ui.perfetto.dev)")
