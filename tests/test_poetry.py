"""The poetry stage: corpus loading and its errors, train_gpt.py's exact resume and config checks,
and sample.py across frameworks, all on a tiny model and a small synthetic corpus."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import sample as sample_cli
import train_gpt

from jaxgpt.common.data.poetry import (
    EOP,
    bits_per_byte,
    build_poetry_data,
    encode_poems,
    load_poems,
    split_poems,
    train_tokenizer,
)

VERSE = "le ciel la mer un soir mon cœur ô nuit les étoiles tremblent doucement sur l'onde où rêve une âme"
WORDS = VERSE.split()


def make_poems(n: int, seed: int = 0) -> list[str]:
    """Seeded verse-shaped nonsense with French letters: enough structure for BPE and a tiny model."""
    rng = np.random.default_rng(seed)
    poems = []
    for _ in range(n):
        lines = [" ".join(rng.choice(WORDS, size=rng.integers(4, 8))).capitalize() + rng.choice([",", ".", " !"])
                 for _ in range(rng.integers(2, 6))]
        poems.append("\n".join(lines))
    return poems


POEMS = make_poems(120)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    (d / "poems.txt").write_text("\n\n".join(POEMS) + "\n", encoding="utf-8")
    return d / "poems.txt"


# ---- loading -------------------------------------------------------------------------------------

def test_txt_split_by_blank_lines(tmp_path):
    (tmp_path / "p.txt").write_text("\n\nA b\nC d\n\n\n\nE f\n  \nG h\nI j\n", encoding="utf-8")
    assert load_poems(tmp_path / "p.txt") == ["A b\nC d", "E f", "G h\nI j"]


def test_jsonl_json_parquet_and_directory(tmp_path):
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    d = tmp_path / "mixed"
    d.mkdir()
    with open(d / "a.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"title": "t", "text": p}, ensure_ascii=False) + "\n" for p in POEMS[:3])
    (d / "b.json").write_text(json.dumps({"poems": [{"content": p} for p in POEMS[3:5]]}), encoding="utf-8")
    pq.write_table(pa.table({"poem": POEMS[5:8], "poet": ["x"] * 3}), d / "c.parquet")
    (d / "d.txt").write_text("\n\n".join(POEMS[8:10]), encoding="utf-8")
    (d / "notes.md").write_text("not a corpus file: ignored")
    assert load_poems(d / "a.jsonl") == POEMS[:3]
    assert load_poems(d / "b.json") == POEMS[3:5]
    assert load_poems(d / "c.parquet") == POEMS[5:8]
    assert load_poems(d) == POEMS[:10]  # sorted file order: a.jsonl, b.json, c.parquet, d.txt
    assert load_poems(d / "c.parquet", text_field="poet") == ["x"] * 3


def test_hf_records_cleaned_as_the_original(monkeypatch):
    datasets = pytest.importorskip("datasets")
    rows = [{"title": "Le Lac", "poet": "Lamartine",
             "text": "Le Lac\nPoète : Lamartine\nRecueil : Méditations\nAinsi, toujours poussés\nvers de nouveaux rivages"},
            {"title": "X", "poet": "Y", "text": "Poésie : X\nUn vers"}]
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: rows)
    assert load_poems("hf:manu/french_poetry") == ["Ainsi, toujours poussés\nvers de nouveaux rivages", "Un vers"]


def test_bad_corpora_name_the_problem(tmp_path):
    (tmp_path / "empty.txt").write_text("\n \n\n")
    with pytest.raises(ValueError, match="empty"):
        load_poems(tmp_path / "empty.txt")
    (tmp_path / "f.jsonl").write_text(json.dumps({"body": "x", "author": "y"}) + "\n")
    with pytest.raises(ValueError, match=r"fields found are \['author', 'body'\].*--text-field"):
        load_poems(tmp_path / "f.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        load_poems(tmp_path / "bad.jsonl")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_poems(tmp_path / "missing.txt")
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(ValueError, match="unsupported corpus file type"):
        load_poems(tmp_path / "x.csv")


def test_split_is_by_poem_and_deterministic():
    train, val = split_poems(POEMS, 0.1, seed=3)
    assert (train, val) == split_poems(POEMS, 0.1, seed=3)
    assert len(val) == 12 and sorted(train + val) == sorted(POEMS)
    assert split_poems(POEMS, 0.1, seed=4)[1] != val
    # by poem, not by position: the val poems are spread over the corpus, not its tail
    assert [POEMS.index(p) for p in val] != list(range(108, 120))


def test_stream_separates_poems_with_the_special_token():
    tok = train_tokenizer(POEMS[:50], vocab_size=300)
    eop = tok.special_tokens[EOP]
    assert tok.vocab_size == 300 and eop == 299
    tricky = ["Un vers <|endofpoem|> dedans", "Deux"]  # typed text is text, never the separator
    ids = encode_poems(tok, tricky)
    assert [i for i, t in enumerate(ids) if t == eop] == [len(ids) - len(tok.encode("Deux")) - 2, len(ids) - 1]
    assert tok.decode(ids[: list(ids).index(eop)].tolist()) == tricky[0]
    assert bits_per_byte(np.log(2), 100, 100) == pytest.approx(1.0)


def test_given_tokenizer_must_match_vocab(corpus):
    tok = train_tokenizer(POEMS[:50], vocab_size=290)
    with pytest.raises(ValueError, match="290 ids but the model expects vocab_size=300"):
        build_poetry_data(corpus, 300, tokenizer=tok)


# ---- training: resume, config checks ---------------------------------------------------------------

# batch 8: the JAX trainer splits the rows over the 8 simulated devices of the test set-up (conftest.py)
# Dropout on in both frameworks, so the dropout RNG state must resume exactly too.
DROPOUT = {"jax": 0.1, "torch": 0.1}
TINY = ["--n_layer=1", "--n_embd=16", "--n_head=2", "--block_size=16", "--vocab_size=300",
        "--batch_size=8", "--max_steps=6", "--warmup_steps=2", "--eval_interval=3", "--eval_iters=1",
        "--final_eval_iters=1", "--log_interval=4", "--sample_interval=0", "--final_sample_tokens=6"]


def run_args(corpus: Path, out: Path, framework: str, *extra: str) -> list[str]:
    return ["--preset", "poetry", "--framework", framework, "--data", str(corpus), "--out", str(out),
            "--no-progress", f"--dropout={DROPOUT[framework]}", *TINY, *extra]


def weights(out: Path, framework: str) -> dict[str, np.ndarray]:
    trainer, _, _ = sample_cli.load_model(out, framework)
    return trainer.state_numpy()


@pytest.fixture(scope="module")
def full_runs(corpus, tmp_path_factory) -> dict[str, Path]:
    """One uninterrupted tiny run per framework."""
    runs = {}
    for fw in ("jax", "torch"):
        out = tmp_path_factory.mktemp("runs") / fw
        train_gpt.main(run_args(corpus, out, fw))
        runs[fw] = out
    return runs


class Killed(Exception):
    pass


def interrupt_at(monkeypatch, calls: int, how: str) -> None:
    """Make the trainer die at its `calls`-th step: a hard kill (no save) or SIGINT (save, then exit)."""
    real = train_gpt.make_trainer

    def make(*a, **kw):
        trainer = real(*a, **kw)
        step, n = trainer.step, [0]

        def step_then_die(x, y):
            n[0] += 1
            if n[0] == calls and how == "kill":
                raise Killed
            out = step(x, y)
            if n[0] == calls and how == "sigint":
                os.kill(os.getpid(), signal.SIGINT)  # the handler only sets a flag; the loop saves and exits
            return out

        trainer.step = step_then_die
        return trainer

    monkeypatch.setattr(train_gpt, "make_trainer", make)


@pytest.mark.parametrize(("framework", "how"), [("jax", "kill"), ("torch", "sigint")])
def test_interrupted_run_resumes_exactly(corpus, tmp_path, monkeypatch, full_runs, framework, how):
    out, handler = tmp_path / "run", signal.getsignal(signal.SIGINT)
    with monkeypatch.context() as m:
        interrupt_at(m, 5, how)
        with pytest.raises(Killed if how == "kill" else SystemExit):
            train_gpt.main(run_args(corpus, out, framework))
    meta = json.loads((out / "ckpt" / "meta.json").read_text())
    assert meta["step"] == (3 if how == "kill" else 5)  # kill: back to the last periodic checkpoint
    assert signal.getsignal(signal.SIGINT) is handler  # the caller's Ctrl-C handler is back
    train_gpt.main(run_args(corpus, out, framework, "--resume"))
    got, want = weights(out, framework), weights(full_runs[framework], framework)
    assert all(np.array_equal(got[k], want[k]) for k in want), "resumed weights differ from the uninterrupted run"
    h1 = json.loads((out / "ckpt" / "meta.json").read_text())["history"]
    h2 = json.loads((full_runs[framework] / "ckpt" / "meta.json").read_text())["history"]
    assert h1 == h2


def test_resume_refuses_a_changed_config(corpus, full_runs, capsys):
    with pytest.raises(SystemExit) as e:
        train_gpt.main(run_args(corpus, full_runs["jax"], "jax", "--resume", "--lr=0.01", "--n_embd=32"))
    msg = str(e.value.code)
    assert "config changed" in msg and "optim.lr: 0.002 -> 0.01" in msg and "model.n_embd: 16 -> 32" in msg
    with pytest.raises(SystemExit, match="already holds a run; pass --resume"):
        train_gpt.main(run_args(corpus, full_runs["jax"], "jax"))
    with pytest.raises(SystemExit, match="framework: 'jax' -> 'torch'"):
        train_gpt.main(run_args(corpus, full_runs["jax"], "torch", "--resume"))


def test_train_cli_errors(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(SystemExit, match="error: the corpus .* is empty"):
        train_gpt.main(run_args(tmp_path / "empty.txt", tmp_path / "o", "jax"))
    with pytest.raises(SystemExit, match="error: --resume: .* not found"):
        train_gpt.main(run_args(tmp_path / "empty.txt", tmp_path / "o2", "jax", "--resume"))
    with pytest.raises(SystemExit, match=r"unknown option --n_layers \(did you mean --n_layer\?\)"):
        train_gpt.main(run_args(tmp_path / "empty.txt", tmp_path / "o3", "jax", "--n_layers=2"))


def test_run_saves_tokenizer_and_metrics(full_runs):
    out = full_runs["torch"]
    m = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(m["val_loss_nats_per_token"]) and np.isfinite(m["val_bits_per_byte"])
    # bits per byte = nats/token * tokens / (bytes * ln 2): the saved val counts give it back
    data = json.loads((out / "data" / "data.json").read_text())
    n_val = len(np.load(out / "data" / "val_tokens.npy"))
    assert m["val_bits_per_byte"] == pytest.approx(m["val_loss_nats_per_token"] * n_val / (data["val_bytes"] * np.log(2)))
    assert (out / "tokenizer.model").is_file() and (out / "tokenizer.vocab").is_file()


# ---- sampling ------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["jax", "torch"])
def test_sample_same_text_in_both_frameworks(full_runs, capsys, source):
    texts = {}
    for fw in ("jax", "torch"):
        argv = ["--checkpoint", str(full_runs[source] / "ckpt"), "--framework", fw, "--prompt", "Le ciel",
                "--max-new-tokens", "12", "--temperature", "0"]
        assert sample_cli.main(argv) == 0
        texts[fw] = capsys.readouterr().out
    assert texts["jax"] == texts["torch"] and texts["jax"].startswith("Le ciel")


def test_sample_any_prompt_byte_fallback(full_runs, capsys):
    prompt = "L'univers 🌌 東京 \udcff <|endofpoem|>"  # unseen characters, a stray surrogate, the special text
    argv = ["--checkpoint", str(full_runs["jax"]), "--prompt", prompt, "--max-new-tokens", "5",
            "--temperature", "0.8", "--top-k", "20", "--top-p", "0.9", "--num-samples", "2"]
    assert sample_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("L'univers 🌌 東京 \ufffd <|endofpoem|>") and "---" in out


def test_sample_errors(full_runs, tmp_path, capsys):
    other = train_tokenizer(POEMS[:50], vocab_size=290)
    other.save(tmp_path / "other")
    assert sample_cli.main(["--checkpoint", str(full_runs["jax"]), "--tokenizer", str(tmp_path / "other.model")]) == 2
    assert "has 290 ids but the model has vocab_size=300" in capsys.readouterr().err
    assert sample_cli.main(["--checkpoint", str(tmp_path)]) == 2
    assert "not a training run" in capsys.readouterr().err
    assert sample_cli.main(["--checkpoint", str(full_runs["jax"]), "--top-p", "1.5"]) == 2
    assert "top_p=1.5" in capsys.readouterr().err
