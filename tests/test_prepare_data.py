"""scripts/prepare_data.py (jaxgpt.common.data.prepare) on a real 2 MB French poetry slice: build-nanogpt's
layout with tiktoken gpt2 (exact round trip, resume, errors), and the poetry flow (a document-level val
split, our BPE trained on the train documents), the manifest's byte counts, tokenizer checks."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, data_file, tiktoken_encoding
from jaxgpt.common.data import prepare as prep
from jaxgpt.common.data.codec import file_sha256
from jaxgpt.common.data.documents import DocSource, expand_files
from jaxgpt.common.data.prepare import PrepareConfig, split_documents

EOT = 50256


def shard_name(i: int) -> str:
    return prep.shard_name("edufineweb", "val" if i == 0 else "train", i)


def build_shards(cfg: PrepareConfig, out, workers: int = 1, progress: bool = False, **kw):
    return prep.prepare(cfg, out, workers=workers, progress=progress, log=lambda m: None, **kw)

SHARD = 100_000  # ~8 shards from 2 MB: boundaries fall inside documents


class Interrupt(Exception):
    pass


def poems_slice(folder: Path, n_bytes: int) -> tuple[Path, list[str]]:
    """About n_bytes of poems.txt cut at a poem boundary, and its poems split independently of the pipeline."""
    with open(data_file("french_poetry/poems.txt"), encoding="utf-8") as f:
        text = f.read(n_bytes)
    text = text[:text.rindex("\n\n") + 1]
    path = folder / "poems.txt"
    path.write_text(text, encoding="utf-8")
    return path, text.strip("\n").split("\n\n")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    return poems_slice(tmp_path_factory.mktemp("corpus"), 2_000_000)


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> Path:
    """An uninterrupted run (2 workers): the bytes every other run must reproduce."""
    out = tmp_path_factory.mktemp("ref")
    build_shards(cfg_for(corpus[0]), out, workers=2, progress=False)
    return out


def cfg_for(*files: Path, shard_size: int = SHARD, text_field: str = "", txt_mode: str = "blank-line",
            **kw) -> PrepareConfig:
    src = DocSource(files=expand_files(files), text_field=text_field, txt_mode=txt_mode)
    return PrepareConfig(src, shard_size=shard_size, **kw)


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("edufineweb_*.npy"))}


def decode_docs(out: Path) -> list[str]:
    enc = tiktoken_encoding("gpt2")
    tokens = np.concatenate([np.load(p) for p in sorted(out.glob("edufineweb_*.npy"), key=lambda p: p.name[-10:])])
    cuts = np.flatnonzero(tokens == EOT)
    return [enc.decode(tokens[a + 1:b].tolist()) for a, b in zip(cuts, list(cuts[1:]) + [len(tokens)])]


def test_shards_decode_to_the_documents(corpus, reference):
    _, docs = corpus
    names = sorted(shard_bytes(reference))
    n = len(names)
    assert n >= 6 and names[-1] == shard_name(0) == "edufineweb_val_000000.npy"
    assert names[:-1] == [f"edufineweb_train_{i:06d}.npy" for i in range(1, n)]
    manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["complete"] and manifest["stream_documents"]["all"] == len(docs)
    # Per split: tokens, documents (separators) and UTF-8 bytes (+1 per separator) add up to the corpus.
    sp = manifest["splits"]
    assert sp["val"]["shards"] == 1 and sp["train"]["shards"] == n - 1
    assert sp["val"]["documents"] + sp["train"]["documents"] == len(docs)
    assert sp["val"]["bytes"] + sp["train"]["bytes"] == sum(len(d.encode()) + 1 for d in docs)
    assert manifest["tokenizer"] == {"kind": "tiktoken", "name": "gpt2", "vocab_size": 50257, "eot_id": EOT,
                                     "eot_token": "<|endoftext|>", "sha256": ""}
    for i, s in enumerate(manifest["shards"]):
        arr = np.load(reference / s["name"])  # plain np.load, as build-nanogpt's loader does
        assert arr.dtype == np.uint16 and arr.ndim == 1 and len(arr) == s["tokens"]
        assert len(arr) == SHARD or i == n - 1
        assert file_sha256(reference / s["name"]) == s["sha256"]
    assert np.load(reference / shard_name(0))[0] == EOT
    assert decode_docs(reference) == docs


def test_workers_do_not_change_the_bytes(corpus, reference, tmp_path):
    build_shards(cfg_for(corpus[0]), tmp_path, workers=1, progress=False)
    assert shard_bytes(tmp_path) == shard_bytes(reference)


def test_interrupted_run_resumes_byte_identical(corpus, reference, tmp_path):
    def stop_after_three(entry: dict) -> None:
        if entry["name"] == shard_name(2):
            assert entry["next_offset"] > 0  # the cut falls inside a document: the hard case
            raise Interrupt

    with pytest.raises(Interrupt):
        build_shards(cfg_for(corpus[0]), tmp_path, workers=2, progress=False, on_shard=stop_after_three)
    assert sorted(shard_bytes(tmp_path)) == sorted(shard_name(i) for i in range(3))
    s = build_shards(cfg_for(corpus[0]), tmp_path, workers=2, progress=False)
    assert s.resumed and s.shards_written == len(shard_bytes(reference)) - 3
    assert shard_bytes(tmp_path) == shard_bytes(reference)
    assert (tmp_path / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()
    again = build_shards(cfg_for(corpus[0]), tmp_path, workers=2, progress=False)
    assert again.shards_written == 0  # complete: nothing redone


# Child process: the library run of scripts/prepare_data.py, SIGKILLed by itself halfway through writing
# the data of shard 3 (np.save makes two writes per shard: header, then data), a deterministic
# stand-in for a kill -9 at the worst moment.
KILLED_CHILD = """
import os, signal, sys
from jaxgpt.common.data import prepare
from jaxgpt.common.data.documents import DocSource
writes = 0
original = prepare._HashingWriter.write
def write(self, b):
    global writes
    writes += 1
    if writes == 8:
        original(self, b[:len(b) // 2])
        self.f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, b)
prepare._HashingWriter.write = write
cfg = prepare.PrepareConfig(DocSource(files=(sys.argv[1],)), shard_size=20_000)
prepare.prepare(cfg, sys.argv[2], workers=1, progress=False)
"""


def test_sigkill_mid_write_then_resume_is_byte_identical(corpus, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    build_shards(cfg_for(corpus[0], shard_size=20_000), ref, workers=2, progress=False)
    expected = shard_bytes(ref)
    r = subprocess.run([sys.executable, "-c", KILLED_CHILD, str(corpus[0]), str(out)], cwd=ROOT, check=False)
    assert r.returncode == -signal.SIGKILL
    assert sorted(shard_bytes(out)) == sorted(shard_name(i) for i in range(3))  # shard 3 is not under its name
    for name, b in shard_bytes(out).items():
        assert b == expected[name], name
    (tmp,) = out.glob(".*tmp*")  # the half-written shard 3, under a hidden temp name
    assert tmp.name.startswith(f".{shard_name(3)}.tmp-") and 0 < len(tmp.read_bytes()) < len(expected[shard_name(3)])
    cmd = [sys.executable, str(ROOT / "scripts" / "prepare_data.py"), "--files", str(corpus[0]), "--shard_size", "2e4"]
    r = subprocess.run([*cmd, "--workers", "2", "--out", str(out)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert "resumed: wrote" in r.stdout and "tokens/s" in r.stdout
    assert shard_bytes(out) == expected
    assert sorted(p.name for p in out.iterdir()) == sorted([*expected, "manifest.json"])  # temp file gone


def test_resume_rewrites_a_damaged_shard_and_drops_temp_files(corpus, reference, tmp_path):
    build_shards(cfg_for(corpus[0]), tmp_path, workers=1, progress=False)
    victim = tmp_path / shard_name(3)
    victim.write_bytes(victim.read_bytes()[:1000])  # truncated, e.g. by a disk problem
    (tmp_path / f".{shard_name(4)}.tmp-12345").write_bytes(b"half written")
    assert prep.verify_shards(tmp_path) == [shard_name(3)]
    s = build_shards(cfg_for(corpus[0]), tmp_path, workers=1, progress=False)
    assert s.resumed and s.shards_written == len(shard_bytes(reference)) - 3
    assert shard_bytes(tmp_path) == shard_bytes(reference)
    assert not list(tmp_path.glob(".*tmp*"))


def test_jsonl_parquet_and_datasets_streaming_give_the_same_shards(corpus, reference, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = corpus[1]
    jl = tmp_path / "docs.jsonl"
    jl.write_text("".join(json.dumps({"id": i, "text": d}) + "\n" for i, d in enumerate(docs)))
    pq.write_table(pa.table({"id": list(range(len(docs))), "body": docs}), tmp_path / "docs.parquet")
    build_shards(cfg_for(jl), tmp_path / "jl", workers=2, progress=False)
    build_shards(cfg_for(tmp_path / "docs.parquet", text_field="body"), tmp_path / "pq", workers=1, progress=False)
    # The `datasets` streaming path (what --dataset uses), fed a local file so it runs offline.
    hf = PrepareConfig(DocSource(dataset="json", split="train"), shard_size=SHARD)
    build_shards(hf, tmp_path / "hf", workers=1, progress=False, data_files=str(jl))
    want = shard_bytes(reference)
    assert shard_bytes(tmp_path / "jl") == shard_bytes(tmp_path / "pq") == shard_bytes(tmp_path / "hf") == want


def test_txt_file_mode_keeps_each_file_whole(tmp_path):
    tiktoken_encoding("gpt2")  # the pipeline encodes with it: skip (with the reason) where it cannot load
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("first line\n\n\nafter blank lines <|endoftext|> literal\n", encoding="utf-8")
    b.write_text("Ünïcödé 😀 sans newline", encoding="utf-8")
    build_shards(cfg_for(a, b, txt_mode="file", shard_size=7), tmp_path / "out", workers=1, progress=False)
    assert decode_docs(tmp_path / "out") == [a.read_text(), b.read_text()]
    build_shards(cfg_for(a, b, shard_size=7), tmp_path / "blank", workers=1, progress=False)
    assert decode_docs(tmp_path / "blank") == ["first line", "after blank lines <|endoftext|> literal", b.read_text()]


def test_token_ids_must_fit_uint16(monkeypatch):
    class Wide:
        eot_id = 0

        def encode_ordinary(self, text: str) -> list[int]:
            return [70_000]

    monkeypatch.setattr(prep, "_codec", Wide())
    with pytest.raises(ValueError, match="does not fit in uint16"):
        prep.tokenize_batch(["x"])


def test_bad_inputs_give_clear_errors(corpus, reference, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        expand_files([tmp_path / "nope.txt"])
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        expand_files([tmp_path / "empty.txt"])
    (tmp_path / "blank.txt").write_text("\n\n  \n")
    with pytest.raises(ValueError, match="no documents"):
        build_shards(cfg_for(tmp_path / "blank.txt"), tmp_path / "o1", progress=False)
    assert not list((tmp_path / "o1").glob("*.npy"))
    jl = tmp_path / "x.jsonl"
    jl.write_text('{"body": "a", "id": 1}\n')
    with pytest.raises(ValueError, match=r"no text field 'text' / 'content' / 'poem'; fields found: \['body', 'id'\]"):
        build_shards(cfg_for(jl), tmp_path / "o2", progress=False)
    jl.write_text('{"text": "a"}\n{"text": oops}\n')
    with pytest.raises(ValueError, match=r"x.jsonl:2: invalid JSON"):
        build_shards(cfg_for(jl), tmp_path / "o3", progress=False)
    with pytest.raises(ValueError, match=r"shard_size: 100000 -> 50000"):
        build_shards(cfg_for(corpus[0], shard_size=50_000), reference, progress=False)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="cannot create output folder"):
        build_shards(cfg_for(corpus[0]), tmp_path / "afile" / "out", progress=False)
    (tmp_path / "foreign").mkdir()
    np.save(tmp_path / "foreign" / "edufineweb_val_000000.npy", np.zeros(3, np.uint16))
    with pytest.raises(ValueError, match="but no manifest.json"):
        build_shards(cfg_for(corpus[0]), tmp_path / "foreign", progress=False)


def test_cli_reports_errors_without_traceback(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_data.py"), "--files", str(tmp_path / "missing.txt"),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, check=False)
    assert r.returncode != 0
    assert r.stderr.startswith("error: input file") and "Traceback" not in r.stderr


# ---- the poetry flow: a document-level val split and our BPE trained on the train documents ---------

POETRY = {"train_tokenizer": 300, "val_fraction": 0.1, "split_seed": 3}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, list[str], Path]:
    """~200 kB of poems.txt (our tokenizer trains on it in about a second), and its poetry-flow folder."""
    path, docs = poems_slice(tmp_path_factory.mktemp("small"), 200_000)
    out = tmp_path_factory.mktemp("poetry")
    build_shards(cfg_for(path, shard_size=20_000, **POETRY), out)
    return path, docs, out


def decode_split(out: Path, split: str) -> list[str]:
    from jaxgpt.common.tokenizer import load_tokenizer

    tok = load_tokenizer(out / "tokenizer.model")
    eot = tok.special_tokens["<|endoftext|>"]
    tokens = np.concatenate([np.load(p) for p in sorted(out.glob(f"edufineweb_{split}_*.npy"))])
    cuts = np.flatnonzero(tokens == eot)
    return [tok.decode(tokens[a + 1:b].tolist()) for a, b in zip(cuts, list(cuts[1:]) + [len(tokens)])]


def test_val_split_by_document_and_a_tokenizer_of_the_train_documents(small):
    _, docs, folder = small
    train, val = split_documents(docs, 0.1, seed=3)
    assert len(val) == round(len(docs) * 0.1) and sorted(train + val) == sorted(docs)
    assert (train, val) == split_documents(docs, 0.1, seed=3) and split_documents(docs, 0.1, seed=4)[1] != val
    assert [docs.index(d) for d in val] != list(range(len(docs) - len(val), len(docs)))  # spread, not the tail
    # Both splits in a random order, not the corpus's (poems.txt is sorted by author).
    assert [docs.index(d) for d in train] != sorted(docs.index(d) for d in train)
    assert decode_split(folder, "val") == val and decode_split(folder, "train") == train  # exact round trip
    m = json.loads((folder / "manifest.json").read_text())
    assert m["tokenizer"]["kind"] == "bpe" and m["tokenizer"]["vocab_size"] == 300 and m["tokenizer"]["eot_id"] == 299
    assert m["tokenizer"]["sha256"] == file_sha256(folder / "tokenizer.model") and (folder / "tokenizer.vocab").is_file()
    for split, part in (("train", train), ("val", val)):  # whole documents: the byte counts are exact
        assert m["splits"][split]["documents"] == len(part)
        assert m["splits"][split]["bytes"] == sum(len(d.encode()) + 1 for d in part)
    assert m["splits"]["train"]["shards"] >= 3  # 20k-token shards: the train stream spans several
    # Trained on the train documents only: the same merges as training on them directly.
    from jaxgpt.common.tokenizer import load_tokenizer

    assert load_tokenizer(folder / "tokenizer.model").merges == prep.train_bpe_tokenizer(train, 300, "gpt4").merges
    assert prep.read_data_info(folder).bytes_per_token("val") == m["splits"]["val"]["bytes"] / m["splits"]["val"]["tokens"]


def test_poetry_flow_resumes_byte_identical_and_reuses_its_tokenizer(small, tmp_path):
    folder = small[2]
    seen = []

    def stop_in_train(entry: dict) -> None:
        seen.append(entry["name"])
        if entry["name"] == "edufineweb_train_000001.npy":
            raise Interrupt

    with pytest.raises(Interrupt):
        build_shards(cfg_for(small[0], shard_size=20_000, **POETRY), tmp_path, on_shard=stop_in_train)
    model = (tmp_path / "tokenizer.model").stat().st_mtime_ns
    s = build_shards(cfg_for(small[0], shard_size=20_000, **POETRY), tmp_path)
    assert s.resumed and (tmp_path / "tokenizer.model").stat().st_mtime_ns == model  # not retrained
    assert shard_bytes(tmp_path) == shard_bytes(folder)
    assert (tmp_path / "manifest.json").read_bytes() == (folder / "manifest.json").read_bytes()


def test_a_given_tokenizer_model_is_copied_and_recorded(small, tmp_path):
    folder = small[2]
    src = tmp_path / "mine.model"
    src.write_bytes((folder / "tokenizer.model").read_bytes())
    out = tmp_path / "given"
    s = build_shards(cfg_for(small[0], shard_size=20_000, tokenizer=str(src), val_fraction=0.1, split_seed=3), out)
    assert s.tokenizer["name"] == "mine.model" and s.tokenizer["sha256"] == file_sha256(src)
    assert (out / "tokenizer.model").read_bytes() == src.read_bytes()
    assert shard_bytes(out) == shard_bytes(folder)  # same tokenizer, same split: the same shards
    src.write_bytes(src.read_bytes() + b"\n")  # an edited tokenizer file must not resume into the folder
    with pytest.raises(ValueError, match="other parameters"):
        build_shards(cfg_for(small[0], shard_size=20_000, tokenizer=str(src), val_fraction=0.1, split_seed=3), out)


def test_tokenizer_errors(small, tmp_path):
    tiktoken_encoding("cl100k_base")
    with pytest.raises(ValueError, match=r"100,277 ids, more than the 65,536 a uint16 shard holds"):
        build_shards(cfg_for(small[0], tokenizer="cl100k_base"), tmp_path / "wide")
    assert not list((tmp_path / "wide").glob("*.npy"))
    with pytest.raises(ValueError, match="--train_tokenizer needs --val_fraction > 0"):
        cfg_for(small[0], train_tokenizer=300)
    with pytest.raises(ValueError, match="unknown tokenizer 'nope'"):
        build_shards(cfg_for(small[0], tokenizer="nope"), tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="tokenizer model file not found"):
        build_shards(cfg_for(small[0], tokenizer=str(tmp_path / "missing.model")), tmp_path / "m")
