"""HellaSwag agreement: JAX vs torch on the same weights, ours vs transformers' own forward pass,
and the JAX scorer sharded over 8 simulated devices vs one device.

Both run on the real 200-item sample with the real GPT-2 tokenizer. Most checks use a compact
vocabulary: the ids the sample's text uses, renumbered 0..n-1 (`CompactGPT2`). Scoring only
compares two implementations on the same token rows, so a renumbering changes nothing it checks,
and it makes a random model's head and softmax ~10x cheaper on CPU. One check uses the full
50257-id vocabulary (padding with <|endoftext|>) on a slice of the sample.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flax import nnx

from conftest import data_file, require_module, tiktoken_encoding
from jaxgpt.common.config import GPTConfig
from jaxgpt.common.data.hellaswag import (
    Example,
    completion_scores,
    iter_batches,
    load_examples,
    pack_batches,
    pack_length,
    render_example,
    spread_losses,
)
from jaxgpt.eval import hellaswag as jhs
from jaxgpt.gpt import GPT as JaxGPT
from jaxgpt.train.sharding import make_mesh
from parity_tests.helpers import FWD_ATOL, assert_close, seed_all
from torchref.eval import hellaswag as ths
from torchref.gpt import GPT as TorchGPT

transformers = require_module("transformers")  # a failure in CI, not a skip


# Tiny torch models: one intra-op thread (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


class CompactGPT2:
    """tiktoken gpt2 with the ids that `examples` use renumbered 0..n-1 (a bijection on those ids)."""

    def __init__(self, examples: list[Example]):
        self.enc = tiktoken_encoding("gpt2")
        used = set()
        for ex in examples:
            for text in (ex.ctx, *(" " + e for e in ex.endings)):
                used.update(self.enc.encode(text))
        self.ids = {t: i for i, t in enumerate(sorted(used))}
        self.n_vocab = len(self.ids)

    def encode(self, text: str) -> list[int]:
        return [self.ids[t] for t in self.enc.encode(text)]


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    return load_examples(data_file("hellaswag_val_sample.jsonl"))


@pytest.fixture(scope="module")
def compact(examples) -> CompactGPT2:
    return CompactGPT2(examples)


def tiny_config(vocab_size: int) -> GPTConfig:
    # block_size 128 holds every row of the sample (the longest is 125 tokens) without truncation.
    return GPTConfig(block_size=128, vocab_size=vocab_size, n_layer=2, n_head=4, n_embd=32)


def twins(config: GPTConfig) -> tuple[JaxGPT, TorchGPT]:
    seed_all(0)
    tm = TorchGPT(config)
    jm = JaxGPT(config, rngs=nnx.Rngs(0))
    jm.load_numpy(tm.state_numpy())
    return jm, tm


@pytest.fixture(scope="module")
def compact_twins(compact) -> tuple[JaxGPT, TorchGPT]:
    return twins(tiny_config(compact.n_vocab))


@pytest.fixture(scope="module")
def jax_on_one_device(compact_twins, examples, compact) -> dict:
    """The JAX evaluation of the sample without a mesh (shared by two tests: it is the slow part)."""
    return jhs.evaluate_hellaswag(compact_twins[0], examples, batch_size=8, enc=compact)


# Its two readers run on one pytest-xdist worker (pyproject's --dist loadgroup): evaluated once, not per worker.
SHARES_JAX_RUN = pytest.mark.xdist_group("test_hellaswag-jax_on_one_device")


def hf_scores(hf_model, enc, examples: list[Example]) -> tuple[np.ndarray, np.ndarray]:
    """build-nanogpt's scoring written out on transformers' forward: one unpadded row per ending."""
    sums, means = np.zeros((len(examples), 4)), np.zeros((len(examples), 4))
    with torch.no_grad():
        for n, ex in enumerate(examples):
            ctx = enc.encode(ex.ctx)
            for i, ending in enumerate(ex.endings):
                end = enc.encode(" " + ending)
                row = torch.tensor([ctx + end])
                logits = hf_model(row).logits[0, :-1].double()  # (T-1, V): position j predicts token j+1
                nll = torch.nn.functional.cross_entropy(logits, row[0, 1:], reduction="none")
                ending_nll = nll[len(ctx) - 1:]  # the losses of the ending's tokens
                assert len(ending_nll) == len(end)
                sums[n, i], means[n, i] = ending_nll.sum().item(), ending_nll.mean().item()
    return sums, means


def hf_model(vocab_size: int, seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=vocab_size, n_positions=128, n_embd=32, n_layer=2, n_head=4,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return transformers.GPT2LMHeadModel(cfg).eval()


@SHARES_JAX_RUN
def test_jax_and_torch_agree_on_the_sample(examples, compact, compact_twins, jax_on_one_device):
    jm, tm = compact_twins
    rj = jax_on_one_device
    rt = ths.evaluate_hellaswag(tm, examples, batch_size=8, enc=compact)
    assert rj["count"] == rt["count"] == 200
    # A random model's choices still vary: identical predictions are a real check, not a constant.
    assert len(set(rj["result"].pred.tolist())) > 1
    np.testing.assert_array_equal(rj["result"].index, np.arange(200))
    np.testing.assert_array_equal(rj["result"].pred, rt["result"].pred)
    np.testing.assert_array_equal(rj["result"].pred_norm, rt["result"].pred_norm)
    assert (rj["acc"], rj["acc_norm"]) == (rt["acc"], rt["acc_norm"])

    # And the per-token losses behind them agree to the forward tolerance (first batch).
    rendered = [render_example(ex, compact, 128, jhs.pad_token(jm.config)) for ex in examples]
    length = pack_length(rendered, block_size=128)
    batch = next(iter_batches(rendered, 8, length, pad_id=jhs.pad_token(jm.config)))
    rows = batch.tokens.reshape(-1, length)
    assert_close(jhs.token_losses(jm, rows), ths.token_losses(tm, rows), atol=FWD_ATOL, name="token losses")


def test_transformers_forward_gives_the_same_predictions(examples, compact, tmp_path):
    hf = hf_model(compact.n_vocab)
    sums, means = hf_scores(hf, compact, examples)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    for framework, GPT, evaluate in (("jax", JaxGPT, jhs.evaluate_hellaswag), ("torch", TorchGPT, ths.evaluate_hellaswag)):
        r = evaluate(GPT.from_hf(str(tmp_path)), examples, batch_size=8, enc=compact)["result"]
        np.testing.assert_array_equal(r.pred, sums.argmin(1), err_msg=f"{framework}: acc predictions")
        np.testing.assert_array_equal(r.pred_norm, means.argmin(1), err_msg=f"{framework}: acc_norm predictions")
    # Our completion_scores on our losses reproduce transformers' per-ending sums, not only their argmin.
    jm = JaxGPT.from_hf(str(tmp_path))
    rendered = [render_example(ex, compact, 128, jhs.pad_token(jm.config)) for ex in examples[:8]]
    length = pack_length(rendered, block_size=128)
    batch = next(iter_batches(rendered, 8, length, pad_id=jhs.pad_token(jm.config)))
    s = completion_scores(jhs.token_losses(jm, batch.tokens.reshape(-1, length)), batch.mask)
    assert_close(s.sum_loss, sums[:8], atol=1e-4, name="summed ending losses (up to ~40 tokens of fp32)")
    assert_close(s.mean_loss, means[:8], atol=FWD_ATOL, name="mean ending losses")


def test_full_gpt2_vocabulary_slice(examples, tmp_path):
    """The real 50257-id vocabulary and <|endoftext|> padding, on a slice (the head costs 10x more)."""
    part = examples[:12]
    enc = tiktoken_encoding("gpt2")
    hf = hf_model(50257, seed=1)
    sums, means = hf_scores(hf, enc, part)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    rj = jhs.evaluate_hellaswag(JaxGPT.from_hf(str(tmp_path)), part, batch_size=4)["result"]
    rt = ths.evaluate_hellaswag(TorchGPT.from_hf(str(tmp_path)), part, batch_size=4)["result"]
    for r in (rj, rt):
        np.testing.assert_array_equal(r.pred, sums.argmin(1))
        np.testing.assert_array_equal(r.pred_norm, means.argmin(1))


@SHARES_JAX_RUN
def test_eight_simulated_devices_give_the_same_numbers_as_one(examples, compact, compact_twins, jax_on_one_device,
                                                              monkeypatch):
    """The JAX scorer with each batch's rows sharded over a Mesh of the 8 simulated CPU devices."""
    import jax

    assert jax.device_count() == 8, "conftest.py sets XLA_FLAGS for 8 simulated CPU devices"
    jm = compact_twins[0]
    mesh = make_mesh()
    seen = []  # the sharding of every batch the jitted scorer received
    original = jhs._ending_losses

    def spy(graphdef, state, tokens, positions):
        seen.append(tokens.sharding)
        assert positions.sharding.spec == jax.sharding.PartitionSpec("data")  # each device's own positions
        return original(graphdef, state, tokens, positions)

    monkeypatch.setattr(jhs, "_ending_losses", spy)
    one = jax_on_one_device
    eight = jhs.evaluate_hellaswag(jm, examples, batch_size=8, mesh=mesh, enc=compact)
    assert len(seen) == 25 and all(len(s.device_set) == 8 and s.spec == jax.sharding.PartitionSpec("data")
                                   for s in seen)
    for key in ("count", "correct", "correct_norm", "acc", "acc_norm"):
        assert one[key] == eight[key], key
    for field in ("index", "label", "pred", "pred_norm"):
        np.testing.assert_array_equal(getattr(one["result"], field), getattr(eight["result"], field), err_msg=field)
    rendered = [render_example(ex, compact, 128, jhs.pad_token(jm.config)) for ex in examples[:8]]
    rows = next(iter_batches(rendered, 8, 128, pad_id=jhs.pad_token(jm.config))).tokens.reshape(-1, 128)
    assert_close(jhs.token_losses(jm, rows, mesh), jhs.token_losses(jm, rows), atol=FWD_ATOL, name="sharded losses")
    with pytest.raises(ValueError, match="4 \\* batch_size is a multiple of 8"):
        jhs.evaluate_hellaswag(jm, examples[:3], batch_size=3, mesh=mesh, enc=compact)


def test_the_head_at_the_endings_only_gives_every_position_s_losses(examples, compact, compact_twins):
    """HellaSwagEval runs the vocabulary-wide head at the ending tokens only (issue 12, item 7): there, its
    losses are the full forward's, in both frameworks, for rows split over several devices' groups."""
    jm, tm = compact_twins
    pad = jhs.pad_token(jm.config)
    rendered = [render_example(ex, compact, 128, pad) for ex in examples[:16]]
    length = pack_length(rendered, block_size=128)
    packed = pack_batches(rendered, 8, length, pad_id=pad, groups=4)  # 32 rows: 4 groups of 8
    graphdef, state = nnx.split(jm)
    for batch, positions in zip(packed.batches, packed.positions):
        rows = batch.tokens.reshape(-1, length)
        scored = batch.mask.reshape(len(rows), length)[:, 1:] != 0  # position j scores token j+1
        assert (positions >= 0).sum() == scored.sum() < scored.size / 2  # endings only: a fraction of the positions
        full = jhs.token_losses(jm, rows)
        for name, ends in (("jax", jhs._dispatch(graphdef, state, rows, None, positions)),
                           ("torch", ths._ending_losses(tm, rows, positions, "cpu"))):
            got = spread_losses(positions, np.asarray(ends), len(rows), length)
            assert_close(got[scored], full[scored], atol=FWD_ATOL, name=f"{name}: ending losses")
            assert not got[~scored].any(), f"{name}: a loss outside the endings"
