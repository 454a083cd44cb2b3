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

import pytest

from conftest import data_file
from jaxgpt.makemore import data
from jaxgpt.makemore.config import ConfigError, ModelConfig, get_preset

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


def test_config_errors():
    with pytest.raises(ConfigError, match="must be >= 1"):
        ModelConfig("mlp", block_size=0)
    with pytest.raises(ConfigError, match="power of two"):
        ModelConfig("wavenet", block_size=6)
    assert ModelConfig("wavenet", block_size=16).block_size == 16
    assert get_preset("wavenet").model.n_hidden == 128


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
