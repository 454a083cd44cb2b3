"""Which attention kernel a run uses (`--attn`): the rule, written once for both frameworks.

The fused kernels are fast on the GPUs that have them and fail outright elsewhere: cuDNN's fused
(flash) attention needs an NVIDIA GPU of compute capability >= 8.0 (Ampere, Hopper, ...), bf16 or
fp16 inputs and a head size that is a multiple of 8 up to 128 (JAX's `dot_product_attention`
raises on anything else; a T4 or V100 cannot run it at all). `auto` therefore picks a fused kernel
only where all of that holds and says why it did or did not; an explicit choice the device cannot
run is refused before anything compiles, naming the device and the alternative.

JAX: `auto` | `cudnn` (jax.nn.dot_product_attention's cuDNN kernel) | `xla` (its XLA composition).
On a CPU, `auto` runs our heads-first `causal_attention` (jaxgpt/gpt.py), the fastest there.
PyTorch: `auto` (SDPA picks its kernel) | `cudnn` | `flash` | `efficient` | `math` (SDPA restricted
to that backend with `torch.nn.attention.sdpa_kernel`). Flash shares cuDNN's capability rule (and
allows head sizes up to 256); memory-efficient attention runs on any CUDA GPU; math runs anywhere.
Framework-free: callers pass a `DeviceInfo` read from their framework.
"""

from __future__ import annotations

from dataclasses import dataclass

CHOICES = {"jax": ("auto", "cudnn", "xla"), "torch": ("auto", "cudnn", "flash", "efficient", "math")}
FUSED_DTYPES = ("bfloat16", "float16")
MIN_CAPABILITY = (8, 0)  # Ampere: cuDNN's fused attention and FlashAttention-2 start here


@dataclass(frozen=True)
class DeviceInfo:
    """What the choice depends on: the backend platform ("gpu"/"cuda", "cpu", "tpu", ...), the device's
    name, and for NVIDIA GPUs the compute capability ("9.0" in JAX, (9, 0) in torch: both accepted)."""

    platform: str
    kind: str = ""
    compute_capability: str | tuple[int, int] | None = None

    @property
    def nvidia(self) -> bool:
        return self.platform in ("gpu", "cuda") and self.compute_capability is not None

    def capability(self) -> tuple[int, int] | None:
        cc = self.compute_capability
        if cc is None:
            return None
        if isinstance(cc, str):
            major, _, minor = cc.partition(".")
            return int(major), int(minor or 0)
        return int(cc[0]), int(cc[1])

    def describe(self) -> str:
        cc = self.capability()
        return f"{self.kind or self.platform}" + (f" (compute capability {cc[0]}.{cc[1]})" if cc else "")


def _fused_problem(device: DeviceInfo, dtype: str, head_dim: int, max_head_dim: int) -> str | None:
    """Why a fused (cuDNN / flash) kernel cannot run here, or None when it can."""
    if not device.nvidia:
        return f"it needs an NVIDIA GPU and this run is on {device.describe()}"
    cc = device.capability()
    if cc < MIN_CAPABILITY:
        return f"it needs compute capability >= {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} and {device.describe()} has less"
    if dtype not in FUSED_DTYPES:
        return f"it needs bf16/fp16 inputs and this run computes in {dtype} (use --dtype=bfloat16)"
    if head_dim % 8 or head_dim > max_head_dim:
        return f"it needs a head size that is a multiple of 8 up to {max_head_dim}, and this model's is {head_dim}"
    return None


def choose_attention(framework: str, requested: str, device: DeviceInfo, dtype: str, head_dim: int) -> tuple[str, str]:
    """(kernel, reason) for `--attn=requested`; ValueError naming the device and the fix when it cannot run.

    The kernel is one of CHOICES[framework] other than "auto" (for JAX on a CPU, "xla" stands for our
    causal_attention, which jaxgpt/gpt.py uses when given no implementation).
    """
    choices = CHOICES[framework]
    if requested not in choices:
        raise ValueError(f"--attn={requested!r} is not a {framework} attention kernel; use one of {', '.join(choices)}")
    cudnn_problem = _fused_problem(device, dtype, head_dim, 128)
    if requested == "auto":
        if framework == "torch":  # SDPA checks each kernel's constraints itself and falls back in order
            return "auto", "SDPA's own choice of kernel (flash, cuDNN, memory-efficient or math, as supported)"
        if cudnn_problem is None:
            return "cudnn", f"cuDNN fused attention ({device.describe()}, {dtype}, head size {head_dim})"
        return "xla", f"XLA attention, not cuDNN: {cudnn_problem}"
    alternatives = "--attn=auto or --attn=xla" if framework == "jax" else "--attn=auto, --attn=efficient or --attn=math"
    if requested in ("cudnn", "flash"):
        problem = cudnn_problem if requested == "cudnn" else _fused_problem(device, dtype, head_dim, 256)
        if problem is not None:
            raise ValueError(f"--attn={requested} cannot run here: {problem}; use {alternatives}")
    if requested == "efficient" and not device.nvidia:
        raise ValueError(f"--attn=efficient needs a CUDA GPU and this run is on {device.describe()}; "
                         "use --attn=auto or --attn=math")
    return requested, "as requested"
