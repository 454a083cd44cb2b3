"""The training loop's pieces without any framework: a scripted fake Trainer drives jaxgpt.common.loop.Loop.

Checks the loop's contract directly: the order of events (evaluate, sample, checkpoint before a
step; metrics of step n-1 fetched after step n is dispatched), divergence (train or val) stops
with exit 3 before anything is saved, a signal checkpoints and exits 128+N, the CSV of a resumed
run, asynchronous checkpoints committed only once written, and the recipes/override rules.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import zlib
from pathlib import Path

import numpy as np
import pytest

from jaxgpt.common.checkpoint import META, SAFETENSORS_FORMAT, CheckpointDir, checkpoint_exists
from jaxgpt.common.config import GPTConfig, UsageError
from jaxgpt.common.loop import Cluster, Loop, RunData, Runtime, due
from jaxgpt.common.recipes import RECIPES, TrainConfig, configs_for
from jaxgpt.common.runlog import Stop, read_log
from jaxgpt.common.schedule import OptimConfig

MODEL = RECIPES["tiny"].model


class FakeTrainer:
    """Scripted losses; records what the loop asks of it, in order."""

    framework, state_format = "fake", SAFETENSORS_FORMAT

    def __init__(self, losses: list[float], val: float = 2.0, events: list | None = None, on_dispatch=None) -> None:
        self.losses, self.val, self.events, self.on_dispatch = losses, val, events if events is not None else [], on_dispatch
        self.step_count = 0

    def dispatch(self, x, y):
        self.events.append(("dispatch", self.step_count))
        if self.on_dispatch:
            self.on_dispatch(self.step_count)
        loss = ("loss", self.step_count, self.losses[self.step_count])
        self.step_count += 1
        return loss, ("norm", self.step_count - 1, 1.0)

    def eval_loss(self, x, y):
        self.events.append(("eval", self.step_count))
        return self.val

    def finite(self):
        return True

    def save(self, directory: Path):
        self.events.append(("save", self.step_count))
        (Path(directory) / "state.bin").write_bytes(b"x" * 10)

    def save_hf(self, path: Path):
        self.events.append(("export", self.step_count))


class Batches:
    def __init__(self):
        self.n = 0

    def next_batch(self):
        self.n += 1
        return np.zeros((2, 4), np.int32), np.zeros((2, 4), np.int32)

    def reset(self):
        self.n = 0

    def state(self):
        return {"n": self.n}


def make_loop(tmp_path: Path, trainer: FakeTrainer, *, async_dispatch: bool = True, bpt: float | None = None,
              **train) -> tuple[Loop, list]:
    fetched: list = []

    def fetch(handle):
        fetched.append(handle[:2])
        trainer.events.append(("fetch", *handle[:2]))
        return float(handle[2])

    cfg = TrainConfig(**{"total_batch_tokens": 8, "micro_batch": 0, "seq_len": 4, "val_every": 3, "val_steps": 2,
                         "sample_every": 0, "ckpt_every": 4, "keep": 5, "export_hf": True, "plot": False} | train)
    rt = Runtime(trainer, Cluster("fake", 0, 1, 1, 1, "cpu"), lambda: None, fetch, async_dispatch=async_dispatch,
                 log=lambda m: trainer.events.append(("log", m)))
    ckpts = CheckpointDir(tmp_path / "checkpoints", cfg.keep, log=lambda m: None)
    return Loop(MODEL, cfg, OptimConfig(lr=1e-3, warmup_steps=1, max_steps=len(trainer.losses)), rt,
                RunData(Batches(), Batches(), val_bytes_per_token=bpt), tmp_path, ckpts, {"config": {}}), fetched


def test_due():
    assert [s for s in range(10) if due(s, 4, 0)] == [4, 8]
    assert [s for s in range(10) if due(s, 4, 4)] == [8]  # a run resumed at 4 already did step 4's events
    assert not any(due(s, 0, 0) for s in range(10))


def test_events_and_fetch_after_dispatch(tmp_path):
    t = FakeTrainer([3.0, 2.9, 2.8, 2.7, 2.6, 2.5])
    loop, fetched = make_loop(tmp_path, t, bpt=2.0)
    m = loop.run(0)
    kinds = [(e[0], e[1]) for e in t.events if e[0] in ("dispatch", "eval", "save", "export")]
    order = [("dispatch", e[1]) if e[0] == "dispatch" else ("fetched", e[2]) for e in t.events
             if e[0] == "dispatch" or e[:2] == ("fetch", "loss")]
    # Step n's loss is fetched only after step n+1 was dispatched (no host sync per step); an evaluation
    # (step 3) or a checkpoint (step 4) flushes the step in flight first and sees the state after `step` steps.
    assert order[:9] == [("dispatch", 0), ("dispatch", 1), ("fetched", 0), ("dispatch", 2), ("fetched", 1),
                         ("fetched", 2), ("dispatch", 3), ("fetched", 3), ("dispatch", 4)]
    assert [h for h in fetched if h[0] == "loss"] == [("loss", i) for i in range(6)]
    assert [e[1] for e in t.events if e[0] == "eval"] == [3, 3, 6, 6]  # val_steps 2, at steps 3 and the end 6
    assert [e[1] for e in t.events if e[0] == "save"] == [4, 6] and ("export", 6) in kinds
    rows = read_log(tmp_path / "train_log.csv")
    assert [r["step"] for r in rows if "loss" in r] == list(range(6))
    assert [(r["step"], r["val_loss"], r["val_bpb"]) for r in rows if "val_loss" in r] == \
        [(3, 2.0, 2.0 / (2.0 * math.log(2))), (6, 2.0, 2.0 / (2.0 * math.log(2)))]
    assert m["step"] == 6 and m["val_bpb"] == pytest.approx(1 / math.log(2))
    assert json.loads((tmp_path / "metrics.json").read_text())["val_loss"] == 2.0
    ck = CheckpointDir(tmp_path / "checkpoints")
    meta = json.loads((ck.path(4) / META).read_text())
    assert meta["loader"] == {"n": 4} and meta["framework"] == "fake" and meta["state_format"] == SAFETENSORS_FORMAT


def test_synchronous_dispatch_logs_each_step_at_once(tmp_path):
    t = FakeTrainer([3.0, 2.9, 2.8])
    loop, _ = make_loop(tmp_path, t, async_dispatch=False)
    loop.run(0)
    steps = [(e[0], e[1]) for e in t.events if e[0] in ("dispatch", "fetch")]
    assert steps == [("dispatch", 0), ("fetch", "loss"), ("fetch", "norm"), ("dispatch", 1), ("fetch", "loss"),
                     ("fetch", "norm"), ("dispatch", 2), ("fetch", "loss"), ("fetch", "norm")]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_train_loss_stops_before_saving(tmp_path, bad):
    t = FakeTrainer([3.0, 2.9, 2.8, 2.7, 2.6, bad, 2.4, 2.3])
    loop, _ = make_loop(tmp_path, t)
    with pytest.raises(Stop) as e:
        loop.run(0)
    assert e.value.code == 3 and f"loss is {bad} at step 5" in str(e.value) and "step_00000004" in str(e.value)
    assert CheckpointDir(tmp_path / "checkpoints").steps() == [4]
    assert all(np.isfinite(r["loss"]) for r in read_log(tmp_path / "train_log.csv") if "loss" in r)


def test_a_non_finite_val_loss_stops_before_the_checkpoint_of_that_step(tmp_path):
    t = FakeTrainer([3.0] * 8, val=float("nan"))
    loop, _ = make_loop(tmp_path, t, val_every=4)
    with pytest.raises(Stop, match="val loss is nan at step 4") as e:
        loop.run(0)
    assert e.value.code == 3 and CheckpointDir(tmp_path / "checkpoints").steps() == []


def test_sigterm_checkpoints_then_exits_143(tmp_path):
    t = FakeTrainer([3.0] * 10, on_dispatch=lambda s: os.kill(os.getpid(), signal.SIGTERM) if s == 5 else None)
    handler = signal.getsignal(signal.SIGTERM)
    loop, _ = make_loop(tmp_path, t)
    with pytest.raises(Stop) as e:
        loop.run(0)
    assert e.value.code == 143 and "continue with --resume" in str(e.value)
    ck = CheckpointDir(tmp_path / "checkpoints")
    assert ck.steps() == [4, 6] and checkpoint_exists(ck.path(6))  # the state after the step in flight
    assert signal.getsignal(signal.SIGTERM) is handler  # the caller's handler is back
    assert [r["step"] for r in read_log(tmp_path / "train_log.csv") if "loss" in r] == list(range(6))


def test_a_resumed_run_keeps_the_evaluation_logged_at_its_checkpoint(tmp_path):
    loop, _ = make_loop(tmp_path, FakeTrainer([3.0] * 6), val_every=3, ckpt_every=3)
    loop.run(0)
    before = read_log(tmp_path / "train_log.csv")
    t = FakeTrainer([3.0] * 6)
    t.step_count = 3
    loop, _ = make_loop(tmp_path, t, val_every=3, ckpt_every=3)
    loop.run(3)
    after = read_log(tmp_path / "train_log.csv")
    assert [r["step"] for r in after] == [r["step"] for r in before]  # the step-3 val row is neither lost nor doubled
    assert [e[1] for e in t.events if e[0] == "eval"] == [6, 6]  # the resumed run does not redo step 3's


class AsyncWrite:
    def __init__(self, directory: Path) -> None:
        self.directory, self.done = Path(directory), False

    def wait(self) -> None:
        (self.directory / "state.bin").write_bytes(b"late")
        self.done = True


def test_async_checkpoints_commit_only_after_the_write(tmp_path):
    ck = CheckpointDir(tmp_path / "c", keep=1, log=lambda m: None)
    handles = []

    def write(d: Path):
        handles.append(AsyncWrite(d))
        return handles[-1]

    ck.save(1, write, {"x": 1})
    assert ck.pending is not None and ck.steps() == [] and not handles[0].done
    assert not any(p.name == META for p in (tmp_path / "c").rglob("*"))  # no meta.json before the files exist
    ck.save(2, write, {"x": 2})  # commits step 1 first
    assert handles[0].done and ck.steps() == [1] and checkpoint_exists(ck.path(1))
    ck.commit()
    assert ck.steps() == [2] and json.loads((ck.path(2) / META).read_text())["files"] == \
        {"state.bin": {"size": 4, "crc32": f"{zlib.crc32(b'late'):08x}"}}


def test_recipes_and_overrides():
    model, train, optim = configs_for("poetry", ["--lr=1e-3", "--n_layer=2", "--val_every=50"])
    assert (optim.lr, model.n_layer, train.val_every, train.seq_len) == (1e-3, 2, 50, 128)
    assert configs_for("tiny", ["--block_size=8"])[1].seq_len == 8  # seq_len 0 = the model's block_size
    with pytest.raises(ValueError, match="--seq_len=32 exceeds the model's block_size 16"):
        configs_for("tiny", ["--seq_len=32"])
    with pytest.raises(UsageError, match=r"unknown option --warmup \(did you mean --warmup_steps\?\)"):
        configs_for("tiny", ["--warmup=3"])
    with pytest.raises(UsageError, match="expected int"):
        configs_for("tiny", ["--max_steps=ten"])
    with pytest.raises(ValueError, match="--dtype='fp16' is unknown"):
        configs_for("tiny", ["--dtype=fp16"])
    for name in ("gpt2-124m", "gpt2-1558m"):
        r = RECIPES[name]
        assert r.model.padded_vocab_size == 50304 and r.train.total_batch_tokens == 2**19 and r.optim.max_steps == 19073
    assert (RECIPES["poetry"].train.total_batch_tokens, RECIPES["poetry"].optim.lr) == (32 * 128, 2e-3)
    assert (RECIPES["poetry-original"].model.vocab_size, RECIPES["poetry-original"].optim.lr) == (400, 1e-3)


def test_the_three_configs_share_no_field_name():
    """Each --key belongs to exactly one config, so the router never has to guess."""
    names = [{f.name for f in dataclasses.fields(c)} for c in (GPTConfig, TrainConfig, OptimConfig)]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])


def test_training_batches_are_read_ahead_in_the_configured_document_order(tmp_path):
    """scripts/train.py's train source: documents shuffled inside shards (the GPT-2 recipes), read ahead in
    a thread, giving exactly the batches and states of the synchronous loader with the same settings."""
    from jaxgpt.common.data.loader import Prefetcher, ShardLoader
    from jaxgpt.common.training import train_batches

    eot, rng = 7, np.random.default_rng(0)
    docs = [np.concatenate([[eot], rng.integers(8, 90, rng.integers(5, 40))]) for _ in range(60)]
    np.save(tmp_path / "t_train_000000.npy", np.concatenate(docs).astype(np.uint16))
    cfg = dataclasses.replace(RECIPES["gpt2-124m"].train, data_dir=str(tmp_path), seq_len=16)
    assert cfg.doc_shuffle_seed is not None and cfg.prefetch > 0
    src = train_batches(cfg, MODEL, 4, 0, 1, eot)
    ref = ShardLoader(tmp_path, "train", 4, 16, vocab_size=MODEL.vocab_size, doc_shuffle_seed=cfg.doc_shuffle_seed,
                      eot_id=eot)
    plain = ShardLoader(tmp_path, "train", 4, 16, vocab_size=MODEL.vocab_size)
    try:
        assert isinstance(src, Prefetcher)
        got = [src.next_batch()[0] for _ in range(5)]
        assert all(np.array_equal(g, ref.next_batch()[0]) for g in got)
        assert src.state() == ref.state()
        assert not all(np.array_equal(g, plain.next_batch()[0]) for g in got), "documents were not shuffled"
    finally:
        src.close()
    direct = train_batches(dataclasses.replace(cfg, prefetch=0), MODEL, 4, 0, 1, eot)
    assert isinstance(direct, ShardLoader)
    with pytest.raises(ValueError, match="--doc_shuffle_seed applies to --batch_order=sequential"):
        dataclasses.replace(cfg, batch_order="random")
