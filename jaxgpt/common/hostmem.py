"""Host memory for CPU training: keep the step's freed buffers in the process instead of unmapping them.

XLA:CPU runs a compiled training step in one temporary buffer the size of the step's peak live
memory (about 500 MB for the poetry GPT at batch 32 x 128) and frees it when the step ends. glibc
serves a block that large with a fresh `mmap` and unmaps it on `free`, so every step touches half a
gigabyte of new pages: on the 2-core dev machine that was 122,000 page faults and 0.40 s of kernel
time in a 1.8 s step (docs/BENCHMARKS.md, "GPT step profile"). torch allocates tensor by tensor,
mostly below glibc's mmap threshold, and reuses them.

`recycle_freed_memory()` tells glibc's allocator (`mallopt`) to serve every block from its heap
rather than by `mmap`, to use one arena (blocks above 64 MB requested by a thread with its own arena
are always mmapped), and not to give freed memory back to the system: the next step then reuses
the same pages. The process keeps its peak resident size, which a training process reaches on its
first step anyway.

It is process-wide, so call it first thing, before JAX starts its CPU client (threads already bound
to an arena keep it); a CPU entry point (scripts/bench.py) calls it before importing a framework.
Framework-free; a no-op returning False where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
_INT_MAX = 2**31 - 1

_state = {"applied": False}


def recycle_freed_memory() -> bool:
    """Make freed heap memory reusable by later allocations of the process (glibc); True when applied."""
    if _state["applied"]:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - present only in glibc; musl ignores these settings
    except (OSError, AttributeError):
        return False
    settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, _INT_MAX))
    _state["applied"] = all(libc.mallopt(option, value) == 1 for option, value in settings)
    return _state["applied"]
