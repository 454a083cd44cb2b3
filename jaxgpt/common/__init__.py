"""Framework-free code, written once and imported by both `jaxgpt` (JAX) and `torchref` (PyTorch).

Nothing under this package imports jax, flax, optax, orbax or torch (tests/test_imports.py checks
every module in a Python where those imports are refused), so `torchref` can use all of it:

    config.py      GPTConfig and the model shapes (GPT-2 field names), the --key=value router
    recipes.py     TrainConfig and the preset registry (model + train + optimiser defaults)
    schedule.py    OptimConfig and the warm-up + cosine learning-rate schedule
    weights.py     the one weight table: our parameter names <-> Hugging Face GPT-2, numpy interchange
    frameworks.py  the one place that names both frameworks (imports either side lazily)
    training.py    one GPT training run, any preset, either framework (scripts/train.py)
    loop.py        the training loop that drives either framework's Trainer
    resume.py      what a resume may not change; restoring either framework's checkpoint
    checkpoint.py  checkpoints by name: atomic directories, keep-K, completeness, the state layout
    runlog.py      run conventions: signal stop, exit codes, CSV log, PNG curves
    sampling.py, sources.py, evaluate.py, compare.py   sampling, model sources, HellaSwag, side by side
    metrics.py     FLOPs per token, MFU
    tokenizer/     byte-level BPE (minbpe-shaped, tiktoken-exact)
    data/          the document reader, shard preparation, the shard loader, HellaSwag rendering
    makemore/      makemore's data, recipes and torch's CPU generator replayed in numpy

Everything outside `common/` in `jaxgpt` is JAX, and has a PyTorch twin at the same path in `torchref`.
"""
