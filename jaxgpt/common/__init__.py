"""Framework-free code, written once and imported by both `jaxgpt` (JAX) and `torchref` (PyTorch).

Nothing under this package imports jax, flax, optax, orbax or torch (tests/test_imports.py checks
every module in a Python where those imports are refused), so `torchref` can use all of it:

    config.py      GPTConfig and the model presets (GPT-2 field names)
    weights.py     the one weight table: our parameter names <-> Hugging Face GPT-2, numpy interchange
    schedule.py    OptimConfig and the warm-up + cosine learning-rate schedule
    loop.py        the training loop that drives either framework's Trainer
    checkpoint.py  atomic checkpoint directories, keep-K, completeness checks
    metrics.py     FLOPs per token, MFU
    tokenizer/     byte-level BPE (minbpe-shaped, tiktoken-exact)
    data/          corpora, token shards, the shard loader, HellaSwag rendering
    makemore/      makemore's data, recipes and torch's CPU generator replayed in numpy

Everything outside `common/` in `jaxgpt` is JAX, and has a PyTorch twin at the same path in `torchref`.
"""
