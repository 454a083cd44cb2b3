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

Used by `scripts/bench.py` and the training loop; imports neither jax nor torch.
"""

from __future__ import annotations

from jaxgpt.common.config import GPTConfig
from jaxgpt.common.weights import expected_shapes

# Dense bf16 peak FLOP/s. Matched against the device name in order (first match wins), so the
# PCIe H100 is listed before the generic H100 (the SXM part reports e.g. "NVIDIA H100 80GB HBM3").
PEAK_BF16_FLOPS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("H200",), 989e12),
    (("H100", "PCIE"), 756e12),
    (("H100",), 989e12),  # SXM
    (("A100",), 312e12),
)


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
