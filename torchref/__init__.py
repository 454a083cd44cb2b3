"""torchref: the PyTorch mirror of jaxgpt, file-for-file and class-for-class.

It imports the framework-free parts of `jaxgpt` (config, tokenizer, data) but never jax.
"""

__version__ = "0.1.0"
