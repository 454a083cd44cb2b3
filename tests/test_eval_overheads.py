"""Evaluation overheads inside training (issue 12, item 7): HellaSwag is packed once per run and fetched
once per evaluation, with the same predictions as the small per-batch evaluation; samples use the live
parameters, never a host copy of the training state (the AdamW moments are twice the model)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from conftest import data_file, tiktoken_encoding
from jaxgpt.common.config import get_preset
from jaxgpt.common.data import hellaswag as rendering
from jaxgpt.common.loop import Launch
from jaxgpt.common.recipes import configs_for
from jaxgpt.common.schedule import OptimConfig
from jaxgpt.eval import hellaswag as scoring
from jaxgpt.train import runtime
from jaxgpt.train import trainer as trainer_module
from jaxgpt.train.hlo import COLLECTIVES, count_collectives
from jaxgpt.train.sharding import make_mesh


class _Data:  # shards without a manifest: GPT-2 tokens (what hellaswag_tasks accepts)
    tokenizer = None


def test_in_training_hellaswag_is_packed_once_and_fetched_once_per_evaluation(monkeypatch):
    sample = data_file("hellaswag_val_sample.jsonl")
    tiktoken_encoding("gpt2")
    from jaxgpt.common.training import hellaswag_tasks

    model_cfg, cfg, optim = configs_for("tiny", ["--vocab_size=50257", "--padded_vocab_size=50304",
                                                 "--block_size=128", f"--hellaswag_file={sample}",
                                                 "--hellaswag_limit=12", "--compile_cache="])
    tasks = hellaswag_tasks(_Data, model_cfg, cfg)  # rendered (tokenized) once per run, by training.py
    rt = runtime.make_runtime(model_cfg, cfg, optim, runtime.connect(Launch()), 1)
    packs, fetches = [], []
    pack, fetch_all = rendering.pack, scoring._fetch_all
    monkeypatch.setattr(rendering, "pack", lambda *a, **k: packs.append(1) or pack(*a, **k))
    monkeypatch.setattr(scoring, "_fetch_all", lambda *a, **k: fetches.append(1) or fetch_all(*a, **k))
    first = rt.hellaswag(tasks)
    packed = len(packs)
    second = rt.hellaswag(tasks)  # the next evaluation of the run
    assert packed >= 1 and len(packs) == packed, "HellaSwag was packed again at the second evaluation"
    assert fetches == [1, 1], f"{len(fetches)} host round trips for 2 evaluations"
    # the same predictions as the reference: every position through the head, one batch at a time
    monkeypatch.undo()
    model = rt.trainer.model_view()
    length = rendering.pack_length(tasks, block_size=128)
    pred, pred_norm = [], []
    for batch in rendering.iter_batches(tasks, 8, length):
        s = rendering.completion_scores(scoring.token_losses(model, batch.tokens.reshape(-1, length)), batch.mask)
        pred += s.pred[batch.index >= 0].tolist()
        pred_norm += s.pred_norm[batch.index >= 0].tolist()
    assert len(set(pred)) > 1  # a random model's choices vary: equal predictions are a real check
    for got in (first, second):
        assert got["count"] == len(tasks) == len(pred)
        np.testing.assert_array_equal(got["result"].pred, pred)
        np.testing.assert_array_equal(got["result"].pred_norm, pred_norm)


def test_samples_come_from_the_live_parameters(monkeypatch):
    t = trainer_module.Trainer(get_preset("tiny"), OptimConfig(lr=1e-3, warmup_steps=2, max_steps=20),
                               mesh=make_mesh(jax.devices()[:8]))
    idx = np.ones((2, 3), np.int32)
    ref = t._host_model().generate(idx, 6, top_k=50, seed=1)
    copied = []
    to_host = trainer_module.to_host
    monkeypatch.setattr(trainer_module, "to_host", lambda x: copied.append(x.size) or to_host(x))
    got = t.generate(idx, 6, top_k=50, seed=1)
    assert copied == [] and np.array_equal(got, ref), "sampling copied the state through the host"
    # where a copy is needed (several processes), it is the model's leaves only, never the AdamW moments
    t._host_model()
    from flax import nnx

    leaves = jax.tree.leaves(nnx.split(t.model_view())[1])  # parameters and dropout RNG keys (as their key data)
    model_leaves = sum(jax.random.key_data(x).size if trainer_module._is_key(x) else x.size for x in leaves)
    assert sum(copied) == model_leaves, (sum(copied), model_leaves)


@pytest.mark.parametrize("length,vocab,devices,n,scored,expected", [
    (64, 50304, 1, None, None, 6), (64, 50304, 8, None, None, 48), (64, 50304, 8, 10, None, 16),
    (1024, 50304, 2, None, None, 2),
    # logits at the endings only: `scored` rows per example instead of 4 x length
    (64, 50304, 1, None, 64, 27), (64, 50304, 8, None, 64, 216), (64, 50304, 8, 10, 64, 16)])
def test_batch_size_follows_the_memory_budget(length, vocab, devices, n, scored, expected):
    assert rendering.examples_per_batch(length, vocab, devices, 1 << 30, n, scored) == expected


def test_each_device_scores_its_own_rows_without_collectives():
    """The ending-only evaluation over 8 devices: rows and their ending positions are sharded alike, so the
    compiled function gathers each device's endings locally: no collective in its HLO."""
    from flax import nnx
    from jax.experimental import multihost_utils
    from jax.sharding import PartitionSpec as P

    from jaxgpt.gpt import GPT

    mesh = make_mesh(jax.devices()[:8])
    graphdef, state = nnx.split(GPT(get_preset("tiny"), rngs=nnx.Rngs(0)))
    rows, positions = np.ones((32, 16), np.int32), np.zeros((8, 40), np.int32)
    args = multihost_utils.host_local_array_to_global_array([rows, positions], mesh, [P("data")] * 2)
    hlo = scoring._ending_losses.lower(graphdef, scoring._on_mesh(state, mesh), *args).compile().as_text()
    assert count_collectives(hlo, COLLECTIVES) == 0, "the evaluation moves rows between devices"


def test_the_evaluation_benchmark_prints_times_predictions_and_a_row(capsys):
    import json

    from scripts.bench_hellaswag import main

    sample = data_file("hellaswag_val_sample.jsonl")
    tiktoken_encoding("gpt2")
    assert main([f"--hellaswag_file={sample}", "--hellaswag_limit=8", "--repeats=2"]) == 0
    out = capsys.readouterr().out.splitlines()
    result = json.loads(out[-1])
    assert result["tasks"] == 8 and len(result["seconds"]) == 2 and len(result["predictions_md5"]) == 32
    assert out[1].startswith("| ") and "8 tasks" in out[1]
    assert main(["--hellaswag_file=/no/such.jsonl"]) == 2 and "--hellaswag_file" in capsys.readouterr().err
    assert main([f"--hellaswag_file={sample}", "--repeats=1"]) == 2
