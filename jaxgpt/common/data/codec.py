"""Which tokenizer made a data folder, and getting it back: tiktoken encodings by name or our BPE `.model`.

Framework-free. A data folder (scripts/prepare_data.py) records its tokenizer in manifest.json as a
`TokenizerInfo`; our own BPE is copied into the folder as `tokenizer.model` (+ `.vocab`), with its
sha256 in the manifest, so the folder is self-contained and a swapped file is noticed.

Every document starts with the tokenizer's document separator ("end of text"): tiktoken's
`<|endoftext|>` (50256 for gpt2), or, for our `.model`, the special token `<|endoftext|>` when
it has one, else its only special token (e.g. the poetry tokenizers' `<|endofpoem|>`).
Shards are uint16, so vocabularies over 65,536 ids are refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

EOT_TOKEN = "<|endoftext|>"
UINT16_IDS = 1 << 16
TOKENIZER_FILE = "tokenizer.model"


@dataclass(frozen=True)
class TokenizerInfo:
    """The manifest's record of a data folder's tokenizer."""

    kind: str  # "tiktoken" (an encoding by name) or "bpe" (our .model, kept as DATA/tokenizer.model)
    name: str  # the tiktoken encoding ("gpt2"), or the file name the .model was given as
    vocab_size: int  # ids 0 .. vocab_size-1, special tokens included
    eot_id: int  # the document separator's id
    eot_token: str
    sha256: str = ""  # of tokenizer.model (bpe only)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> TokenizerInfo:
        try:
            return cls(**d)
        except TypeError as e:
            raise ValueError(f"{where}: malformed tokenizer record {d!r} ({e}); re-create the folder with "
                             "scripts/prepare_data.py") from None


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def tiktoken_encoding(name: str) -> Any:
    """tiktoken's encoding `name`, or a ValueError saying how to get it (offline, unknown name)."""
    import tiktoken

    try:
        return tiktoken.get_encoding(name)
    except ValueError as e:
        raise ValueError(f"unknown tokenizer {name!r} ({e}); use a tiktoken encoding (gpt2, r50k_base, ...) "
                         "or a .model file of ours") from None
    except Exception as e:  # noqa: BLE001 - tiktoken raises requests/OS errors of many kinds offline
        raise ValueError(f"cannot load the tiktoken encoding {name!r} ({type(e).__name__}: {e}); when offline, set "
                         "TIKTOKEN_CACHE_DIR to a folder holding its files (e.g. ../shared/data/tiktoken_cache)") from None


def separator_of(tok: Any, where: str) -> tuple[str, int]:
    """(token, id) of our tokenizer's document separator (see the module docstring)."""
    specials = dict(tok.special_tokens)
    if EOT_TOKEN in specials:
        return EOT_TOKEN, specials[EOT_TOKEN]
    if len(specials) == 1:
        return next(iter(specials.items()))
    raise ValueError(f"{where} has special tokens {sorted(specials) or 'none'}, so its document separator is unknown; "
                     f"register {EOT_TOKEN!r} when training it (scripts/train_tokenizer.py --special '{EOT_TOKEN}')")


def check_uint16(vocab_size: int, where: str) -> None:
    if vocab_size > UINT16_IDS:
        raise ValueError(f"{where} has {vocab_size:,} ids, more than the {UINT16_IDS:,} a uint16 shard holds; "
                         "use a tokenizer with at most 65,536 ids (gpt2, r50k_base, or our BPE)")


class Codec:
    """encode_ordinary / decode / eot_id / vocab_size over either kind of tokenizer."""

    def __init__(self, info: TokenizerInfo, impl: Any) -> None:
        self.info, self.impl = info, impl
        self.eot_id, self.vocab_size = info.eot_id, info.vocab_size

    def encode_ordinary(self, text: str) -> list[int]:
        """Text -> ids; special-token text is plain text (a literal "<|endoftext|>" is not a separator)."""
        return self.impl.encode_ordinary(text)

    def decode(self, ids: list[int]) -> str:
        return self.impl.decode(ids)


def open_tokenizer(spec: str) -> Codec:
    """A tiktoken encoding name ("gpt2") or a path to our `.model` -> its Codec (checked for uint16)."""
    if spec.endswith(".model") or Path(spec).is_file():
        from jaxgpt.common.tokenizer import load_tokenizer

        tok = load_tokenizer(spec)
        token, eot = separator_of(tok, spec)
        info = TokenizerInfo("bpe", Path(spec).name, tok.vocab_size, eot, token, file_sha256(spec))
    else:
        tok = tiktoken_encoding(spec)
        if EOT_TOKEN not in tok.special_tokens_set:
            raise ValueError(f"tiktoken encoding {spec!r} has no {EOT_TOKEN!r} to separate documents")
        info = TokenizerInfo("tiktoken", spec, tok.n_vocab, tok.encode_single_token(EOT_TOKEN), EOT_TOKEN)
    check_uint16(info.vocab_size, f"tokenizer {spec}")
    return Codec(info, tok)


def load_codec(info: TokenizerInfo, folder: str | Path) -> Codec:
    """The tokenizer a data folder (or run folder) recorded; our .model is read from FOLDER/tokenizer.model."""
    if info.kind == "tiktoken":
        return open_tokenizer(info.name)
    path = Path(folder) / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the folder's manifest names our BPE tokenizer, which lives there; "
                                "re-create the folder with scripts/prepare_data.py")
    if file_sha256(path) != info.sha256:
        raise ValueError(f"{path} is not the tokenizer the manifest records (sha256 differs): it was replaced or "
                         "damaged; re-create the folder with scripts/prepare_data.py")
    codec = open_tokenizer(str(path))
    return Codec(info, codec.impl)
