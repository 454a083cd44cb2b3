"""Parity suite set-up: fp32, highest matmul precision on both sides, deterministic torch.

JAX defaults to reduced (TF32-like / bf16-pass) matmul precision on accelerators; torch may
use TF32. Either would make twin models differ by ~1e-3, hiding real bugs, so both are pinned.
"""

import jax
import torch

jax.config.update("jax_default_matmul_precision", "highest")
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_float32_matmul_precision("highest")
torch.use_deterministic_algorithms(True, warn_only=True)
