"""The fast incremental trainer learns exactly the reference trainer's merges; chunk counting
(serial, parallel, safe splits) is exact; the CLI trains, saves, reports and fails cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import data_file
from jaxgpt.common.tokenizer import PATTERNS, RegexTokenizer, count_chunks, load_tokenizer, train_bpe
from jaxgpt.common.tokenizer.reference import reference_train
from jaxgpt.common.tokenizer.trainer import _safe_parts

ROOT = Path(__file__).resolve().parent.parent
OVERLAPS = "aaaa aaa aa a aaaaaaa bbbb abab ababab aabb  aaaa\n\n\naaaa\n  b b  bbbbbbbb 1111 11111 !!!! ...."
MULTILINGUAL = ("Ça va? Très bien — «merci» ! 안녕하세요 👋 Москва 東京 I've 12345 don't  \n\t x " * 3)


def _fast(text: str, vocab_size: int, pattern: str) -> list[tuple[int, int]]:
    tok = RegexTokenizer(pattern)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small corpora legitimately learn fewer merges (and warn)
        tok.train(text, vocab_size)
    return sorted(tok.merges, key=tok.merges.get)


@pytest.fixture(scope="module")
def poems() -> str:
    return data_file("french_poetry/poems.txt").read_text(encoding="utf-8")[:60_000]


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4", "none"])
@pytest.mark.parametrize("corpus,vocab_size", [("poems20k", 400), ("poems8k", 600), ("overlaps", 300),
                                               ("multilingual", 330), ("names", 380)])
def test_fast_trainer_matches_reference(poems, pattern, corpus, vocab_size):
    text = {"poems20k": poems[:20_000], "poems8k": poems[30_000:38_000], "overlaps": OVERLAPS,
            "multilingual": MULTILINGUAL,
            "names": data_file("names.txt").read_text(encoding="utf-8")[:8_000]}[corpus]
    ref = reference_train(text, vocab_size, PATTERNS[pattern])
    assert len(ref) > 20
    assert _fast(text, vocab_size, pattern) == ref


@settings(max_examples=100, deadline=None)
@given(text=st.text(alphabet="aab \n1'é", min_size=1, max_size=80), extra=st.integers(1, 40),
       pattern=st.sampled_from(["gpt2", "gpt4", "none"]))
def test_fast_trainer_matches_reference_hypothesis(text, extra, pattern):
    if not text.strip():
        return  # rejected by train (tested in test_tokenizer.py)
    assert _fast(text, 256 + extra, pattern) == reference_train(text, 256 + extra, PATTERNS[pattern])


def test_tie_break_is_smallest_pair():
    # every pair occurs once: the smallest (id0, id1) = (97, 98) "ab" wins, then (99, 100) "cd"
    assert train_bpe({b"cdab": 1}, 2) == [(97, 98), (99, 100)]
    assert train_bpe({b"cd": 2, b"ab": 2}, 1) == [(97, 98)]
    assert train_bpe({b"cd": 3, b"ab": 2}, 1) == [(99, 100)]  # counts weigh by frequency
    assert train_bpe({b"a": 5}, 3) == []  # no pair at all


def test_training_on_documents_equals_reference_on_documents(poems):
    docs = [p for p in poems[:30_000].split("\n\n") if p]
    tok = RegexTokenizer("gpt4")
    tok.train(docs, 450)
    chunks = Counter(c.encode() for d in docs for c in regex.findall(PATTERNS["gpt4"], d))
    assert sorted(tok.merges, key=tok.merges.get) == train_bpe(chunks, 450 - 256)
    # and the documents' chunks differ from the joined text's only at the seams
    assert count_chunks(docs, PATTERNS["gpt4"]) == chunks


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_safe_split_gives_identical_chunks(poems, pattern):
    text = poems + OVERLAPS + "\n" + MULTILINGUAL + "\nx\n\ny \n z\n\t\nw.\n!x\n"
    whole = Counter(regex.findall(PATTERNS[pattern], text))
    parts = _safe_parts(text, 50)
    assert len(parts) > 20 and "".join(parts) == text
    assert sum((Counter(regex.findall(PATTERNS[pattern], p)) for p in parts), Counter()) == whole


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="ab \n\r\t!1'é", max_size=120), pattern=st.sampled_from(["gpt2", "gpt4"]))
def test_safe_split_hypothesis(text, pattern):
    parts = _safe_parts(text, 8)
    assert "".join(parts) == text
    assert [c for p in parts for c in regex.findall(PATTERNS[pattern], p)] == regex.findall(PATTERNS[pattern], text)


def test_parallel_count_equals_serial():
    text = data_file("french_poetry/poems.txt").read_text(encoding="utf-8")[:2_500_000]
    serial = count_chunks(text, PATTERNS["gpt4"])
    assert count_chunks(text, PATTERNS["gpt4"], num_workers=2, safe_split=True) == serial
    docs = text.split("\n\n")[:3000]
    assert count_chunks(docs, PATTERNS["gpt2"], num_workers=2) == count_chunks(docs, PATTERNS["gpt2"])


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts/train_tokenizer.py"), *args],
                          check=False, capture_output=True, text=True, timeout=120)


def test_cli_trains_saves_and_reports(tmp_path, poems):
    src = tmp_path / "in.txt"
    src.write_text(poems, encoding="utf-8")
    r = _cli("--input", str(src), "--vocab-size", "512", "--pattern", "gpt4", "--special", "<|endoftext|>",
             "--out", str(tmp_path / "tok"))
    assert r.returncode == 0, r.stderr
    assert "held-out compression:" in r.stdout and "bytes/token" in r.stdout
    tok = load_tokenizer(tmp_path / "tok.model")
    assert tok.vocab_size == 512 and tok.special_tokens == {"<|endoftext|>": 511}
    assert (tmp_path / "tok.vocab").is_file()
    before = (tmp_path / "tok.model").read_bytes()
    r = _cli("--input", str(src), "--vocab-size", "300", "--out", str(tmp_path / "tok"))
    assert r.returncode != 0 and "--force" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "tok.model").read_bytes() == before  # never overwritten silently
    r = _cli("--input", str(src), "--vocab-size", "300", "--out", str(tmp_path / "tok"), "--force")
    assert r.returncode == 0 and load_tokenizer(tmp_path / "tok.model").vocab_size == 300


@pytest.mark.parametrize("args,message", [
    (["--input", "/no/such/file.txt", "--vocab-size", "300"], "not found"),
    (["--vocab-size", "100"], ">= 256"),
    (["--vocab-size", "300", "--holdout", "1.5"], "holdout"),
    (["--vocab-size", "300", "--special", "<|a|>", "--special", "<|b|>", "--vocab-size", "257"], "258"),
])
def test_cli_errors_exit_nonzero_with_message(tmp_path, args, message):
    src = tmp_path / "in.txt"
    src.write_text("Le vent se lève.\n" * 50, encoding="utf-8")
    if "--input" not in args:
        args = ["--input", str(src), *args]
    r = _cli(*args, "--out", str(tmp_path / "tok"))
    assert r.returncode != 0
    assert r.stderr.startswith("error:") and message in r.stderr and "Traceback" not in r.stderr


def test_cli_small_corpus_warns_and_empty_corpus_fails(tmp_path):
    src = tmp_path / "tiny.txt"
    src.write_text("ab ab\n", encoding="utf-8")
    r = _cli("--input", str(src), "--vocab-size", "300", "--holdout", "0", "--out", str(tmp_path / "tiny"))
    assert r.returncode == 0 and "warning: " in r.stderr and "learned 2 of 44 merges" in r.stderr
    assert "no held-out text" in r.stdout
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n\n", encoding="utf-8")
    r = _cli("--input", str(empty), "--vocab-size", "300", "--out", str(tmp_path / "e"))
    assert r.returncode != 0 and "empty or only whitespace" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "e.model").exists()


def test_cli_max_bytes_cuts_between_characters(tmp_path):
    src = tmp_path / "accents.txt"
    src.write_text("ééééé" * 40, encoding="utf-8")  # one line: the cut cannot fall on a line end
    r = _cli("--input", str(src), "--vocab-size", "260", "--max-bytes", "101", "--holdout", "0",
             "--out", str(tmp_path / "acc"))
    assert r.returncode == 0, r.stderr
    assert "training on 0.00 MB" in r.stdout


def test_cli_rejects_non_utf8(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("Le vent se lève\n" * 20, encoding="utf-8")
    src = tmp_path / "latin1.txt"
    src.write_bytes("Le vent\nse lève\n".encode("latin-1"))
    r = _cli("--input", str(good), str(src), "--vocab-size", "300", "--out", str(tmp_path / "tok"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert str(src) in r.stderr and "not UTF-8" in r.stderr and "line 2" in r.stderr and "0xe8" in r.stderr
    assert not (tmp_path / "tok.model").exists()


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (root ignores permissions: use /proc)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read_only"
        folder.mkdir(mode=0o555)
        return folder
    if not Path("/proc/self").is_dir():
        pytest.skip("running as root without /proc: no folder is unwritable")
    return Path("/proc")


@pytest.mark.parametrize("where", ["file_as_parent", "unwritable", "output_is_a_folder"])
def test_cli_checks_the_output_before_training(tmp_path, where):
    src = tmp_path / "in.txt"
    src.write_text("Le vent se lève, il faut tenter de vivre.\n" * 200, encoding="utf-8")
    (tmp_path / "afile").write_text("not a folder", encoding="utf-8")
    (tmp_path / "dir.model").mkdir()
    out = {"file_as_parent": tmp_path / "afile" / "sub" / "tok", "unwritable": _unwritable_folder(tmp_path) / "tok",
           "output_is_a_folder": tmp_path / "dir"}[where]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    r = _cli("--input", str(src), "--vocab-size", "300", "--out", str(out), "--force")
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("error: --out") and r.stderr.count("\n") == 1 and "choose another --out" in r.stderr
    assert "training on" not in r.stdout and "bpe merges" not in r.stderr  # refused before any work
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written
