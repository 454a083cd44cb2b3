"""Exactly tiktoken on every code point (issue 16 item 7): the character classes of the split.

The split is where the Unicode tables enter (BPE works on bytes), so it is compared with
tiktoken's on every code point first, and whole encodings are compared where they could differ:
- drift: the pinned tables (split.TIKTOKEN_CLASSES) equal what the installed tiktoken's engine
  does; a tiktoken upgrade that changes its tables fails here, with the fix;
- every code point U+0000..U+10FFFF: for each character test the split patterns make (letters,
  numbers, white space, their complements, the contractions' case-insensitive letters), the code
  points our `Splitter` matches are the ones tiktoken's engine matches. A regex consults a
  character only through such tests, so two engines that agree on all of them split every text
  alike (the mechanism is also checked against explicit ranges, on made-up tables);
- in the contexts "X's", " X1", "X,Tk", "aX b": our ids equal tiktoken's for every code point
  the installed `regex` module classes unlike tiktoken (the 17,480 that differed), every code
  point below U+0100 and a seeded sample of 8,192 others, for gpt2 = r50k_base (asserted
  identical) and cl100k_base. Lone surrogates become U+FFFD, as in tiktoken. All code points in
  context: set JAXGPT_ALL_CODE_POINTS=1 (about 70 CPU seconds per encoding).

Offline: the root conftest points TIKTOKEN_CACHE_DIR at shared/data/tiktoken_cache.
"""

from __future__ import annotations

import os
import random
import sys
from collections import Counter

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require_module, tiktoken_encoding
from jaxgpt.common.tokenizer import (
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    TIKTOKEN_CLASSES,
    UnicodeClasses,
    from_tiktoken,
)
from jaxgpt.common.tokenizer.split import REGENERATE, Splitter, classes_of_regex, classes_of_tiktoken

tiktoken = require_module("tiktoken")

EVERY_CODE_POINT = "".join(map(chr, range(0xD800))) + "".join(map(chr, range(0xE000, sys.maxunicode + 1)))
CONTEXTS = ("{}'s", " {}1", "{},Tk", "a{} b")
SEPARATOR = "'s"


def _probe_text(code_points) -> str:
    """The probes of `code_points` in every context, joined by SEPARATOR ("'s").

    Why encoding this text equals encoding each probe alone, with the separator's one token
    between them (the argument holds for tiktoken's engine and ours and for any character
    classes, since only ASCII characters are involved): each probe ends in an ASCII letter or
    digit, whose chunk (a letter run, a number run or a contraction) stops before "'", and no
    probe ends in white space, so no lookahead or "$" of the patterns looks past it. At the "'"
    the patterns' first alternative, the fixed-length contraction, matches "'s" whatever follows.
    The patterns have no lookbehind, so the next probe is split as if it began the text; BPE runs
    on each chunk alone. `test_batching_equals_one_probe_at_a_time` checks it.
    """
    return SEPARATOR.join(c.format(chr(cp)) for cp in code_points for c in CONTEXTS)


def _pair(name: str):
    enc = tiktoken_encoding(name)
    return from_tiktoken(name), enc


def _points(ranges):
    return [cp for a, b in ranges for cp in range(a, b + 1)]


# ------------------------------------------------------------------ the tables: drift and agreement
def test_pinned_classes_equal_the_installed_tiktoken():
    found = classes_of_tiktoken()
    if found != TIKTOKEN_CLASSES:
        changed = {name: len(set(_points(getattr(found, name))) ^ set(_points(getattr(TIKTOKEN_CLASSES, name))))
                   for name in ("letter", "number", "space")}
        pytest.fail(f"{found.source} classes code points unlike the pinned tables of {TIKTOKEN_CLASSES.source} "
                    f"(code points changed per class: {changed}); regenerate them with `{REGENERATE}` and "
                    "commit jaxgpt/common/tokenizer/unicode_tables.py")
    assert len(_points(found.letter)) > 100_000 and (0x41, 0x5A) in found.letter  # the probe saw real classes


def test_what_the_split_relies_on_agrees_with_tiktoken():
    # trainer._safe_parts cuts at `re`'s \S\n\S: tiktoken's white space must be str.isspace's too
    assert all(chr(cp).isspace() for cp in _points(TIKTOKEN_CLASSES.space))
    # ASCII is classed alike everywhere (Splitter skips ASCII chunks without looking)
    here = classes_of_regex()
    assert all(here.signature(cp) == TIKTOKEN_CLASSES.signature(cp) for cp in range(128))


# Every test of a single character the two split patterns make (literals other than the
# case-insensitive ones are ASCII, the same in every engine).
CHARACTER_TESTS = [r"\p{L}", r"\p{N}", r"\s", r"\S", r"[^\s\p{L}\p{N}]", r"[^\r\n\p{L}\p{N}]",
                   r"(?i:[sdmtlver])"]


def test_split_classes_equal_tiktoken_on_every_code_point():
    # the pinned tables every RegexTokenizer uses, and (if different) the installed tiktoken's,
    # which the pretrained tokenizers use
    assert from_tiktoken("gpt2").unicode_classes == classes_of_tiktoken()
    ranks = {bytes([b]): b for b in range(256)}
    for classes in dict.fromkeys([TIKTOKEN_CLASSES, classes_of_tiktoken()]):
        for test in CHARACTER_TESTS:
            # tiktoken encodes only the matches of its pattern, so the decoded ids are the code points
            # that pass the test; runs ("+") instead of single characters: fewer, longer matches
            enc = tiktoken.Encoding("probe", pat_str=f"(?:{test})+", mergeable_ranks=ranks, special_tokens={})
            theirs = enc.decode_bytes(enc.encode_ordinary(EVERY_CODE_POINT)).decode("utf-8")
            ours = "".join(Splitter(f"(?:{test})+", classes).split(EVERY_CODE_POINT))
            if ours != theirs:
                diff = sorted(set(ours) ^ set(theirs))
                pytest.fail(f"{test}: {len(diff)} code points pass it in only one of ours and tiktoken "
                            f"({classes.source}), e.g. {[f'U+{ord(c):04X}' for c in diff[:8]]}")


# ------------------------------------------------------------------ the mechanism, on made-up tables
def _explicit(pattern: str, classes: UnicodeClasses) -> regex.Pattern:
    """The slow reference: `pattern` with \\p{L}, \\p{N}, \\s spelled out as the ranges of `classes`."""
    def ranges(rs):
        return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in rs)
    letter, number, space = ranges(classes.letter), ranges(classes.number), ranges(classes.space)
    out = pattern.replace(r"[^\s\p{L}\p{N}]", f"[^{space}{letter}{number}]")
    out = out.replace(r"[^\r\n\p{L}\p{N}]", f"[^\\r\\n{letter}{number}]")
    out = out.replace(r"(?!\S)", f"(?![^{space}])").replace(r"\p{L}", f"[{letter}]").replace(r"\p{N}", f"[{number}]")
    out = out.replace(r"\s", f"[{space}]")
    assert "\\p" not in out and "\\s" not in out and "\\S" not in out
    return regex.compile(out)


def _without(ranges, chars: str):
    """`ranges` less the code points of `chars`."""
    out = []
    for a, b in ranges:
        for cp in sorted(cp for cp in map(ord, chars) if a <= cp <= b):
            if a < cp:
                out.append((a, cp - 1))
            a = cp + 1
        if a <= b:
            out.append((a, b))
    return tuple(out)


# A made-up engine: é and ß are not letters, ٣ (Arabic-Indic three) is not a number, U+3000 is not
# white space, and U+0558 (a letter to the installed regex module) is none of them, as in tiktoken.
_HERE = classes_of_regex()
MADE_UP = UnicodeClasses(_without(_HERE.letter, "éß\u0558"), _without(_HERE.number, "٣"),
                         _without(_HERE.space, "\u3000"), "made up")
ALPHABET = "aZé ß٣1\u3000\u0558'sS!,\n\r\t."
# the last two patterns skip characters, so the fast split does not cover the text: checked too
CASES = {(pattern, classes.source): (Splitter(pattern, classes), _explicit(pattern, classes))
         for pattern in (GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, r"\p{L}+|\p{N}", r" ?\p{N}+|\s+")
         for classes in (MADE_UP, TIKTOKEN_CLASSES)}


@settings(max_examples=500, deadline=None)
@given(text=st.text(alphabet=ALPHABET, max_size=30))
def test_splitter_equals_explicit_classes(text):
    for key, (splitter, reference) in CASES.items():
        assert splitter.split(text) == reference.findall(text), key


# ------------------------------------------------------------------ every code point, against tiktoken
def test_gpt2_and_r50k_base_are_one_encoding():
    # so testing gpt2 tests r50k_base: same ranks, pattern and special tokens give the same ids
    a, b = tiktoken_encoding("gpt2"), tiktoken_encoding("r50k_base")
    assert a._mergeable_ranks == b._mergeable_ranks and a._pat_str == b._pat_str
    assert a._special_tokens == b._special_tokens
    ours_a, ours_b = from_tiktoken("gpt2"), from_tiktoken("r50k_base")
    assert ours_a.merges == ours_b.merges and ours_a.byte_ids == ours_b.byte_ids and ours_a.pattern == ours_b.pattern


@pytest.mark.parametrize("name", ["gpt2", "cl100k_base"])
def test_batching_equals_one_probe_at_a_time(name):
    ours, enc = _pair(name)
    sep = enc.encode_ordinary(SEPARATOR)
    assert len(sep) == 1 and ours.encode_ordinary(SEPARATOR) == sep
    rng = random.Random(0)
    cps = sorted({*rng.sample(range(sys.maxunicode + 1), 300), *range(0x30), 0x558, 0xD800, 0xDFFF, 0x85,
                  0x2028, 0x3000, 0x17F, 0x212A})
    probes = [c.format(chr(cp)) for cp in cps for c in CONTEXTS]
    for encode in (enc.encode_ordinary, ours.encode_ordinary):
        expected = [t for i, p in enumerate(probes) for t in ((sep if i else []) + encode(p))]
        assert encode(_probe_text(cps)) == expected


def _assert_in_context_equal(name: str, code_points: list[int], block: int = 1 << 14) -> None:
    ours, enc = _pair(name)
    for i in range(0, len(code_points), block):
        cps = code_points[i:i + block]
        text = _probe_text(cps)
        if ours.encode_ordinary(text) == enc.encode_ordinary(text):
            continue
        bad = [(f"U+{cp:04X}", p, ours.encode_ordinary(p), enc.encode_ordinary(p))
               for cp in cps for p in (c.format(chr(cp)) for c in CONTEXTS)
               if ours.encode_ordinary(p) != enc.encode_ordinary(p)]
        pytest.fail(f"{name}: {len(bad)} probes differ from tiktoken (code point, probe, ours, tiktoken): {bad[:5]}")


@pytest.mark.parametrize("name", ["gpt2", "cl100k_base"])
def test_code_points_in_context_equal_tiktoken(name):
    ours, _ = _pair(name)
    split = ours._splitter
    split.suspect("\u00e9")  # builds its table of the code points `regex` classes unlike tiktoken
    differ = sorted(map(ord, split._diff))
    sample = random.Random(0).sample(range(0x100, sys.maxunicode + 1), 8192)
    _assert_in_context_equal(name, sorted({*differ, *range(0x100), *sample, 0xD800, 0xDBFF, 0xDC00, 0xDFFF}))


@pytest.mark.skipif(not os.environ.get("JAXGPT_ALL_CODE_POINTS"),
                    reason="all 1,114,112 code points in context take ~70 CPU seconds per encoding: "
                           "set JAXGPT_ALL_CODE_POINTS=1 to run them")
@pytest.mark.parametrize("name", ["gpt2", "cl100k_base"])
def test_all_code_points_in_context_equal_tiktoken(name):
    _assert_in_context_equal(name, list(range(sys.maxunicode + 1)))


# ------------------------------------------------------------------ the fix inside the encoder and trainer
def test_chunk_cache_never_hides_a_wrong_split():
    # "a\u0558 b" caches the chunk "\u0558" (tiktoken: not a letter); in "\u0558's" the regex
    # module's fast split makes the same chunk "\u0558" (a letter to it) before "'s": a cache hit
    # must not skip the check that sends the text to the exact split ("\u0558'" + "s")
    ours, enc = _pair("gpt2")
    for text in ["a\u0558 b", "\u0558's", " \u0558", " \u0558!", "\u0558,Tk"]:
        assert ours.encode(text) == enc.encode(text), text


def test_trained_tokenizer_splits_like_its_tiktoken_export():
    # trained tokenizers use the pinned tables, so their tiktoken export encodes every text alike,
    # and the trainer counts the chunks tiktoken would cut
    from jaxgpt.common.tokenizer import PATTERNS, RegexTokenizer, count_chunks

    text = "l'\u0558's a\u0558 b \u0558,Tk \u0558\u0558 é\u0558é 1\U00011de01 " * 30  # U+11DE0: a digit only to regex
    for pattern in ("gpt2", "gpt4"):
        tok = RegexTokenizer(pattern)
        tok.train(text, 270)
        export = tok.to_tiktoken()
        for t in [text, *text.split(" ")]:
            assert tok.encode(t) == export.encode(t), (pattern, t)
        expected = Counter(c.encode() for c in _explicit(PATTERNS[pattern], TIKTOKEN_CLASSES).findall(text))
        assert count_chunks([text], PATTERNS[pattern]) == expected
