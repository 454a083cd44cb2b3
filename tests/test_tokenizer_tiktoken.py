"""Exactness against tiktoken: our encoder with tiktoken's ranks gives tiktoken's ids, and a
tokenizer we train, exported with `to_tiktoken`, encodes identically in tiktoken.

Offline: the root conftest points TIKTOKEN_CACHE_DIR at shared/data/tiktoken_cache.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import data_file, require_module, tiktoken_encoding
from jaxgpt.common.tokenizer import (
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    BasicTokenizer,
    GPT2Tokenizer,
    GPT4Tokenizer,
    RegexTokenizer,
    from_tiktoken,
)

tiktoken = require_module("tiktoken")
for _name in ("gpt2", "r50k_base", "cl100k_base"):  # the rank files: a skip where absent, a failure in CI
    tiktoken_encoding(_name)

HARD_STRINGS = [
    "",
    "?",
    " ",
    "\n",
    "     ",
    "  \n\n \t \r\n   x  ",
    "hello world!!!? (안녕하세요!) lol123 😉",
    "1 12 123 1234 12345 123456 3.14159 1,000,000",
    "I've it's we'll they'd you're I'm DON'T He'S 'tis",
    "Ça va? Très bien — «merci» ! Ἀθῆναι Москва 東京 مرحبا 🇫🇷👨‍👩‍👧 ẞ ǅ",
    "def f(x):\n    return x**2  # comment\n\n\n",
    "<|endoftext|> is special, <|fim_prefix|> too",
    "a" * 300 + " " * 300 + "!" * 50,
]

# Unicode text without lone surrogates (which tiktoken and we both replace by U+FFFD).
unicode_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)
mixed_text = st.lists(st.sampled_from(["a", "é", " ", "  ", "\n", "'s", "'LL", "12", "3456", "안", "😉", "!",
                                       "\r\n", "\t", "ab", "Zz"]), max_size=30).map("".join)


@pytest.fixture(scope="module", params=["gpt2", "r50k_base", "cl100k_base"])
def pair(request):
    enc = tiktoken.get_encoding(request.param)
    return from_tiktoken(request.param), enc


def _poems_slice() -> str:
    return data_file("french_poetry/poems.txt").read_text(encoding="utf-8")[:300_000]


def test_hard_strings_exact(pair):
    ours, enc = pair
    for text in [*HARD_STRINGS, _poems_slice()]:
        for kwargs in [{}, {"allowed_special": "all"}, {"disallowed_special": ()}]:
            if "allowed_special" not in kwargs and "disallowed_special" not in kwargs and "<|" in text:
                with pytest.raises(ValueError):
                    enc.encode(text)
                with pytest.raises(ValueError):
                    ours.encode(text)
                continue
            ids = ours.encode(text, **kwargs)
            assert ids == enc.encode(text, **kwargs), f"mismatch on {text[:60]!r} {kwargs}"
            assert ours.decode(ids) == text
        assert ours.encode_ordinary(text) == enc.encode_ordinary(text)


def test_vocab_and_specials_match(pair):
    ours, enc = pair
    assert ours.vocab_size == enc.n_vocab
    assert len(ours.vocab) == len(enc._mergeable_ranks) and max(ours.vocab) == len(ours.vocab) - 1
    for idx in [0, 1, 33, 255, 256, 1000, 40000, max(ours.vocab)]:
        assert ours.decode_bytes([idx]) == enc.decode_single_token_bytes(idx)
    for s in enc.special_tokens_set:
        assert ours.special_tokens[s] == enc.encode_single_token(s)


def test_lone_surrogate_replaced_like_tiktoken(pair):
    ours, enc = pair
    text = "a\ud800b"
    assert ours.encode(text) == enc.encode(text)


def test_wrapper_classes():
    assert GPT2Tokenizer().encode("hello world") == [31373, 995]
    assert GPT4Tokenizer().encode("hello world") == [15339, 1917]
    with pytest.raises(ValueError, match="cannot store"):
        GPT2Tokenizer().save("/nonexistent/x")
    with pytest.raises(ValueError, match="cannot load tiktoken encoding"):
        from_tiktoken("no_such_encoding")


@pytest.mark.parametrize("name", ["gpt2", "cl100k_base"])
@settings(max_examples=200, deadline=None)
@given(text=st.one_of(unicode_text, mixed_text))
def test_hypothesis_exact(name, text):
    ours, enc = _cached(name)
    ids = ours.encode_ordinary(text)
    assert ids == enc.encode_ordinary(text)
    assert ours.decode(ids) == text


_CACHE: dict = {}


def _cached(name: str):
    if name not in _CACHE:
        _CACHE[name] = (from_tiktoken(name), tiktoken.get_encoding(name))
    return _CACHE[name]


@pytest.fixture(scope="module")
def trained():
    """A GPT-4-pattern tokenizer trained on poems, with a special token, and its tiktoken export."""
    text = _poems_slice()
    tok = RegexTokenizer("gpt4")
    tok.register_special_tokens(["<|endofpoem|>"])
    tok.train(text[:200_000], 1024)
    return tok, tok.to_tiktoken("poems")


def test_trained_export_encodes_identically(trained):
    tok, enc = trained
    assert enc.n_vocab == tok.vocab_size == 1024
    assert tok.special_tokens == {"<|endofpoem|>": 1023}
    held_out = _poems_slice()[200_000:]
    for text in [*HARD_STRINGS, held_out, held_out[:500] + "<|endofpoem|>" + held_out[500:1000]]:
        kwargs = {"allowed_special": "all"}
        assert tok.encode(text, **kwargs) == enc.encode(text, **kwargs), f"mismatch on {text[:60]!r}"
        assert enc.decode(tok.encode(text, **kwargs)) == text


def test_merges_recovered_from_exported_ranks(trained):
    # the tiktoken direction back: recovering merges from ranks gives our trained merges again
    tok, enc = trained
    back = from_tiktoken(enc)
    assert back.merges == tok.merges and back.byte_ids == list(range(256))
    assert back.special_tokens == tok.special_tokens


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(unicode_text, mixed_text))
def test_hypothesis_trained_export(trained, text):
    tok, enc = trained
    ids = tok.encode_ordinary(text)
    assert ids == enc.encode_ordinary(text)
    assert tok.decode(ids) == text


def test_split_patterns_are_tiktokens():
    # a tokenizer trained with our constants must split exactly as its tiktoken export
    assert GPT2_SPLIT_PATTERN == tiktoken.get_encoding("gpt2")._pat_str
    assert GPT4_SPLIT_PATTERN == tiktoken.get_encoding("cl100k_base")._pat_str


@pytest.mark.parametrize("make", [BasicTokenizer, lambda: RegexTokenizer("none")])
def test_no_split_export(make):
    # tiktoken has no "no split" pattern (an empty one panics): the export uses one whole-text chunk
    tok = make()
    text = _poems_slice()[:20_000]
    tok.train(text, 400)
    enc = tok.to_tiktoken()
    for t in [*HARD_STRINGS, text[:3000]]:
        assert enc.encode_ordinary(t) == tok.encode(t), f"mismatch on {t[:60]!r}"
