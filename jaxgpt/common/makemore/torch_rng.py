"""PyTorch's CPU random numbers, replayed in numpy (framework-free: JAX runs use it without torch).

makemore.py and the lecture notebooks draw everything from torch's CPU generator: makemore.py's
train/test split (torch.randperm under torch.manual_seed(3407)), and the notebooks' initial
weights (torch.randn) and minibatches (torch.randint). Replaying those draws lets both of our
frameworks split the data exactly as makemore.py does, and start from the notebooks' very
weights and see their very batches (scripts/makemore.py --lecture-rng).

torch's CPU generator is the standard MT19937 seeded by init_genrand(seed); numpy's legacy
RandomState seeds it the same way, so numpy's raw 32-bit outputs are torch's. On top of them:
- randint(high): one 32-bit draw per element, u % high (ranges below 2**28; torch draws 64 bits above);
- randperm(n): Fisher-Yates, swapping r[i] with r[i + u % (n - i)] for i = 0 .. n-2;
- randn: 24-bit uniforms u, then Box-Muller on blocks of 16 (u1 = 1 - u[j], u2 = u[j+8] give
  elements j and j+8); a tensor whose size is not a multiple of 16 redraws 16 fresh uniforms
  for its last 16 elements. torch computes the transcendental functions with its own vector
  code, so values agree to ~1e-6 (not bit for bit); the integer draws agree exactly.
tests/test_makemore.py checks all three against torch.
"""

from __future__ import annotations

import math

import numpy as np

from jaxgpt.common.makemore.config import ModelConfig


class TorchGenerator:
    """torch.Generator().manual_seed(seed) (or the global generator after torch.manual_seed(seed))."""

    def __init__(self, seed: int):
        _, key, pos, *_ = np.random.RandomState(seed & 0xFFFFFFFF).get_state()
        self._mt = np.random.MT19937()
        self._mt.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": pos}}

    def _u32(self, n: int) -> np.ndarray:
        return self._mt.random_raw(n)  # uint64 holding MT19937's raw 32-bit outputs

    def _uniform24(self, n: int) -> np.ndarray:
        return ((self._u32(n) & 0xFFFFFF).astype(np.float64) * 2.0**-24).astype(np.float32)

    def skip(self, n: int) -> None:
        """Advance past n 32-bit draws (e.g. the minibatches of the steps a resumed run already took)."""
        for i in range(0, n, 1 << 24):
            self._u32(min(1 << 24, n - i))

    def randint(self, high: int, size: tuple[int, ...]) -> np.ndarray:
        """torch.randint(0, high, size, generator=g), as int64."""
        if not 0 < high < 2**28:
            raise ValueError(f"high={high}: only 0 < high < 2**28 is replayed (torch draws 64 bits beyond)")
        n = math.prod(size)
        return (self._u32(n) % high).astype(np.int64).reshape(size)

    def randperm(self, n: int) -> np.ndarray:
        """torch.randperm(n, generator=g), as int64."""
        if n >= 2**32:
            raise ValueError(f"n={n}: torch draws 64-bit numbers past 2**32 elements; not replayed")
        draws = self._u32(max(n - 1, 0))
        r = list(range(n))
        for i in range(n - 1):
            z = i + int(draws[i]) % (n - i)
            r[i], r[z] = r[z], r[i]
        return np.asarray(r, dtype=np.int64)

    def randn(self, *shape: int) -> np.ndarray:
        """torch.randn(shape, generator=g), float32; tensors of at least 16 elements (all we need)."""
        n = math.prod(shape)
        if n < 16:
            raise ValueError(f"randn of {n} < 16 elements takes torch's scalar path; not replayed")
        out = self._uniform24(n)
        blocks = n // 16
        out[: blocks * 16] = _box_muller16(out[: blocks * 16].reshape(blocks, 16)).ravel()
        if n % 16:
            out[n - 16:] = _box_muller16(self._uniform24(16)[None])[0]
        return out.reshape(shape)


def _box_muller16(u: np.ndarray) -> np.ndarray:
    """(k, 16) uniforms in [0, 1) -> (k, 16) normals, torch's normal_fill_16 layout."""
    u1, u2 = np.float32(1) - u[:, :8], u[:, 8:]
    radius = np.sqrt(np.float32(-2) * np.log(u1))
    theta = (2.0 * math.pi * u2.astype(np.float64)).astype(np.float32)
    return np.concatenate([radius * np.cos(theta), radius * np.sin(theta)], axis=1)


# ---- the lecture notebooks' runs ------------------------------------------------------------------
# The seed each notebook gives torch before drawing its weights; its minibatches come next, from
# the same generator: torch.randint(0, len(Xtr), (32,)) per step.
LECTURE_SEEDS = {
    "bn-mlp": 2147483647,  # lecture 3: g = torch.Generator().manual_seed(2147483647)
    "wavenet": 42,  # lecture 5: torch.manual_seed(42)
}


def lecture_init(config: ModelConfig) -> tuple[dict[str, np.ndarray], TorchGenerator]:
    """The notebook's initial weights for `config` (our parameter names, both frameworks' layout),
    and its generator, positioned at the first minibatch draw."""
    if config.model not in LECTURE_SEEDS:
        raise ValueError(f"no lecture run to replay for {config.model!r}; "
                         f"the notebooks' random numbers are replayed for {', '.join(LECTURE_SEEDS)}")
    g = TorchGenerator(LECTURE_SEEDS[config.model])
    V, E, H, T = config.vocab_size, config.n_embd, config.n_hidden, config.block_size
    if config.model == "bn-mlp":
        w = {"C": g.randn(V, E),
             "W1": g.randn(T * E, H) * np.float32((5 / 3) / (T * E) ** 0.5)}
        g.randn(H)  # b1: drawn by the notebook, then left out (BatchNorm's mean subtraction cancels it)
        w["W2"] = g.randn(H, V) * np.float32(0.01)
        w["b2"] = g.randn(V) * np.float32(0)
        w.update(_batchnorm("bn", H))
        return w, g
    # WaveNet, in lecture 5's layer order: Embedding, then (FlattenConsecutive, Linear, BatchNorm1d,
    # Tanh) per stage, then the head Linear (weights randn / sqrt(fan_in), the head's scaled by 0.1).
    w, fan_in = {"net.layers.0.weight": g.randn(V, E)}, E
    stages = T.bit_length() - 1
    for i in range(stages):
        w[f"net.layers.{2 + 4 * i}.weight"] = g.randn(2 * fan_in, H) / np.float32((2 * fan_in) ** 0.5)
        w.update(_batchnorm(f"net.layers.{3 + 4 * i}", H))
        fan_in = H
    head = 1 + 4 * stages
    w[f"net.layers.{head}.weight"] = g.randn(H, V) / np.float32(H ** 0.5) * np.float32(0.1)
    w[f"net.layers.{head}.bias"] = np.zeros(V, np.float32)
    return w, g


def _batchnorm(prefix: str, n: int) -> dict[str, np.ndarray]:
    ones, zeros = np.ones(n, np.float32), np.zeros(n, np.float32)
    return {f"{prefix}.gamma": ones, f"{prefix}.beta": zeros, f"{prefix}.running_mean": zeros,
            f"{prefix}.running_var": ones.copy()}
