"""Sample French verse from a poetry GPT checkpoint, in either framework, from either framework's run.

    python scripts/sample.py --checkpoint out/poetry-jax --prompt "L'univers" --max-new-tokens 200 \
        --temperature 0.8 --top-k 50 --top-p 0.95
    python scripts/sample.py --checkpoint out/poetry-jax --framework torch ...   # JAX weights, torch model

--checkpoint is a run directory of scripts/train_gpt.py (or its ckpt/ folder): run.json gives the
model config, tokenizer.model the tokenizer, ckpt/ the weights. A checkpoint of the other framework
is restored in its own framework and its weights cross over through the GPT-2-named weight table
(`state_numpy` -> `load_numpy`), the same conversion the parity tests check.

The prompt starts a new poem (it follows the end-of-poem token) and may hold any character: the
tokenizer is byte-level, so text it never saw falls back to raw UTF-8 bytes. Sampling stops at the
end of the poem or after --max-new-tokens.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, also when imported by tests
from sidebyside import FRAMEWORKS, make_trainer
from train_gpt import check_tokenizer, find_run

from jaxgpt.common.config import GPTConfig
from jaxgpt.common.data.poetry import EOP
from jaxgpt.common.schedule import OptimConfig
from jaxgpt.common.tokenizer import load_tokenizer


def load_model(checkpoint: str | Path, framework: str | None = None, tokenizer: str | Path | None = None):
    """(trainer holding the checkpoint's weights in `framework`, tokenizer, run.json) for a run directory."""
    run_dir, run = find_run(checkpoint)
    cfg = GPTConfig.from_dict(run["configs"]["model"])
    optim = OptimConfig(**run["configs"]["optim"])
    tok_file = Path(tokenizer) if tokenizer else run_dir / "tokenizer.model"
    if not tok_file.is_file():
        raise FileNotFoundError(f"tokenizer {tok_file} not found; pass --tokenizer FILE.model")
    tok = load_tokenizer(tok_file)
    check_tokenizer(tok, cfg, tok_file)
    saved = run["framework"]
    source = make_trainer(saved, cfg, optim)
    source.restore(run_dir / "ckpt")  # the framework's own format: orbax (JAX) or torch.save
    framework = framework or saved
    if framework == saved:
        return source, tok, run
    # Cross over through the weight table; load_numpy checks every name and shape.
    return make_trainer(framework, cfg, optim, weights=source.state_numpy()), tok, run


def prompt_ids(tok, prompt: str) -> list[int]:
    """EOP (start of a poem) + the prompt's ids. Any text encodes: unseen characters become bytes."""
    # A command-line argument that is not valid UTF-8 arrives with surrogate escapes; keep its bytes
    # visible as U+FFFD rather than failing to encode.
    clean = prompt.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return [tok.special_tokens[EOP]] + tok.encode(clean, disallowed_special=())  # "<|endofpoem|>" typed = text


def sample(trainer, tok, prompt: str, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, seed: int = 0, num_samples: int = 1) -> list[str]:
    """`num_samples` continuations of `prompt` (prompt included), each stopping at the end of its poem."""
    eop = tok.special_tokens[EOP]
    ids = np.asarray([prompt_ids(tok, prompt)] * num_samples, np.int32)  # (num_samples, T0)
    out = trainer.generate(ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                           stop_token=eop)
    return [tok.decode([i for i in row[1:].tolist() if i != eop]) for row in out]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run directory of scripts/train_gpt.py (or its ckpt/)")
    p.add_argument("--prompt", default="", help="start of the poem (any text)")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens")
    p.add_argument("--top-p", type=float, default=None, help="nucleus: keep the top tokens holding this mass")
    p.add_argument("--framework", choices=FRAMEWORKS, default=None,
                   help="framework to sample in (default: the checkpoint's)")
    p.add_argument("--tokenizer", default=None, help="tokenizer .model (default: the run's tokenizer.model)")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        if args.max_new_tokens < 1 or args.num_samples < 1:
            raise ValueError("--max-new-tokens and --num-samples must be >= 1")
        trainer, tok, run = load_model(args.checkpoint, args.framework, args.tokenizer)
        texts = sample(trainer, tok, args.prompt, args.max_new_tokens, temperature=args.temperature,
                       top_k=args.top_k, top_p=args.top_p, seed=args.seed, num_samples=args.num_samples)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"# {run['preset']} checkpoint trained in {run['framework']}, sampled in {trainer.framework}",
          file=sys.stderr)
    for i, text in enumerate(texts):
        if i:
            print("\n---\n")
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
