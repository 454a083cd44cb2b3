"""Framework-free byte-level BPE tokenizers (minbpe-shaped, checked against tiktoken).

    from jaxgpt.common.tokenizer import RegexTokenizer, load_tokenizer, GPT2Tokenizer, GPT4Tokenizer

- `BasicTokenizer`: BPE on raw bytes (basic.py).
- `RegexTokenizer`: BPE inside GPT-2 / GPT-4 / custom regex chunks, special tokens (regex.py).
- `GPT2Tokenizer`, `GPT4Tokenizer`, `from_tiktoken`: tiktoken's ranks, same ids (pretrained.py).
- `train_bpe`, `count_chunks`: the fast incremental trainer (trainer.py).
- the split patterns and `TIKTOKEN_CLASSES` (letters, numbers, white space as tiktoken classes
  every code point), so splits equal tiktoken's whatever `regex` module is installed (split.py).
- `Tokenizer.save(prefix)`, `Tokenizer.to_tiktoken()` (base.py); `load_tokenizer(path.model)` (loader.py).

Imports neither jax nor torch.
"""

from .base import Tokenizer, get_stats, merge
from .basic import BasicTokenizer
from .loader import load_tokenizer
from .pretrained import GPT2Tokenizer, GPT4Tokenizer, from_tiktoken
from .regex import RegexTokenizer
from .split import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, PATTERNS, TIKTOKEN_CLASSES, UnicodeClasses
from .trainer import count_chunks, train_bpe

__all__ = [
    "GPT2_SPLIT_PATTERN",
    "GPT4_SPLIT_PATTERN",
    "PATTERNS",
    "TIKTOKEN_CLASSES",
    "BasicTokenizer",
    "GPT2Tokenizer",
    "GPT4Tokenizer",
    "RegexTokenizer",
    "Tokenizer",
    "UnicodeClasses",
    "count_chunks",
    "from_tiktoken",
    "get_stats",
    "load_tokenizer",
    "merge",
    "train_bpe",
]
