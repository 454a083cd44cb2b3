"""Test configuration shared by tests/ and parity_tests/.

Runs before jax is imported anywhere, so the environment set here takes effect:
- 8 simulated CPU devices, so sharding / data-parallel tests run on any machine;
- the real data files from ../shared/data (or $JAXGPT_TEST_DATA), skipped when absent;
- tiktoken's offline cache from that folder, so `gpt2` / `cl100k_base` load with no network.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

ROOT = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("JAXGPT_TEST_DATA", ROOT.parent / "shared" / "data"))
if (DATA_DIR / "tiktoken_cache").is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(DATA_DIR / "tiktoken_cache"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real-data folder; tests that need it skip (with the reason) when it is missing."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"real data folder {DATA_DIR} not found; set JAXGPT_TEST_DATA to the shared/data folder")
    return DATA_DIR


def tiktoken_encoding(name: str):
    """tiktoken's `name` encoding, or a skip saying where its offline rank files are expected.

    With ../shared/data present the encoding loads from its tiktoken_cache folder; elsewhere
    tiktoken downloads it, and a machine without network skips instead of failing.
    """
    import tiktoken

    try:
        return tiktoken.get_encoding(name)
    except Exception as e:  # noqa: BLE001 - tiktoken raises requests' or its own errors when offline
        pytest.skip(f"tiktoken encoding {name!r} unavailable offline ({type(e).__name__}); set JAXGPT_TEST_DATA "
                    f"to a folder holding tiktoken_cache/ (now {DATA_DIR})")


def data_file(relpath: str) -> Path:
    """A file under the real-data folder, or a skip naming the missing path."""
    p = DATA_DIR / relpath
    if not p.exists():
        pytest.skip(f"{p} not found; set JAXGPT_TEST_DATA to a folder holding {relpath}")
    return p


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
