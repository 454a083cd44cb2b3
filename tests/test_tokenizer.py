"""BPE tokenizer behaviour: helpers, Basic/Regex round trips, special tokens, save/load, bad input."""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxgpt.common.tokenizer
from conftest import data_file
from jaxgpt.common.tokenizer import (
    GPT4_SPLIT_PATTERN,
    BasicTokenizer,
    RegexTokenizer,
    Tokenizer,
    get_stats,
    load_tokenizer,
    merge,
)

HARD_STRINGS = [
    "",
    "?",
    "hello world!!!? (안녕하세요!) lol123 😉",
    "   leading and trailing   \n\n\t  ",
    "I've got 1234567 apples, they're 3.14 each; don't you'll we'd",
    "Ça va? Très bien — «merci» ! Ἀθῆναι Москва 東京 مرحبا 🇫🇷👨‍👩‍👧",
    "\r\n\r\n line\r\nbreaks\u00a0nbsp\u2028sep",
]
TRAIN_TEXT = ("Le vent se lève, il faut tenter de vivre. L'air immense ouvre et referme mon livre.\n"
              "Demain, dès l'aube, à l'heure où blanchit la campagne, je partirai.\n") * 20


def test_helper_docstring_examples():
    assert get_stats([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert get_stats([5, 5, 5]) == {(5, 5): 2}
    assert merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge([5, 5, 5], (5, 5), 9) == [9, 5]


@pytest.mark.parametrize("cls", [BasicTokenizer, RegexTokenizer])
def test_wikipedia_example(cls):
    # https://en.wikipedia.org/wiki/Byte_pair_encoding: aa -> Z, ab -> Y, ZY -> X
    tok = cls()
    tok.train("aaabdaaabac", 256 + 3)
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"


@pytest.mark.parametrize("make", [BasicTokenizer, lambda: RegexTokenizer("gpt2"), lambda: RegexTokenizer("gpt4"),
                                  lambda: RegexTokenizer("none")])
@pytest.mark.parametrize("text", HARD_STRINGS)
def test_round_trip_hard_strings(make, text):
    tok = make()
    tok.train(TRAIN_TEXT, 300)
    assert tok.decode(tok.encode(text)) == text


def test_save_load_round_trip(tmp_path):
    tok = RegexTokenizer("gpt2")
    tok.register_special_tokens(["<|endofpoem|>", "<sp ace>"])
    tok.train(TRAIN_TEXT, 320)
    assert tok.special_tokens == {"<|endofpoem|>": 318, "<sp ace>": 319}  # renumbered after the merges
    model, vocab = tok.save(tmp_path / "sub" / "poems")
    assert model.name == "poems.model" and vocab.read_text(encoding="utf-8").count("\n") == 320
    back = load_tokenizer(model)
    assert isinstance(back, RegexTokenizer)
    assert back.pattern == tok.pattern and back._splitter.pattern == tok.pattern  # minbpe forgot this
    assert back.merges == tok.merges and back.vocab == tok.vocab and back.special_tokens == tok.special_tokens
    text = TRAIN_TEXT[:200] + "<|endofpoem|>" + HARD_STRINGS[2]
    assert back.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    assert tok.encode(text, allowed_special="all").count(318) == 1

    basic = BasicTokenizer()
    basic.train(TRAIN_TEXT, 280)
    basic_back = load_tokenizer(basic.save(tmp_path / "basic")[0])
    assert isinstance(basic_back, BasicTokenizer) and basic_back.merges == basic.merges


def test_special_token_semantics():
    tok = RegexTokenizer("gpt4")
    tok.train(TRAIN_TEXT, 300)
    tok.register_special_tokens({"<|eot|>": 300, "<|x|>": 301})
    text = "vivre<|eot|>mon <|x|>"
    with pytest.raises(ValueError, match="allowed_special"):
        tok.encode(text)  # default: a special token in the text raises, like tiktoken
    ids_all = tok.encode(text, allowed_special="all")
    assert 300 in ids_all and 301 in ids_all
    ids_one = tok.encode(text, allowed_special={"<|eot|>"}, disallowed_special=())
    assert 300 in ids_one and 301 not in ids_one
    with pytest.raises(ValueError, match="<\\|x\\|>"):
        tok.encode(text, allowed_special={"<|eot|>"})  # <|x|> still disallowed
    assert tok.encode(text, allowed_special="none") == tok.encode_ordinary(text)
    assert tok.decode(ids_all) == tok.decode(ids_one) == text
    with pytest.raises(ValueError, match="unregistered"):
        tok.encode(text, allowed_special={"<|nope|>"})


def test_encode_batch_matches_encode():
    tok = RegexTokenizer("gpt4")
    tok.train(TRAIN_TEXT, 300)
    texts = [TRAIN_TEXT[i:i + 97] for i in range(0, 2000, 97)] + HARD_STRINGS
    expected = [tok.encode(t) for t in texts]
    assert tok.encode_batch(texts) == expected
    assert tok.encode_batch(texts, num_workers=2) == expected


def test_invalid_utf8_decodes_with_replacement():
    tok = RegexTokenizer("gpt4")
    tok.train(TRAIN_TEXT, 300)
    ids = tok.encode("é")  # two bytes, b"\xc3\xa9"
    assert tok.decode_bytes(ids) == "é".encode()
    assert tok.decode([0xC3]) == "\ufffd"  # half a character: replacement char, no exception
    assert tok.decode([0xC3, ord("a")]) == "\ufffda"


def _tokenizer_import_graph() -> dict[str, set[str]]:
    """{module: package modules it imports} for jaxgpt/common/tokenizer, counting every import
    statement anywhere in the file (a cycle hidden in a function body is still a cycle)."""
    pkg = Path(jaxgpt.common.tokenizer.__file__).parent
    names = {f.stem for f in pkg.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for f in pkg.glob("*.py"):
        deps = graph.setdefault(f.stem, set())
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level > 1 or (node.level == 0 and not (node.module or "").startswith(PKG)):
                    continue  # outside the package
                sub = node.module if node.level else node.module[len(PKG):].lstrip(".")
                if sub:
                    deps.add(sub.split(".")[0])
                else:  # "from . import x" / "from jaxgpt.common.tokenizer import x": x may be a module
                    deps |= {a.name if a.name in names else "__init__" for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name[len(PKG):].lstrip(".").split(".")[0] or "__init__"
                         for a in node.names if a.name.startswith(PKG)}
    return graph


PKG = "jaxgpt.common.tokenizer"


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        state[m] = 2
        path.pop()
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_tokenizer_package_has_no_import_cycle():
    # issue 11: base.py imported basic/regex (inside load_tokenizer), which import base
    graph = _tokenizer_import_graph()
    assert {"base", "basic", "regex", "pretrained"} <= set(graph)
    assert "base" in graph["basic"] and "regex" in graph["pretrained"]  # the graph sees real imports
    cycle = _find_cycle(graph)
    assert cycle is None, f"import cycle in {PKG}: {' -> '.join(cycle)}"
    assert not graph["base"] & {"basic", "regex", "pretrained", "loader"}, "base.py must know no subclass"
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the checker works


def test_package_imports_no_framework():
    code = "import sys, jaxgpt.common.tokenizer; assert 'jax' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ bad input
def test_bad_vocab_sizes_and_texts():
    with pytest.raises(ValueError, match=">= 256"):
        BasicTokenizer().train(TRAIN_TEXT, 255)
    tok = RegexTokenizer()
    tok.register_special_tokens(["<|a|>", "<|b|>"])
    with pytest.raises(ValueError, match="258"):
        tok.train(TRAIN_TEXT, 257)
    for bad in ["", "   \n\t ", ["", "  "], []]:
        with pytest.raises(ValueError, match="empty or only whitespace"):
            RegexTokenizer().train(bad, 300)
    with pytest.raises(ValueError, match="empty or only whitespace"):
        BasicTokenizer().train("", 300)
    with pytest.raises(ValueError, match="invalid split pattern"):
        RegexTokenizer("(unclosed")


def test_small_corpus_warns_with_merge_count():
    tok = RegexTokenizer("gpt4")
    with pytest.warns(UserWarning, match="learned 3 of 44 merges"):
        tok.train("abc abc", 300)  # chunks "abc", " abc": merges ab, (ab)c, " "(abc), then no pair is left
    assert tok.encode("abc abc") == [257, 258]
    assert tok.decode(tok.encode("abc abc")) == "abc abc"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RegexTokenizer().train(TRAIN_TEXT, 260)  # enough pairs: no warning


def test_colliding_special_tokens():
    tok = RegexTokenizer()
    tok.train(TRAIN_TEXT, 300)
    with pytest.raises(ValueError, match="collides with the learned token"):
        tok.register_special_tokens({"<|eot|>": 299})
    with pytest.raises(ValueError, match="distinct"):
        tok.register_special_tokens({"<|a|>": 300, "<|b|>": 300})
    with pytest.raises(ValueError, match="non-empty"):
        tok.register_special_tokens({"": 300})
    with pytest.raises(TypeError, match="bare string"):
        tok.register_special_tokens("<|eot|>")
    tok.register_special_tokens(["<|a|>", "<|b|>", "<|a|>"])
    assert tok.special_tokens == {"<|a|>": 300, "<|b|>": 301}
    with pytest.raises(ValueError, match="already registered"):
        tok.register_special_tokens({"<|a|>": 400})
    with pytest.raises(ValueError, match="no special tokens"):
        BasicTokenizer().register_special_tokens(["<|a|>"])


def test_unknown_id_in_decode():
    tok = RegexTokenizer()
    tok.train(TRAIN_TEXT, 300)
    tok.register_special_tokens(["<|eot|>"])
    assert tok.decode([300]) == "<|eot|>"
    for bad in [301, -1, 10**9]:
        with pytest.raises(ValueError, match=f"invalid token id {bad}"):
            tok.decode([72, bad])


def test_bad_model_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_tokenizer(tmp_path / "missing.model")
    (tmp_path / "x.vocab").write_text("[a] 97\n")
    with pytest.raises(ValueError, match="expected a .model file"):
        load_tokenizer(tmp_path / "x.vocab")
    cases = {
        "v2.model": "minbpe v2\n\n0\n",
        "json.model": '{"model": {"type": "BPE"}}\n',
        "empty.model": "",
        "count.model": "minbpe v1\n\nthree\n",
        "merge.model": "minbpe v1\n\n0\n97 98\n300 1\n",
        "junk.model": "minbpe v1\n\n0\n97\n",
    }
    for name, content in cases.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
        with pytest.raises(ValueError, match=name):
            load_tokenizer(tmp_path / name)


def test_save_errors(tmp_path):
    tok = RegexTokenizer("a\nb")
    with pytest.raises(ValueError, match="literal newline"):
        tok.save(tmp_path / "nl")


def test_poems_slice_round_trip():
    text = data_file("french_poetry/poems.txt").read_text(encoding="utf-8")[:200_000]
    tok = RegexTokenizer("gpt4")
    tok.train(text[:150_000], 1024)
    held_out = text[150_000:]
    ids = tok.encode(held_out)
    assert tok.decode(ids) == held_out
    assert len(held_out.encode()) / len(ids) > 2.3  # merges compress French verse (~2.0 bytes/token at vocab 512, ~2.5 at 1024)


def test_base_class_is_abstract():
    with pytest.raises(NotImplementedError):
        Tokenizer().train("abc", 300)
    assert GPT4_SPLIT_PATTERN  # exported


def test_heap_encoder_equals_minbpe_loop():
    tok = BasicTokenizer()
    tok.train(TRAIN_TEXT * 2 + "aaaaaaaaaa bbbbbb", 380)
    for text in [*HARD_STRINGS, TRAIN_TEXT, "a" * 101, "aaab" * 40, TRAIN_TEXT[::-1]]:
        assert tok.encode(text) == tok.encode_slow(text)


# ------------------------------------------------------------------ round trips (hypothesis)
_TRAINED: dict = {}


def _trained(kind: str):
    """One small tokenizer per kind, trained once (hypothesis calls the test many times)."""
    if kind not in _TRAINED:
        tok = BasicTokenizer() if kind == "basic" else RegexTokenizer(kind)
        tok.train(TRAIN_TEXT + HARD_STRINGS[5] * 3, 330)
        _TRAINED[kind] = tok
    return _TRAINED[kind]


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80)
       | st.lists(st.sampled_from(["le", " vent", "  ", "\n", "é", "'s", "12345", "😉", "\r\n"]),
                  max_size=20).map("".join),
       kind=st.sampled_from(["basic", "gpt2", "gpt4", "none"]))
def test_round_trip_hypothesis(text, kind):
    tok = _trained(kind)
    assert tok.decode(tok.encode(text)) == text


def test_lone_surrogates_become_replacement_char():
    # UTF-8 cannot hold a lone surrogate: encode it as U+FFFD (tiktoken's choice), never crash
    for tok in [_trained("basic"), _trained("gpt4")]:
        assert tok.decode(tok.encode("a\ud800b")) == "a\ufffdb"
    tok = RegexTokenizer("gpt4")
    tok.train("vivre \udc80 vivre " * 5, 262)  # training text too
    assert tok.decode(tok.encode("vivre")) == "vivre"


def test_encode_rejects_bytes_clearly():
    for tok in [_trained("basic"), _trained("gpt4")]:
        with pytest.raises(TypeError, match="decode bytes first"):
            tok.encode(b"abc")
    with pytest.raises(ValueError, match="must be an int >= 256"):
        RegexTokenizer().train(TRAIN_TEXT, 300.0)


def test_basic_refuses_regex_model(tmp_path):
    tok = _trained("gpt4")
    model, _ = tok.save(tmp_path / "r")
    basic = BasicTokenizer()
    with pytest.raises(ValueError, match="load_tokenizer"):
        basic.load(model)
    assert basic.merges == {} and basic.pattern == ""  # unchanged by the failed load


def test_special_token_with_line_break_cannot_be_saved(tmp_path):
    tok = RegexTokenizer()
    tok.register_special_tokens(["<|a\nb|>"])
    with pytest.raises(ValueError, match="line break"):
        tok.save(tmp_path / "x")
    assert not (tmp_path / "x.model").exists()


def test_model_file_with_windows_line_ends_loads(tmp_path):
    tok = RegexTokenizer("gpt2")
    tok.register_special_tokens(["<|endofpoem|>"])
    tok.train(TRAIN_TEXT, 300)
    model, _ = tok.save(tmp_path / "w")
    crlf = tmp_path / "crlf.model"
    crlf.write_bytes(model.read_bytes().replace(b"\n", b"\r\n"))
    back = load_tokenizer(crlf)
    assert back.pattern == tok.pattern and back.merges == tok.merges
    assert back.special_tokens == tok.special_tokens
    (tmp_path / "bin.model").write_bytes(b"\xff\xfe\x00minbpe")
    with pytest.raises(ValueError, match="not a text file"):
        load_tokenizer(tmp_path / "bin.model")


# ------------------------------------------------------------------ damaged .model files (issue 16)
def _saved_with_special(tmp_path) -> tuple[RegexTokenizer, Path, list[str]]:
    tok = RegexTokenizer("gpt4")
    tok.register_special_tokens(["<|endofpoem|>"])
    tok.train(TRAIN_TEXT, 330)
    model, _ = tok.save(tmp_path / "tok")
    return tok, model, model.read_text(encoding="utf-8").split("\n")


def _one_line_error(exc: pytest.ExceptionInfo, *needles: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg and all(n in msg for n in needles), msg


def test_repeated_merge_line_is_a_clear_error(tmp_path):
    _, _, lines = _saved_with_special(tmp_path)
    first = 4 + 1 + 10  # 1-based line of the 11th merge (after header, pattern, count, one special)
    lines.insert(first + 5, lines[first - 1])  # the same pair again 6 lines later
    bad = tmp_path / "dup.model"
    bad.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ValueError) as e:  # was a KeyError from deep inside the vocabulary build
        load_tokenizer(bad)
    _one_line_error(e, "dup.model", f"line {first + 6}", f"repeats line {first}", "re-train")


def test_truncated_model_file_is_refused(tmp_path):
    tok, model, lines = _saved_with_special(tmp_path)
    n_merges = len(tok.merges)
    assert tok.vocab_size == 330 and lines[-1] == ""  # every line, the last too, ends with a line break
    half = tmp_path / "half.model"  # cut at a line boundary: half of the merge lines are gone
    half.write_text("\n".join(lines[:4 + n_merges // 2]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError) as e:  # loaded before, still claiming vocab size 330
        load_tokenizer(half)
    _one_line_error(e, "half.model", "truncated", f"special tokens start at id {256 + n_merges}")
    cut = tmp_path / "cut.model"  # cut inside a line ("123 4" would parse as a wrong merge)
    data = model.read_bytes()
    cut.write_bytes(data[:data.rindex(b" ") + 2])
    with pytest.raises(ValueError) as e:
        load_tokenizer(cut)
    _one_line_error(e, "cut.model", "no line break", "truncated")
    assert load_tokenizer(model).vocab_size == 330  # the intact file still loads


def test_special_id_colliding_with_a_merge_in_the_file(tmp_path):
    _, _, lines = _saved_with_special(tmp_path)
    lines[3] = "<|endofpoem|> 300"  # hand-edited: 300 is a merge's id
    bad = tmp_path / "edited.model"
    bad.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ValueError) as e:
        load_tokenizer(bad)
    _one_line_error(e, "edited.model", "id 300 is also a merge's id")


def test_save_refuses_special_ids_after_a_gap(tmp_path):
    tok = RegexTokenizer("gpt4")
    tok.train(TRAIN_TEXT, 300)
    tok.register_special_tokens({"<|eot|>": 400})  # legal in memory; the file could not tell it from a cut
    with pytest.raises(ValueError, match="register the special tokens as a list"):
        tok.save(tmp_path / "gap")
    assert not list(tmp_path.iterdir())  # nothing written


def test_save_is_atomic(tmp_path, monkeypatch):
    tok, model, _ = _saved_with_special(tmp_path)
    before = model.read_bytes()
    tok.merges[(97, 97)] = max(tok.merges.values()) + 1  # a different tokenizer to save over the old one
    tok.vocab = tok._build_vocab()
    tok.special_tokens = {"<|endofpoem|>": len(tok.vocab)}

    def fail(*args):  # the disk fills up, or the process is killed, mid-write
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", fail)
    with pytest.raises(OSError):
        tok.save(tmp_path / "tok")
    assert model.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok.model", "tok.vocab"]  # no temporary left
