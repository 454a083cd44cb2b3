"""Nothing lost, nothing silently wrong (issue 16): each case a careless or unlucky user meets, reproduced.

- a diverging run never checkpoints a non-finite state, names the newest finite checkpoint (which
  pruning keeps) and prints a retry that --resume accepts (a changed optimiser schedule);
- checkpoints carry a content hash per file: a damaged newest one (even at the same size) is named
  and skipped for the previous one, --resume with nothing usable is an error, and a damaged or
  skipped step is written again when the run reaches it;
- a fresh run never overwrites an earlier run's outputs (--force to replace them);
- prepared data is tied to its inputs and tokenizer (fingerprints in the manifest).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import folder_in_use
from jaxgpt.common import training
from jaxgpt.common.checkpoint import SAFETENSORS_FORMAT, CheckpointDir, check_complete
from jaxgpt.common.loop import Cluster, Loop, RunData, Runtime
from jaxgpt.common.recipes import RECIPES, TrainConfig
from jaxgpt.common.resume import check_resumable
from jaxgpt.common.runlog import Stop, read_log
from jaxgpt.common.schedule import OptimConfig

# ---- the loop with a scripted trainer ----------------------------------------------------------------


class Scripted:
    """A trainer whose loss is 1.0 and whose state turns non-finite after `bad_from` steps (None: never)."""

    framework, state_format = "fake", SAFETENSORS_FORMAT

    def __init__(self, steps: int, bad_from: int | None = None, start: int = 0, nan_at: int | None = None) -> None:
        self.steps, self.bad_from, self.step_count, self.saved, self.nan_at = steps, bad_from, start, [], nan_at

    def dispatch(self, x, y):
        self.step_count += 1
        return float("nan") if self.step_count - 1 == self.nan_at else 1.0, 1.0

    def eval_loss(self, x, y):
        return 1.0

    def finite(self) -> bool:
        return self.bad_from is None or self.step_count < self.bad_from

    def save(self, directory: Path) -> None:
        self.saved.append(self.step_count)
        (Path(directory) / "state.bin").write_bytes(np.full(64, self.step_count, np.float32).tobytes())

    def save_hf(self, path: Path) -> None:
        pass


class Rows:
    def next_batch(self):
        return np.zeros((1, 2), np.int32), np.zeros((1, 2), np.int32)

    def reset(self):
        pass

    def state(self):
        return {}


def scripted_loop(out: Path, trainer: Scripted, **train) -> Loop:
    cfg = TrainConfig(**{"total_batch_tokens": 2, "micro_batch": 0, "seq_len": 2, "val_every": 0, "val_steps": 1,
                         "sample_every": 0, "ckpt_every": 2, "keep": 1, "export_hf": False, "plot": False} | train)
    rt = Runtime(trainer, Cluster("fake", 0, 1, 1, 1, "cpu"), lambda: None, float, log=lambda m: None)
    ckpts = CheckpointDir(out / "checkpoints", cfg.keep, log=lambda m: None)
    return Loop(RECIPES["tiny"].model, cfg, OptimConfig(lr=1e-3, warmup_steps=1, max_steps=trainer.steps), rt,
                RunData(Rows(), Rows()), out, ckpts, {"config": {}})


def test_non_finite_parameters_are_never_checkpointed_and_the_finite_one_is_kept(tmp_path):
    """The loss stays finite but the update of step 4 leaves NaN parameters: the step-6 checkpoint (keep=1)
    would have replaced the only good one. Instead: exit 3 naming step 4, which is still there."""
    t = Scripted(10, bad_from=5)
    with pytest.raises(Stop) as e:
        scripted_loop(tmp_path, t).run(0)
    msg = str(e.value)
    assert e.value.code == 3 and "NaN/inf" in msg and "stopping without saving" in msg
    assert "newest finite checkpoint is" in msg and "step_00000004" in msg and "--resume" in msg
    assert re.search(r"--lr=0\.0005\b", msg) and "--warmup_steps=" in msg
    ck = CheckpointDir(tmp_path / "checkpoints")
    assert t.saved == [2, 4] and ck.steps() == [4] and check_complete(ck.path(4))["finite"] is True


def test_a_checkpoint_whose_own_loss_is_nan_is_not_advised_again(tmp_path):
    """Resumed at step 4, whose checkpoint is finite but gives a NaN loss at once: a lower lr cannot help from it."""
    scripted_loop(tmp_path, Scripted(4)).run(0)
    with pytest.raises(Stop) as e:
        scripted_loop(tmp_path, Scripted(10, start=4, nan_at=4)).run(4)
    msg = str(e.value)
    assert e.value.code == 3 and "step_00000004 itself gives this loss" in msg and ".step_00000004.diverged" in msg
    with pytest.raises(Stop) as e:  # a NaN later in the session: back to the usual advice
        scripted_loop(tmp_path, Scripted(10, start=4, nan_at=5)).run(4)
    assert "itself" not in str(e.value) and "continue from it with --resume" in str(e.value)


def test_pruning_never_deletes_the_newest_finite_checkpoint(tmp_path):
    def write(d: Path) -> None:
        (d / "a").write_bytes(d.name.encode())

    ck = CheckpointDir(tmp_path, keep=1, log=lambda m: None)
    ck.save(1, write, {"finite": True})
    ck.save(2, write, {})  # a writer that did not check its state
    ck.save(3, write, {})
    assert ck.steps() == [1, 3] and ck.newest_finite() == 1


def test_schedule_changes_are_allowed_on_resume_and_the_rest_refused():
    old = {"optim": {"lr": 6e-4, "warmup_steps": 10, "eps": 1e-8}, "train": {"seq_len": 16}, "model": {"n_layer": 2}}
    new = {"optim": {"lr": 3e-4, "warmup_steps": 20, "eps": 1e-8}, "train": {"seq_len": 16}, "model": {"n_layer": 2}}
    assert check_resumable(old, new, "ck") == ["lr 0.0006 -> 0.0003", "warmup_steps 10 -> 20"]
    from jaxgpt.common.checkpoint import ConfigMismatch

    for field, value in (("train", {"seq_len": 8}), ("model", {"n_layer": 3})):
        with pytest.raises(ConfigMismatch, match=r"(train.seq_len: 16 -> 8|model.n_layer: 2 -> 3).*lr 0.0006 -> 0.0003"):
            check_resumable(old, {**new, field: value}, "ck")
    with pytest.raises(ConfigMismatch, match="optim.eps"):  # not part of the schedule
        check_resumable(old, {**new, "optim": {**new["optim"], "eps": 1e-6}}, "ck")


# ---- scripts/train.py in this process, tiny preset ----------------------------------------------------

TINY = ["--padded_vocab_size=128", "--total_batch_tokens=128", "--seq_len=16", "--dtype=float32", "--max_steps=6",
        "--warmup_steps=2", "--val_every=0", "--val_steps=1", "--ckpt_every=2", "--sample_every=0",
        "--hellaswag_every=0", "--export_hf=true", "--plot=false", "--prefetch=0"]


@pytest.fixture(scope="module")
def shards(tiny_shards: Path) -> Path:
    return tiny_shards  # conftest's tiny-preset shards (read only here), shared with the other tiny-run modules


def train(out: Path, shards: Path, *extra: str, resume: bool = False, **kw) -> int:
    return training.main("tiny", [*TINY, f"--data_dir={shards}", f"--out_dir={out}", *extra], "jax", resume, **kw)


def test_a_diverged_run_continues_from_its_finite_checkpoint_with_the_advised_settings(shards, tmp_path, capsys):
    out = tmp_path / "run"
    # A sane start (8 steps at lr 1e-3, checkpoints at 4 and 8), then the run resumed at lr 1e6: its first update
    # makes the parameters ~1e6, the next forward pass overflows and the loss is NaN before the next checkpoint
    # (step 12). Overflow, not chaos: a fixed lr that merely oscillates (lr 20 here) stays finite or not depending
    # on the last bit of the initial weights, which any change of the init path moves.
    assert train(out, shards, "--lr=1e-3", "--warmup_steps=0", "--grad_clip=0", "--max_steps=8", "--ckpt_every=4") == 0
    assert train(out, shards, "--lr=1e6", "--warmup_steps=0", "--grad_clip=0", "--max_steps=30", "--ckpt_every=4",
                 resume=True) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "newest finite checkpoint is" in err
    lr = float(re.search(r"--lr=(\S+)\)", err).group(1))
    good = int(re.search(r"step_(\d{8})", err).group(1))
    assert CheckpointDir(out / "checkpoints").newest_finite() == good == 8 and lr == 5e5
    # The advice, as printed (--resume with a lower --lr; here a sane one), is accepted: a few more steps from there.
    assert train(out, shards, "--lr=5e-4", "--warmup_steps=0", "--grad_clip=0", "--ckpt_every=4",
                 f"--max_steps={good + 2}", resume=True) == 0
    got = capsys.readouterr().out
    assert f"resumed from {out / 'checkpoints' / f'step_{good:08d}'}" in got
    # the changes are against the finite checkpoint's settings (the diverged attempt saved nothing)
    assert "resume with a changed setting: lr 0.001 -> 0.0005\n" in got and "changed setting: max_steps 8 -> 10\n" in got
    assert all(np.isfinite(r["loss"]) for r in read_log(out / "train_log.csv") if "loss" in r)


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_the_trainers_find_a_non_finite_moment(framework):
    from jaxgpt.common.frameworks import module

    pytest.importorskip(framework)
    trainer = module(framework, "train.trainer").Trainer(RECIPES["tiny"].model, OptimConfig(max_steps=10,
                                                                                             warmup_steps=1))
    x = np.zeros((8, 8), np.int32)
    trainer.step(x, x)
    assert trainer.finite()
    state = trainer.train_state_numpy()
    key = max(k for k in state if k.startswith("opt/nu/"))
    state[key] = state[key].copy()
    state[key].flat[3] = np.inf
    trainer.load_train_state_numpy(state)
    assert not trainer.finite()


# ---- checksummed checkpoints (items 2-4) -----------------------------------------------------------------

def snapshot(d: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(shards, tmp_path_factory) -> Path:
    """6 steps, checkpoints at 2, 4 and 6, the final model in hf/."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert train(out, shards) == 0
    return out


# The tests that read `finished` run on one pytest-xdist worker (pyproject's --dist loadgroup): one run, not one
# per worker.
SHARES_FINISHED = pytest.mark.xdist_group("test_nothing_lost-finished")


def largest_state_file(step_dir: Path) -> Path:
    return max((p for p in step_dir.rglob("*") if p.is_file() and p.name != "meta.json"), key=lambda p: p.stat().st_size)


@SHARES_FINISHED
@pytest.mark.parametrize("damage", ["same-size overwrite", "no meta.json"])
def test_a_damaged_newest_checkpoint_is_named_skipped_and_written_again(finished, shards, tmp_path, capsys, damage):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    newest = out / "checkpoints" / "step_00000006"
    if damage == "no meta.json":  # a save interrupted before its last file
        (newest / "meta.json").unlink()
    else:  # 8 bytes overwritten in place: the size, and so the old manifest, still agree
        victim = largest_state_file(newest)
        data = bytearray(victim.read_bytes())
        data[len(data) // 2: len(data) // 2 + 8] = b"\xff" * 8
        victim.write_bytes(bytes(data))
    shutil.rmtree(out / "hf")
    assert train(out, shards, resume=True) == 0
    got = capsys.readouterr()
    assert "skipping checkpoint" in got.out + got.err and "step_00000006" in got.out + got.err
    if damage != "no meta.json":
        assert "does not match its crc32" in got.out + got.err
    assert f"resumed from {out / 'checkpoints' / 'step_00000004'} at step 4" in got.out
    # Step 6 was reached again and written again (not mistaken for a checkpoint); the run equals the original.
    assert check_complete(newest, verify=True)["step"] == 6
    assert snapshot(out / "hf") == {out / p.relative_to(finished): b for p, b in snapshot(finished / "hf").items()}


@SHARES_FINISHED
def test_resume_with_no_usable_checkpoint_is_an_error_and_changes_nothing(finished, shards, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    for step_dir in (out / "checkpoints").glob("step_*"):
        victim = largest_state_file(step_dir)
        data = bytearray(victim.read_bytes())
        data[-1] ^= 1
        victim.write_bytes(bytes(data))
    before = snapshot(out)
    assert train(out, shards, resume=True) == 1
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("error: no usable checkpoint in") and "step_00000002" in err and "step_00000006" in err
    assert snapshot(out) == before
    assert train(tmp_path / "empty", shards, resume=True) == 1
    assert "--resume: no checkpoint in" in capsys.readouterr().err


# ---- run folders are never overwritten (item 5) ---------------------------------------------------------

@SHARES_FINISHED
@pytest.mark.parametrize("keep", [("train_log.csv", "hf"), ("metrics.json",), ("checkpoints",)])
def test_a_fresh_run_never_overwrites_an_earlier_runs_outputs(finished, shards, tmp_path, capsys, keep):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    for p in out.iterdir():
        if p.name not in keep:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    before = snapshot(out)
    assert train(out, shards, "--max_steps=2") == 1
    err = capsys.readouterr().err
    what = "checkpoints and other outputs" if "checkpoints" in keep else "outputs"
    assert err.count("\n") == 1 and f"{out} already holds {what} of a previous run ({', '.join(keep)})" in err
    assert "pass --resume to continue it, --force to replace it, or another --out_dir" in err
    assert snapshot(out) == before
    assert train(out, shards, "--max_steps=2", resume=True, force=True) == 2  # usage: one or the other
    assert snapshot(out) == before
    assert train(out, shards, "--max_steps=2", "--ckpt_every=0", force=True) == 0
    assert "--force: removed the previous run's" in capsys.readouterr().out
    assert [r["step"] for r in read_log(out / "train_log.csv") if "loss" in r] == [0, 1]
    assert CheckpointDir(out / "checkpoints").steps() == [2]


@SHARES_FINISHED
def test_a_second_run_into_a_folder_in_use_is_refused_and_changes_nothing(finished, shards, tmp_path, capsys):
    """A relaunch while the first run still writes into its folder is refused: with --resume it would prune the
    first run's checkpoints, with --force delete them. The lock dies with its holder (no stale lock after a kill)
    and is released by a run that is refused while holding it."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    before = snapshot(out)
    with folder_in_use(out):  # the first run, still going
        for extra, kw in ((["--max_steps=8"], {"resume": True}), ([], {"force": True})):
            assert train(out, shards, *extra, **kw) == 1
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"error: {out} is in use by another run" in err, err
            assert "or pass another --out_dir (nothing was changed)" in err
            assert snapshot(out) == before
    assert train(out, shards, "--max_steps=8", "--seq_len=8", resume=True) == 1  # refused while holding the lock
    assert "train.seq_len: 16 -> 8" in capsys.readouterr().err
    assert train(out, shards, "--max_steps=8", resume=True) == 0
    assert CheckpointDir(out / "checkpoints").steps()[-1] == 8


# ---- prepared data tied to its inputs (item 6) ------------------------------------------------------------

def poems(path: Path, n: int = 400) -> Path:
    rng = np.random.default_rng(0)
    words = ["la", "nuit", "mer", "vent", "rose", "ciel", "doux", "pâle", "ô", "cœur"]
    path.write_text("\n\n".join(" ".join(rng.choice(words, 12)) + "\n" + " ".join(rng.choice(words, 9))
                                for _ in range(n)) + "\n", encoding="utf-8")
    return path


def prepare_cfg(path: Path):
    from jaxgpt.common.data.documents import DocSource
    from jaxgpt.common.data.prepare import PrepareConfig

    return PrepareConfig(DocSource(files=(str(path),)), shard_size=2000)


class Killed(Exception):
    pass


def test_prepare_refuses_to_resume_onto_an_input_edited_in_place(tmp_path, capsys):
    from jaxgpt.common.data import prepare as prep

    src, out = poems(tmp_path / "poems.txt"), tmp_path / "data"

    def kill_after_two(entry: dict) -> None:
        if len(list(out.glob("*.npy"))) == 2:
            raise Killed

    with pytest.raises(Killed):
        prep.prepare(prepare_cfg(src), out, progress=False, on_shard=kill_after_two, log=lambda m: None)
    text = src.read_text(encoding="utf-8")
    src.write_text(text.replace("nuit", "jour"), encoding="utf-8")  # same length, other content
    assert src.stat().st_size == len(text.encode())
    before = snapshot(out)
    with pytest.raises(ValueError, match=rf"{out} was made from other input: {src} \(crc32 \w+ -> \w+\) changed"
                                         r".*a new --out, or delete"):
        prep.prepare(prepare_cfg(src), out, progress=False, log=lambda m: None)
    assert snapshot(out) == before
    assert prep.main(str(out), verify=True) == 1  # --verify checks the inputs too, not only the shards
    err = capsys.readouterr().err
    assert f"the input of {out} changed since its shards were made: {src} (crc32" in err and err.count("\n") == 1


def test_a_rerun_rewrites_a_shard_that_fails_verification(tmp_path, capsys):
    from jaxgpt.common.data import prepare as prep

    src, out, ref = poems(tmp_path / "poems.txt"), tmp_path / "data", tmp_path / "ref"
    for d in (out, ref):
        prep.prepare(prepare_cfg(src), d, progress=False, log=lambda m: None)
    names = sorted(p.name for p in out.glob("*_train_*.npy"))
    victim = out / names[1]
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0xFF  # a token changed, the size kept
    victim.write_bytes(bytes(data))
    assert prep.verify_shards(out) == [victim.name]
    assert prep.main(str(out), files=[str(src)], shard_size=2000) == 0
    assert "already complete" not in capsys.readouterr().out
    assert prep.verify_shards(out) == [] and prep.main(str(out), verify=True) == 0
    assert {p.name: p.read_bytes() for p in out.glob("*.npy")} == {p.name: p.read_bytes() for p in ref.glob("*.npy")}


def test_a_manifest_that_is_a_json_list_is_one_line_error(tmp_path, capsys):
    from jaxgpt.common.data import prepare as prep

    out = tmp_path / "data"
    out.mkdir()
    (out / "manifest.json").write_text("[1, 2]")
    assert prep.main(str(out), files=[str(poems(tmp_path / "p.txt", 20))]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is not a manifest of scripts/prepare_data.py" in err and err.count("\n") == 1


# ---- one-line errors instead of tracebacks (items 8, 9) ---------------------------------------------------

@SHARES_FINISHED
def test_a_truncated_model_safetensors_is_a_one_line_error(finished, tmp_path):
    from jaxgpt.common.sources import load_model, resolve_hf

    hf = tmp_path / "hf"
    shutil.copytree(finished / "hf", hf)
    st = hf / "model.safetensors"
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    with pytest.raises(ValueError, match=rf"{st} cannot be read \(SafetensorError: .*damaged or cut short"):
        resolve_hf(hf).weights()
    with pytest.raises(ValueError, match=rf"{st} cannot be read"):  # what scripts/hellaswag.py and sample.py call
        load_model("jax", resolve_hf(hf))


@pytest.mark.parametrize("key", ["lr", "grad_clip", "weight_decay", "beta1", "beta2", "eps"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_settings_are_refused(key, value):
    from jaxgpt.common.recipes import configs_for

    with pytest.raises(ValueError, match=rf"{key}={value} must be a finite number"):
        configs_for("tiny", [f"--{key}={value}"])


def test_a_non_utf8_hellaswag_file_is_named(tmp_path):
    from jaxgpt.common.data.hellaswag import load_examples

    bad = tmp_path / "hellaswag_val.jsonl"
    bad.write_bytes('{"ctx": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=rf"{bad} is not UTF-8 text .*convert it to UTF-8"):
        load_examples(bad)
