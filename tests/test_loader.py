"""Shard and array loaders: per-process disjoint slices, exact state restore, shard validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import data_file
from jaxgpt.common.data.fineweb import ShardConfig, build_shards
from jaxgpt.common.data.loader import ShardLoader, TokenArrayLoader

VOCAB = 50257
SIZES = {"val": [500], "train": [900, 700, 1100]}  # different lengths: batches end at different places


@pytest.fixture
def shard_dir(tmp_path: Path) -> Path:
    """Shards whose tokens encode (shard index, position), so any batch can be traced to its source."""
    i = 0
    for split, sizes in SIZES.items():
        for n in sizes:
            np.save(tmp_path / f"edufineweb_{split}_{i:06d}.npy", ((i * 10_000 + np.arange(n)) % VOCAB).astype(np.uint16))
            i += 1
    return tmp_path


def take(loader, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [loader.next_batch() for _ in range(n)]


def test_batches_are_consecutive_tokens_shifted_by_one(shard_dir):
    ld = ShardLoader(shard_dir, "train", B=2, T=16)
    x, y = ld.next_batch()
    assert x.shape == y.shape == (2, 16) and x.dtype == y.dtype == np.int32
    tokens = np.load(shard_dir / "edufineweb_train_000001.npy").astype(np.int32)
    np.testing.assert_array_equal(x.ravel(), tokens[:32])
    np.testing.assert_array_equal(y.ravel(), tokens[1:33])


@pytest.mark.parametrize("shuffle_seed", [None, 3])
def test_processes_read_disjoint_slices_that_tile_the_global_batch(shard_dir, shuffle_seed):
    B, T, P, steps = 2, 16, 4, 40  # 40 steps of 128 tokens cross every shard and several epochs
    whole = take(ShardLoader(shard_dir, "train", B * P, T, shuffle_seed=shuffle_seed), steps)
    per_proc = [take(ShardLoader(shard_dir, "train", B, T, p, P, shuffle_seed=shuffle_seed), steps) for p in range(P)]
    for s in range(steps):
        xs = [per_proc[p][s][0] for p in range(P)]
        np.testing.assert_array_equal(np.concatenate(xs), whole[s][0])
        np.testing.assert_array_equal(np.concatenate([per_proc[p][s][1] for p in range(P)]), whole[s][1])
        shard = xs[0][0, 0] // 10_000  # all processes are in the same shard at every step
        assert all((x // 10_000 == shard).all() for x in xs)
        assert len({int(v) for x in xs for v in x.ravel()}) == B * T * P  # no token read twice


def test_shard_order_shuffles_per_epoch_with_the_seed(shard_dir):
    def epochs(seed, steps=80) -> list[list[int]]:
        ld, visits = ShardLoader(shard_dir, "train", 4, 32, shuffle_seed=seed), []
        for _ in range(steps):
            x, _ = ld.next_batch()
            visit = (ld.state()["epoch"], int(x[0, 0] // 10_000))
            if not visits or visits[-1] != visit:
                visits.append(visit)
        n = max(e for e, _ in visits)
        return [[s for e, s in visits if e == k] for k in range(n)]  # complete epochs only

    assert epochs(None)[:2] == [[1, 2, 3], [1, 2, 3]]
    a = epochs(7)
    assert a == epochs(7) and len(a) >= 3  # deterministic
    assert all(sorted(e) == [1, 2, 3] for e in a) and len({tuple(e) for e in a}) > 1


@pytest.mark.parametrize("shuffle_seed", [None, 11])
def test_state_restores_exactly(shard_dir, shuffle_seed):
    ld = ShardLoader(shard_dir, "train", 2, 16, process_index=1, num_processes=2, shuffle_seed=shuffle_seed)
    take(ld, 13)
    state = json.loads(json.dumps(ld.state()))  # what a checkpoint stores
    want = take(ld, 30)
    fresh = ShardLoader(shard_dir, "train", 2, 16, process_index=1, num_processes=2, shuffle_seed=shuffle_seed)
    fresh.load_state(state)
    for (x, y), (x2, y2) in zip(want, take(fresh, 30)):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    other = ShardLoader(shard_dir, "train", 4, 16, shuffle_seed=shuffle_seed)
    with pytest.raises(ValueError, match="split: 'train' in the state, 'val' here"):
        ShardLoader(shard_dir, "val", 2, 16, 1, 2, shuffle_seed=shuffle_seed).load_state(state)
    other.load_state(state)  # 4x16 on one process reads the same global batches as 2x16 on two
    ld.reset()
    assert ld.state()["position"] == 0 and ld.state()["epoch"] == 0


def test_shards_shorter_than_a_global_batch_are_skipped(shard_dir):
    with pytest.warns(UserWarning, match="edufineweb_train_000002"):
        ld = ShardLoader(shard_dir, "train", 4, 200)  # 801 tokens needed: the 700-token shard is skipped
    assert [p.name for p in ld.shards] == ["edufineweb_train_000001.npy", "edufineweb_train_000003.npy"]
    with pytest.raises(ValueError, match="shorter than one global batch"):
        ShardLoader(shard_dir, "train", 8, 200)


def test_bad_shards_are_rejected_with_the_file_named(shard_dir, tmp_path_factory):
    bad = shard_dir / "edufineweb_train_000002.npy"
    np.save(bad, np.arange(700, dtype=np.int32))
    with pytest.raises(ValueError, match=r"edufineweb_train_000002.npy has dtype int32, expected uint16"):
        ShardLoader(shard_dir, "train", 2, 16)
    np.save(bad, np.zeros((10, 70), np.uint16))
    with pytest.raises(ValueError, match=r"has shape \(10, 70\), expected a 1-D"):
        ShardLoader(shard_dir, "train", 2, 16)
    np.save(bad, np.zeros(700, np.uint16))
    bad.write_bytes(bad.read_bytes()[:-100])
    with pytest.raises(ValueError, match="is truncated"):
        ShardLoader(shard_dir, "train", 2, 16)
    bad.write_bytes(b"not numpy at all")
    with pytest.raises(ValueError, match="not a readable .npy file"):
        ShardLoader(shard_dir, "train", 2, 16)
    tokens = np.zeros(700, np.uint16)
    tokens[123] = VOCAB  # one id past the GPT-2 vocabulary
    np.save(bad, tokens)
    with pytest.raises(ValueError, match=r"token id 50257 at position 123 is outside \[0, 50257\)"):
        ShardLoader(shard_dir, "train", 2, 16, check_tokens="eager")
    ld = ShardLoader(shard_dir, "train", 2, 16)  # default: checked when the shard is first opened
    with pytest.raises(ValueError, match="edufineweb_train_000002.npy: token id 50257"):
        take(ld, 40)
    ShardLoader(shard_dir, "train", 2, 16, vocab_size=50304, check_tokens="eager")  # padded vocab: fine


def test_missing_or_empty_data_folders(tmp_path, shard_dir):
    with pytest.raises(FileNotFoundError, match="data folder .*nowhere not found"):
        ShardLoader(tmp_path / "nowhere", "train", 2, 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no \*_train_\*.npy shards .* \(found: nothing\)"):
        ShardLoader(tmp_path / "empty", "train", 2, 16)
    with pytest.raises(ValueError, match="split must be"):
        ShardLoader(shard_dir, "test", 2, 16)
    with pytest.raises(ValueError, match="process_index 2"):
        ShardLoader(shard_dir, "train", 2, 16, process_index=2, num_processes=2)


def test_reads_pipeline_output(tmp_path):
    with open(data_file("french_poetry/poems.txt"), encoding="utf-8") as f:
        (tmp_path / "p.txt").write_text(f.read(60_000), encoding="utf-8")
    cfg = ShardConfig(dataset=None, name=None, files=(str(tmp_path / "p.txt"),), shard_size=8_000)
    build_shards(cfg, tmp_path / "out", progress=False)
    val = ShardLoader(tmp_path / "out", "val", 4, 64)
    x, _ = val.next_batch()
    np.testing.assert_array_equal(x.ravel(), np.load(tmp_path / "out" / "edufineweb_val_000000.npy")[:256])
    assert x[0, 0] == 50256


def test_array_loader_windows_processes_and_state():
    tokens = np.arange(5_000, dtype=np.int64) % 1000
    one = TokenArrayLoader(tokens, B=6, T=10, seed=5)
    x, y = one.next_batch()
    assert x.shape == y.shape == (6, 10) and x.dtype == np.int32
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    np.testing.assert_array_equal((x[:, :1] + np.arange(1, 11)) % 1000, y)  # windows of consecutive tokens
    ref = take(TokenArrayLoader(tokens, B=6, T=10, seed=5), 5)
    parts = [take(TokenArrayLoader(tokens, B=2, T=10, seed=5, process_index=p, num_processes=3), 5) for p in range(3)]
    for s in range(5):
        np.testing.assert_array_equal(np.concatenate([parts[p][s][0] for p in range(3)]), ref[s][0])
    take(one, 3)
    state = json.loads(json.dumps(one.state()))
    want = take(one, 4)
    again = TokenArrayLoader(tokens, B=6, T=10, seed=999)
    again.load_state(state)
    for (a, _), (b, _) in zip(want, take(again, 4)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="n_tokens: 5000 in the state, 4000 here"):
        TokenArrayLoader(tokens[:4000], 6, 10).load_state(state)
    with pytest.raises(ValueError, match="1-D integer array"):
        TokenArrayLoader(np.zeros((3, 3), np.int64), 1, 2)
    with pytest.raises(ValueError, match="too few"):
        TokenArrayLoader(tokens[:10], 1, 10)
    with pytest.raises(ValueError, match="outside"):
        TokenArrayLoader(tokens, 1, 10, vocab_size=999)
