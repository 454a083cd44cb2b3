"""Model configuration shared by `jaxgpt` (Flax NNX) and `torchref` (PyTorch).

Framework-free on purpose: `torchref` imports this module, so nothing here may import jax
or torch. Field names follow GPT-2 / nanoGPT (`n_layer`, `n_head`, `n_embd`, ...).

Presets are small named objects; `override()` applies type-checked `--key=value` strings
(the safe replacement for nanoGPT's `exec` configurator).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

ACTIVATIONS = ("gelu_tanh", "relu")
T = TypeVar("T")


class UsageError(ValueError):
    """A command-line mistake in a --key=value option (unknown key, malformed option, wrong type): exit 2."""


@dataclass(frozen=True)
class GPTConfig:
    block_size: int = 1024  # longest sequence the model accepts (learned position table size)
    vocab_size: int = 50257  # real token ids: logits are returned over exactly these
    # Rows of the embedding / head. 50304 (= 128 * 393) makes the head matmul tensor-core
    # friendly; rows >= vocab_size are never predicted or sampled (logits are cut to vocab_size).
    padded_vocab_size: int | None = None
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads; must divide n_embd
    n_embd: int = 768  # residual stream width
    dropout: float = 0.0  # on embeddings, attention probs, attention/MLP outputs
    bias: bool = True  # biases in Linear layers and LayerNorms (GPT-2: True)
    activation: str = "gelu_tanh"  # MLP nonlinearity: GPT-2's tanh GELU, or "relu" (original poetry GPT)
    tie_embeddings: bool = True  # lm_head shares wte's matrix (GPT-2); False = separate head
    lm_head_bias: bool = False  # bias on the head (only the untied poetry model has one)
    ln_eps: float = 1e-5  # LayerNorm epsilon, pinned: Flax NNX defaults to 1e-6, torch to 1e-5

    def __post_init__(self) -> None:
        problems = []
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be >= 1")
        if self.n_head >= 1 and self.n_embd % self.n_head != 0:
            problems.append(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                f"pick n_head among the divisors of n_embd (e.g. n_head={_nearest_divisor(self.n_embd, self.n_head)})"
            )
        if self.padded_vocab_size is not None and self.padded_vocab_size < self.vocab_size:
            problems.append(
                f"padded_vocab_size={self.padded_vocab_size} < vocab_size={self.vocab_size}; "
                "it must be >= vocab_size (or None for no padding)"
            )
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout={self.dropout} must be in [0, 1)")
        if self.activation not in ACTIVATIONS:
            problems.append(f"activation={self.activation!r} is unknown; use one of {ACTIVATIONS}")
        if self.tie_embeddings and self.lm_head_bias:
            problems.append("lm_head_bias=True needs tie_embeddings=False (a tied head has no bias in GPT-2)")
        if problems:
            raise ValueError("invalid GPTConfig: " + "; ".join(problems))

    @property
    def n_vocab_rows(self) -> int:
        """Rows in wte / lm_head: the padded size when padding is on."""
        return self.padded_vocab_size or self.vocab_size

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown GPTConfig fields {unknown}; known fields are {sorted(names)}")
        return cls(**d)


def _nearest_divisor(n: int, k: int) -> int:
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - k), d))


# GPT-2 family (Radford et al. 2019): sizes from the released checkpoints.
_GPT2 = dict(block_size=1024, vocab_size=50257, bias=True, activation="gelu_tanh", tie_embeddings=True)

PRESETS: dict[str, GPTConfig] = {
    "gpt2-124m": GPTConfig(**_GPT2, n_layer=12, n_head=12, n_embd=768),
    "gpt2-350m": GPTConfig(**_GPT2, n_layer=24, n_head=16, n_embd=1024),
    "gpt2-774m": GPTConfig(**_GPT2, n_layer=36, n_head=20, n_embd=1280),
    "gpt2-1558m": GPTConfig(**_GPT2, n_layer=48, n_head=25, n_embd=1600),
    # The poetry GPT of the original study (Karpathy's "Let's build GPT" model on French verse):
    # vocab 400, ReLU MLP, untied head with a bias, dropout 0.2.
    "poetry-original": GPTConfig(
        block_size=128, vocab_size=400, n_layer=4, n_head=4, n_embd=200, dropout=0.2,
        bias=True, activation="relu", tie_embeddings=False, lm_head_bias=True,
    ),
    # Our default poetry GPT (measured against poetry-original in docs/BENCHMARKS.md section 4): the
    # original's size with a 1024-id BPE vocab (2.6 instead of 1.85 bytes per token: 40% more text per
    # step for ~10% more compute in the head), no dropout (1000 steps of 32x128 tokens see a third of
    # the 11M-token training split, so there is nothing to regularise yet, and JAX's step is ~1.4x
    # faster without it), GPT-2's tanh GELU and tied head (fewer parameters to learn from little data).
    "poetry": GPTConfig(
        block_size=128, vocab_size=1024, n_layer=4, n_head=4, n_embd=200, dropout=0.0,
        bias=True, activation="gelu_tanh", tie_embeddings=True,
    ),
    # Tiny configs for tests and CPU benchmarks (HF's PT<->Flax test size: hidden 32, vocab 99).
    "tiny": GPTConfig(block_size=16, vocab_size=99, n_layer=2, n_head=4, n_embd=32),
    "tiny-untied": GPTConfig(
        block_size=16, vocab_size=99, n_layer=2, n_head=4, n_embd=32,
        activation="relu", tie_embeddings=False, lm_head_bias=True,
    ),
    # GPT-2 shaped, small enough to time a training step on a 2-core CPU.
    "gpt2-cpu": GPTConfig(
        block_size=256, vocab_size=50257, padded_vocab_size=50304, n_layer=4, n_head=4, n_embd=256,
    ),
}


def lookup(registry: Mapping[str, T], name: str, kind: str = "preset") -> T:
    """`registry[name]`, or a ValueError listing the names there are (every registry of presets uses it)."""
    try:
        return registry[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(registry), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"unknown {kind} {name!r}{hint}; available: {', '.join(sorted(registry))}") from None


def get_preset(name: str) -> GPTConfig:
    return lookup(PRESETS, name, "model preset")


def check_sampling_args(temperature: float, top_k: int | None, top_p: float | None, vocab_size: int, *,
                        max_new_tokens: int | None = None, stop_token: int | None = None) -> None:
    """Validate generate()'s sampling arguments (shared by both frameworks' generate)."""
    if max_new_tokens is not None and max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 0")
    if stop_token is not None and not 0 <= stop_token < vocab_size:
        raise ValueError(f"stop_token={stop_token} is not a token id of this model (ids are 0..{vocab_size - 1}), "
                         "so generation could never stop on it; pass an id of the model's vocabulary or None")
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0 (0 means greedy)")
    if top_k is not None and not 1 <= top_k <= vocab_size:
        raise ValueError(f"top_k={top_k} must be in [1, vocab_size={vocab_size}]")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p={top_p} must be in (0, 1]")


def _coerce(raw: str, typ: Any, key: str) -> Any:
    """Parse one override value for a dataclass field of (possibly optional) type `typ`."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if raw.lower() in ("none", "null"):
            return None
        if len(args) == 1:
            return _coerce(raw, args[0], key)
        for a in args:
            try:
                return _coerce(raw, a, key)
            except ValueError:
                continue
        raise UsageError(f"--{key}={raw!r}: expected one of {args}")
    if typ is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"--{key}={raw!r}: expected a boolean (true/false)")
    if typ in (int, float, str):
        try:
            return typ(raw)
        except ValueError:
            raise UsageError(f"--{key}={raw!r}: expected {typ.__name__}") from None
    if origin is tuple:
        parts = [p for p in raw.split(",") if p]
        (elem, *_rest) = typing.get_args(typ) or (str,)
        return tuple(_coerce(p, elem, key) for p in parts)
    raise UsageError(f"--{key}: cannot parse values of type {typ!r}")


def override(cfg: T, args: list[str]) -> T:
    """Return a copy of dataclass `cfg` with `--key=value` strings applied, type-checked.

    >>> override(GPTConfig(), ["--n_layer=2", "--dropout=0.1"]).n_layer
    2
    """
    hints = typing.get_type_hints(type(cfg))
    changes: dict[str, Any] = {}
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            raise UsageError(f"override {arg!r} is not of the form --key=value")
        key, raw = arg[2:].split("=", 1)
        key = key.replace("-", "_")
        if key not in hints:
            raise UsageError(f"unknown option --{key} for {type(cfg).__name__}; valid keys: {', '.join(sorted(hints))}")
        changes[key] = _coerce(raw, hints[key], key)
    return dataclasses.replace(cfg, **changes)


def apply_overrides(cfgs: Sequence[Any], args: Sequence[str]) -> list[Any]:
    """Route each `--key=value` to the one dataclass in `cfgs` that has the field, then apply them.

    The one override router of every script: keys may use '-' or '_'; a key that no dataclass has
    is an error listing the valid keys (with the closest one), a key that several have is an error
    (the configs must not share field names), and each dataclass gets all of its overrides at once,
    so e.g. --max_steps=30 --warmup_steps=5 is validated together.

    >>> [c.n_layer for c in apply_overrides([GPTConfig()], ["--n-layer=2"])]
    [2]
    """
    fields = [{f.name for f in dataclasses.fields(c)} for c in cfgs]
    routed: list[list[str]] = [[] for _ in cfgs]
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            raise UsageError(f"option {arg!r} is not of the form --key=value")
        key = arg[2:].split("=", 1)[0].replace("-", "_")
        owners = [i for i, names in enumerate(fields) if key in names]
        if not owners:
            valid = sorted(set().union(*fields))
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean --{close[0]}?)" if close else ""
            raise UsageError(f"unknown option --{key}{hint}; valid --key=value options: {', '.join(valid)}")
        if len(owners) > 1:
            raise UsageError(f"--{key} is ambiguous: it is a field of {[type(cfgs[i]).__name__ for i in owners]}")
        routed[owners[0]].append(arg)
    return [override(c, a) if a else c for c, a in zip(cfgs, routed)]
