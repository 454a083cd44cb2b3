"""Train a BPE tokenizer on text files and write PREFIX.model + PREFIX.vocab.

    python scripts/train_tokenizer.py --input ../shared/data/french_poetry/poems.txt \
        --vocab-size 4096 --pattern gpt4 --special '<|endoftext|>' --out out/poems

The last --holdout fraction of the input (cut at a line boundary) is not trained on; the script
reports the compression (UTF-8 bytes per token) on it. It refuses to overwrite an existing
PREFIX.model unless --force is given, and checks that --out can be written before training.
Library code: jaxgpt/common/tokenizer.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

from jaxgpt.common.tokenizer import RegexTokenizer


def read_inputs(paths: list[str], max_bytes: int | None) -> list[str]:
    """UTF-8 texts of the input files (one document each), truncated to max_bytes in total."""
    if max_bytes is not None and max_bytes <= 0:
        raise ValueError(f"--max-bytes {max_bytes} must be positive")
    texts, budget = [], max_bytes
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise FileNotFoundError(f"input file {path} not found")
        data = path.read_bytes()
        if budget is not None:
            if budget <= 0:
                break
            if len(data) > budget:  # cut at the last line end within the budget
                cut = data.rfind(b"\n", 0, budget) + 1 or budget
                while 0 < cut < len(data) and data[cut] & 0xC0 == 0x80:  # not inside a UTF-8 character
                    cut -= 1
                data = data[:cut]
            budget -= len(data)
        try:
            texts.append(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            raise ValueError(f"{path} is not UTF-8 text (byte {data[e.start]:#04x} on line {line}, byte offset "
                             f"{e.start}); convert it, e.g. with iconv -f LATIN1 -t UTF-8") from None
    return texts


def split_holdout(texts: list[str], frac: float) -> tuple[list[str], str]:
    """(training documents, held-out text): the last `frac` of all characters, from a line start."""
    if not 0 <= frac < 1:
        raise ValueError(f"--holdout {frac} must be in [0, 1)")
    total = sum(len(t) for t in texts)
    cut, seen = int(total * (1 - frac)), 0
    for i, t in enumerate(texts):
        if seen + len(t) > cut:
            nl = t.find("\n", cut - seen)
            at = len(t) if nl < 0 else nl + 1
            return [*texts[:i], t[:at]], t[at:] + "".join(texts[i + 1:])
        seen += len(t)
    return texts, ""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", nargs="+", required=True, metavar="FILE", help="UTF-8 text files")
    ap.add_argument("--vocab-size", type=int, required=True, help="total ids, special tokens included")
    ap.add_argument("--pattern", choices=["gpt2", "gpt4", "none"], default="gpt4", help="split regex")
    ap.add_argument("--special", action="append", default=[], metavar="TOKEN",
                    help="special token (repeatable), numbered after the learned tokens")
    ap.add_argument("--out", required=True, metavar="PREFIX", help="writes PREFIX.model and PREFIX.vocab")
    ap.add_argument("--force", action="store_true", help="overwrite an existing PREFIX.model / PREFIX.vocab")
    ap.add_argument("--holdout", type=float, default=0.1, help="fraction kept out to measure compression")
    ap.add_argument("--max-bytes", type=int, default=None, help="use only the first N bytes of the input")
    ap.add_argument("--workers", type=int, default=1, help="processes for splitting large inputs")
    args = ap.parse_args(argv)
    try:
        run(args)
    except (ValueError, TypeError, OSError) as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:  # training is seconds to minutes: rerunning is the resume
        sys.exit("interrupted: nothing was written")


def check_out(out: Path, force: bool) -> None:
    """Refuse an --out that training could not be saved to, before any work: an existing output
    (without --force), an output that is a folder, a file where a folder is needed, or a folder
    this process cannot write into (tested by creating and removing a temporary file)."""
    targets = [out.with_name(out.name + ext) for ext in (".model", ".vocab")]
    if bad := [str(t) for t in targets if t.exists() and not t.is_file()]:
        raise ValueError(f"--out {out}: {' and '.join(bad)} exist and are not files; choose another --out")
    if not force and (existing := [str(t) for t in targets if t.exists()]):
        raise ValueError(f"{' and '.join(existing)} already exist; pass --force to overwrite, "
                         "or choose another --out")
    folder = out.absolute().parent
    while not folder.exists():  # the folders save() will create: check the first one that exists
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"--out {out}: {folder} is a file, so the output folder cannot be created; "
                         "choose another --out")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".train_tokenizer_check_")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ValueError(f"--out {out}: cannot write into {folder} ({e.strerror}); choose another --out") from None


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    check_out(out, args.force)
    texts = read_inputs(args.input, args.max_bytes)
    train_texts, held_out = split_holdout(texts, args.holdout)
    n_bytes = sum(len(t.encode("utf-8")) for t in train_texts)
    print(f"training on {n_bytes / 1e6:.2f} MB from {len(args.input)} file(s), pattern {args.pattern}, "
          f"vocab size {args.vocab_size}" + (f", specials {args.special}" if args.special else ""))
    tok = RegexTokenizer(args.pattern)
    tok.register_special_tokens(args.special)
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tok.train(train_texts, args.vocab_size, verbose=True, num_workers=args.workers)
    for w in caught:  # e.g. "learned 300 of 3839 merges": worth saying, not worth a traceback-like line
        print(f"warning: {w.message}", file=sys.stderr)
    print(f"trained in {time.perf_counter() - t0:.1f} s ({time.process_time() - c0:.1f} s CPU in this process)")
    model_file, vocab_file = tok.save(out)
    print(f"wrote {model_file} and {vocab_file}")
    if held_out.strip():
        ids = tok.encode(held_out, allowed_special="all")
        n = len(held_out.encode("utf-8"))
        print(f"held-out compression: {n / len(ids):.2f} bytes/token ({n:,} bytes -> {len(ids):,} tokens)")
    else:
        print("held-out compression: no held-out text (--holdout 0 or a one-line input)")


if __name__ == "__main__":
    main()
