"""Import isolation: jaxgpt/common imports neither jax nor torch, torchref never imports jax.

Each check runs in a fresh interpreter whose `sys.meta_path` starts with a finder that raises
ImportError for the forbidden top-level packages, exactly as if they were not installed. A
module that imports one of them (even indirectly, even inside a try/except that swallows the
error) is reported with the import that was refused.
"""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import jaxgpt
import jaxgpt.common
import torchref

ROOT = Path(__file__).resolve().parent.parent

# jaxgpt/common/ is written once and imported by both sides, so none of it may need either framework.
# Every module under it is listed, including ones added later.
FRAMEWORK_FREE = ["jaxgpt", "jaxgpt.common",
                  *sorted(m.name for m in pkgutil.walk_packages(jaxgpt.common.__path__, "jaxgpt.common."))]
# Every module of each side, including ones added later: jaxgpt never needs torch, torchref never jax.
JAX_SIDE = sorted(m.name for m in pkgutil.walk_packages(jaxgpt.__path__, "jaxgpt."))
TORCH_SIDE = ["torchref", *sorted(m.name for m in pkgutil.walk_packages(torchref.__path__, "torchref."))]

JAX_PACKAGES = ["jax", "jaxlib", "flax", "optax", "orbax"]
# transformers is a test-only reference: no runtime module may need it (weights.py reads HF files itself).
TORCH_PACKAGES = ["torch", "transformers"]

_SCRIPT = """
import importlib, sys

BLOCKED = set({blocked!r})
refused = []

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            refused.append(name)
            raise ImportError(f"{{name}} is blocked by tests/test_imports.py")
        return None

sys.meta_path.insert(0, Refuse())
failures = []
for mod in {modules!r}:
    try:
        importlib.import_module(mod)
    except Exception as e:
        failures.append(f"{{mod}}: {{type(e).__name__}}: {{e}}")
    if refused:
        failures.append(f"{{mod}} tried to import {{sorted(set(refused))}}")
        refused.clear()
print("\\n".join(failures))
sys.exit(1 if failures else 0)
"""


def _import_without(modules: list[str], blocked: list[str]) -> None:
    script = textwrap.dedent(_SCRIPT.format(blocked=blocked, modules=modules))
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, (
        f"importing with {blocked} unavailable failed:\n{r.stdout}{r.stderr[-2000:]}\n"
        "Move the framework import into the function that needs it, or the module to the framework's side."
    )


def test_framework_free_modules_need_neither_jax_nor_torch():
    _import_without(FRAMEWORK_FREE, JAX_PACKAGES + TORCH_PACKAGES)


def test_jaxgpt_imports_without_torch():
    _import_without(JAX_SIDE, TORCH_PACKAGES)


def test_torchref_imports_without_jax():
    _import_without(TORCH_SIDE, JAX_PACKAGES + ["transformers"])


@pytest.mark.parametrize("blocked", [["torch"], ["jax"]])
def test_the_blocker_itself_works(blocked):
    """The check can fail: importing a module of the forbidden framework is reported."""
    module = "torchref.gpt" if blocked == ["torch"] else "jaxgpt.gpt"
    with pytest.raises(AssertionError, match="tried to import|blocked"):
        _import_without([module], blocked)


def test_torchref_uses_only_the_framework_free_part_of_jaxgpt():
    """torchref imports from jaxgpt only what lives in jaxgpt/common/: the layout shows the boundary."""
    bad = []
    for path in sorted((ROOT / "torchref").rglob("*.py")):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            m = re.match(r"\s*(?:from|import)\s+(jaxgpt[\w.]*)", line)
            if m and not (m.group(1) + ".").startswith("jaxgpt.common."):
                bad.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not bad, "torchref imports JAX-side modules of jaxgpt (move the code to jaxgpt/common/):\n" + "\n".join(bad)
