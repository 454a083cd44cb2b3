"""Resume you can steer (issue 13): a resumed run may change its schedule and cadences, never its identity.

One short run per framework (tiny preset, checkpoints at 2, 4, 6, keep 1 + milestones every 4), resumed
twice from its last checkpoint: once only extending the finished run (--max_steps 6 -> 7), once also with
a new lr and floor. AdamW's update is lr x (a direction that does not depend on lr), so the ratio of the
two resumed steps' updates is the ratio of the lrs the trainers really used: it must be the new schedule's.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from jaxgpt.common import training
from jaxgpt.common.checkpoint import CheckpointDir, ConfigMismatch, check_complete
from jaxgpt.common.loop import retry_advice
from jaxgpt.common.resume import SCHEDULE_FIELDS, check_resumable, read_train_state
from jaxgpt.common.runlog import read_log
from jaxgpt.common.schedule import OptimConfig, lr_at

# One worker runs this module (pyproject's --dist loadgroup): its module-scoped runs are then made once, not per worker.
pytestmark = pytest.mark.xdist_group("resume-steering")

TINY = ["--padded_vocab_size=128", "--total_batch_tokens=128", "--seq_len=16", "--dtype=float32", "--warmup_steps=2",
        "--lr=1e-3", "--val_every=0", "--val_steps=1", "--sample_every=0", "--hellaswag_every=0", "--export_hf=false",
        "--plot=false", "--prefetch=0", "--tensorboard=false", "--ckpt_every=2", "--keep=1", "--keep_every=4"]


@pytest.fixture(scope="module")
def shards(tiny_shards) -> Path:
    return tiny_shards


def train(framework: str, out: Path, shards: Path, *extra: str, resume: bool = False) -> int:
    return training.main("tiny", [*TINY, f"--data_dir={shards}", f"--out_dir={out}", *extra], framework, resume)


def params(run: Path, step: int) -> dict[str, np.ndarray]:
    path = run / "checkpoints" / f"step_{step:08d}"
    return {k: v for k, v in read_train_state(path, check_complete(path)).items() if k.startswith("params/")}


def snapshot(d: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module", params=["jax", "torch"])
def runs(request, shards, tmp_path_factory) -> dict:
    """The finished 6-step run, and two resumes of it to step 7: 'extended' (max_steps only), 'steered'."""
    framework = request.param
    pytest.importorskip(framework)
    root = tmp_path_factory.mktemp(f"steer-{framework}")
    base = root / "base"
    assert train(framework, base, shards, "--max_steps=6") == 0
    logs = {}
    for name, extra in (("extended", ["--max_steps=7"]),
                        ("steered", ["--max_steps=7", "--lr=2e-3", "--min_lr_ratio=0.5", "--val_every=3"])):
        shutil.copytree(base, root / name)
        logs[name] = []
        m = training.train("tiny", [*TINY, f"--data_dir={shards}", f"--out_dir={root / name}", *extra], framework,
                           resume=True, log=logs[name].append)
        assert m["step"] == 7
    return {"framework": framework, "root": root, "base": base, "shards": shards, "logs": logs}


def test_milestones_survive_pruning(runs):
    # keep=1 with checkpoints every 2 steps: step 2 is pruned, the milestone at 4 stays beside the newest (6)
    assert CheckpointDir(runs["base"] / "checkpoints").steps() == [4, 6]


def test_a_resume_logs_each_changed_setting_on_its_own_line(runs):
    changed = [line for line in runs["logs"]["steered"] if line.startswith("resume with a changed setting: ")]
    assert changed == ["resume with a changed setting: lr 0.001 -> 0.002",
                       "resume with a changed setting: min_lr_ratio 0.1 -> 0.5",
                       "resume with a changed setting: max_steps 6 -> 7",
                       "resume with a changed setting: val_every 0 -> 3"]
    assert [line for line in runs["logs"]["extended"] if "changed setting" in line] == [
        "resume with a changed setting: max_steps 6 -> 7"]


def test_the_new_schedule_takes_effect_from_the_resumed_step(runs):
    root = runs["root"]
    new = {"extended": OptimConfig(lr=1e-3, warmup_steps=2, max_steps=7),
           "steered": OptimConfig(lr=2e-3, min_lr_ratio=0.5, warmup_steps=2, max_steps=7)}
    for name, optim in new.items():
        rows = {int(r["step"]): r for r in read_log(root / name / "train_log.csv") if "loss" in r}
        assert sorted(rows) == list(range(7))
        assert rows[6]["lr"] == pytest.approx(lr_at(6, optim), rel=1e-12)
        # the steps before the resume keep the lr they were trained with (the old schedule's floor at step 5)
        assert rows[5]["lr"] == pytest.approx(lr_at(5, OptimConfig(lr=1e-3, warmup_steps=2, max_steps=6)), rel=1e-12)
    # What the trainers did: step 6's update, over the two resumes, scales as the two new schedules' lr at step 6.
    # (The old schedule is at its floor there for both: ratio 1; a new lr with the old max_steps: ratio 10.)
    start = params(runs["base"], 6)
    update = {}
    for name in new:
        end = params(root / name, 7)  # read once: a JAX checkpoint is an orbax restore (~0.5 s)
        update[name] = np.sqrt(sum(np.sum((end[k] - v) ** 2) for k, v in start.items()))
    want = lr_at(6, new["steered"]) / lr_at(6, new["extended"])
    assert update["steered"] / update["extended"] == pytest.approx(want, rel=1e-3)


def test_a_resume_that_changes_the_identity_is_refused_naming_the_field(runs, capsys):
    out = runs["root"] / "extended"
    before = snapshot(out)
    for extra, field in ((["--seq_len=8"], "train.seq_len: 16 -> 8"), (["--seed=3"], "train.seed: 0 -> 3"),
                         (["--n_layer=3"], "model.n_layer: 2 -> 3")):
        assert train(runs["framework"], out, runs["shards"], "--max_steps=7", *extra, resume=True) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and field in err and "resume with the original" in err
    assert snapshot(out) == before


def test_the_nan_advice_names_only_settings_a_resume_accepts():
    advice = retry_advice(OptimConfig(lr=6e-4, warmup_steps=10, max_steps=100))
    flags = set(re.findall(r"--(\w+)", advice))
    assert flags == {"lr", "warmup_steps"} and flags <= set(SCHEDULE_FIELDS)
    assert "--lr=0.0003" in advice and "--warmup_steps=100" in advice


def test_init_from_is_part_of_the_identity_when_set():
    saved = {"train": {"seq_len": 16, "init_from": "gpt2"}, "optim": {"lr": 1e-3}, "cadence": {"val_every": 10}}
    assert check_resumable(saved, {**saved, "cadence": {"val_every": 5}}, "ck") == ["val_every 10 -> 5"]
    with pytest.raises(ConfigMismatch, match=r"train.init_from: 'gpt2' -> '<absent>'"):
        check_resumable(saved, {**saved, "train": {"seq_len": 16}}, "ck")
    # a checkpoint written before the cadences were recorded: nothing to compare, nothing refused
    assert check_resumable({k: v for k, v in saved.items() if k != "cadence"}, saved, "ck") == []


def test_pruning_keeps_milestones_outside_the_count(tmp_path):
    def write(d: Path) -> None:
        (d / "a").write_bytes(b"x")

    ck = CheckpointDir(tmp_path, keep=2, keep_every=3, log=lambda m: None)
    for step in range(1, 11):
        ck.save(step, write, {"finite": True})
    assert ck.steps() == [3, 6, 8, 9, 10] and ck.newest_finite() == 10
    with pytest.raises(ValueError, match="keep_every=-1 must be >= 0"):
        CheckpointDir(tmp_path, keep_every=-1)
