"""Seeing a run (issue 13): TensorBoard event files beside the CSV, Weights & Biases offline, their errors.

The event file is read back record by record (TFRecord framing: length, its CRC, the Event proto, its
CRC), checked, and its scalars compared with the CSV's: the same numbers under their tags.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from conftest import require_module
from jaxgpt.common import monitor, training
from jaxgpt.common.monitor import TAGS, open_monitor
from jaxgpt.common.runlog import read_log

# One worker runs this module (pyproject's --dist loadgroup): its module-scoped runs are then made once, not per worker.
pytestmark = pytest.mark.xdist_group("monitor")

TINY = ["--padded_vocab_size=128", "--total_batch_tokens=128", "--seq_len=16", "--dtype=float32", "--warmup_steps=2",
        "--max_steps=4", "--val_every=2", "--val_steps=1", "--sample_every=0", "--hellaswag_every=0",
        "--export_hf=false", "--plot=false", "--prefetch=0", "--ckpt_every=0"]


@pytest.fixture(scope="module")
def shards(tiny_shards) -> Path:
    return tiny_shards


def masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C (Castagnoli), rotated and offset."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_scalars(path: Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of an event file, every record's framing and checksums verified."""
    from tensorboardX.proto.event_pb2 import Event

    data, pos, out = path.read_bytes(), 0, {}
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,), (crc,) = struct.unpack("<Q", header), struct.unpack("<I", data[pos + 8:pos + 12])
        assert crc == masked_crc32c(header)
        body = data[pos + 12:pos + 12 + length]
        assert struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])[0] == masked_crc32c(body)
        pos += 16 + length
        event = Event.FromString(body)
        for v in event.summary.value:
            out.setdefault(v.tag, {})[event.step] = v.simple_value
    return out


@pytest.fixture(scope="module")
def run(shards, tmp_path_factory) -> tuple[Path, list[str]]:
    require_module("tensorboardX")  # the dev extra's: a skip here, a failure in CI
    out = tmp_path_factory.mktemp("monitor") / "run"
    lines: list[str] = []
    extra = ["--wandb_project=jaxgpt-test"] if monitor.installed("wandb") else []  # checked by the test below
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")  # no account, no network: the run is written for a later `wandb sync`
        mp.setenv("WANDB_SILENT", "true")
        training.train("tiny", [*TINY, f"--data_dir={shards}", f"--out_dir={out}", *extra], "jax", log=lines.append)
    return out, lines


def test_the_tensorboard_file_holds_the_csv_scalars(run):
    out, lines = run
    (events,) = (out / "tensorboard").glob("events.out.tfevents.*")
    got = read_scalars(events)
    want: dict[str, dict[int, float]] = {}
    for row in read_log(out / "train_log.csv"):
        for k, v in row.items():
            if k != "step":
                want.setdefault(TAGS[k], {})[int(row["step"])] = v
    assert set(want) >= {"train/loss", "train/lr", "train/grad_norm", "perf/tok_per_s", "val/loss"}
    assert sorted(want["train/loss"]) == [0, 1, 2, 3] and sorted(want["val/loss"]) == [2, 4]
    assert set(got) == set(want)
    for tag, steps in want.items():  # event files hold float32
        assert got[tag] == pytest.approx(steps, rel=1e-6), tag
    assert not any("tensorboardX is not installed" in line for line in lines)


def test_wandb_offline_writes_its_run_directory(run):
    require_module("wandb")
    out, _ = run
    runs = list((out / "wandb").rglob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    assert runs[0].name.endswith((out / "wandb_run_id.txt").read_text().strip())  # a resume continues this run


def test_tensorboard_requested_but_missing_warns_once_and_the_csv_stays(monkeypatch, tmp_path):
    monkeypatch.setattr(monitor, "installed", lambda package: False)
    lines: list[str] = []
    m = open_monitor(tmp_path, ("step", "loss"), tensorboard=True, wandb_project="", config={}, log=lines.append)
    assert len(lines) == 1 and "pip install tensorboardX" in lines[0] and "--tensorboard=false" in lines[0]
    assert [type(s).__name__ for s in m.sinks] == ["CsvSink"]
    assert open_monitor(tmp_path, ("step",), tensorboard=False, wandb_project="", config={}, log=lines.append).sinks
    assert len(lines) == 1  # --tensorboard=false: no warning


def test_wandb_project_without_the_package_is_refused_before_anything_is_written(monkeypatch, shards, tmp_path,
                                                                                   capsys):
    monkeypatch.setattr(monitor, "installed", lambda package: package != "wandb")
    out = tmp_path / "run"
    assert training.main("tiny", [*TINY, f"--data_dir={shards}", f"--out_dir={out}", "--wandb_project=x"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install wandb" in err and "--wandb_project" in err
    assert not out.exists()
