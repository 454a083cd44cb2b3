"""Training, evaluation and the logits for sampling, for every makemore model in PyTorch.

The twin of jaxgpt/makemore/train.py, with the same interface; an eager loop over the steps.
torch runs these tiny ops fastest on one thread (thread hand-offs cost more than the maths,
and far more on a shared CPU), so the script sets torch.set_num_threads (default 1).
"""

from __future__ import annotations

import numpy as np
import torch

from jaxgpt.common.makemore.config import ModelConfig, TrainConfig, lr_at
from jaxgpt.common.makemore.data import step_seed
from torchref.makemore.backprop import BackpropMLP
from torchref.makemore.bigram import BigramCounts, NeuralBigram
from torchref.makemore.layers import load_numpy, named_params, num_params, probe, state_numpy
from torchref.makemore.mlp import MLP, BatchNormMLP, DeepBatchNormMLP
from torchref.makemore.rnn import RNN
from torchref.makemore.transformer import BoW, Transformer
from torchref.makemore.wavenet import WaveNet

EVAL_CHUNK = 16384  # examples per evaluation call: bounds memory on the 180k-example train split


def build_model(config: ModelConfig, train: TrainConfig | None = None, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    name = config.model
    if name == "bigram":
        return BigramCounts(config)
    if name == "bigram-nn":
        return NeuralBigram(config, l2=train.l2 if train else 0.01)
    if name in ("rnn", "gru"):
        return RNN(config, cell_type=name)
    cls = {"mlp": MLP, "bn-mlp": BatchNormMLP, "bn-mlp-deep": DeepBatchNormMLP, "backprop": BackpropMLP,
           "wavenet": WaveNet, "bow": BoW, "transformer": Transformer}[name]
    return cls(config)


class Trainer:
    framework = "torch"

    def __init__(self, config: ModelConfig, train: TrainConfig, seed: int = 0) -> None:
        self.config, self.train_cfg, self.step_count, self.seed = config, train, 0, seed
        self.model = build_model(config, train, seed)
        self.manual = isinstance(self.model, BackpropMLP)  # trains with its hand-written backward
        params = list(self.model.parameters())
        if train.optimizer == "adamw":
            # Every parameter decays, as makemore.py's AdamW(model.parameters(), weight_decay=0.01).
            self.opt = torch.optim.AdamW(params, lr=train.lr, betas=train.betas, eps=train.eps,
                                         weight_decay=train.weight_decay)
        elif params:
            self.opt = torch.optim.SGD(params, lr=train.lr)
        else:
            self.opt = None  # the count model has nothing to optimise

    # ---- training ---------------------------------------------------------------------------
    def fit_counts(self, X: np.ndarray, Y: np.ndarray) -> None:
        """The closed-form bigram: count the training pairs."""
        self.model.fit(torch.as_tensor(X), torch.as_tensor(Y))

    def set_train_data(self, X: np.ndarray, Y: np.ndarray) -> None:
        self._X, self._Y = torch.as_tensor(X).long(), torch.as_tensor(Y).long()

    def one_step(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """One optimiser step on one batch; returns the (detached) loss."""
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step_count, self.train_cfg)
        if self.manual:
            loss, grads = self.model.forward_backward(xb, yb)
            for k, p in named_params(self.model).items():
                p.grad = grads[k]
        else:
            kw = {}
            if self.config.dropout > 0:  # masks from a per-step generator: the same on resume
                kw["dropout_gen"] = torch.Generator().manual_seed(step_seed(self.seed, self.step_count))
            loss = self.model.loss(xb, yb, **kw)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
        self.opt.step()
        self.step_count += 1
        return loss.detach()

    def train_steps(self, idx: np.ndarray | None, k: int | None = None) -> float:
        """Run len(idx) steps on the batches X[idx[i]] (idx None: k full-batch steps); mean loss
        (NaN or inf when the run diverged: the caller stops)."""
        self.model.train()
        losses = []
        if idx is None:
            for _ in range(k):
                losses.append(self.one_step(self._X, self._Y))
        else:
            for ix in torch.as_tensor(idx).long():
                losses.append(self.one_step(self._X[ix], self._Y[ix]))
        return float(torch.stack(losses).mean())

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """One optimiser step on this batch (scripts/compare.py's interface): (loss, grad norm = nan, not tracked)."""
        self.set_train_data(x, y)
        return self.train_steps(np.arange(len(x), dtype=np.int32)[None]), float("nan")

    # ---- evaluation and sampling ------------------------------------------------------------
    @torch.no_grad()
    def loss(self, X: np.ndarray, Y: np.ndarray) -> float:
        """Mean NLL over a whole split, in eval mode (BatchNorm uses its running statistics)."""
        self.model.eval()
        total, count = 0.0, 0
        for i in range(0, len(X), EVAL_CHUNK):
            x, y = torch.as_tensor(X[i: i + EVAL_CHUNK]).long(), torch.as_tensor(Y[i: i + EVAL_CHUNK]).long()
            logits = self.model(x)
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1),
                                                    ignore_index=-1, reduction="sum")
            total, count = total + float(nll), count + int((y >= 0).sum())
        return total / max(count, 1)

    @torch.no_grad()
    def logits(self, X: np.ndarray) -> np.ndarray:
        self.model.eval()
        return self.model(torch.as_tensor(X).long()).numpy()

    # ---- weights ------------------------------------------------------------------------------
    def state_numpy(self) -> dict[str, np.ndarray]:
        return state_numpy(self.model)

    def load_numpy(self, weights: dict[str, np.ndarray]) -> None:
        load_numpy(self.model, weights)
        if self.opt is not None:
            self.opt.state.clear()  # moments restart (load_optimizer_numpy sets them)

    def optimizer_numpy(self) -> dict[str, np.ndarray]:
        """AdamW's step count and moments by parameter name (the JAX twin gives the same keys); {} for SGD."""
        if self.train_cfg.optimizer != "adamw":
            return {}
        params = named_params(self.model)
        states = [self.opt.state.get(p) for p in params.values()]
        if not all(states):  # no step taken yet: the moments are zeros, the count 0
            return {"count": np.asarray(0, np.int32), **{f"{m}.{k}": np.zeros(p.shape, np.float32)
                                                         for m in ("mu", "nu") for k, p in params.items()}}
        return {"count": np.asarray(int(states[0]["step"]), np.int32),
                **{f"mu.{k}": st["exp_avg"].numpy().copy() for k, st in zip(params, states)},
                **{f"nu.{k}": st["exp_avg_sq"].numpy().copy() for k, st in zip(params, states)}}

    def load_optimizer_numpy(self, state: dict[str, np.ndarray]) -> None:
        """Restore `optimizer_numpy()`'s arrays (from either framework); {} keeps fresh moments."""
        if not state or self.train_cfg.optimizer != "adamw":
            return
        params = named_params(self.model)
        missing = sorted({f"mu.{k}" for k in params} - set(state))
        if missing:
            raise ValueError(f"optimizer state does not fit the model: missing {missing[:5]}")
        self.opt.state.clear()
        if int(state["count"]) == 0:
            return
        for k, p in params.items():
            self.opt.state[p] = {"step": torch.tensor(float(state["count"])),
                                 "exp_avg": torch.as_tensor(np.array(state[f"mu.{k}"]), dtype=p.dtype),
                                 "exp_avg_sq": torch.as_tensor(np.array(state[f"nu.{k}"]), dtype=p.dtype)}

    def probe(self, x: np.ndarray, y: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """Activations, their gradients, parameters and gradients on one batch (--diagnostics)."""
        return probe(self.model, x, y)

    def num_params(self) -> int:
        return num_params(self.model) if self.config.model != "bigram" else self.config.vocab_size ** 2
