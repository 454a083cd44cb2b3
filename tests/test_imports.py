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


# ---- torch is optional: the JAX product works where torch cannot be imported --------------------------------

_NO_TORCH = """
import json, runpy, sys
refused = []

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "transformers"):  # torchref is installed; torch is not
            refused.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Refuse())
for i, (script, *argv) in enumerate(json.loads(sys.argv[1])):  # one command after another, as one user would
    for stream in (sys.stdout, sys.stderr):
        print(f"=== command {i}", file=stream, flush=True)
    sys.argv = [script, *argv]
    try:
        if script.endswith(".py"):
            runpy.run_path(script, run_name="__main__")
        else:
            exec(script, {"sys": sys})
        code = 0
    except SystemExit as e:  # as the interpreter would exit: None is 0, a message goes to stderr and is 1
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else print(e.code, file=sys.stderr) or 1
    print("REFUSED", sorted(set(refused)))
    print("EXIT", code, flush=True)
"""

# A JAX GPT-2-vocabulary model exported as a Hugging Face directory, written without torch.
_SAVE_GPT2_VOCAB_MODEL = """
from flax import nnx
from jaxgpt.common.config import GPTConfig
from jaxgpt.gpt import GPT
GPT(GPTConfig(block_size=64, vocab_size=50257, n_layer=1, n_head=2, n_embd=16), rngs=nnx.Rngs(0)).save_hf(sys.argv[1])
"""


def _without_torch(*commands: list[str]) -> list[subprocess.CompletedProcess]:
    """Run `commands` (each [script or code, *argv]) one after another in ONE interpreter where torch cannot be
    imported; each one's exit code and output. One process, not one per command: each start pays ~3 CPU s of
    JAX imports."""
    import json

    from conftest import subprocess_env

    p = subprocess.run([sys.executable, "-c", _NO_TORCH, json.dumps(commands)], cwd=ROOT, capture_output=True,
                       text=True, timeout=900, check=False, env=subprocess_env(2))
    assert p.returncode == 0 and p.stdout.count("EXIT") == len(commands), p.stdout[-3000:] + p.stderr[-3000:]
    outs, errs = (re.split(r"^=== command \d+\n", text, flags=re.MULTILINE)[1:] for text in (p.stdout, p.stderr))
    codes = [int(re.search(r"^EXIT (\d+)$", out, re.MULTILINE).group(1)) for out in outs]
    return [subprocess.CompletedProcess(*result) for result in zip(commands, codes, outs, errs)]


def test_the_jax_cli_path_runs_without_torch(tmp_path):
    """Data preparation with our tokenizer, JAX training, HellaSwag in JAX: torch is never even tried.

    (`pip install -e .` without the torch extra; checked once by hand in a real venv, see the README.)"""
    from conftest import data_file, tiktoken_encoding

    tiktoken_encoding("gpt2")  # HellaSwag renders with it: skip (with the reason) where it cannot load
    poems = tmp_path / "poems.txt"
    poems.write_text("\n\n".join(f"Vers {i} du ciel,\nla mer ô nuit {i % 7}." for i in range(400)), encoding="utf-8")
    data, hf = tmp_path / "data", tmp_path / "hf"
    prep, train, save, evaluate, asked_torch = _without_torch(
        ["scripts/prepare_data.py", "--files", str(poems), "--train_tokenizer", "280", "--val_fraction", "0.1",
         "--workers", "1", "--out", str(data)],
        ["scripts/train.py", "--preset", "tiny", f"--data_dir={data}", "--vocab_size=280",
         f"--out_dir={tmp_path / 'run'}", "--max_steps=4", "--val_every=2", "--ckpt_every=2", "--sample_every=2",
         "--plot=false"],
        [_SAVE_GPT2_VOCAB_MODEL, str(hf)],
        ["scripts/hellaswag.py", "--hf-dir", str(hf), "--framework", "jax", "--data",
         str(data_file("hellaswag_val_sample.jsonl")), "--limit", "4", "--batch-size", "2", "--no-progress"],
        # Asking for torch where it is not installed: one line naming the extra to install.
        ["scripts/train.py", "--preset", "tiny", "--framework", "torch", f"--data_dir={data}", "--vocab_size=280",
         f"--out_dir={tmp_path / 'torch'}"])
    assert prep.returncode == 0 and "REFUSED []" in prep.stdout, prep.stdout[-2000:] + prep.stderr[-3000:]
    assert train.returncode == 0 and "REFUSED []" in train.stdout and "done: step 4" in train.stdout, \
        train.stdout[-2000:] + train.stderr[-3000:]
    assert save.returncode == 0, save.stderr[-3000:]
    assert evaluate.returncode == 0 and "REFUSED []" in evaluate.stdout and "hellaswag: acc" in evaluate.stdout, \
        evaluate.stderr[-3000:]
    r = asked_torch
    assert r.returncode == 1 and r.stderr.startswith("error: --framework torch needs torch, which is not installed; "
                                                     'install it with: pip install -e ".[torch]"'), r.stderr[-2000:]
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1
