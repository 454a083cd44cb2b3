"""HellaSwag data side: validation, rendering, packing, framework-free scoring and exact combination."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import data_file, tiktoken_encoding
from jaxgpt.common.data import hellaswag as hs


@pytest.fixture(scope="module")
def enc():
    return tiktoken_encoding("gpt2")


@pytest.fixture(scope="module")
def sample() -> list[hs.Example]:
    return hs.load_examples(data_file("hellaswag_val_sample.jsonl"))


def fake_losses(tokens: np.ndarray) -> np.ndarray:
    """A stand-in 'model': per-token loss depends on (previous token, target), like a bigram LM."""
    prev, tgt = tokens[:, :-1].astype(np.int64), tokens[:, 1:].astype(np.int64)
    return ((prev * 31 + tgt * 17) % 1009 / 100.0).astype(np.float32)  # (rows, L-1)


def nanogpt_predict(r: hs.Rendered) -> tuple[int, int]:
    """build-nanogpt's scoring on one unpadded example (4, L), re-implemented directly."""
    losses = fake_losses(r.tokens).astype(np.float64)
    m = r.mask[:, 1:]
    s = (losses * m).sum(1)
    return int(s.argmin()), int((s / m.sum(1)).argmin())


def test_sample_loads_and_renders_like_build_nanogpt(sample, enc):
    assert len(sample) == 200
    for ex in sample:
        r = hs.render_example(ex, enc)
        ctx = enc.encode(ex.ctx)
        ends = [enc.encode(" " + e) for e in ex.endings]
        assert r.tokens.shape == r.mask.shape == (4, len(ctx) + max(map(len, ends))) and r.truncated == 0
        for i, e in enumerate(ends):
            n = len(ctx) + len(e)
            assert r.tokens[i, :n].tolist() == ctx + e
            assert r.mask[i].tolist() == [0] * len(ctx) + [1] * len(e) + [0] * (r.tokens.shape[1] - n)
        assert r.label == ex.label
    assert {ex.label for ex in sample} == {0, 1, 2, 3}
    assert hs.load_examples(data_file("hellaswag_val_sample.jsonl"), limit=7)[-1] == sample[6]


def write_lines(tmp_path: Path, lines: list[str]) -> Path:
    p = tmp_path / "h.jsonl"
    p.write_text("\n".join(lines) + "\n")
    return p


GOOD = json.dumps({"ctx": "A man", "label": 1, "endings": ["a", "b", "c", "d"], "ind": 5, "split_type": "zeroshot"})


@pytest.mark.parametrize("bad, message", [
    ("{not json", r":3: invalid JSON"),
    (json.dumps({"ctx": "x", "endings": ["a", "b", "c", "d"]}), r":3: missing field\(s\) \['label'\]"),
    (json.dumps({"label": 0, "endings": ["a"] * 4}), r":3: missing field\(s\) \['ctx'\]"),
    (json.dumps({"ctx": "x", "label": 4, "endings": ["a"] * 4}), r":3: label 4 is not an ending index 0-3"),
    (json.dumps({"ctx": "x", "label": -1, "endings": ["a"] * 4}), r":3: label -1"),
    (json.dumps({"ctx": "x", "label": True, "endings": ["a"] * 4}), r":3: label True"),
    (json.dumps({"ctx": "x", "label": 0, "endings": ["a"] * 3}), r":3: endings must be a list of 4 strings, got 3"),
    (json.dumps({"ctx": "x", "label": 0, "endings": "abcd"}), r":3: endings must be a list of 4 strings, got str"),
    ("[1, 2]", r":3: expected a JSON object"),
])
def test_bad_lines_are_rejected_with_their_line_number(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        hs.load_examples(write_lines(tmp_path, [GOOD, "", bad, GOOD]))


def test_extra_fields_blank_lines_and_empty_files(tmp_path):
    exs = hs.load_examples(write_lines(tmp_path, ["", GOOD, "   ", GOOD]))
    assert [e.line for e in exs] == [2, 4] and exs[0].endings == ("a", "b", "c", "d")
    with pytest.raises(ValueError, match="holds no HellaSwag examples"):
        hs.load_examples(write_lines(tmp_path, ["", ""]))
    with pytest.raises(FileNotFoundError, match="check --data"):
        hs.hellaswag_file(tmp_path / "missing.jsonl")


def test_block_size_truncates_the_context_from_the_left(sample, enc):
    ex = sample[0]
    full = hs.render_example(ex, enc)
    ctx = enc.encode(ex.ctx)
    longest = max(len(enc.encode(" " + e)) for e in ex.endings)
    bs = longest + 3  # room for the last 3 context tokens only
    r = hs.render_example(ex, enc, block_size=bs)
    assert r.tokens.shape == (4, bs) and r.truncated == len(ctx) - 3
    for i, e in enumerate(ex.endings):
        e_tok = enc.encode(" " + e)
        assert r.tokens[i, :3 + len(e_tok)].tolist() == ctx[-3:] + e_tok  # same context kept for every row
        assert r.mask[i].sum() == full.mask[i].sum() == len(e_tok)
    assert hs.render_example(ex, enc, block_size=full.tokens.shape[1]).truncated == 0
    with pytest.raises(ValueError, match=f"line {ex.line}: an ending has {longest} tokens"):
        hs.render_example(ex, enc, block_size=longest)


def test_completion_scores_sum_mean_and_tie_break():
    # One example, 4 endings over L=5 tokens; rows 0-1 have 2-token endings, rows 2-3 one token.
    mask = np.array([[[0, 0, 0, 1, 1], [0, 0, 0, 1, 1], [0, 0, 0, 1, 0], [0, 0, 0, 1, 0]]])
    losses = np.full((4, 4), np.nan)  # positions outside the endings may hold anything, even nan
    losses[:, 2] = [1.0, 1.0, 1.5, 1.5]  # loss of token 3
    losses[:2, 3] = [1.0, 0.5]  # loss of token 4
    s = hs.completion_scores(losses, mask)
    np.testing.assert_array_equal(s.sum_loss, [[2.0, 1.5, 1.5, 1.5]])
    np.testing.assert_array_equal(s.mean_loss, [[1.0, 0.75, 1.5, 1.5]])
    assert s.pred.tolist() == [1]  # tie of rows 1, 2, 3 on the sum: lowest index wins
    assert s.pred_norm.tolist() == [1]
    losses[:2, 3] = [1.0, 1.0]
    s = hs.completion_scores(losses.reshape(1, 4, 4), mask)  # (N, 4, L-1) is accepted too
    assert s.pred.tolist() == [2] and s.pred_norm.tolist() == [0]  # sum and mean disagree here


def test_batched_distributed_scoring_matches_per_example_scoring(sample, enc):
    rendered = [hs.render_example(ex, enc, block_size=96) for ex in sample]
    assert sum(r.truncated > 0 for r in rendered) > 0  # rows up to 125 tokens: some are cut
    length = hs.pack_length(rendered, bucket=64, block_size=96)
    assert length == 96  # 128 capped at block_size
    direct = [nanogpt_predict(r) for r in rendered]
    labels = np.array([r.label for r in rendered])

    def evaluate(P: int) -> list[hs.Result]:
        parts = []
        for p in range(P):
            batches = list(hs.iter_batches(rendered, 16, length, p, P))
            assert len(batches) == -(-200 // (16 * P))  # same count on every process
            for b in batches:
                assert b.tokens.shape == b.mask.shape == (16, 4, length)  # fixed shape: one compile
                parts.append(hs.score_batch(b, fake_losses(b.tokens.reshape(-1, length))))
        return parts

    one = hs.combine_results(evaluate(1))
    three = hs.combine_results(evaluate(3))
    assert one.index.tolist() == three.index.tolist() == list(range(200))
    assert one.pred.tolist() == three.pred.tolist() == [d[0] for d in direct]
    assert one.pred_norm.tolist() == three.pred_norm.tolist() == [d[1] for d in direct]
    assert one.correct == int((labels == [d[0] for d in direct]).sum())
    summed = sum(r.counts() for r in evaluate(3))  # what an all-reduce of counts gives
    assert hs.counts_to_metrics(summed) == {"n": 200, "acc": one.acc, "acc_norm": one.acc_norm}
    assert "acc" in one.summary() and "/200" in one.summary()
    parts = evaluate(1)
    with pytest.raises(ValueError, match="scored twice"):
        hs.combine_results(parts + parts[:1])
    with pytest.raises(ValueError, match="more than the pack length"):
        hs.pack(rendered, [0], 1, 4)


@pytest.mark.parametrize("groups", [1, 4, 8])
def test_scoring_at_the_ending_positions_only_gives_the_same_predictions(sample, enc, groups):
    """A scorer that runs the head only at `Packed.positions` (each group of rows: one device's slice) and spreads
    those losses back gets build-nanogpt's predictions; the positions are the endings' and nothing else."""
    rendered = [hs.render_example(ex, enc, block_size=128) for ex in sample]
    length = hs.pack_length(rendered, block_size=128)
    packed = hs.pack_batches(rendered, 16, length, groups=groups)
    K = packed.positions[0].shape[1]
    assert K % 8 == 0 and all(p.shape == (groups, K) for p in packed.positions)  # one shape: one compile
    parts = []
    for b, positions in zip(packed.batches, packed.positions):
        rows = b.tokens.reshape(-1, length)
        full = fake_losses(rows).reshape(groups, -1)  # (groups, rows per group * (L-1))
        ends = np.where(positions >= 0, np.take_along_axis(full, np.maximum(positions, 0), axis=1), np.nan)
        spread = hs.spread_losses(positions, ends, len(rows), length)
        scored = b.mask.reshape(len(rows), length)[:, 1:] != 0
        assert (spread != 0).sum() <= scored.sum() == (positions >= 0).sum()
        np.testing.assert_array_equal(spread[scored], full.reshape(len(rows), -1)[scored])
        parts.append(hs.score_batch(b, spread))
    result = hs.combine_results(parts)
    direct = [nanogpt_predict(r) for r in rendered]
    assert result.pred.tolist() == [d[0] for d in direct] and result.pred_norm.tolist() == [d[1] for d in direct]
    assert hs.max_scored(rendered) == max(int(r.mask.sum()) for r in rendered)
    with pytest.raises(ValueError, match="do not divide into 3 groups"):
        hs.ending_positions(packed.batches[0], 3)
    # Several processes: one K for all of them (their positions form one global array), the widest group's
    widths = {hs.pack_batches(rendered, 4, length, p, 3, groups=groups).positions[0].shape[1] for p in range(3)}
    assert len(widths) == 1
    most = max(len(g) for p in range(3) for b in hs.iter_batches(rendered, 4, length, p, 3)
                for g in hs.ending_positions(b, groups))
    assert widths == {-(-most // 8) * 8}


def test_download_uses_the_cache_and_reports_failures(tmp_path, monkeypatch):
    src = data_file("hellaswag_val_sample.jsonl")
    path = hs.download_hellaswag(tmp_path / "cache", url=src.as_uri())
    assert path.read_bytes() == src.read_bytes() and path.name == "hellaswag_val.jsonl"
    assert not [p for p in path.parent.iterdir() if p != path]  # no temp file left
    monkeypatch.setenv("JAXGPT_CACHE", str(tmp_path))
    (tmp_path / "hellaswag").mkdir()
    (tmp_path / "hellaswag" / "hellaswag_val.jsonl").write_text(GOOD + "\n")
    assert hs.hellaswag_file(None) == tmp_path / "hellaswag" / "hellaswag_val.jsonl"  # cached: no network
    with pytest.raises(FileNotFoundError, match="pass a local file .* with --data FILE"):
        hs.download_hellaswag(tmp_path / "other", url=(tmp_path / "absent.jsonl").as_uri())
    assert not list((tmp_path / "other").iterdir())
