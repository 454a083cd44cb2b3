"""jaxgpt: makemore -> BPE tokenizer -> small GPT -> GPT-2 124M, in JAX / Flax NNX.

Kept light on purpose: importing the package imports neither jax nor torch, so the
framework-free parts (config, tokenizer, data, HellaSwag rendering) are shared with the
PyTorch mirror `torchref` without pulling JAX in. Import submodules explicitly, e.g.
`from jaxgpt.gpt import GPT`.
"""

__version__ = "0.1.0"
