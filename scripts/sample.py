"""Sample text from any GPT, in either framework, streaming it as it is generated.

    python scripts/sample.py --model out/poetry-jax --prompt "L'univers" --max-new-tokens 200 \
        --temperature 0.8 --top-k 50 --top-p 0.95
    python scripts/sample.py --model out/poetry-jax --framework torch ...     # JAX weights, torch model
    echo "Hello, I'm a language model," | python scripts/sample.py --model gpt2 --prompt - --num-samples 3

--model (or --checkpoint) is a run directory of scripts/train.py (its export RUN/hf, else its newest
checkpoint), one RUN/checkpoints/step_*/ checkpoint of either framework, a Hugging Face GPT-2 directory,
or a model name found in the local Hugging Face cache (gpt2, gpt2-medium, ...; jaxgpt/common/sources.py).
The tokenizer is the run's (RUN/tokenizer.model for our BPE, tiktoken gpt2 for GPT-2 and for an HF
directory of 50257 ids), or --tokenizer: a tiktoken name or our .model file, of the model's vocab size.

A sample starts a new document (it follows the document separator) and ends with it or after
--max-new-tokens; its text is printed as the tokens come (whole characters only). Sample i uses seed
--seed + i. The prompt may hold any character (the tokenizers are byte-level); `--prompt -` reads it
from stdin; a prompt longer than the model's block_size loses its first tokens (said on stderr).
"""

from __future__ import annotations

import argparse
import sys

from jaxgpt.common.frameworks import FRAMEWORKS
from jaxgpt.common.sampling import main

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "--checkpoint", dest="model", required=True,
                   help="run dir, checkpoint dir, HF dir or cached model name")
    p.add_argument("--prompt", default="", help="start of the document (any text); - reads it from stdin")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens")
    p.add_argument("--top-p", type=float, default=None, help="nucleus: keep the top tokens holding this mass")
    p.add_argument("--framework", choices=FRAMEWORKS, default=None,
                   help="framework to sample in (default: the checkpoint's, else jax)")
    p.add_argument("--tokenizer", default=None, help="tiktoken name or .model (default: the run's tokenizer)")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    sys.exit(main(a.model, a.framework, a.prompt, a.max_new_tokens, a.temperature, a.top_k, a.top_p,
                  a.tokenizer, a.num_samples, a.seed))
