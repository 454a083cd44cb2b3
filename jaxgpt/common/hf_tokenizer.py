"""Tokenizer files for an exported Hugging Face directory, so `AutoTokenizer.from_pretrained(dir)` works offline.

Framework-free and without `transformers` or `tokenizers` (the files are plain JSON/text). Both of our
tokenizer kinds are byte-level BPE with a regex split, which is exactly what Hugging Face's
`tokenizers` library runs as

    pre_tokenizer  Split(our pattern, isolated) then ByteLevel(no prefix space, no regex of its own)
    model          BPE(vocab, merges), merges applied lowest rank first (our merge id order)
    decoder        ByteLevel

so one converter serves both: GPT-2's tokenizer (rebuilt from tiktoken's rank files with its merges
recovered, jaxgpt/common/tokenizer/pretrained.py) and our trained BPE (`.model`). Tokens are
spelled in GPT-2's byte -> printable-character alphabet (`bytes_to_unicode`), as every byte-level
BPE file is. Files written:

    tokenizer.json          the fast tokenizer (both kinds)
    vocab.json, merges.txt  GPT-2's classic files (GPT-2 vocabulary only: what GPT2Tokenizer reads)
    tokenizer_config.json   class, separator (bos/eos), model_max_length = block_size
    special_tokens_map.json
and config.json's bos/eos_token_id become the separator's id, so generation stops where ours does.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jaxgpt.common.weights import _atomic_write


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (printable Latin-1 bytes map to themselves)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def spell(token: bytes) -> str:
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def as_regex_tokenizer(codec: Any) -> Any:
    """Our RegexTokenizer for a codec: its own (our BPE), or the tiktoken encoding's ranks rebuilt as one (by name:
    the merges are recovered once per process)."""
    if codec.info.kind == "bpe":
        return codec.impl
    from jaxgpt.common.tokenizer.pretrained import from_tiktoken

    return from_tiktoken(codec.info.name)


def vocab_and_merges(tok: Any) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """({spelled token: id} for every learned token, [(left, right)] merges in rank = id order)."""
    vocab = {spell(b): i for i, b in sorted(tok.vocab.items())}
    merges = [(spell(tok.vocab[a]), spell(tok.vocab[b])) for (a, b), _ in sorted(tok.merges.items(), key=lambda kv: kv[1])]
    return vocab, merges


def tokenizer_json(tok: Any) -> dict:
    """The `tokenizers` library's tokenizer.json for our RegexTokenizer `tok`."""
    vocab, merges = vocab_and_merges(tok)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    pre = byte_level if not tok.pattern else {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": tok.pattern}, "behavior": "Isolated", "invert": False}, byte_level]}
    specials = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
                 "special": True} for s, i in sorted(tok.special_tokens.items(), key=lambda kv: kv[1])]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": specials, "normalizer": None,
        "pre_tokenizer": pre, "post_processor": None, "decoder": {**byte_level, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [list(m) for m in merges]},
    }


def save_tokenizer(hf_dir: str | Path, codec: Any, block_size: int) -> list[str]:
    """Write the tokenizer files of `codec` (jaxgpt/common/data/codec.py) into an exported HF directory; their names."""
    hf_dir = Path(hf_dir)
    config_file = hf_dir / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: export the model (save_hf) before its tokenizer")
    config = json.loads(config_file.read_text())
    if config.get("vocab_size") != codec.vocab_size:
        raise ValueError(f"the tokenizer {codec.info.name!r} has {codec.vocab_size} ids but the model in {hf_dir} has "
                         f"vocab_size={config.get('vocab_size')}; export the tokenizer the model was trained with")
    tok = as_regex_tokenizer(codec)
    eot, gpt2 = codec.info.eot_token, codec.info.kind == "tiktoken"
    files = {"tokenizer.json": json.dumps(tokenizer_json(tok), ensure_ascii=False, indent=1)}
    if gpt2:  # the classic pair GPT2Tokenizer (the slow class) reads
        vocab, merges = vocab_and_merges(tok)
        vocab |= dict(tok.special_tokens)
        files["vocab.json"] = json.dumps(vocab, ensure_ascii=False)
        files["merges.txt"] = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    special = {"bos_token": eot, "eos_token": eot, "unk_token": eot}
    files["special_tokens_map.json"] = json.dumps(special, indent=1)
    files["tokenizer_config.json"] = json.dumps({
        "tokenizer_class": "GPT2Tokenizer" if gpt2 else "PreTrainedTokenizerFast", **special,
        "model_max_length": block_size, "add_prefix_space": False, "clean_up_tokenization_spaces": False}, indent=1)
    config |= {"bos_token_id": codec.eot_id, "eos_token_id": codec.eot_id}
    files["config.json"] = json.dumps(config, indent=2)
    for name, text in files.items():
        _atomic_write(hf_dir / name, lambda p, text=text: p.write_text(text, encoding="utf-8"))
    return sorted(files)
