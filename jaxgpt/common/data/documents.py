"""The one document reader: text corpora as a stream of documents, for data preparation and HellaSwag.

Framework-free. Sources, in a fixed order (so shards made from them are reproducible):
- `.txt`: `txt_mode="blank-line"` (default): a document is a block of non-blank lines, blocks
  separated by one or more blank (whitespace-only) lines, lines joined with "\\n" (trailing spaces
  kept, no trailing newline), the layout of shared/data/french_poetry/poems.txt; or
  `txt_mode="file"`: the whole file, exactly as read (universal newlines), is one document;
- `.jsonl`: one JSON object per line (`iter_jsonl` also reads HellaSwag's records);
- `.json`: a list of records, or {"anything": [records]};
- `.parquet`: one record per row (pyarrow, installed with `datasets`);
- a folder: its files of those types, in sorted order (not recursive);
- `hf:NAME[:CONFIG]` / `DocSource(dataset=...)`: a Hugging Face dataset streamed with `datasets`.

Records hold their text in `text_field`; left empty, the first of "text", "content", "poem" that a
record has. Every error names the file (and line) and the fix; a file that is not UTF-8 is one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TEXT_FIELDS = ("text", "content", "poem")  # tried in this order when no text_field is given
SUFFIXES = (".txt", ".jsonl", ".json", ".parquet")
TXT_MODES = ("blank-line", "file")


@dataclass(frozen=True)
class DocSource:
    """Where documents come from: local files (in order) or a streamed Hugging Face dataset."""

    files: tuple[str, ...] = ()  # resolved paths (see expand_files); used when given
    dataset: str | None = None  # HF dataset name, streamed (when no files)
    name: str | None = None  # HF dataset config
    split: str = "train"  # HF dataset split
    text_field: str = ""  # record field holding the text; "" = the first of TEXT_FIELDS present
    txt_mode: str = "blank-line"  # .txt: "blank-line" blocks or the whole "file"

    def __post_init__(self) -> None:
        if self.txt_mode not in TXT_MODES:
            raise ValueError(f"--txt_mode must be one of {', '.join(TXT_MODES)}, got {self.txt_mode!r}")
        if not self.files and not self.dataset:
            raise ValueError("no input: pass --files FILE... or --dataset NAME")


def expand_files(paths: Iterable[str | Path]) -> tuple[str, ...]:
    """Resolve input paths: files as given, folders expanded to their sorted corpus files."""
    out: list[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in SUFFIXES)
            if not found:
                raise FileNotFoundError(f"folder {p} holds no {'/'.join(SUFFIXES)} files; point --files at them")
            out += [str(q.resolve()) for q in found]
        elif not p.is_file():
            raise FileNotFoundError(f"input file {p} not found; check the --files path")
        elif p.suffix.lower() not in SUFFIXES:
            raise ValueError(f"input file {p}: unsupported type {p.suffix!r}; use {', '.join(SUFFIXES)}")
        elif p.stat().st_size == 0:
            raise ValueError(f"input file {p} is empty; remove it from --files")
        else:
            out.append(str(p.resolve()))
    if not out:
        raise ValueError("no input files given; pass --files FILE... or --dataset NAME")
    return tuple(out)


def blank_line_blocks(lines: Iterable[str]) -> Iterator[str]:
    """Blocks of non-blank lines (lines without their newline), joined with "\\n".

    >>> list(blank_line_blocks(["a", "b", "", "  ", "c"]))
    ['a\\nb', 'c']
    """
    block: list[str] = []
    for line in lines:
        if line.strip():
            block.append(line)
        elif block:
            yield "\n".join(block)
            block = []
    if block:
        yield "\n".join(block)


def _utf8_lines(path: str) -> Iterator[str]:
    """The lines of a UTF-8 text file without their newline; a non-UTF-8 file is a ValueError naming it."""
    try:
        with open(path, encoding="utf-8") as f:  # universal newlines: \r\n -> \n
            for line in f:
                yield line.rstrip("\n")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); convert it to UTF-8") from None


def read_text(path: str | Path) -> str:
    """A whole UTF-8 text file (universal newlines); a non-UTF-8 file is a ValueError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); convert it to UTF-8") from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(1-based line number, record) for every non-blank line of a .jsonl file; errors name file:line."""
    for lineno, line in enumerate(_utf8_lines(str(path)), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg}); each line must be one JSON object") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")  # noqa: TRY004
        yield lineno, rec


def text_of(record: dict, where: str, text_field: str = "") -> str:
    """The record's text, or a ValueError listing the fields it has."""
    for name in (text_field,) if text_field else TEXT_FIELDS:
        if name in record:
            value = record[name]
            if not isinstance(value, str):
                raise ValueError(f"{where}: field {name!r} holds {type(value).__name__}, not text")  # noqa: TRY004
            return value
    wanted = repr(text_field) if text_field else " / ".join(repr(n) for n in TEXT_FIELDS)
    raise ValueError(f"{where}: no text field {wanted}; fields found: {sorted(record)}; pass --text_field NAME")


def _json_documents(path: str, text_field: str) -> Iterator[str]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid UTF-8 JSON ({e}); fix the file") from None
    if isinstance(data, dict):  # {"poems": [...]} or a single record
        data = next((v for v in data.values() if isinstance(v, list)), [data])
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise ValueError(f"{path}: record {i} is a {type(rec).__name__}, expected an object")  # noqa: TRY004
        yield text_of(rec, f"{path} record {i}", text_field)


def _parquet_documents(path: str, text_field: str) -> Iterator[str]:
    import pyarrow.parquet as pq  # installed with `datasets`; imported only when needed

    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    field = text_field or next((n for n in TEXT_FIELDS if n in names), "")
    if field not in names:
        text_of(dict.fromkeys(names), path, text_field)  # raises, listing the columns
    for batch in pf.iter_batches(columns=[field], batch_size=1024):
        for i, text in enumerate(batch.column(0).to_pylist()):
            yield text_of({field: text}, f"{path}: row {i} of a batch", field)


def _file_documents(path: str, src: DocSource) -> Iterator[str]:
    suffix = Path(path).suffix.lower()
    if suffix == ".txt":
        if src.txt_mode == "file":
            yield read_text(path)
        else:
            yield from blank_line_blocks(_utf8_lines(path))
    elif suffix == ".jsonl":
        for lineno, rec in iter_jsonl(path):
            yield text_of(rec, f"{path}:{lineno}", src.text_field)
    elif suffix == ".json":
        yield from _json_documents(path, src.text_field)
    else:
        yield from _parquet_documents(path, src.text_field)


def clean_french_poetry(record: dict) -> str:
    """The original study's cleaning of a manu/french_poetry record: drop the metadata lines (starting
    with "Poésie", "Poète" or "Recueil"), the line repeating the title, and blank lines.

    >>> clean_french_poetry({"title": "Le Lac", "text": "Le Lac\\nPoète : Lamartine\\nAinsi, toujours poussés\\n"})
    'Ainsi, toujours poussés'
    """
    title = (record.get("title") or "").strip()
    keep = [line.rstrip() for line in text_of(record, "manu/french_poetry record", "text").splitlines()
            if line.strip() and not line.strip().startswith(("Poésie", "Poète", "Recueil"))
            and not (title and line.strip() == title)]
    return "\n".join(keep)


# Datasets whose records need more than a text-field lookup (used unless --text_field is given).
CLEANERS: dict[str, Callable[[dict], str]] = {"manu/french_poetry": clean_french_poetry}


def open_hf_dataset(src: DocSource, data_files: Any = None) -> Any:
    """src.dataset as a `datasets` IterableDataset: streamed, nothing is downloaded up front."""
    from datasets import load_dataset

    try:
        return load_dataset(src.dataset, name=src.name, split=src.split, streaming=True, data_files=data_files)
    except Exception as e:  # noqa: BLE001 -- offline, unknown name, hub error: all mean "use a local corpus"
        raise FileNotFoundError(f"could not open the Hugging Face dataset {src.dataset!r} ({type(e).__name__}: "
                                f"{str(e)[:200]}); when offline, pass local files with --files") from None


def record_text(src: DocSource, clean: Callable[[dict], str] | None = None) -> Callable[[dict, int], str]:
    """record, index -> its text: `clean` (default: CLEANERS' entry for the dataset, unless src.text_field is
    set) or the text-field lookup."""
    if clean is None and not src.text_field:
        clean = CLEANERS.get(src.dataset or "")
    if clean is not None:
        return lambda rec, i: clean(rec)
    return lambda rec, i: text_of(rec, f"{src.dataset} record {i}", src.text_field)


def iter_documents(src: DocSource, clean: Callable[[dict], str] | None = None,
                   data_files: Any = None) -> Iterator[str]:
    """The documents of `src`, in a fixed order: files in the given order, records in file order.

    `clean(record) -> text` replaces the text-field lookup of a dataset (default: CLEANERS' entry for
    it, unless src.text_field is set); `data_files` goes to `datasets.load_dataset`.
    """
    if src.files:
        for path in src.files:
            yield from _file_documents(path, src)
    else:
        text = record_text(src, clean)
        for i, rec in enumerate(open_hf_dataset(src, data_files)):
            yield text(rec, i)
