"""makemore: data handling, bad inputs, short training runs, checkpoints and the CLI.

Short schedules only (hundreds of steps); they must bring the loss well below the uniform
baseline ln 27 = 3.296. The full-schedule losses are `scripts/makemore.py --ladder` (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import data_file
from jaxgpt.common.makemore import data
from jaxgpt.common.makemore.config import ConfigError, ModelConfig, TrainConfig, get_preset, lr_at

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import makemore as cli

LN27 = math.log(27)


@pytest.fixture(scope="module")
def names_path() -> Path:
    return data_file("names.txt")


@pytest.fixture(scope="module")
def few_names(names_path, tmp_path_factory) -> Path:
    """Every 8th name of names.txt (4,005): real data, but evaluation of whole splits stays cheap."""
    p = tmp_path_factory.mktemp("names") / "names_subset.txt"
    p.write_text("\n".join(names_path.read_text().splitlines()[::8]))
    return p


# ---- data -------------------------------------------------------------------------------------
def test_vocabulary_and_windows():
    assert len(data.CHARS) == 27 and data.STOI["."] == 0 and data.STOI["z"] == 26
    X, Y = data.build_windows(["emma"], 3)
    assert X.tolist() == [[0, 0, 0], [0, 0, 5], [0, 5, 13], [5, 13, 13], [13, 13, 1]]
    assert Y.tolist() == [5, 13, 13, 1, 0]  # e m m a .


def test_sequences_pad_with_ignored_targets():
    X, Y = data.build_sequences(["ab", "c"], 4)
    assert X.tolist() == [[0, 1, 2, 0], [0, 3, 0, 0]]
    assert Y.tolist() == [[1, 2, 0, -1], [3, 0, -1, -1]]
    with pytest.raises(data.DataError, match="block_size >= 3"):
        data.build_sequences(["ab"], 2)


def test_splits_on_names(names_path):
    words = data.read_words(names_path)
    assert len(words) == 32033
    tr, va, te = data.split_words(words, "lecture")
    assert (len(tr), len(va), len(te)) == (25626, 3203, 3204)  # lecture 2's 80/10/10
    assert tr[:3] == ["yuheng", "diondre", "xavien"]  # random.seed(42); random.shuffle, as the lectures
    Xtr, _ = data.build_windows(tr, 3)
    assert len(Xtr) == 182625  # lecture 2: torch.Size([182625, 3])
    tr, va, te = data.split_words(words, "makemore")
    assert len(te) == 1000 and va == te and len(tr) == 31033 and not set(tr) & set(te) - set(tr)
    # makemore.py's own test words: torch.manual_seed(3407); torch.randperm(32033)[-1000:]
    import torch

    torch.manual_seed(3407)
    rp = torch.randperm(len(words)).tolist()
    assert te == [words[i] for i in rp[-1000:]] and tr == [words[i] for i in rp[:-1000]]


@pytest.mark.parametrize("seed", [0, 42, 3407, 2**31 - 1])
def test_torch_generator_replay(seed):
    """The numpy replay of torch's CPU generator: randperm and randint exact, randn to 2e-6."""
    import torch

    from jaxgpt.common.makemore.torch_rng import TorchGenerator

    g, ours = torch.Generator().manual_seed(seed), TorchGenerator(seed)
    for n in (1, 2, 10, 1000, 70_001):
        assert (ours.randperm(n) == torch.randperm(n, generator=g).numpy()).all(), n
    for shape in [(27, 10), (30, 200), (200,), (16,), (17,), (200, 27), (3, 5, 7)]:
        np.testing.assert_allclose(ours.randn(*shape), torch.randn(shape, generator=g).numpy(), rtol=0, atol=2e-6)
    for high in (1, 27, 182_625, 2**28 - 1):
        assert (ours.randint(high, (4, 32)) == torch.randint(0, high, (4, 32), generator=g).numpy()).all(), high
    assert (ours.randperm(33) == torch.randperm(33, generator=g).numpy()).all()  # still in step
    with pytest.raises(ValueError, match="scalar path"):
        ours.randn(15)
    with pytest.raises(ValueError, match="64 bits"):
        ours.randint(2**28, (1,))
    # skip(n): where a resumed --lecture-rng run picks the notebook's batches up again
    a, b = TorchGenerator(seed), TorchGenerator(seed)
    a.randint(1000, (3, 32))
    b.skip(3 * 32)
    assert (a.randint(1000, (2, 32)) == b.randint(1000, (2, 32))).all()


def test_empty_file_and_out_of_vocab(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(data.DataError, match="no words"):
        data.read_words(empty)
    bad = tmp_path / "bad.txt"
    bad.write_text("emma\nJosé\n")
    with pytest.raises(data.DataError, match=r"bad.txt:2: character 'J'.*--lowercase.*--strip"):
        data.read_words(bad)
    with pytest.raises(data.DataError, match=r"bad.txt:2: character 'é'"):
        data.read_words(bad, lowercase=True)
    assert data.read_words(bad, lowercase=True, strip=True) == ["emma", "jos"]
    with pytest.raises(data.DataError, match="not found"):
        data.read_words(tmp_path / "missing.txt")


def test_default_data_offline_fallback_and_cache(tmp_path):
    logs = []
    words, desc = data.default_words(tmp_path, url="http://127.0.0.1:9/names.txt", timeout=2, log=logs.append)
    assert "census" in desc and "offline" in logs[0] and len(words) > 4000
    assert words[:2] == ["mary", "patricia"] and all(w.isalpha() and w.islower() for w in words)
    (tmp_path / "names.txt").write_text("anna\nbob\n")
    words, desc = data.default_words(tmp_path, url="http://127.0.0.1:9/x", log=logs.append)
    assert words == ["anna", "bob"] and "cache" in logs[-1]


def test_default_data_download_is_cached_only_when_valid(tmp_path):
    src = tmp_path / "src.txt"
    src.write_text("Not-A-Name!\n")
    words, desc = data.default_words(tmp_path / "a", url=src.as_uri(), log=lambda s: None)
    assert "census" in desc and not (tmp_path / "a" / "names.txt").exists()  # not cached
    src.write_text("emma\nava\n")
    words, desc = data.default_words(tmp_path / "b", url=src.as_uri(), log=lambda s: None)
    assert words == ["emma", "ava"] and "downloaded" in desc
    assert (tmp_path / "b" / "names.txt").read_text() == "emma\nava\n"
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["names.txt"]  # no temp file left behind


def test_config_errors():
    with pytest.raises(ConfigError, match="must be >= 1"):
        ModelConfig("mlp", block_size=0)
    with pytest.raises(ConfigError, match="power of two"):
        ModelConfig("wavenet", block_size=6)
    assert ModelConfig("wavenet", block_size=16).block_size == 16
    assert get_preset("wavenet").model.n_hidden == 128


def test_config_errors_training():
    with pytest.raises(ConfigError, match="schedule must be"):
        TrainConfig(steps=10, schedule="linear")
    with pytest.raises(ConfigError, match="lr_final <= lr"):
        TrainConfig(steps=10, schedule="cosine", lr=1e-3, lr_final=1e-2)
    with pytest.raises(ConfigError, match="warmup_steps <= steps"):
        TrainConfig(steps=10, schedule="cosine", lr=1e-3, lr_final=0.0, warmup_steps=11)


def test_lr_schedules():
    step = TrainConfig(steps=200, lr=0.1, lr_decay_step=100, lr_final=0.01)
    assert [lr_at(s, step) for s in (0, 99, 100, 199)] == [0.1, 0.1, 0.01, 0.01]
    assert lr_at(10**6, TrainConfig(steps=5, lr=0.3)) == 0.3  # no decay step: constant
    cos = TrainConfig(steps=1000, optimizer="adamw", lr=1e-3, schedule="cosine", lr_final=1e-4, warmup_steps=100)
    assert lr_at(0, cos) == pytest.approx(1e-5)  # warm-up starts at lr / warmup_steps
    assert lr_at(99, cos) == pytest.approx(1e-3)
    assert lr_at(550, cos) == pytest.approx(0.5 * (1e-3 + 1e-4))  # half-way down the cosine
    assert lr_at(1000, cos) == pytest.approx(1e-4) and lr_at(5000, cos) == pytest.approx(1e-4)
    lrs = [lr_at(s, cos) for s in range(100, 1001)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # monotone after warm-up


def test_shorten_keeps_the_schedule_shape():
    short = cli.shorten(get_preset("bn-mlp").train, 2000)
    assert (short.steps, short.lr_decay_step) == (2000, 1000)
    cos = TrainConfig(steps=30_000, optimizer="adamw", lr=1e-3, schedule="cosine", lr_final=1e-4, warmup_steps=1000)
    short = cli.shorten(cos, 3000)
    assert (short.steps, short.warmup_steps) == (3000, 100)
    assert lr_at(short.steps, short) == pytest.approx(1e-4) and lr_at(99, short) == pytest.approx(1e-3)


@pytest.mark.parametrize("model", ["bn-mlp", "wavenet"])
def test_lecture_init_replays_the_notebooks_draws(model):
    """lecture_init gives the weights the notebook's torch code draws, then its first minibatch."""
    import torch

    from jaxgpt.common.makemore.torch_rng import lecture_init

    cfg = get_preset(model).model
    ours, g = lecture_init(cfg)
    if model == "bn-mlp":  # lecture 3's cell, with its own generator
        tg = torch.Generator().manual_seed(2147483647)
        want = {"C": torch.randn((27, 10), generator=tg),
                "W1": torch.randn((30, 200), generator=tg) * (5 / 3) / (30 ** 0.5)}
        torch.randn(200, generator=tg)  # b1
        want["W2"] = torch.randn((200, 27), generator=tg) * 0.01
        want["b2"] = torch.randn(27, generator=tg) * 0
        batch = torch.randint(0, 182625, (32,), generator=tg)
    else:  # lecture 5: the global generator, layer by layer
        torch.manual_seed(42)
        want = {"net.layers.0.weight": torch.randn((27, 24))}
        for i, fan_in in enumerate((48, 256, 256)):
            want[f"net.layers.{2 + 4 * i}.weight"] = torch.randn((fan_in, 128)) / fan_in ** 0.5
        want["net.layers.13.weight"] = torch.randn((128, 27)) / 128 ** 0.5 * 0.1
        batch = torch.randint(0, 182625, (32,))
    for k, v in want.items():
        np.testing.assert_allclose(ours[k], v.numpy(), rtol=0, atol=2e-6, err_msg=k)
    assert (g.randint(182625, (32,)) == batch.numpy()).all()
    from torchref.makemore.train import build_model  # the names and shapes fit the model
    assert {k: tuple(v.shape) for k, v in build_model(cfg).state_dict().items()} == {k: v.shape for k, v in ours.items()}


def test_wavenet_has_the_lectures_parameter_count():
    # torch side only: building the JAX model eagerly is slow, and the parity suite already checks
    # that both sides hold the same names and shapes for every model.
    from torchref.makemore.train import build_model

    assert sum(x.numel() for x in build_model(get_preset("wavenet").model).parameters()) == 76579


# ---- CLI: bad inputs exit non-zero with one clear line ------------------------------------------
def run_cli(capsys, *args) -> tuple[int, str, str]:
    rc = cli.main(list(map(str, args)))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("args, message", [
    (["--model", "mlp", "--context", "0"], "--context must be >= 1"),
    (["--model", "wavenet", "--context", "6", "--steps", "1"], "power of two"),
    (["--model", "mlp", "--data", "EMPTY"], "no words"),
    (["--model", "mlp", "--data", "BAD"], ":2: character 'X'"),
    (["--load", "NOTCKPT"], "not a makemore checkpoint"),
    ([], "give --model"),
    (["--model", "mlp", "--lecture-rng"], "replays the notebooks' runs of bn-mlp, wavenet only"),
    (["--model", "bn-mlp", "--lecture-rng", "--split", "makemore"], "use the lecture split"),
])
def test_cli_bad_inputs(capsys, tmp_path, args, message):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "bad.txt").write_text("ann\nXavier\n")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    subst = {"EMPTY": tmp_path / "empty.txt", "BAD": tmp_path / "bad.txt", "NOTCKPT": tmp_path / "junk.npz"}
    rc, _, err = run_cli(capsys, *[subst.get(a, a) for a in args])
    assert rc == 2 and message in err and "Traceback" not in err, err


def test_cli_lowercase_makes_bad_file_usable(capsys, tmp_path):
    f = tmp_path / "caps.txt"
    f.write_text("Anna\nBob\nEve\nIda\nJo\nKim\nLea\nMax\nNed\nOla\nPia\n")
    rc, out, _ = run_cli(capsys, "--model", "bigram", "--data", f, "--lowercase", "--samples", "2")
    assert rc == 0 and "jax bigram" in out


# ---- short training runs, checkpoints --------------------------------------------------------------
def final_losses(out: str) -> dict[str, float]:
    line = next(ln for ln in out.splitlines() if " val " in ln)
    parts = line.split(":", 1)[1].split()
    return {parts[i]: float(parts[i + 1]) for i in range(0, 6, 2)}


@pytest.mark.parametrize("model, framework, steps, below", [
    ("mlp", "jax", 1000, 2.6),
    ("backprop", "torch", 500, 2.7),
    ("wavenet", "jax", 1000, 2.7),
    ("transformer", "torch", 100, 2.8),
])
def test_short_schedule_learns(capsys, few_names, model, framework, steps, below):
    rc, out, _ = run_cli(capsys, "--model", model, "--framework", framework, "--steps", steps,
                         "--data", few_names, "--samples", 3)
    assert rc == 0
    losses = final_losses(out)
    assert losses["val"] < below < LN27, losses
    assert "samples (* = new" in out


def test_lecture_rng_runs_agree_across_frameworks(capsys, names_path):
    """--lecture-rng: both frameworks start from the notebook's weights and see its batches,
    so their short runs end at the same losses (up to float rounding)."""
    out = {}
    for fw in ("jax", "torch"):
        rc, o, err = run_cli(capsys, "--model", "bn-mlp", "--framework", fw, "--steps", 300, "--lecture-rng",
                             "--data", names_path, "--samples", 0)
        assert rc == 0 and "replaying the lecture's random numbers (torch seed 2147483647)" in err
        out[fw] = final_losses(o)
    assert out["jax"]["val"] < 2.8 < LN27
    for k in ("train", "val", "test"):
        assert abs(out["jax"][k] - out["torch"][k]) < 2e-3, out


def test_save_load_round_trip_across_frameworks(capsys, tmp_path, few_names):
    ckpt = tmp_path / "bn.npz"
    rc, out, _ = run_cli(capsys, "--model", "bn-mlp", "--steps", 300, "--data", few_names, "--samples", 0,
                         "--save", ckpt)
    assert rc == 0 and ckpt.is_file()
    trained = final_losses(out)
    for fw in ("jax", "torch"):  # --steps 300 again: nothing left to train, only evaluate
        rc, out, _ = run_cli(capsys, "--load", ckpt, "--framework", fw, "--steps", 300, "--data", few_names,
                             "--samples", 2)
        assert rc == 0
        again = final_losses(out)
        assert all(abs(again[k] - trained[k]) < 1e-4 for k in trained), (fw, again, trained)
    rc, out, err = run_cli(capsys, "--load", ckpt, "--model", "wavenet", "--data", few_names)
    assert rc == 2 and "holds a 'bn-mlp' model, not 'wavenet'" in err


def test_ladder_writes_table_and_plot(capsys, tmp_path, few_names):
    rc, out, _ = run_cli(capsys, "--ladder", "--models", "bigram,bigram-nn", "--frameworks", "jax,torch",
                         "--steps", 20, "--data", few_names, "--samples", 0, "--out", tmp_path)
    assert rc == 0
    assert "| bigram | jax | 729 |" in out and "| bigram-nn | torch | 729 |" in out
    assert (tmp_path / "ladder.png").stat().st_size > 10_000
    rows = json.loads((tmp_path / "ladder.json").read_text())
    assert [r["model"] for r in rows] == ["bigram", "bigram", "bigram-nn", "bigram-nn"]
    assert rows[0]["val"] == pytest.approx(rows[1]["val"], abs=1e-5) and rows[0]["val"] < 2.7


def test_cli_subprocess_exit_code(tmp_path):
    """A real process: the expected error is one line on stderr and exit code 2, no traceback."""
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "makemore.py"), "--model", "wavenet",
                        "--context", "12", "--data", str(tmp_path / "none.txt")],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "error:" in r.stderr, r.stderr
