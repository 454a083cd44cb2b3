"""--init_from: training starts from an HF directory (also found by name in the HF cache), or from either framework's
checkpoint (weights only); a resume with another init_from, a shape override that contradicts the source, a vocab
mismatch and a missing name or path are refused. Tiny model, in-process runs, lr so small the weights stay put:
the exported model must then BE the source model (a random init would differ everywhere)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jaxgpt.common import finetune, training
from jaxgpt.common.checkpoint import CheckpointDir, ConfigMismatch
from jaxgpt.common.config import get_preset
from jaxgpt.common.recipes import configs_for
from jaxgpt.common.weights import expected_shapes, load_hf_dir, save_hf_dir

# One worker runs this module (pyproject's --dist loadgroup): its module-scoped runs are then made once, not per worker.
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.xdist_group("finetune")]

CFG = get_preset("tiny")  # block 16, vocab 99, 2 layers, 32 wide
# One step of 8 rows; lr so small that AdamW's first update (~lr per weight) is far below fp32 resolution.
RUN = ["--total_batch_tokens=128", "--max_steps=1", "--warmup_steps=1", "--lr=1e-30",
       "--val_every=0", "--val_steps=1", "--ckpt_every=0", "--sample_every=0", "--plot=false"]


def random_weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0, 0.2, s).astype(np.float32) for k, s in expected_shapes(CFG).items()}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("finetune")
    shards = root / "shards"
    shards.mkdir()
    rng = np.random.default_rng(0)
    for i, split in enumerate(["val", "train"]):
        np.save(shards / f"tiny_{split}_{i:06d}.npy", rng.integers(0, 99, 4000).astype(np.uint16))
    hf = save_hf_dir(root / "hf", random_weights(1), CFG)
    # A fake Hugging Face cache holding the model under the legacy id "gpt2" (refs/main -> a snapshot).
    snap = root / "hf_home" / "hub" / "models--gpt2" / "snapshots" / "0123abc"
    snap.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        (snap / f).write_bytes((hf / f).read_bytes())
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("0123abc")
    return {"root": root, "shards": shards, "hf": hf, "hf_home": root / "hf_home"}


def run(world, out: str, framework: str, *extra: str, resume: bool = False) -> Path:
    d = world["root"] / out
    training.train("tiny", [*RUN, f"--data_dir={world['shards']}", f"--out_dir={d}", *extra], framework, resume,
                   log=lambda m: None)
    return d


def assert_same_model(exported: Path, source: dict[str, np.ndarray]) -> None:
    got = load_hf_dir(exported)[1]
    assert set(got) == set(source)
    for k, w in source.items():
        np.testing.assert_allclose(got[k], w, rtol=0, atol=1e-12, err_msg=k)


@pytest.fixture(scope="module")
def chain(world, tmp_path_factory) -> dict[str, Path]:
    """The runs, each fine-tuned from the previous one's checkpoint across frameworks (one JAX run: its compile is
    the expensive part): torch random init -> JAX from it -> torch from the JAX checkpoint."""
    src = run(world, "src-torch", "torch", "--lr=1e-2", "--max_steps=2", "--export_hf=false")
    jax_run = run(world, "ft-jax", "jax", f"--init_from={src}", "--padded_vocab_size=128", "--ckpt_every=1")
    torch_run = run(world, "ft-torch", "torch", f"--init_from={CheckpointDir(jax_run / 'checkpoints').path(1)}")
    return {"src": src, "jax": jax_run, "torch": torch_run}


def test_from_a_checkpoint_of_either_framework(chain):
    """Each run's export is its source's weights (padded to the run's vocabulary rows), and each run started at step 0
    with a fresh optimiser: the source's step and moments are not carried over."""
    src_weights = finetune.init_weights(str(chain["src"]), CFG)  # the run dir -> its newest checkpoint (step 2)
    assert_same_model(chain["jax"] / "hf", src_weights)
    assert_same_model(chain["torch"] / "hf", src_weights)
    assert CheckpointDir(chain["jax"] / "checkpoints").steps() == [1]


def test_from_an_hf_directory_found_by_name(world, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(world["hf_home"]))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    out = run(world, "by-name", "torch", "--init_from=gpt2")
    assert_same_model(out / "hf", load_hf_dir(world["hf"])[1])
    with pytest.raises(FileNotFoundError, match="huggingface-cli download gpt2-medium"):
        run(world, "missing-name", "torch", "--init_from=gpt2-medium")
    with pytest.raises(FileNotFoundError, match="not found"):
        run(world, "missing-path", "torch", f"--init_from={world['root'] / 'nowhere'}")
    assert not (world["root"] / "missing-name").exists()  # refused before anything was written


def test_resume_with_another_init_from_is_refused(world, chain):
    with pytest.raises(ConfigMismatch, match="init_from"):
        run(world, "ft-jax", "torch", f"--init_from={world['hf']}", "--padded_vocab_size=128", "--max_steps=2",
            resume=True)
    with pytest.raises(ConfigMismatch, match="init_from"):
        run(world, "ft-jax", "torch", "--padded_vocab_size=128", "--max_steps=2", resume=True)


def test_the_source_fixes_the_shape(world):
    model, train, _ = configs_for("poetry", [f"--init_from={world['hf']}", "--dropout=0.1"])
    assert (model.n_layer, model.n_embd, model.vocab_size, model.dropout, train.seq_len) == (2, 32, 99, 0.1, 16)
    model, _, _ = configs_for("gpt2-cpu", [f"--init_from={world['hf']}", "--seq_len=16"])
    assert model.padded_vocab_size is None  # gpt2-cpu pads 50257 rows to 50304; a 99-id model keeps its own
    with pytest.raises(ValueError, match="--n_layer=4 \\(it has 2\\) contradicts"):
        configs_for("tiny", [f"--init_from={world['hf']}", "--n_layer=4"])


def test_vocab_mismatch_names_both_sizes():
    with pytest.raises(ValueError, match="vocab_size=99.*'poetry.model' of 1024 ids"):
        finetune.check_vocab("gpt2", CFG, "poetry.model", 1024, "data/poetry")
    finetune.check_vocab("gpt2", CFG, "x.model", 99, "data/x")  # same size: accepted
