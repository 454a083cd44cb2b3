"""Throughput metrics, framework-free: FLOPs per token, peak FLOP/s per device, MFU.

Model FLOPs utilisation (MFU, PaLM paper appendix B; nanoGPT's `estimate_mfu`) is the achieved
model FLOP/s over the device's peak. The FLOPs of one trained token are

    flops_per_token = 6 * N + 12 * L * H * Q * T

- 6 * N: forward (2 FLOPs per multiply-add) + backward (2x forward) over every matmul weight.
  N is nanoGPT's `get_num_params()`: all parameters except the position table (wpe is a lookup,
  not a matmul). With a tied head wte counts once, for the head matmul. Padded vocab rows are
  counted: the head matmul really runs over them.
- 12 * L * H * Q * T: attention scores and the weighted sum (QK^T and AV: 2 matmuls x 2 FLOPs
  x 3 for fwd+bwd), L layers, H heads, Q = head dim, T = the sequence length trained on
  (nanoGPT uses block_size; we take the actual `seq` so short-sequence benchmarks are honest).

Recomputation, LayerNorm, softmax and the optimizer are not counted (the MFU convention).

Peaks are dense bf16 tensor-core FLOP/s from the vendors' data sheets; MFU is always quoted
against the bf16 peak (as nanoGPT does with the A100's 312 TFLOP/s), whatever the run's dtype.
Devices without a known peak (CPUs) give None.

llm.c's convention (`mfu_llmc`), printed next to ours so figures compare with its published ones:
llm.c's `gpt2_estimate_mfu` (train_gpt2.cu, "ref: Section 2.1 of Kaplan et al. 2020") takes

    flops_per_token = 6 * N_all + 6 * L * C * T

with N_all = every parameter (position table, LayerNorms, biases and the padded vocab rows included)
and half our attention term, over the peak of the run's precision (`get_flops_promised` in
llmc/mfu.h: the bf16 tensor-core peak for bf16, the TF32 peak, half of it on these parts, for fp32).

Used by `scripts/bench.py` and the training loop; imports neither jax nor torch.
"""

from __future__ import annotations

from jaxgpt.common.config import GPTConfig
from jaxgpt.common.weights import expected_shapes

# Dense bf16 peak FLOP/s (the data sheets' sparse figures halved). Matched against the device name in
# order (first match wins), so the PCIe and NVL parts come before the generic SXM entry (which reports
# e.g. "NVIDIA H100 80GB HBM3"). The NVL cards (one of the pair, "NVIDIA H100 NVL" / "NVIDIA H200
# NVL") run at lower clocks and power: 1,671 sparse -> ~835 dense TFLOP/s, not the SXM part's 989.
PEAK_BF16_FLOPS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("H200", "NVL"), 835e12),
    (("H200",), 989e12),  # SXM
    (("H100", "PCIE"), 756e12),
    (("H100", "NVL"), 835e12),
    (("H100",), 989e12),  # SXM
    (("A100",), 312e12),
)
# TF32 dense peak / bf16 dense peak on every device above (A100 156/312, H100 SXM 494.7/989.4, ...).
TF32_OVER_BF16 = 0.5


def num_params(config: GPTConfig, non_embedding: bool = True) -> int:
    """Parameter count from the config alone; `non_embedding` drops wpe (nanoGPT's convention)."""
    n = 0
    for shape in expected_shapes(config).values():
        size = 1
        for d in shape:
            size *= d
        n += size
    return n - config.block_size * config.n_embd if non_embedding else n


def flops_per_token(config: GPTConfig, seq: int) -> int:
    """Training FLOPs (forward + backward) per token at sequence length `seq` (see module docstring)."""
    if not 1 <= seq <= config.block_size:
        raise ValueError(f"seq={seq} must be in [1, block_size={config.block_size}]")
    L, H, Q = config.n_layer, config.n_head, config.head_dim
    return 6 * num_params(config) + 12 * L * H * Q * seq


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s of one device, from its name (jax device_kind or torch device name)."""
    name = device_name.upper()
    for keys, peak in PEAK_BF16_FLOPS:
        if all(k in name for k in keys):
            return peak
    return None


def mfu(tokens_per_s: float, config: GPTConfig, seq: int, device_name: str, n_devices: int = 1) -> float | None:
    """Model FLOPs utilisation in [0, 1] of `n_devices` devices, or None when the peak is unknown."""
    peak = peak_flops(device_name)
    if peak is None:
        return None
    return tokens_per_s * flops_per_token(config, seq) / (peak * n_devices)


def flops_per_token_llmc(config: GPTConfig, seq: int) -> int:
    """llm.c's training FLOPs per token: 6 * (all parameters) + 6 * L * C * T (module docstring)."""
    if not 1 <= seq <= config.block_size:
        raise ValueError(f"seq={seq} must be in [1, block_size={config.block_size}]")
    return 6 * num_params(config, non_embedding=False) + 6 * config.n_layer * config.n_embd * seq


def mfu_llmc(tokens_per_s: float, config: GPTConfig, seq: int, device_name: str, dtype: str,
             n_devices: int = 1) -> float | None:
    """MFU under llm.c's convention: its FLOP count, over the peak of the run's precision
    (bf16 peak for "bfloat16", TF32 peak for "float32"); None when the peak is unknown."""
    if dtype not in ("bfloat16", "float32"):
        raise ValueError(f"dtype={dtype!r}: llm.c's convention knows bfloat16 and float32 runs")
    peak = peak_flops(device_name)
    if peak is None:
        return None
    if dtype == "float32":
        peak *= TF32_OVER_BF16
    return tokens_per_s * flops_per_token_llmc(config, seq) / (peak * n_devices)
