"""The streamed download resumes where its shards end (issue 13), and the data-order defaults.

Through the path --dataset takes (`datasets.load_dataset(..., streaming=True)`), fed local jsonl files
so it runs offline: a preparation interrupted after a shard resumes from the dataset state saved with
that shard, reads only the records after it, and writes the bytes of an uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import tiktoken_encoding
from jaxgpt.common import training
from jaxgpt.common.data import prepare as prep
from jaxgpt.common.data.documents import DocSource
from jaxgpt.common.data.prepare import PrepareConfig
from jaxgpt.common.recipes import RECIPES, configs_for

# One worker runs this module (pyproject's --dist loadgroup): its module-scoped runs are then made once, not per worker.
pytestmark = pytest.mark.xdist_group("stream-resume")

SHARD = 4000  # tokens per shard: ~9 shards from the corpus below, cuts inside documents


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[list[str], int]:
    """Two jsonl files (the dataset's two data files) of 600 short documents; (paths, documents)."""
    tiktoken_encoding("gpt2")  # the rank files, offline (skips with the reason when the data folder is absent)
    d = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(0)
    words = ["le", "vent", "souffle", "sur", "la", "mer", "et", "les", "étoiles", "brillent", "doucement", "ce soir"]
    docs = [" ".join(rng.choice(words, rng.integers(5, 120))) + "." for _ in range(600)]
    files = []
    for k in range(2):
        files.append(str(d / f"part{k}.jsonl"))
        Path(files[-1]).write_text("".join(json.dumps({"text": t}) + "\n" for t in docs[k * 300:(k + 1) * 300]))
    return files, len(docs)


def streamed(out: Path, files: list[str], on_shard=None) -> prep.PrepareSummary:
    cfg = PrepareConfig(DocSource(dataset="json", split="train"), shard_size=SHARD)
    return prep.prepare(cfg, out, progress=False, on_shard=on_shard, data_files=files, log=lambda m: None)


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("edufineweb_*.npy"))}


def positions(out: Path) -> list[dict]:
    return [{k: v for k, v in s.items() if k != "stream_state"} for s in json.loads((out / "manifest.json").read_text())["shards"]]


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    streamed(out, corpus[0])
    return out


@pytest.mark.parametrize("stop_after", [0, 3])  # the val shard; a train shard whose end cuts a document
def test_an_interrupted_download_resumes_from_its_saved_position(corpus, reference, tmp_path, monkeypatch, stop_after):
    files, n_docs = corpus
    streams: list[prep.ResumableStream] = []

    class Counted(prep.ResumableStream):
        def __init__(self, *args, **kw) -> None:
            super().__init__(*args, **kw)
            streams.append(self)

    monkeypatch.setattr(prep, "ResumableStream", Counted)
    stopped: list[dict] = []

    def interrupt(entry: dict) -> None:
        if len(stopped) == stop_after:
            stopped.append(entry)
            raise Interrupt
        stopped.append(entry)

    with pytest.raises(Interrupt):
        streamed(tmp_path, files, on_shard=interrupt)
    last = stopped[-1]
    assert len(shard_bytes(tmp_path)) == stop_after + 1 and "stream_state" in last
    if stop_after:
        assert last["next_offset"] > 0  # the resumed stream starts inside a document
    s = streamed(tmp_path, files)
    assert s.resumed and shard_bytes(tmp_path) == shard_bytes(reference)
    # the manifests agree but for how `datasets` spells a position (one state, reached by two paths)
    assert positions(tmp_path) == positions(reference)
    # Nothing the kept shards hold was read again: the resumed run started at the saved document.
    assert streams[-1].read == n_docs - last["next_doc"]
    assert len(shard_bytes(reference)) > stop_after + 3  # the resumed run wrote several shards


def test_a_manifest_without_stream_states_resumes_by_count(corpus, reference, tmp_path):
    files, _ = corpus

    def stop(entry: dict) -> None:
        if entry["name"].endswith("000002.npy"):
            raise Interrupt

    with pytest.raises(Interrupt):
        streamed(tmp_path, files, on_shard=stop)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for s in manifest["shards"]:  # as an older version wrote it
        del s["stream_state"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    streamed(tmp_path, files)
    assert shard_bytes(tmp_path) == shard_bytes(reference)


def test_documents_are_shuffled_in_train_shards_of_the_gpt2_presets_and_never_in_val(tmp_path):
    for name, recipe in RECIPES.items():
        assert (recipe.train.doc_shuffle_seed is not None) == name.startswith("gpt2"), name
    _, cfg, _ = configs_for("gpt2-cpu", [f"--data_dir={tmp_path}"])
    for split in ("train", "val"):
        np.save(tmp_path / f"x_{split}_000000.npy", np.full(4096, 50256, np.uint16))
    train = training.train_batches(cfg, RECIPES["gpt2-cpu"].model, 2, 0, 1)
    val = training.val_batches(cfg, RECIPES["gpt2-cpu"].model, 2, 0, 1)
    assert train.state()["doc_shuffle_seed"] == 1337 and val.state()["doc_shuffle_seed"] is None
    train.close()
