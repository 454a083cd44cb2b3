"""Shard and array loaders: per-process disjoint slices, exact state restore, shard validation,
document shuffling and the prefetching wrapper."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import data_file
from jaxgpt.common.data import loader as loader_module
from jaxgpt.common.data.bench import LoaderBench, make_shards, run_bench
from jaxgpt.common.data.documents import DocSource
from jaxgpt.common.data.loader import Prefetcher, ShardLoader, TokenArrayLoader
from jaxgpt.common.data.prepare import PrepareConfig, prepare

VOCAB = 50257
EOT = 50256
SIZES = {"val": [500], "train": [900, 700, 1100]}  # different lengths: batches end at different places
# Shards with documents. The train sizes are 32k+1: with 32 tokens per step, an epoch reads every token.
DOC_SIZES = {"val": [500], "train": [801, 609, 993]}
FRAGMENT_SHARD = 2  # this shard begins mid-document, as scripts/prepare_data.py's shards after the first do


@pytest.fixture
def shard_dir(tmp_path: Path) -> Path:
    """Shards whose tokens encode (shard index, position), so any batch can be traced to its source."""
    i = 0
    for split, sizes in SIZES.items():
        for n in sizes:
            np.save(tmp_path / f"edufineweb_{split}_{i:06d}.npy", ((i * 10_000 + np.arange(n)) % VOCAB).astype(np.uint16))
            i += 1
    return tmp_path


@pytest.fixture
def doc_dir(tmp_path: Path) -> Path:
    """Shards of documents 2..39 tokens long, each starting with EOT (shard FRAGMENT_SHARD begins with
    the tail of one); every other token encodes (shard i, position) as i*10_000 + position (never EOT)."""
    rng, i = np.random.default_rng(0), 0
    for split, sizes in DOC_SIZES.items():
        for n in sizes:
            tokens = (i * 10_000 + np.arange(n)).astype(np.uint16)
            starts = np.cumsum(rng.integers(2, 40, size=n))
            starts = starts[starts < n - 1]  # the last document has 2 tokens at least
            tokens[starts if i == FRAGMENT_SHARD else np.r_[0, starts]] = EOT
            np.save(tmp_path / f"edufineweb_{split}_{i:06d}.npy", tokens)
            i += 1
    return tmp_path


def take(loader, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [loader.next_batch() for _ in range(n)]


def assert_same_batches(got: list, want: list) -> None:
    assert len(got) == len(want)
    for s, ((x, y), (x2, y2)) in enumerate(zip(got, want)):
        assert np.array_equal(x, x2) and np.array_equal(y, y2), f"batch {s} differs"


def record(loaders, steps: int) -> tuple[list, list[dict]]:
    """Run one loader per process for `steps` steps: the batches of every process at each step, and
    the states before each step (index 0: the start), checked identical on every process. Given one
    loader instead of a list, the batches are that loader's (x, y) pairs."""
    lds = loaders if isinstance(loaders, list) else [loaders]
    batches, states = [], [json.loads(json.dumps(lds[0].state()))]
    for _ in range(steps):
        batches.append([ld.next_batch() for ld in lds])
        st = [ld.state() for ld in lds]
        assert all(s == st[0] for s in st), f"processes disagree on the state: {st}"
        states.append(json.loads(json.dumps(st[0])))  # what a checkpoint stores and reads back
    return (batches if isinstance(loaders, list) else [b[0] for b in batches]), states


def docs_of(stream: np.ndarray, fragment_start: int) -> list[tuple[int, ...]]:
    """A shard's stream cut into documents (at each EOT and at the leading fragment's first token), sorted."""
    cuts = np.flatnonzero((stream == EOT) | (stream == fragment_start))
    return sorted(tuple(d.tolist()) for d in np.split(stream, cuts) if len(d))


def test_batches_are_consecutive_tokens_shifted_by_one(shard_dir):
    ld = ShardLoader(shard_dir, "train", B=2, T=16)
    x, y = ld.next_batch()
    assert x.shape == y.shape == (2, 16) and x.dtype == y.dtype == np.int32
    tokens = np.load(shard_dir / "edufineweb_train_000001.npy").astype(np.int32)
    np.testing.assert_array_equal(x.ravel(), tokens[:32])
    np.testing.assert_array_equal(y.ravel(), tokens[1:33])


@pytest.mark.parametrize("shuffle_seed,doc_shuffle_seed", [(None, None), (3, None), (None, 5), (3, 5)])
def test_processes_read_disjoint_slices_that_tile_the_global_batch(doc_dir, shuffle_seed, doc_shuffle_seed):
    B, T, P, steps = 2, 16, 4, 40  # 40 steps of 128 tokens cross every shard and several epochs
    kw = {"shuffle_seed": shuffle_seed, "doc_shuffle_seed": doc_shuffle_seed}
    whole = take(ShardLoader(doc_dir, "train", B * P, T, **kw), steps)
    per_proc, _ = record([ShardLoader(doc_dir, "train", B, T, p, P, **kw) for p in range(P)], steps)
    for s in range(steps):
        xs = [per_proc[s][p][0] for p in range(P)]
        np.testing.assert_array_equal(np.concatenate(xs), whole[s][0])
        np.testing.assert_array_equal(np.concatenate([per_proc[s][p][1] for p in range(P)]), whole[s][1])
        words = np.concatenate(xs).ravel()
        words = words[words != EOT]  # the other tokens are unique and name their shard
        assert len(set((words // 10_000).tolist())) == 1  # all processes are in the same shard at every step
        assert len(np.unique(words)) == len(words)  # no token read twice


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


@pytest.mark.parametrize("P", [1, 2])
@pytest.mark.parametrize("doc_shuffle_seed", [None, 5])
@pytest.mark.parametrize("shuffle_seed", [None, 11])
def test_resume_from_any_step_across_shard_and_epoch_boundaries(doc_dir, shuffle_seed, doc_shuffle_seed, P):
    """A state saved before any step of 2.5 epochs, restored into fresh loaders, gives the same states
    and batches for the next 16 steps: every restore point reaches a shard boundary, and some an epoch's."""
    B, T, steps, ahead = 4 // P, 16, 90, 16  # 64 tokens per step: 12 + 9 + 15 = 36 steps per epoch

    def make(p: int) -> ShardLoader:
        return ShardLoader(doc_dir, "train", B, T, p, P, shuffle_seed=shuffle_seed, doc_shuffle_seed=doc_shuffle_seed)

    batches, states = record([make(p) for p in range(P)], steps)
    assert {s["epoch"] for s in states} == {0, 1, 2}
    for s in range(steps):
        n = min(ahead, steps - s)
        restored = [make(p) for p in range(P)]
        for ld in restored:
            ld.load_state(states[s])
        got, got_states = record(restored, n)
        assert got_states == states[s:s + n + 1], f"restored at step {s}"
        for p in range(P):
            assert_same_batches([b[p] for b in got], [b[p] for b in batches[s:s + n]])


@pytest.mark.parametrize("shuffle_seed,doc_shuffle_seed", [(None, None), (11, 5)])
def test_a_state_moves_between_process_counts(doc_dir, shuffle_seed, doc_shuffle_seed):
    """4x16 on one process reads the same global batches as 2x16 on each of two processes, and a state
    saved by either layout continues in the other (an elastic resume)."""
    kw = {"shuffle_seed": shuffle_seed, "doc_shuffle_seed": doc_shuffle_seed}

    def one() -> list[ShardLoader]:
        return [ShardLoader(doc_dir, "train", 4, 16, **kw)]

    def two() -> list[ShardLoader]:
        return [ShardLoader(doc_dir, "train", 2, 16, p, 2, **kw) for p in range(2)]

    def joined(batches: list) -> list:  # each step's batches of all processes, stacked as one process's
        return [tuple(np.concatenate([b[p][i] for p in range(len(b))]) for i in (0, 1)) for b in batches]

    steps, ahead = 80, 16
    b1, s1 = record(one(), steps)
    b2, s2 = record(two(), steps)
    assert s1 == s2  # the state names the global stream: nothing in it depends on the process layout
    assert_same_batches(joined(b1), joined(b2))
    for s in range(0, steps, 3):
        n = min(ahead, steps - s)
        for make, saved_by, want in ((one, s2, b1), (two, s1, b2)):
            loaders = make()
            for ld in loaders:
                ld.load_state(saved_by[s])
            got, got_states = record(loaders, n)
            assert got_states == s1[s:s + n + 1]
            assert_same_batches(joined(got), joined(want[s:s + n]))


@pytest.mark.filterwarnings("ignore:.*holds no document boundary")  # eot_id=7 below: none in these shards
def test_state_mismatches_are_refused_and_old_states_load(doc_dir):
    kw = {"shuffle_seed": 11, "doc_shuffle_seed": 5}
    ld = ShardLoader(doc_dir, "train", 2, 16, process_index=1, num_processes=2, **kw)
    take(ld, 13)
    state = json.loads(json.dumps(ld.state()))
    for bad, match in [(ShardLoader(doc_dir, "val", 2, 16, 1, 2, **kw), "split: 'train' in the state, 'val' here"),
                       (ShardLoader(doc_dir, "train", 2, 16, 1, 2, shuffle_seed=11),
                        "doc_shuffle_seed: 5 in the state, None here"),
                       (ShardLoader(doc_dir, "train", 2, 16, 1, 2, **kw, eot_id=7), "eot_id: 50256 in the state, 7 here"),
                       (ShardLoader(doc_dir, "train", 1, 16, 1, 2, **kw), "global_tokens: 64 in the state, 32 here")]:
        with pytest.raises(ValueError, match=match):
            bad.load_state(state)
    with pytest.raises(ValueError, match="position 1000000 is outside shard"):
        ShardLoader(doc_dir, "train", 2, 16, 1, 2, **kw).load_state({**state, "position": 10**6})
    with pytest.raises(ValueError, match="epoch -1 / shard index 0 out of range"):
        ShardLoader(doc_dir, "train", 2, 16, 1, 2, **kw).load_state({**state, "epoch": -1, "shard": 0})
    # A state saved before document shuffling existed (no doc_shuffle_seed / eot_id) loads into a default loader.
    old = ShardLoader(doc_dir, "train", 4, 16)
    take(old, 20)
    saved = {k: v for k, v in old.state().items() if k not in ("doc_shuffle_seed", "eot_id")}
    want = take(old, 5)
    again = ShardLoader(doc_dir, "train", 4, 16)
    again.load_state(saved)
    assert_same_batches(take(again, 5), want)
    ld.reset()
    assert ld.state()["position"] == 0 and ld.state()["epoch"] == 0 and ld.state()["shard"] == 0


def shard_streams(loader: ShardLoader, steps: int) -> dict[tuple[int, str], np.ndarray]:
    """The stream of each (epoch, shard name) as a one-process loader reads it: the inputs of each
    batch in turn, then the last target (every token when the shard has steps*B*T + 1 tokens)."""
    parts: dict[tuple[int, str], list] = {}
    for _ in range(steps):
        x, y = loader.next_batch()
        st = loader.state()  # the shard switch happens in the next call: this names x's shard
        parts.setdefault((st["epoch"], st["shard_name"]), []).append((x, y))
    return {k: np.concatenate([x.ravel() for x, _ in v] + [v[-1][1].ravel()[-1:]]) for k, v in parts.items()}


@pytest.mark.parametrize("shuffle_seed", [None, 3])
def test_document_shuffle_permutes_whole_documents_per_shard_and_epoch(doc_dir, shuffle_seed):
    steps = 3 * 75  # 32 tokens per step: 25 + 19 + 31 steps read all of the three shards, for 3 epochs
    files = {p.name: np.load(p).astype(np.int32) for p in sorted(doc_dir.glob("*_train_*.npy"))}

    def streams(doc_shuffle_seed: int | None) -> dict[tuple[int, str], np.ndarray]:
        ld = ShardLoader(doc_dir, "train", 2, 16, shuffle_seed=shuffle_seed, doc_shuffle_seed=doc_shuffle_seed)
        return shard_streams(ld, steps)

    plain, mixed = streams(None), streams(5)
    assert sorted(plain) == sorted(mixed) and {e for e, _ in mixed} == {0, 1, 2}  # the same shard order
    for (epoch, name), stream in mixed.items():
        f = files[name]
        np.testing.assert_array_equal(plain[epoch, name], f)  # off (the default): the file, in order
        assert len(stream) == len(f) and not np.array_equal(stream, f)
        assert docs_of(stream, f[0]) == docs_of(f, f[0])  # on: the same documents, each one whole
    for name in files:  # a new order in every epoch
        assert len({mixed[e, name].tobytes() for e in range(3)}) == 3
    again, other = streams(5), streams(6)
    assert all(np.array_equal(again[k], v) for k, v in mixed.items())  # seeded
    assert all(not np.array_equal(other[k], v) for k, v in mixed.items())


def test_document_shuffle_options_are_checked(doc_dir, shard_dir):
    with pytest.raises(ValueError, match="eot_id 70000 cannot occur in uint16 shards"):
        ShardLoader(doc_dir, "train", 2, 16, doc_shuffle_seed=1, eot_id=70000)
    with pytest.warns(UserWarning, match="holds no document boundary .*check eot_id"):
        ShardLoader(shard_dir, "train", 2, 16, doc_shuffle_seed=1)  # these shards hold no 50256


def test_shards_shorter_than_a_global_batch_are_skipped(shard_dir):
    with pytest.warns(UserWarning, match="edufineweb_train_000002"):
        ld = ShardLoader(shard_dir, "train", 4, 200)  # 801 tokens needed: the 700-token shard is skipped
    assert [p.name for p in ld.shards] == ["edufineweb_train_000001.npy", "edufineweb_train_000003.npy"]
    with pytest.raises(ValueError, match="shorter than one global batch"):
        ShardLoader(shard_dir, "train", 8, 200)


def test_bad_shards_are_rejected_with_the_file_named(shard_dir):
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
    cfg = PrepareConfig(DocSource(files=(str(tmp_path / "p.txt"),)), shard_size=8_000)
    prepare(cfg, tmp_path / "out", progress=False, log=lambda m: None)
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


# --- Prefetcher ---------------------------------------------------------------------------------------


def wait_until(cond, timeout: float = 20.0) -> None:
    """Poll `cond` (e.g. the prefetch thread having filled its queue) for up to `timeout` seconds."""
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out waiting for the prefetch thread"
        time.sleep(0.005)


def prefetch_threads() -> list[threading.Thread]:
    """The Prefetcher's reader ("jaxgpt-prefetch") and shard-scan ("jaxgpt-scan_0") threads alive."""
    return [t for t in threading.enumerate() if t.name.startswith("jaxgpt-")]


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("shuffle_seed,doc_shuffle_seed", [(None, None), (11, 5)])
def test_prefetcher_gives_the_synchronous_batches_and_resume_states(doc_dir, shuffle_seed, doc_shuffle_seed, depth):
    def make() -> ShardLoader:
        return ShardLoader(doc_dir, "train", 2, 16, 1, 2, shuffle_seed=shuffle_seed, doc_shuffle_seed=doc_shuffle_seed)

    steps = 90  # 64 tokens per step: 2.5 epochs of 36 steps
    want, states = record(make(), steps + 20)
    boundaries = [s for s in range(steps) if states[s]["shard"] != states[s + 1]["shard"]]  # steps that switch
    assert any(states[s]["epoch"] != states[s + 1]["epoch"] for s in boundaries)
    with Prefetcher(make(), depth) as pf:
        got, got_states = record(pf, steps)
        assert got_states == states[:steps + 1]  # after each batch: the consumer's position, not the thread's
        assert_same_batches(got, want[:steps])
        for s in [0, 17, *boundaries, steps - 1]:  # restore into the prefetcher: what it read ahead is dropped
            pf.load_state(states[s])
            assert_same_batches([pf.next_batch()], want[s:s + 1])
            wait_until(lambda: pf.ready == depth)  # the thread has read ahead (across the boundary)
            got, got_states = record(pf, 12)
            assert got_states == states[s + 1:s + 14], f"restored at {s}"
            assert_same_batches(got, want[s + 1:s + 13])
            sync = make()  # a synchronous loader resumes from the prefetcher's state
            sync.load_state(pf.state())
            assert_same_batches(take(sync, 3), want[s + 13:s + 16])
        pf.load_state(states[10])
        take(pf, 5)
        wait_until(lambda: pf.ready == depth)
        pf.close()  # the loader is ahead of the consumer: the next call must rewind it
        assert pf.state() == states[15] and not prefetch_threads()
        assert_same_batches(take(pf, 10), want[15:25])


def test_prefetcher_over_a_token_array_loader():
    tokens = np.arange(5_000, dtype=np.int64) % 1000
    sync = TokenArrayLoader(tokens, B=3, T=10, seed=5)
    want, states = record(sync, 20)
    with Prefetcher(TokenArrayLoader(tokens, B=3, T=10, seed=5), depth=2) as pf:
        got, got_states = record(pf, 20)
        assert got_states == states
        assert_same_batches(got, want)
        pf.load_state(states[7])
        assert_same_batches(take(pf, 5), want[7:12])
    with pytest.raises(ValueError, match="depth must be at least 1"):
        Prefetcher(sync, depth=0)


def test_prefetcher_scans_the_next_shard_in_the_background(doc_dir, monkeypatch):
    scans: list[tuple[str, str]] = []  # (shard, thread) of every scan of a shard's token ids / documents
    real = loader_module.scan_shard

    def spy(tokens, where, **kw):
        scans.append((Path(where.split()[-1]).name, threading.current_thread().name))
        return real(tokens, where, **kw)

    monkeypatch.setattr(loader_module, "scan_shard", spy)
    with Prefetcher(ShardLoader(doc_dir, "train", 2, 16, doc_shuffle_seed=5), depth=2) as pf:
        assert scans == [("edufineweb_train_000001.npy", "MainThread")]  # the first shard: at construction
        pf.next_batch()  # in shard 1 (25 steps), far from its end
        wait_until(lambda: len(scans) == 2)
        assert scans[1] == ("edufineweb_train_000002.npy", "jaxgpt-scan_0")  # not the reader, not the consumer
        take(pf, 60)  # through shard 2 into shard 3: each shard scanned once, off the reader's path
        assert scans[1:] == [(f"edufineweb_train_00000{i}.npy", "jaxgpt-scan_0") for i in (2, 3)]


def test_prefetcher_raises_the_loader_error_at_the_same_batch(doc_dir):
    bad = doc_dir / "edufineweb_train_000002.npy"
    tokens = np.load(bad)
    tokens[100] = VOCAB
    np.save(bad, tokens)
    match = "edufineweb_train_000002.npy: token id 50257 at position 100"
    sync, good = ShardLoader(doc_dir, "train", 2, 16), []
    with pytest.raises(ValueError, match=match):
        for _ in range(100):  # (bounded: a loader that misses the bad id must fail the test, not hang it)
            good.append(sync.next_batch())
    assert len(good) == 25  # all of shard 1
    with Prefetcher(ShardLoader(doc_dir, "train", 2, 16), depth=2) as pf:
        got = [pf.next_batch()]
        wait_until(lambda: pf.ready == 2)  # shard 2 is scanned in the background meanwhile: the failure waits
        with pytest.raises(ValueError, match=match) as err:
            for _ in range(100):
                got.append(pf.next_batch())
        assert "prefetch thread" in " ".join(getattr(err.value, "__notes__", []))
        assert_same_batches(got, good)
        assert pf.state() == sync.state() and not prefetch_threads()  # the error stopped both threads


def test_prefetcher_threads_end_on_close_collection_and_exit(doc_dir):
    pf = Prefetcher(ShardLoader(doc_dir, "train", 2, 16))
    pf.next_batch()  # the reader has put it after handing shard 2 to the scan thread
    assert sorted(t.name for t in prefetch_threads()) == ["jaxgpt-prefetch", "jaxgpt-scan_0"]
    pf.close()
    assert not prefetch_threads()
    pf = Prefetcher(ShardLoader(doc_dir, "train", 2, 16))
    pf.next_batch()
    del pf  # dropped without close(): the thread must not outlive it
    gc.collect()
    wait_until(lambda: not prefetch_threads(), timeout=5)
    # A script that never calls close() exits at once, its thread blocked on a full queue.
    code = ("import sys; from jaxgpt.common.data.loader import Prefetcher, ShardLoader; "
            "pf = Prefetcher(ShardLoader(sys.argv[1], 'train', 2, 16)); pf.next_batch(); print('done')")
    r = subprocess.run([sys.executable, "-c", code, str(doc_dir)], check=False, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "done", r.stderr


def test_loader_benchmark_runs_every_case_on_small_shards(tmp_path):
    """The benchmark's plumbing (speed figures live in docs/BENCHMARKS.md, not in tests)."""
    cfg = LoaderBench(shards=2, shard_tokens=5_000, mean_doc=50, B=2, T=64, steps=60, consumer_ms=(0.0, 0.5))
    rows = run_bench(cfg, tmp_path, log=lambda _: None)
    assert [(r["consumer_ms"], r["order"], r["loader"]) for r in rows] == [
        (c, o, m) for c in (0.0, 0.5) for o in ("file", "shuffled") for m in ("sync", "prefetch")]
    assert all(r["steps"] == 60 and r["tokens_per_s"] > 0 for r in rows)
    assert not list(tmp_path.iterdir()) and not prefetch_threads()  # shards removed, threads stopped
    shards = make_shards(tmp_path, cfg)
    starts = np.flatnonzero(np.load(shards[0]) == EOT)
    assert starts[0] == 0 and 20 < len(starts) < 200  # documents of ~50 tokens
    script = Path(__file__).resolve().parent.parent / "scripts" / "bench_loader.py"
    r = subprocess.run([sys.executable, str(script), "--shard_tokens=100", "--B=2", "--T=64"],
                       check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--shard_tokens 100 is less than one batch" in r.stderr
