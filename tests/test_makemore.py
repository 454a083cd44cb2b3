"""makemore: data handling, splits, batches, recipes and their checks, the notebooks' random numbers.

The command line, runs, checkpoints and diagnostics are tests/test_makemore_cli.py; the twins'
parity is parity_tests/test_makemore.py. Full-schedule losses: `scripts/makemore.py --ladder` (docs/BENCHMARKS.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import data_file
from jaxgpt.common.makemore import data
from jaxgpt.common.makemore.config import (
    ConfigError,
    ModelConfig,
    TrainConfig,
    get_preset,
    lr_at,
    rescale,
    with_sizes,
)


@pytest.fixture(scope="module")
def names_path() -> Path:
    return data_file("names.txt")


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


def test_rescale_keeps_the_schedule_shape():
    short = rescale(get_preset("bn-mlp").train, 2000)
    assert (short.steps, short.lr_decay_step) == (2000, 1000)
    assert rescale(short, 4000).lr_decay_step == 2000  # longer again (a --load with --steps)
    cos = TrainConfig(steps=30_000, optimizer="adamw", lr=1e-3, schedule="cosine", lr_final=1e-4, warmup_steps=1000)
    short = rescale(cos, 3000)
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



# ---- the validation carve-out, batches by step, sampling -------------------------------------------
def test_validation_carved_out_of_makemores_training_names(names_path):
    words = data.read_words(names_path)
    tr0, _, te0 = data.split_words(words, "makemore")
    tr, va, te = data.split_words(words, "makemore", val_fraction=0.1)
    assert (len(tr), len(va), len(te)) == (27930, 3103, 1000)  # the sizes docs/BENCHMARKS.md quotes
    assert te == te0  # makemore.py's test names, untouched
    assert sorted(tr + va) == sorted(tr0)  # a partition of its training names (names.txt repeats some names,
    #                                         so a name may be in two splits, as in makemore.py's own split)
    it = iter(tr0)
    assert all(w in it for w in tr)  # a subsequence: the training names keep makemore.py's order
    assert data.split_words(words, "makemore", val_fraction=0.1)[1] == va  # seeded: the same names every run
    assert len(data.split_words(words, "makemore", val_fraction=0.5)[1]) == 15516
    for bad in (0.6, -0.1):
        with pytest.raises(data.DataError, match=r"\(0, 0.5\]"):
            data.split_words(words, "makemore", val_fraction=bad)
    with pytest.raises(data.DataError, match="makemore split"):
        data.split_words(words, "lecture", val_fraction=0.1)


def test_step_batches_depend_on_the_step_only():
    whole = data.step_batches(7, 0, 2500, 1000, 4)
    for chunk in (1, 99, 100, 1000, 1300):  # JAX's and torch's chunking, a resume in mid-block
        parts = [data.step_batches(7, s, min(chunk, 2500 - s), 1000, 4) for s in range(0, 2500, chunk)]
        assert np.array_equal(np.concatenate(parts), whole), chunk
    assert not np.array_equal(data.step_batches(8, 0, 10, 1000, 4), whole[:10])  # the seed matters
    assert whole.min() >= 0 and whole.max() < 1000 and whole.dtype == np.int32
    assert data.step_batches(7, 5, 0, 1000, 4).shape == (0, 4)
    assert data.step_seed(0, 1) != data.step_seed(0, 2) != data.step_seed(1, 1)


def test_sampling_temperature_and_top_k():
    # A fake window model: the next character after '.' is a (p .5), b (.3), c (.2); after any letter, '.'.
    def logits(ctx):
        out = np.full((len(ctx), 27), -1e9)  # impossible even at temperature 100
        first = ctx[:, -1] == 0
        out[first, 1:4] = np.log([0.5, 0.3, 0.2])
        out[~first, 0] = 0.0
        return out

    def rng():
        return np.random.default_rng(0)

    assert data.sample_words(logits, 3, True, 5, rng(), temperature=0) == ["a"] * 5  # greedy
    assert data.sample_words(logits, 3, True, 50, rng(), top_k=1) == ["a"] * 50  # top-1 = greedy
    two = data.sample_words(logits, 3, True, 400, rng(), top_k=2)
    assert set(two) == {"a", "b"} and 0.5 < two.count("a") / 400 < 0.75  # renormalised: 5/8
    hot = data.sample_words(logits, 3, True, 2000, rng(), temperature=100.0)
    assert abs(hot.count("c") / 2000 - 1 / 3) < 0.04  # a high temperature flattens to uniform over a, b, c
    cold = data.sample_words(logits, 3, True, 400, rng(), temperature=0.2)
    assert cold.count("a") / 400 > 0.85  # p(a) = .5^5 / (.5^5 + .3^5 + .2^5) = 0.92
    for bad, match in (({"top_k": 0}, "top_k"), ({"top_k": 28}, "top_k"), ({"temperature": -1}, "temperature")):
        with pytest.raises(ValueError, match=match):
            data.sample_words(logits, 3, True, 1, rng(), **bad)


def test_size_flags_apply_to_the_models_that_have_them():
    t = with_sizes(get_preset("transformer").model, n_layer=2, n_head=2, n_embd=32, dropout=0.1)
    assert (t.n_layer, t.n_head, t.n_embd, t.dropout) == (2, 2, 32, 0.1)
    assert with_sizes(get_preset("mlp").model, n_hidden=64, block_size=5).n_hidden == 64
    for model, field, flag in (("mlp", "n_head", "--n-head"), ("mlp", "dropout", "--dropout"),
                               ("transformer", "n_hidden", "--n-embd2"), ("bigram", "n_embd", "--n-embd"),
                               ("wavenet", "n_layer", "--n-layer")):
        with pytest.raises(ConfigError, match=f"{flag} does not apply to the {model} model"):
            with_sizes(get_preset(model).model, **{field: 2 if field != "dropout" else 0.1})


@pytest.mark.parametrize("kwargs, message", [
    ({"model": "transformer", "block_size": 16, "n_embd": 64, "n_head": 5},
     "--n-embd 64 must be divisible by --n-head 5"),
    ({"model": "wavenet", "block_size": 12}, r"--context: the WaveNet context must be a power of two"),
    ({"model": "mlp", "block_size": 3, "n_embd": 0}, "--n-embd must be an integer >= 1, got 0"),
    ({"model": "mlp", "block_size": 3, "n_hidden": -4}, r"--n-embd2 \(n_hidden\) must be an integer >= 1"),
    ({"model": "transformer", "block_size": 16, "n_layer": 0}, "--n-layer must be an integer >= 1"),
    ({"model": "transformer", "block_size": 16, "n_embd": 16, "dropout": 1.0}, r"--dropout must be in \[0, 1\)"),
    ({"model": "transformer", "block_size": 16, "n_embd": 16, "dropout": float("nan")}, r"--dropout must be in \[0, 1\)"),
    ({"model": "bn-mlp", "block_size": 3, "dropout": 0.1}, "the bn-mlp model has no dropout"),
    ({"model": "bn-mlp-deep", "block_size": 3, "n_layer": 1}, "needs >= 2 layers"),
])
def test_model_config_errors_name_the_flag_and_range(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": float("nan")}, "--learning-rate must be a finite number > 0, got nan"),
    ({"lr": 0.0}, "--learning-rate must be a finite number > 0"),
    ({"lr": float("inf")}, "--learning-rate must be a finite number > 0"),
    ({"weight_decay": -0.1}, "--weight-decay must be a finite number >= 0"),
    ({"batch_size": -1}, "--batch-size must be >= 1"),
    ({"val_fraction": 0.7, "split": "makemore"}, r"--val-fraction must be in \(0, 0.5\]"),
    ({"val_fraction": 0.1}, "needs --split makemore"),
])
def test_train_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(steps=10, **kwargs)
    assert TrainConfig.from_dict(TrainConfig(steps=10, betas=(0.8, 0.9)).to_dict()).betas == (0.8, 0.9)
