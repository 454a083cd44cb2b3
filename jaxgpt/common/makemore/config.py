"""Model and training recipes of the makemore ladder, framework-free (shared with torchref).

Each rung of the ladder is a named preset: a ModelConfig (the architecture) plus a TrainConfig
(the schedule of the lecture, or of makemore.py, it comes from). Both frameworks build their
model from the same ModelConfig, so a checkpoint written by one loads into the other.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from jaxgpt.common.config import lookup
from jaxgpt.common.schedule import OptimConfig
from jaxgpt.common.schedule import lr_at as warmup_cosine

VOCAB_SIZE = 27  # '.' (start/end of a name) + a..z

# The models of the ladder, in the order the lectures build them.
MODELS = ("bigram", "bigram-nn", "mlp", "bn-mlp", "bn-mlp-deep", "backprop", "wavenet",
          "rnn", "gru", "bow", "transformer")
# Models that read a fixed window of previous characters and predict one next character;
# the others (makemore.py's) read a whole name and predict every next character at once.
WINDOW_MODELS = ("bigram", "bigram-nn", "mlp", "bn-mlp", "bn-mlp-deep", "backprop", "wavenet")
# Models with tanh layers, whose activations, gradients and update ratios --diagnostics plots.
DIAGNOSTIC_MODELS = ("mlp", "bn-mlp", "bn-mlp-deep", "backprop", "wavenet")
# Models with dropout (nanoGPT's placement: embeddings, attention weights, residual branches).
DROPOUT_MODELS = ("transformer",)


class ConfigError(ValueError):
    """A configuration a user asked for that cannot work (message says which field and why)."""


@dataclass(frozen=True)
class ModelConfig:
    """A model's shape. Errors name the command-line flag of the field (scripts/makemore.py)."""

    model: str  # one of MODELS
    block_size: int  # context: characters seen (window models) or the longest sequence (makemore's)
    vocab_size: int = VOCAB_SIZE
    n_embd: int = 10  # character embedding size
    n_hidden: int = 200  # hidden width (makemore.py calls it n_embd2)
    n_layer: int = 1  # Linear layers (deep BN-MLP) or transformer blocks
    n_head: int = 4  # attention heads (transformer)
    bn_momentum: float = 0.001  # BatchNorm running-stat update rate (part 3 used 0.001, its layer class 0.1)
    smoothing: float = 1.0  # add-k smoothing of the bigram counts (k=1 in lecture 1)
    dropout: float = 0.0  # dropout rate in training (DROPOUT_MODELS only); 0 = makemore.py's model

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        if self.block_size < 1:
            raise ConfigError(f"--context (block_size) must be >= 1, got {self.block_size}")
        for flag, value in (("--n-embd", self.n_embd), ("--n-embd2 (n_hidden)", self.n_hidden),
                            ("--n-layer", self.n_layer), ("--n-head", self.n_head)):
            if value < 1:
                raise ConfigError(f"{flag} must be an integer >= 1, got {value}")
        if self.model == "wavenet":
            b = self.block_size
            # Each FlattenConsecutive(2) stage halves the sequence; they must end at exactly one.
            if b < 2 or b & (b - 1):
                raise ConfigError(f"--context: the WaveNet context must be a power of two >= 2 (it is halved "
                                  f"by each FlattenConsecutive(2) stage), got {b}; try 8 or 16")
        if self.model == "bn-mlp-deep" and self.n_layer < 2:
            raise ConfigError(f"--n-layer: the deep BN-MLP needs >= 2 layers (a hidden one and the output one), "
                              f"got {self.n_layer}")
        if self.model == "transformer" and self.n_embd % self.n_head:
            raise ConfigError(f"--n-embd {self.n_embd} must be divisible by --n-head {self.n_head} "
                              f"(each head gets n_embd / n_head channels); e.g. --n-head 4 with --n-embd 64")
        if not (math.isfinite(self.dropout) and 0 <= self.dropout < 1):
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.dropout and self.model not in DROPOUT_MODELS:
            raise ConfigError(f"--dropout: the {self.model} model has no dropout (only {', '.join(DROPOUT_MODELS)}); "
                              "drop the flag")
        if not (math.isfinite(self.bn_momentum) and 0 < self.bn_momentum <= 1):
            raise ConfigError(f"bn_momentum must be in (0, 1], got {self.bn_momentum}")

    @property
    def is_window(self) -> bool:
        return self.model in WINDOW_MODELS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return cls(**d)


@dataclass(frozen=True)
class TrainConfig:
    steps: int  # optimiser steps (0: closed form, the bigram counts)
    batch_size: int = 32  # examples per step; 0 = the whole training set (full-batch descent)
    optimizer: str = "sgd"  # "sgd" (the lectures), "adamw" (makemore.py) or "none" (counts)
    lr: float = 0.1  # learning rate of the first phase (peak rate for "cosine")
    schedule: str = "step"  # "step": lr, then lr_final from lr_decay_step (the lectures');
    #                         "cosine": linear warm-up to lr, cosine down to lr_final at `steps`
    lr_decay_step: int | None = None  # "step": from this step on the rate is lr_final (None: constant lr)
    lr_final: float = 0.01
    warmup_steps: int = 0  # "cosine": steps of linear warm-up
    weight_decay: float = 0.0  # AdamW's decoupled decay, on every parameter as makemore.py does
    betas: tuple[float, float] = (0.9, 0.99)  # makemore.py's AdamW betas
    eps: float = 1e-8
    l2: float = 0.0  # L2 penalty mean(W**2) added to the loss (the neural bigram's regulariser)
    split: str = "lecture"  # "lecture" (80/10/10) or "makemore" (test = min(1000, 10%))
    val_fraction: float = 0.0  # "makemore" split: carve this fraction of the training names out as a
    #                            validation set (seeded, data.split_words); 0 = makemore.py's own (val = test)
    eval_every: int = 0  # evaluate val loss every this many steps (0: only at the end)

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ConfigError(f"--steps (--max-steps) must be >= 0, got {self.steps}")
        if self.batch_size < 0:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.optimizer not in ("sgd", "adamw", "none"):
            raise ConfigError(f"optimizer must be sgd, adamw or none, got {self.optimizer!r}")
        if self.optimizer != "none" and not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--learning-rate must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"--weight-decay must be a finite number >= 0, got {self.weight_decay}")
        if not (math.isfinite(self.lr_final) and self.lr_final >= 0):
            raise ConfigError(f"lr_final must be a finite number >= 0, got {self.lr_final}")
        if self.eval_every < 0 or self.warmup_steps < 0:
            raise ConfigError(f"eval_every and warmup_steps must be >= 0, got {self.eval_every}, {self.warmup_steps}")
        if self.split not in ("lecture", "makemore"):
            raise ConfigError(f"--split must be 'lecture' or 'makemore', got {self.split!r}")
        if self.val_fraction and not (math.isfinite(self.val_fraction) and 0 < self.val_fraction <= 0.5):
            raise ConfigError(f"--val-fraction must be in (0, 0.5], got {self.val_fraction}")
        if self.val_fraction and self.split != "makemore":
            raise ConfigError("--val-fraction carves a validation set out of makemore's training names: it needs "
                              "--split makemore (the lecture split already has its own 10% validation set)")
        if self.schedule not in ("step", "cosine"):
            raise ConfigError(f"schedule must be 'step' or 'cosine', got {self.schedule!r}")
        if self.schedule == "cosine" and not (0 <= self.lr_final <= self.lr and 0 <= self.warmup_steps <= self.steps):
            raise ConfigError(f"cosine schedule needs 0 <= lr_final <= lr and 0 <= warmup_steps <= steps, got "
                              f"lr={self.lr}, lr_final={self.lr_final}, warmup_steps={self.warmup_steps}, steps={self.steps}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])  # JSON gives a list
        return cls(**d)


# Which model uses which size field, and the command-line flag that sets it (errors name the flag).
SIZE_FLAGS = {"block_size": "--context", "n_embd": "--n-embd", "n_hidden": "--n-embd2", "n_layer": "--n-layer",
              "n_head": "--n-head", "dropout": "--dropout"}
_USES = {
    "block_size": set(MODELS) - {"bigram", "bigram-nn"},  # the bigrams see exactly one character
    "n_embd": set(MODELS) - {"bigram", "bigram-nn"},
    "n_hidden": set(MODELS) - {"bigram", "bigram-nn", "transformer"},  # the transformer's MLP is 4 x n_embd
    "n_layer": {"bn-mlp-deep", "transformer"},
    "n_head": {"transformer"},
    "dropout": set(DROPOUT_MODELS),
}


def with_sizes(cfg: ModelConfig, **sizes: Any) -> ModelConfig:
    """`cfg` with the given size fields (None: keep the preset's); a field the model does not have is an error."""
    given = {k: v for k, v in sizes.items() if v is not None}
    for k in given:
        if cfg.model not in _USES[k]:
            users = ", ".join(m for m in MODELS if m in _USES[k])
            raise ConfigError(f"{SIZE_FLAGS[k]} does not apply to the {cfg.model} model (it applies to: {users}); "
                              "drop the flag")
    return replace(cfg, **given)


def rescale(cfg: TrainConfig, steps: int | None) -> TrainConfig:
    """The same schedule over `steps` steps: the lr drop and the warm-up move proportionally (a cosine
    always ends at `steps`), evaluation at least ten times. None: unchanged."""
    if steps is None or cfg.steps == 0 or steps == cfg.steps:
        return cfg
    if steps < 0:
        raise ConfigError(f"--steps must be >= 0, got {steps}")
    decay = cfg.lr_decay_step
    if decay is not None:
        decay = round(decay * steps / cfg.steps)
    return replace(cfg, steps=steps, lr_decay_step=decay, warmup_steps=round(cfg.warmup_steps * steps / cfg.steps),
                   eval_every=min(cfg.eval_every, max(steps // 10, 1)))


@functools.lru_cache(maxsize=16)
def _cosine_config(cfg: TrainConfig) -> OptimConfig:
    """The GPT schedule's config for a cosine TrainConfig (built once, not on every step)."""
    return OptimConfig(lr=cfg.lr, min_lr_ratio=cfg.lr_final / cfg.lr, warmup_steps=cfg.warmup_steps,
                       max_steps=max(cfg.steps, 1))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of 0-based `step`; both frameworks' trainers call this (JAX per compiled chunk)."""
    if cfg.schedule == "cosine":  # the GPT trainer's warm-up + cosine, one definition
        return warmup_cosine(step, _cosine_config(cfg))
    if cfg.lr_decay_step is not None and step >= cfg.lr_decay_step:
        return cfg.lr_final
    return cfg.lr


@dataclass(frozen=True)
class Preset:
    model: ModelConfig
    train: TrainConfig
    source: str = ""  # the lecture / file the recipe and its reference loss come from
    target: float | None = None  # the reference loss to reach ("Done when" table)
    target_split: str = "val"  # the split `target` is measured on
    extra: dict[str, Any] = field(default_factory=dict)


_SGD_200K = TrainConfig(steps=200_000, lr=0.1, lr_decay_step=100_000, lr_final=0.01, eval_every=10_000)
_ADAMW = TrainConfig(steps=30_000, optimizer="adamw", lr=5e-4, weight_decay=0.01, split="makemore",
                     eval_every=1000)
_SEQ = {"block_size": 16, "n_embd": 64, "n_hidden": 64, "n_layer": 4, "n_head": 4}  # makemore.py defaults (16 = longest name + 1)

PRESETS: dict[str, Preset] = {
    "bigram": Preset(ModelConfig("bigram", block_size=1), TrainConfig(steps=0, optimizer="none"),
                     "lecture 1 (count model, add-1 smoothing)", 2.455),
    "bigram-nn": Preset(ModelConfig("bigram-nn", block_size=1),
                        TrainConfig(steps=200, batch_size=0, lr=50.0, l2=0.01, eval_every=50),
                        "lecture 1 (one-hot x W, full-batch descent, lr 50, L2 0.01)"),
    "mlp": Preset(ModelConfig("mlp", block_size=3, n_embd=10, n_hidden=200), _SGD_200K,
                  "lecture 2 (Bengio 2003), with lecture 3's init scales", 2.17),
    "bn-mlp": Preset(ModelConfig("bn-mlp", block_size=3, n_embd=10, n_hidden=200, bn_momentum=0.001), _SGD_200K,
                     "lecture 3 (BatchNorm)", 2.11),
    "bn-mlp-deep": Preset(ModelConfig("bn-mlp-deep", block_size=3, n_embd=10, n_hidden=100, n_layer=6,
                                      bn_momentum=0.1),
                          replace(_SGD_200K, lr_decay_step=150_000), "lecture 3 (6-layer BatchNorm MLP)"),
    "backprop": Preset(ModelConfig("backprop", block_size=3, n_embd=10, n_hidden=200, bn_momentum=0.001),
                       _SGD_200K, "lecture 4 (backprop ninja, hand-written backward)", 2.12),
    "wavenet": Preset(ModelConfig("wavenet", block_size=8, n_embd=24, n_hidden=128, bn_momentum=0.1),
                      replace(_SGD_200K, lr_decay_step=150_000), "lecture 5 (WaveNet, 76,579 params)", 1.995),
    "rnn": Preset(ModelConfig("rnn", **_SEQ), _ADAMW, "makemore.py (RNN)", None, "test"),
    "gru": Preset(ModelConfig("gru", **_SEQ), _ADAMW, "makemore.py (GRU)", None, "test"),
    "bow": Preset(ModelConfig("bow", **_SEQ), _ADAMW, "makemore.py (BoW)", None, "test"),
    # makemore.py trains at a constant 5e-4 forever and keeps the checkpoint with the best *test*
    # loss; at a constant rate this 200k-parameter model overfits the 31k names after ~15k steps
    # (docs/BENCHMARKS.md §2). A 500-step warm-up and a cosine to 5e-5 over 15k steps ends at a
    # better test loss than any constant-rate checkpoint, with no selection on the test set.
    "transformer": Preset(ModelConfig("transformer", **_SEQ),
                          replace(_ADAMW, steps=15_000, schedule="cosine", warmup_steps=500, lr_final=5e-5),
                          "makemore.py (Transformer), warm-up + cosine schedule", 1.92, "test"),
}


def get_preset(name: str) -> Preset:
    try:
        return lookup(PRESETS, name, "makemore model")
    except ValueError as e:  # the one registry lookup's message, as this module's error type
        raise ConfigError(str(e)) from None
