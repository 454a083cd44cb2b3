"""Test configuration shared by tests/ and parity_tests/.

Runs before jax is imported anywhere, so the environment set here takes effect:
- 8 simulated CPU devices, so sharding / data-parallel tests run on any machine;
- for CI time (docs/TESTING.md, "CI time"): one XLA compilation cache per session, XLA's CPU code generation at
  LLVM's lowest optimisation, one pytest-xdist worker more than the cores;
- the real data files from ../shared/data (or $JAXGPT_TEST_DATA), skipped when absent;
- tiktoken's offline cache from that folder, so `gpt2` / `cl100k_base` load with no network;
- what a missing test dependency does: a skip on a developer's machine, a failure in CI.

In CI (`JAXGPT_CI=1`, exported by .ci/run) a missing test dependency fails the test with a message
naming it, instead of skipping, so a broken CI environment cannot pass by running less:
- transformers (the one external reference) and tiktoken must be installed;
- the real-data folder may be absent altogether (a bare CI machine has none: those tests skip), but
  when it exists, every file a test needs in it (tiktoken_cache/ rank files included) must be there.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# XLA's CPU code generation at LLVM's lowest optimisation: the suite's models are tiny, so compiling is most of
# its CPU time and running little (15% less CPU for tests/test_train_gpt2.py). The HLO passes (fusion, buffer
# assignment, the collectives' placement the tests read) are XLA's own and unchanged, and without fast-math the
# arithmetic is IEEE either way. JAXGPT_TEST_XLA_OPT=1 compiles as training does.
_CODEGEN = ("" if os.environ.get("JAXGPT_TEST_XLA_OPT") == "1" else
            " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
if "xla_backend_optimization_level" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += _CODEGEN
# Under pytest-xdist (pyproject's -n auto), N workers share the machine's cores: torch's intra-op pool is sized
# to each worker's share instead of every core, so the workers do not preempt each other's threads (tiny
# models slow down most when one of their threads is preempted: see one_torch_thread). Read by torch at import.
if _workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // _workers)))

ROOT = Path(__file__).resolve().parent

# One persistent XLA compilation cache for the whole test session, shared by the pytest-xdist workers and the
# scripts/train.py runs the tests start (script_compile_cache): the suite builds the same small models and steps
# again and again (a reference run, then the interrupted, resumed, copied and cross-framework runs compared
# with it), and from the second time each program is loaded instead of compiled. It cannot mask a difference:
# the cache is keyed by the program and its compile options, so a program that differs compiles its own, and a
# loaded executable computes what the compiled one did. Made by the first process (the xdist controller), which
# passes it to the workers through the environment and deletes it at exit: nothing carries over between
# sessions. JAXGPT_TEST_COMPILE_CACHE=0 turns it off (the tests of the cache itself use their own folders).
_CACHE_ENV = "JAXGPT_TEST_COMPILE_CACHE_DIR"
if os.environ.get("JAXGPT_TEST_COMPILE_CACHE", "1") != "0" and _CACHE_ENV not in os.environ:
    os.environ[_CACHE_ENV] = tempfile.mkdtemp(prefix="jaxgpt-test-xla-cache-")
    atexit.register(shutil.rmtree, os.environ[_CACHE_ENV], ignore_errors=True)
if os.environ.get(_CACHE_ENV):
    import jax

    jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_ENV])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # as scripts/train.py --compile_cache

DATA_DIR = Path(os.environ.get("JAXGPT_TEST_DATA", ROOT.parent / "shared" / "data"))
TIKTOKEN_CACHE = DATA_DIR / "tiktoken_cache"
if TIKTOKEN_CACHE.is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))
IN_CI = os.environ.get("JAXGPT_CI") == "1"
# tiktoken's cache names each rank file sha1(its download URL) (tiktoken/load.py::read_file_cached);
# the names below are those of shared/data/tiktoken_cache (its README lists the URLs).
TIKTOKEN_FILES = {
    "gpt2": ["6d1cbeee0f20b3d9449abfede4726ed8212e3aee", "6c7ea1a7e38e3a7f062df639a5b80947f075ffe6"],
    "r50k_base": ["0ea1e91bbb3a60f729a8dc8f777fd2fc07cd8df4"],
    "cl100k_base": ["9b5ad71b2ce5302211f9c61530b329a4922fc6a4"],
}


def missing(what: str, fix: str, *, ci_fails: bool) -> None:
    """Skip (on a developer's machine) or fail (in CI, when `ci_fails`) a test whose dependency is missing.

    Usable at module level too (a skip there needs allow_module_level; a fail there is a collection error).
    """
    if IN_CI and ci_fails:
        pytest.fail(f"JAXGPT_CI=1: {what}; {fix}", pytrace=False)
    pytest.skip(f"{what}; {fix}", allow_module_level=True)


def require_module(name: str):
    """`import name`, or a skip (a failure in CI) naming the missing package."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as e:
        missing(f"test dependency {name!r} is not installed ({e})", 'install it: pip install -e ".[dev]"', ci_fails=True)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real-data folder; tests that need it skip (with the reason) when it is missing, in CI too."""
    if not DATA_DIR.is_dir():
        missing(f"real data folder {DATA_DIR} not found", "set JAXGPT_TEST_DATA to the shared/data folder",
                ci_fails=False)
    return DATA_DIR


def data_file(relpath: str) -> Path:
    """A file under the real-data folder, or a skip naming the missing path.

    In CI: no data folder at all is a skip (a bare CI machine has none); a data folder without the file
    is a failure (an incomplete copy would otherwise pass by running less).
    """
    p = DATA_DIR / relpath
    if not p.exists():
        missing(f"{p} not found", f"set JAXGPT_TEST_DATA to a folder holding {relpath}", ci_fails=DATA_DIR.is_dir())
    return p


def tiktoken_encoding(name: str):
    """tiktoken's `name` encoding, loaded from the data folder's tiktoken_cache (no network).

    Only missing rank files are a skip (a failure in CI when the data folder exists, as `data_file`);
    any error of tiktoken itself with the files present (a bad hash, a bad file) fails the test.
    """
    tiktoken = require_module("tiktoken")
    if name not in TIKTOKEN_FILES:
        raise ValueError(f"no offline rank files known for tiktoken encoding {name!r}; use one of "
                         f"{sorted(TIKTOKEN_FILES)} or add its cache file names to conftest.TIKTOKEN_FILES")
    for f in TIKTOKEN_FILES[name]:
        data_file(f"tiktoken_cache/{f}")
    return tiktoken.get_encoding(name)


def subprocess_env(devices: int = 8, **extra: str) -> dict[str, str]:
    """The environment of a JAX or torch process a test starts: `devices` simulated CPU devices, one compute thread
    (the runs are tiny and several share the machine), XLA's code generation as in this process (above), output
    unbuffered (tests read it line by line), plus `extra`."""
    flags = f"--xla_force_host_platform_device_count={devices} --xla_cpu_multi_thread_eigen=false{_CODEGEN}"
    return dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)


_HOLD_LOCK = """
import sys, time
from pathlib import Path
from jaxgpt.common.resume import RunFolderLock
lock = RunFolderLock(Path(sys.argv[1]), print)
print("locked", flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def folder_in_use(path: Path):
    """Another live process holding `path`'s run-folder lock, as a running training run does, until the block ends
    (then it is killed: the kernel drops its lock)."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked", "the lock-holding process did not start"
        yield
    finally:
        holder.kill()
        holder.wait()


def script_compile_cache() -> str:
    """`--compile_cache=DIR` for the JAX runs of scripts/train.py that a test starts: the session's cache (above).

    A module's runs compile the same steps again and again (a reference run, then the interrupted, resumed and
    copied runs compared with it): from the second on, each loads them, saving two thirds of a tiny run's CPU
    time (docs/TESTING.md, "CI time"). Not for the tests of the cache itself (test_compile_cache.py).
    """
    return f"--compile_cache={os.environ.get(_CACHE_ENV, '')}"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run torch with one intra-op thread for a module of tiny-model tests.

    On a loaded 2-core machine, torch's 2 intra-op threads wait on each other when one is
    preempted: tiny forward passes ran up to 20x slower than with 1 thread, with the same numbers.
    Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory) -> Path:
    """A val and a train shard of 3,000 ids < 41 (no manifest): data for runs of the `tiny` preset."""
    import numpy as np

    d = tmp_path_factory.mktemp("tiny_shards")
    rng = np.random.default_rng(1)
    for i, split in enumerate(("val", "train")):
        np.save(d / f"tiny_{split}_{i:06d}.npy", (np.arange(3000) % 40 + rng.integers(0, 2, 3000)).astype(np.uint16))
    return d


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: one worker more than the cores (pyproject caps it at 4). A third of the suite's time is spent in
    subprocesses (training scripts, multi-process runs) that the worker waits on, and in their start-up; on CI's
    2 cores, 2 workers kept 1.7 cores busy."""
    return len(os.sched_getaffinity(0)) + 1
