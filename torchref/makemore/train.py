"""Training, evaluation and the logits for sampling, for every makemore model in PyTorch.

The twin of jaxgpt/makemore/train.py, with the same interface; an eager loop over the steps.
torch runs these tiny ops fastest on one thread (thread hand-offs cost more than the maths,
and far more on a shared CPU), so the script sets torch.set_num_threads (default 1).
"""

from __future__ import annotations

import numpy as np
import torch

from jaxgpt.common.makemore.config import ModelConfig, TrainConfig, lr_at
from torchref.makemore.backprop import BackpropMLP
from torchref.makemore.bigram import BigramCounts, NeuralBigram
from torchref.makemore.layers import load_numpy, named_params, num_params, state_numpy
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
        self.config, self.train_cfg, self.step_count = config, train, 0
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
            loss = self.model.loss(xb, yb)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
        self.opt.step()
        self.step_count += 1
        return loss.detach()

    def train_steps(self, idx: np.ndarray | None, k: int | None = None) -> float:
        """Run len(idx) steps on the batches X[idx[i]] (idx None: k full-batch steps); mean loss."""
        self.model.train()
        losses = []
        if idx is None:
            for _ in range(k):
                losses.append(self.one_step(self._X, self._Y))
        else:
            for ix in torch.as_tensor(idx).long():
                losses.append(self.one_step(self._X[ix], self._Y[ix]))
        loss = float(torch.stack(losses).mean())
        if not np.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss} at step ~{self.step_count}; lower the learning rate")
        return loss

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
            self.opt.state.clear()  # moments restart; the step (and lr schedule) does not

    def num_params(self) -> int:
        return num_params(self.model) if self.config.model != "bigram" else self.config.vocab_size ** 2
