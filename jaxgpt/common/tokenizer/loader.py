"""`load_tokenizer`: a saved `.model` file back as the right tokenizer class.

The factory lives here, not in base.py, so that the base class knows no subclass and the
package's import graph has no cycle (base <- basic, regex <- loader); tests/test_tokenizer.py
checks the graph.
"""

from __future__ import annotations

from pathlib import Path

from .base import Tokenizer, read_model_file
from .basic import BasicTokenizer
from .regex import RegexTokenizer


def load_tokenizer(model_file: str | Path) -> Tokenizer:
    """Load a .model file as a RegexTokenizer (or a BasicTokenizer when it has no pattern and
    no special tokens). This is the one-call way to get a saved tokenizer back."""
    pattern, special, merges = read_model_file(model_file)
    tok: Tokenizer = BasicTokenizer() if not pattern and not special else RegexTokenizer(pattern)
    tok.load_model(model_file, pattern, special, merges)
    return tok
