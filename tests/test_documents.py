"""The one document reader (jaxgpt/common/data/documents.py): every source type, the HF path, and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jaxgpt.common.data.documents import DocSource, clean_french_poetry, expand_files, iter_documents

POEMS = [f"Vers {i} du poème,\nle ciel la mer ô nuit {i}." for i in range(10)]


def read(*paths: Path, **kw) -> list[str]:
    return list(iter_documents(DocSource(files=expand_files(paths), **kw)))


def test_txt_blank_line_blocks_and_whole_files(tmp_path):
    (tmp_path / "p.txt").write_text("\n\nA b  \nC d\n\n\n\nE f\n  \nG h\r\nI j\n", encoding="utf-8")
    assert read(tmp_path / "p.txt") == ["A b  \nC d", "E f", "G h\nI j"]  # trailing spaces kept, \r\n -> \n
    assert read(tmp_path / "p.txt", txt_mode="file") == ["\n\nA b  \nC d\n\n\n\nE f\n  \nG h\nI j\n"]


def test_jsonl_json_parquet_and_a_folder(tmp_path):
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    d = tmp_path / "mixed"
    d.mkdir()
    with open(d / "a.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"title": "t", "text": p}, ensure_ascii=False) + "\n" for p in POEMS[:3])
    (d / "b.json").write_text(json.dumps({"poems": [{"content": p} for p in POEMS[3:5]]}), encoding="utf-8")
    pq.write_table(pa.table({"poem": POEMS[5:8], "poet": ["x"] * 3}), d / "c.parquet")
    (d / "d.txt").write_text("\n\n".join(POEMS[8:10]), encoding="utf-8")
    (d / "notes.md").write_text("not a corpus file: ignored")
    assert read(d / "a.jsonl") == POEMS[:3]
    assert read(d / "b.json") == POEMS[3:5]
    assert read(d / "c.parquet") == POEMS[5:8]
    assert read(d) == POEMS[:10]  # sorted file order: a.jsonl, b.json, c.parquet, d.txt
    assert read(d / "c.parquet", text_field="poet") == ["x"] * 3


def test_hf_records_of_manu_french_poetry_are_cleaned_as_the_original(monkeypatch):
    datasets = pytest.importorskip("datasets")
    rows = [{"title": "Le Lac", "poet": "Lamartine",
             "text": "Le Lac\nPoète : Lamartine\nRecueil : Méditations\nAinsi, toujours poussés\nvers de nouveaux rivages"},
            {"title": "X", "poet": "Y", "text": "Poésie : X\nUn vers"}]
    monkeypatch.setattr(datasets, "load_dataset", lambda path, **kw: rows)
    src = DocSource(dataset="manu/french_poetry")
    assert list(iter_documents(src)) == ["Ainsi, toujours poussés\nvers de nouveaux rivages", "Un vers"]
    assert list(iter_documents(DocSource(dataset="manu/french_poetry", text_field="poet"))) == ["Lamartine", "Y"]
    assert clean_french_poetry(rows[1]) == "Un vers"


def test_bad_inputs_name_the_file_and_the_fix(tmp_path):
    (tmp_path / "f.jsonl").write_text(json.dumps({"body": "x", "author": "y"}) + "\n")
    with pytest.raises(ValueError, match=r"f.jsonl:1: no text field .*fields found: \['author', 'body'\].*--text_field"):
        read(tmp_path / "f.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: invalid JSON"):
        read(tmp_path / "bad.jsonl")
    (tmp_path / "n.jsonl").write_text('{"text": 3}\n')
    with pytest.raises(ValueError, match=r"n.jsonl:1: field 'text' holds int, not text"):
        read(tmp_path / "n.jsonl")
    (tmp_path / "latin1.txt").write_bytes("poème".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt is not UTF-8 text .*convert it to UTF-8"):
        read(tmp_path / "latin1.txt")
    with pytest.raises(FileNotFoundError, match="not found"):
        expand_files([tmp_path / "missing.txt"])
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(ValueError, match="unsupported type '.csv'"):
        expand_files([tmp_path / "x.csv"])
    with pytest.raises(ValueError, match="no input"):
        DocSource()
    with pytest.raises(ValueError, match="--txt_mode must be one of"):
        DocSource(files=("a.txt",), txt_mode="lines")
