"""jaxgpt/common/metrics.py: parameter counts, FLOPs per token, peak table, MFU; bits per byte."""

import math
from pathlib import Path

import pytest

from jaxgpt.common.config import PRESETS, GPTConfig
from jaxgpt.common.data.prepare import DataInfo
from jaxgpt.common.loop import bits_per_byte
from jaxgpt.common.metrics import flops_per_token, mfu, num_params, peak_flops


def test_num_params_gpt2_124m():
    cfg = PRESETS["gpt2-124m"]
    # The published GPT-2 small count (tied head, counted once) and nanoGPT's non-embedding count.
    assert num_params(cfg, non_embedding=False) == 124_439_808
    assert num_params(cfg) == 124_439_808 - 1024 * 768


def test_flops_per_token_by_hand():
    cfg = GPTConfig(block_size=8, vocab_size=10, n_layer=1, n_head=2, n_embd=4)
    # wte 40 + ln_1/ln_2/ln_f 3*8 + c_attn 48+12 + attn c_proj 16+4 + c_fc 64+16 + mlp c_proj 64+4 = 292
    assert num_params(cfg) == 292
    assert flops_per_token(cfg, 8) == 6 * 292 + 12 * 1 * 2 * 2 * 8
    with pytest.raises(ValueError, match="seq=9"):
        flops_per_token(cfg, 9)


def test_padded_rows_count():
    base = PRESETS["gpt2-124m"]
    padded = GPTConfig(**{**base.to_dict(), "padded_vocab_size": 50304})
    assert num_params(padded) - num_params(base) == (50304 - 50257) * 768


@pytest.mark.parametrize("name,peak", [
    ("NVIDIA H100 80GB HBM3", 989e12),
    ("NVIDIA H100 PCIe", 756e12),
    ("NVIDIA H200", 989e12),
    ("NVIDIA A100-SXM4-80GB", 312e12),
    ("cpu", None),
    ("TFRT_CPU_0", None),
])
def test_peak_flops(name, peak):
    assert peak_flops(name) == peak


def test_mfu():
    cfg = PRESETS["gpt2-124m"]
    f = flops_per_token(cfg, 1024)
    # tokens/s that would exactly saturate one A100 -> MFU 1; two devices halve it.
    tps = 312e12 / f
    assert mfu(tps, cfg, 1024, "NVIDIA A100-SXM4-40GB") == pytest.approx(1.0)
    assert mfu(tps, cfg, 1024, "NVIDIA A100-SXM4-40GB", n_devices=2) == pytest.approx(0.5)
    assert mfu(tps, cfg, 1024, "cpu") is None


def test_bits_per_byte_with_unequal_token_and_byte_counts():
    # 3.2 nats per token, 4 bytes per token (1000 tokens of 4000 bytes): 3.2 / (4 ln 2) = 1.1542 bits per byte.
    # With equal counts a swap of the two arguments (or of bytes and tokens) would pass; here it gives 1.80.
    info = DataInfo(Path("."), None, {"val": {"tokens": 1000, "bytes": 4000, "documents": 3, "shards": 1}})
    assert info.bytes_per_token("val") == 4.0
    assert info.bytes_per_token("train") is None  # no such split: no bits per byte, not a made-up ratio
    assert bits_per_byte(3.2, info.bytes_per_token("val")) == pytest.approx(3.2 / (4 * math.log(2)), rel=1e-12)
    assert bits_per_byte(3.2, 4.0) == pytest.approx(1.1541560327111708, rel=1e-12)
