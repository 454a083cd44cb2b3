"""An exported Hugging Face directory is usable by transformers alone: AutoTokenizer loads its tokenizer files, which
encode and decode as ours do, and a text-generation pipeline's greedy TEXT equals our sampler's. Two models:

- a trained tiny poetry-style model with our BPE (scripts/train.py's export RUN/hf, torch, a few steps);
- a random tiny GPT-2-vocabulary model with GPT-2's files, whose vocab.json / merges.txt (recovered from tiktoken's
  ranks) are OpenAI's encoder.json / vocab.bpe exactly.

transformers is imported only here (test-only); jaxgpt/common/hf_tokenizer.py writes the files itself.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import data_file, require_module, tiktoken_encoding
from jaxgpt.common import sampling, training
from jaxgpt.common.config import GPTConfig
from jaxgpt.common.data.codec import TOKENIZER_FILE, open_tokenizer
from jaxgpt.common.data.documents import DocSource
from jaxgpt.common.data.prepare import PrepareConfig, prepare
from jaxgpt.common.hf_tokenizer import save_tokenizer
from jaxgpt.common.sources import load_model, resolve_model
from jaxgpt.common.weights import expected_shapes, save_hf_dir

transformers = require_module("transformers")  # a failure in CI, not a skip
# One worker runs this module (pyproject's --dist loadgroup): its module-scoped runs are then made once, not per worker.
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.xdist_group("hf-export")]

VERSES = ["Le ciel est bleu, la mer est calme.", "Ô nuit ! les étoiles tremblent\nsur l'onde où rêve une âme.",
          "Mon cœur, 1848 fois, s'éveille…"]
TEXTS = [*VERSES, "  deux  espaces\tet\r\nfins 12345 😀 東京"]
TINY = ["--total_batch_tokens=256", "--n_layer=1", "--n_embd=16", "--n_head=2", "--block_size=32", "--vocab_size=320", "--max_steps=3",
        "--warmup_steps=1", "--val_every=0", "--val_steps=1", "--sample_every=0", "--ckpt_every=0", "--plot=false"]


@pytest.fixture(scope="module")
def poetry(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("poetry")
    rng = np.random.default_rng(0)
    words = " ".join(VERSES).replace("\n", " ").split()
    poems = ["\n".join(" ".join(rng.choice(words, 6)) for _ in range(3)) for _ in range(120)]
    (d / "poems.txt").write_text("\n\n".join(poems) + "\n", encoding="utf-8")
    prepare(PrepareConfig(DocSource(files=(str(d / "poems.txt"),)), train_tokenizer=320, val_fraction=0.1),
            d / "shards", progress=False, log=lambda m: None)
    training.train("poetry", [*TINY, f"--data_dir={d / 'shards'}", f"--out_dir={d / 'run'}"], "torch",
                   log=lambda m: None)
    return {"hf": d / "run" / "hf", "codec": open_tokenizer(str(d / "run" / TOKENIZER_FILE))}


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory) -> dict:
    tiktoken_encoding("gpt2")
    cfg = GPTConfig(block_size=32, vocab_size=50257, n_layer=1, n_head=2, n_embd=16)
    rng = np.random.default_rng(1)
    hf = save_hf_dir(tmp_path_factory.mktemp("gpt2") / "hf",
                     {k: rng.normal(0, 0.5, s).astype(np.float32) for k, s in expected_shapes(cfg).items()}, cfg)
    codec = open_tokenizer("gpt2")
    save_tokenizer(hf, codec, cfg.block_size)
    return {"hf": hf, "codec": codec}


@pytest.fixture(params=["poetry", "gpt2"])
def model(request) -> dict:
    return request.getfixturevalue(request.param)


def test_auto_tokenizer_encodes_and_decodes_as_ours(model):
    tok = transformers.AutoTokenizer.from_pretrained(model["hf"])
    codec = model["codec"]
    assert len(tok) == codec.vocab_size and tok.eos_token_id == codec.eot_id
    for text in TEXTS:
        ids = codec.encode_ordinary(text)
        assert tok.encode(text) == ids, text
        assert tok.decode(ids) == text
    # the separator's text is the special token (as our encode(..., allowed_special="all") reads it)
    assert tok.encode(codec.info.eot_token + " la") == [codec.eot_id, *codec.encode_ordinary(" la")]


def test_pipeline_greedy_text_equals_ours(model):
    codec, prompt = model["codec"], "Le ciel"
    ours = sampling.generate_text(load_model("torch", resolve_model(model["hf"])).generate, codec, prompt, 1, 12,
                                  temperature=0)[0]
    pipe = transformers.pipeline("text-generation", model=str(model["hf"]), device="cpu")
    theirs = pipe(codec.info.eot_token + prompt, max_new_tokens=12, do_sample=False, return_full_text=False)
    assert ours.startswith(prompt) and theirs[0]["generated_text"] == ours[len(prompt):] and len(ours) > len(prompt)


def test_gpt2_files_are_openais(gpt2):
    """vocab.json / merges.txt, recovered from tiktoken's ranks, equal OpenAI's encoder.json / vocab.bpe."""
    hf = gpt2["hf"]
    assert json.loads((hf / "vocab.json").read_text()) == json.loads(data_file("tokenizers/encoder.json").read_text())
    theirs = data_file("tokenizers/vocab.bpe").read_text(encoding="utf-8").splitlines()[1:]
    assert (hf / "merges.txt").read_text(encoding="utf-8").splitlines()[1:] == [m for m in theirs if m]


def test_tokenizer_of_another_size_is_refused(gpt2, poetry):
    with pytest.raises(ValueError, match="has 320 ids but the model .* has vocab_size=50257"):
        save_tokenizer(gpt2["hf"], poetry["codec"], 32)
