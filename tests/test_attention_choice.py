"""--attn: which attention kernel a run uses (jaxgpt/common/attention.py), decided from the device.

GPUs are mocked by their descriptions (what JAX's and torch's device objects report); the kernels
that a CPU can run are checked for real: the choice reaches the JAX model and torch's SDPA.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from jaxgpt.common.attention import DeviceInfo, choose_attention
from jaxgpt.common.recipes import RECIPES, configs_for

H100 = DeviceInfo("gpu", "NVIDIA H100 80GB HBM3", "9.0")  # as jax reports it
A100_TORCH = DeviceInfo("cuda", "NVIDIA A100-SXM4-80GB", (8, 0))  # as torch reports it
T4 = DeviceInfo("gpu", "Tesla T4", "7.5")
V100 = DeviceInfo("cuda", "Tesla V100-SXM2-16GB", (7, 0))
ROCM = DeviceInfo("gpu", "AMD Instinct MI300X", None)  # no CUDA compute capability
CPU = DeviceInfo("cpu", "cpu")


def test_auto_picks_cudnn_only_where_it_runs():
    assert choose_attention("jax", "auto", H100, "bfloat16", 64)[0] == "cudnn"  # GPT-2 124M on Hopper
    assert choose_attention("jax", "auto", DeviceInfo("gpu", "A100", "8.0"), "float16", 128)[0] == "cudnn"
    cases = {  # (device, dtype, head size) -> what the reason must name
        (T4, "bfloat16", 64): "compute capability >= 8.0 and Tesla T4 (compute capability 7.5)",
        (H100, "float32", 64): "bf16/fp16 inputs and this run computes in float32",
        (H100, "bfloat16", 50): "multiple of 8 up to 128, and this model's is 50",  # the poetry GPT's heads
        (H100, "bfloat16", 256): "multiple of 8 up to 128, and this model's is 256",
        (ROCM, "bfloat16", 64): "needs an NVIDIA GPU",
        (CPU, "bfloat16", 64): "needs an NVIDIA GPU and this run is on cpu",
    }
    for (device, dtype, hs), reason in cases.items():
        kernel, why = choose_attention("jax", "auto", device, dtype, hs)
        assert kernel == "xla" and reason in why, (device, dtype, hs, why)
    # torch: SDPA's dispatcher checks each kernel itself, so auto leaves the choice to it everywhere
    assert choose_attention("torch", "auto", A100_TORCH, "bfloat16", 64)[0] == "auto"
    assert choose_attention("torch", "auto", V100, "float32", 64)[0] == "auto"


def test_explicit_kernels_the_device_cannot_run_are_refused_with_the_alternative():
    with pytest.raises(ValueError, match=r"--attn=cudnn cannot run here: .*Tesla V100-SXM2-16GB \(compute capability "
                                         r"7\.0\).*use --attn=auto, --attn=efficient or --attn=math"):
        choose_attention("torch", "cudnn", V100, "bfloat16", 64)
    with pytest.raises(ValueError, match=r"--attn=cudnn cannot run here: it needs an NVIDIA GPU and this run is on "
                                         r"cpu; use --attn=auto or --attn=xla"):
        choose_attention("jax", "cudnn", CPU, "bfloat16", 64)
    with pytest.raises(ValueError, match="--attn=flash cannot run here: it needs bf16/fp16"):
        choose_attention("torch", "flash", A100_TORCH, "float32", 64)
    with pytest.raises(ValueError, match="--attn=efficient needs a CUDA GPU and this run is on cpu"):
        choose_attention("torch", "efficient", CPU, "float32", 64)
    with pytest.raises(ValueError, match=r"--attn='xla' is not a torch attention kernel; use one of auto, cudnn"):
        choose_attention("torch", "xla", A100_TORCH, "bfloat16", 64)
    with pytest.raises(ValueError, match=r"--attn='flash' is not a jax attention kernel"):
        choose_attention("jax", "flash", H100, "bfloat16", 64)
    # what the device can run is granted as asked
    assert choose_attention("torch", "flash", A100_TORCH, "bfloat16", 256) == ("flash", "as requested")
    assert choose_attention("jax", "xla", T4, "bfloat16", 64) == ("xla", "as requested")
    assert choose_attention("torch", "math", CPU, "float32", 50) == ("math", "as requested")


def test_unknown_attn_is_a_config_error():
    with pytest.raises(ValueError, match=r"--attn='fused' is unknown; use one of auto, cudnn, xla, flash, efficient, math"):
        configs_for("gpt2-124m", ["--attn=fused"])
    assert RECIPES["gpt2-124m"].train.attn == "auto"


def test_device_descriptions_are_read_from_each_framework():
    from jaxgpt.train.sharding import device_info

    gpu = SimpleNamespace(platform="gpu", device_kind="NVIDIA H200", compute_capability="9.0")  # a jax GPU device
    assert device_info(gpu) == DeviceInfo("gpu", "NVIDIA H200", "9.0")
    assert device_info().platform == "cpu" and not device_info().nvidia  # this machine; CPU devices have no capability
    from torchref.train.sharding import device_info as torch_device_info

    assert torch_device_info("cpu") == DeviceInfo("cpu", "cpu")


def test_the_jax_model_gets_the_chosen_implementation():
    from jaxgpt.train.runtime import attention_impl

    cfg = RECIPES["tiny"].model
    assert attention_impl("auto", "float32", cfg)[0] is None  # CPU: our heads-first causal_attention
    assert attention_impl("xla", "float32", cfg) == ("xla", "as requested")
    with pytest.raises(ValueError, match="--attn=cudnn cannot run here"):
        attention_impl("cudnn", "bfloat16", cfg)


def test_torch_sdpa_runs_only_the_chosen_backend():
    """The trainer restricts SDPA to the chosen backend: math gives auto's loss; a backend this CPU lacks
    fails inside SDPA (so the restriction is really applied, not just recorded)."""
    from torchref.train.trainer import Trainer

    cfg, optim = RECIPES["tiny"].model, RECIPES["tiny"].optim
    t = np.random.default_rng(0).integers(0, cfg.vocab_size, (4, 17))
    x, y = t[:, :-1], t[:, 1:]
    auto = Trainer(cfg, optim, seed=0).eval_loss(x, y)
    assert Trainer(cfg, optim, seed=0, attn="math").eval_loss(x, y) == pytest.approx(auto, rel=1e-6)
    with pytest.raises(RuntimeError, match="No viable backend for scaled_dot_product_attention"):
        Trainer(cfg, optim, seed=0, attn="efficient").eval_loss(x, y)
