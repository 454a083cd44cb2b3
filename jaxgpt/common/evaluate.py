"""Evaluating a trained model outside training: HellaSwag of any model source, in either framework.

Framework-free (the framework is imported through jaxgpt/common/frameworks.py). What
scripts/hellaswag.py runs; the scoring itself is jaxgpt/eval/hellaswag.py or its torch twin,
the rendering jaxgpt/common/data/hellaswag.py, the model sources jaxgpt/common/sources.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jaxgpt.common.loop import write_json
from jaxgpt.common.sources import ModelSource, load_model, resolve_hf, resolve_model


def hellaswag(framework: str, src: ModelSource, data: str | None = None, limit: int | None = None,
              batch_size: int = 8, progress: bool = True, log=print) -> dict:
    """Score HellaSwag (the official val file, downloaded once, or `data`) for a model source in `framework`.

    Returns the scorer's dict plus "data" and "truncated" (tasks whose context was cut to fit block_size).
    """
    from jaxgpt.common.data.codec import open_tokenizer
    from jaxgpt.common.data.hellaswag import hellaswag_file, load_examples, pad_token, render_example
    from jaxgpt.common.frameworks import runtime

    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    config = src.config()
    path = hellaswag_file(data)
    examples = load_examples(path, limit=limit)
    enc = open_tokenizer("gpt2").impl
    rendered = [render_example(ex, enc, config.block_size, pad_token(config)) for ex in examples]
    cut = sum(r.truncated > 0 for r in rendered)
    log(f"{len(rendered)} tasks from {path}; model {src.describe()}: {config.n_layer} layers, n_embd "
        f"{config.n_embd}, block_size {config.block_size}; scored in {framework}")
    if cut:
        log(f"note: {cut} task(s) exceed block_size {config.block_size}: their context was cut from the left")
    r = runtime(framework).score_hellaswag(load_model(framework, src), rendered, batch_size, progress)
    return {**r, "data": str(path), "truncated": cut}


def hellaswag_main(framework: str, checkpoint: str | None = None, hf_dir: str | None = None, data: str | None = None,
                   limit: int | None = None, batch_size: int = 8, json_path: str | None = None,
                   progress: bool = True) -> int:
    """scripts/hellaswag.py: print `hellaswag: acc ... acc_norm ...`, optionally write --json; exit code."""
    try:
        src = resolve_hf(hf_dir) if hf_dir is not None else resolve_model(checkpoint)
        r = hellaswag(framework, src, data, limit, batch_size, progress)
    except (ValueError, FileNotFoundError, TypeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    res = r["result"]
    print(f"{res.summary()}  count {res.n}  ({r['seconds']:.1f} s)")
    if json_path:
        write_json(Path(json_path), {
            "framework": framework, "model": str(src.path), "data": r["data"], "count": res.n,
            "acc": res.acc, "acc_norm": res.acc_norm, "correct": res.correct, "correct_norm": res.correct_norm,
            "truncated": r["truncated"], "index": res.index.tolist(), "label": res.label.tolist(),
            "pred": res.pred.tolist(), "pred_norm": res.pred_norm.tolist(),
        })
    return 0
