"""Training, evaluation and the logits for sampling, for every makemore model in JAX.

Tiny models make Python the bottleneck: nnx.jit walks the module graph on every call, which
costs more than the maths here. So the Trainer splits the model (nnx.split), and runs a pure
jax.jit function that does K optimiser steps in one call with jax.lax.scan (K = the batches of
indices it is given); the model is merged back only for evaluation, sampling and saving. The
jitted functions are built once per (model graph, training config) and shared by every Trainer.
Mirrored by torchref/makemore/train.py (same interface, eager loop).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxgpt.common.makemore.config import ModelConfig, TrainConfig, lr_at
from jaxgpt.makemore.backprop import BackpropMLP
from jaxgpt.makemore.bigram import BigramCounts, NeuralBigram
from jaxgpt.makemore.layers import cross_entropy, load_numpy, named_params, num_params, probe, state_numpy
from jaxgpt.makemore.mlp import MLP, BatchNormMLP, DeepBatchNormMLP
from jaxgpt.makemore.rnn import RNN
from jaxgpt.makemore.transformer import BoW, Transformer
from jaxgpt.makemore.wavenet import WaveNet

EVAL_CHUNK = 16384  # examples per evaluation call: bounds memory on the 180k-example train split


def build_model(config: ModelConfig, train: TrainConfig | None = None, seed: int = 0) -> nnx.Module:
    rngs = nnx.Rngs(params=seed)
    name = config.model
    if name == "bigram":
        return BigramCounts(config)
    if name == "bigram-nn":
        return NeuralBigram(config, rngs=rngs, l2=train.l2 if train else 0.01)
    if name in ("rnn", "gru"):
        return RNN(config, rngs=rngs, cell_type=name)
    cls = {"mlp": MLP, "bn-mlp": BatchNormMLP, "bn-mlp-deep": DeepBatchNormMLP, "backprop": BackpropMLP,
           "wavenet": WaveNet, "bow": BoW, "transformer": Transformer}[name]
    return cls(config, rngs=rngs)


def make_optimizer(train: TrainConfig) -> optax.GradientTransformation:
    """AdamW (makemore.py's, decay on every parameter) or plain SGD. inject_hyperparams: the learning
    rate lives in the optimiser state and is set every step from the schedule (config.lr_at of the
    Trainer's own step counter), so a reloaded model continues the schedule where it was."""
    if train.optimizer == "adamw":
        b1, b2 = train.betas
        return optax.inject_hyperparams(optax.adamw)(learning_rate=train.lr, b1=b1, b2=b2, eps=train.eps,
                                                     weight_decay=train.weight_decay)
    return optax.inject_hyperparams(optax.sgd)(learning_rate=train.lr)


@functools.lru_cache(maxsize=32)
def compiled_steps(graphdef: nnx.GraphDef, train: TrainConfig, manual: bool, dropout: bool):
    """(run, run_full): K optimiser steps as one jitted lax.scan (batches of indices / full batch).

    Module-level and cached on (graph, training config), so Trainers of the same model (a resumed
    run, the twins of a test) share one compilation instead of compiling again.
    """
    tx = make_optimizer(train)

    def one_step(carry, ix, lr, step, key, X, Y):
        state, opt_state = carry
        model = nnx.merge(graphdef, state)
        xb, yb = (X, Y) if ix is None else (X[ix], Y[ix])
        if manual:
            loss, grads = model.forward_backward(xb, yb)
        else:
            # Dropout masks come from fold_in(key(seed), step): a function of the step alone, so a
            # resumed run drops the units the uninterrupted run would have dropped.
            kw = {"dropout_key": jax.random.fold_in(key, step)} if dropout else {}
            loss, g = nnx.value_and_grad(lambda m: m.loss(xb, yb, **kw))(model)
            grads = {".".join(map(str, p)): v[...] for p, v in nnx.to_flat_state(g)}
        variables = named_params(model)
        params = {k: v[...] for k, v in variables.items()}
        opt_state.hyperparams["learning_rate"] = lr
        updates, opt_state = tx.update(grads, opt_state, params)
        for k, p in optax.apply_updates(params, updates).items():
            variables[k][...] = p
        return (nnx.state(model), opt_state), loss

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def run(state, opt_state, lrs, steps, key, X, Y, idx):  # idx (K, B) batch indices; lrs, steps (K,)
        (state, opt_state), losses = jax.lax.scan(
            lambda c, a: one_step(c, a[0], a[1], a[2], key, X, Y), (state, opt_state), (idx, lrs, steps))
        return state, opt_state, losses

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def run_full(state, opt_state, lrs, steps, key, X, Y):  # len(lrs) full-batch steps
        (state, opt_state), losses = jax.lax.scan(
            lambda c, a: one_step(c, None, a[0], a[1], key, X, Y), (state, opt_state), (lrs, steps))
        return state, opt_state, losses

    return run, run_full


@functools.lru_cache(maxsize=32)
def compiled_eval(graphdef: nnx.GraphDef):
    """(loss_sum, logits) in eval mode, jitted once per model graph (shared like compiled_steps)."""

    @jax.jit
    def loss_sum(state, X, Y):
        logits = nnx.merge(graphdef, state)(X)
        n = jnp.sum(Y >= 0)
        return cross_entropy(logits, Y) * n, n

    @jax.jit
    def logits(state, X):
        return nnx.merge(graphdef, state)(X)

    return loss_sum, logits


class Trainer:
    framework = "jax"

    def __init__(self, config: ModelConfig, train: TrainConfig, seed: int = 0) -> None:
        self.config, self.train_cfg, self.step_count, self.seed = config, train, 0, seed
        self.model = build_model(config, train, seed)
        self.manual = isinstance(self.model, BackpropMLP)  # trains with its hand-written backward
        self.key = jax.random.key(seed)  # dropout masks: fold_in(key, step)
        self.tx = make_optimizer(train)
        self.opt_state = self.tx.init(self._params())

    def _params(self) -> dict[str, jax.Array]:
        return {k: v[...] for k, v in named_params(self.model).items()}

    # ---- training ---------------------------------------------------------------------------
    def fit_counts(self, X: np.ndarray, Y: np.ndarray) -> None:
        """The closed-form bigram: count the training pairs."""
        self.model.fit(jnp.asarray(X), jnp.asarray(Y))

    def set_train_data(self, X: np.ndarray, Y: np.ndarray) -> None:
        self._X, self._Y = jnp.asarray(X), jnp.asarray(Y)

    def train_steps(self, idx: np.ndarray | None, k: int | None = None) -> float:
        """Run len(idx) SGD/AdamW steps on the batches X[idx[i]] (idx None: k full-batch steps).

        Returns the mean training loss of those steps (a host sync: call it per chunk, not per step);
        NaN or inf when the run diverged (the caller stops: the model holds the diverged state).
        """
        self.model.train()
        graphdef, state = nnx.split(self.model)
        run, run_full = compiled_steps(graphdef, self.train_cfg, self.manual, self.config.dropout > 0)
        n = k if idx is None else len(idx)
        # The schedule is evaluated on the host, once per step of the chunk (the same lr_at torch calls).
        lrs = jnp.asarray([lr_at(self.step_count + i, self.train_cfg) for i in range(n)], jnp.float32)
        steps = jnp.arange(self.step_count, self.step_count + n, dtype=jnp.int32)
        if idx is None:
            state, self.opt_state, losses = run_full(state, self.opt_state, lrs, steps, self.key, self._X, self._Y)
        else:
            state, self.opt_state, losses = run(state, self.opt_state, lrs, steps, self.key, self._X, self._Y,
                                                jnp.asarray(idx))
        nnx.update(self.model, state)
        self.step_count += int(losses.shape[0])
        return float(losses.mean())

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """One optimiser step on this batch (scripts/compare.py's interface): (loss, grad norm = nan, not tracked)."""
        self.set_train_data(x, y)
        return self.train_steps(np.arange(len(x), dtype=np.int32)[None]), float("nan")

    # ---- evaluation and sampling ------------------------------------------------------------
    def _eval_fns(self):
        self.model.eval()
        return compiled_eval(nnx.split(self.model)[0])

    def loss(self, X: np.ndarray, Y: np.ndarray) -> float:
        """Mean NLL over a whole split, in eval mode (BatchNorm uses its running statistics)."""
        loss_sum, _ = self._eval_fns()
        _, state = nnx.split(self.model)
        total, count = 0.0, 0
        for i in range(0, len(X), EVAL_CHUNK):
            s, n = loss_sum(state, jnp.asarray(X[i: i + EVAL_CHUNK]), jnp.asarray(Y[i: i + EVAL_CHUNK]))
            total, count = total + float(s), count + int(n)
        return total / max(count, 1)

    def logits(self, X: np.ndarray) -> np.ndarray:
        _, logits = self._eval_fns()
        _, state = nnx.split(self.model)
        return np.asarray(logits(state, jnp.asarray(X)))

    # ---- weights ------------------------------------------------------------------------------
    def state_numpy(self) -> dict[str, np.ndarray]:
        return state_numpy(self.model)

    def load_numpy(self, weights: dict[str, np.ndarray]) -> None:
        load_numpy(self.model, weights)
        self.opt_state = self.tx.init(self._params())  # moments restart (load_optimizer_numpy sets them)

    def optimizer_numpy(self) -> dict[str, np.ndarray]:
        """AdamW's step count and moments by parameter name (torch's twin gives the same keys); {} for SGD."""
        if self.train_cfg.optimizer != "adamw":
            return {}
        adam = self.opt_state.inner_state[0]
        return {"count": np.asarray(adam.count), **{f"mu.{k}": np.asarray(v) for k, v in adam.mu.items()},
                **{f"nu.{k}": np.asarray(v) for k, v in adam.nu.items()}}

    def load_optimizer_numpy(self, state: dict[str, np.ndarray]) -> None:
        """Restore `optimizer_numpy()`'s arrays (from either framework); {} keeps fresh moments."""
        if not state or self.train_cfg.optimizer != "adamw":
            return
        adam = self.opt_state.inner_state[0]
        missing = sorted({f"mu.{k}" for k in adam.mu} - set(state))
        if missing:
            raise ValueError(f"optimizer state does not fit the model: missing {missing[:5]}")
        adam = adam._replace(count=jnp.asarray(state["count"], jnp.int32),
                             mu={k: jnp.asarray(state[f"mu.{k}"], v.dtype) for k, v in adam.mu.items()},
                             nu={k: jnp.asarray(state[f"nu.{k}"], v.dtype) for k, v in adam.nu.items()})
        self.opt_state = self.opt_state._replace(inner_state=(adam, *self.opt_state.inner_state[1:]))

    def probe(self, x: np.ndarray, y: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """Activations, their gradients, parameters and gradients on one batch (--diagnostics)."""
        return probe(self.model, x, y)

    def num_params(self) -> int:
        return num_params(self.model) if self.config.model != "bigram" else self.config.vocab_size ** 2
