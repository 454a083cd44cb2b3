"""Framework-free byte-level BPE tokenizers (minbpe-shaped, checked against tiktoken).

    from jaxgpt.common.tokenizer import RegexTokenizer, load_tokenizer, GPT2Tokenizer, GPT4Tokenizer

- `BasicTokenizer`: BPE on raw bytes (basic.py).
- `RegexTokenizer`: BPE inside GPT-2 / GPT-4 / custom regex chunks, special tokens (regex.py).
- `GPT2Tokenizer`, `GPT4Tokenizer`, `from_tiktoken`: tiktoken's ranks, same ids (pretrained.py).
- `train_bpe`, `count_chunks`: the fast incremental trainer (trainer.py).
- `Tokenizer.save(prefix)`, `Tokenizer.to_tiktoken()` (base.py); `load_tokenizer(path.model)` (loader.py).

Imports neither jax nor torch.
"""

from .base import Tokenizer, get_stats, merge
from .basic import BasicTokenizer
from .loader import load_tokenizer
from .pretrained import GPT2Tokenizer, GPT4Tokenizer, from_tiktoken
from .regex import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, PATTERNS, RegexTokenizer
from .trainer import count_chunks, train_bpe

__all__ = [
    "GPT2_SPLIT_PATTERN",
    "GPT4_SPLIT_PATTERN",
    "PATTERNS",
    "BasicTokenizer",
    "GPT2Tokenizer",
    "GPT4Tokenizer",
    "RegexTokenizer",
    "Tokenizer",
    "count_chunks",
    "from_tiktoken",
    "get_stats",
    "load_tokenizer",
    "merge",
    "train_bpe",
]
