"""The GPT of the ladder in Flax NNX: GPT-2 (124M..1558M) and the small poetry GPT, one model.

References: nanoGPT `model.py` (Karpathy), the GPT-2 paper (Radford et al. 2019), the Flax NNX
docs. Mirrored class-for-class by `torchref/gpt.py`; parity is in `parity_tests/test_gpt.py`.

Parameter names follow the GPT-2 checkpoint (`transformer.wte`, `transformer.h.{i}.attn.c_attn`,
...), so `state_numpy()` yields exactly the keys of a PyTorch/Hugging Face state dict and
`jaxgpt/common/weights.py` needs only one table. Flax stores a Linear's kernel as (in, out), the
transpose of torch's (out, in) weight: `state_numpy()` / `load_numpy()` do that transpose.

Numerics are pinned: LayerNorm eps from the config (1e-5), tanh GELU. Precision follows torch
autocast: under `dtype=bfloat16` only the matmul inputs are cast to bf16 (Linear layers, the tied
head, attention's two products); the embeddings, the residual stream, LayerNorm, the attention
softmax and the loss stay fp32, and parameters are fp32 always (tests/test_precision.py).

Speed on CPU (docs/BENCHMARKS.md, "GPT step profile"): every Linear multiplies (B*T, in) rows, as
torch's F.linear does, so XLA's backward gets plain 2-D weight-gradient matmuls; on the CPU backend
attention is spelled out heads-first (the formulation XLA:CPU runs fastest); the loss reads the
padded logits in place (pad columns masked) instead of slicing and copying them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxgpt.common.config import GPTConfig, check_sampling_args
from jaxgpt.common.weights import check_weights, load_hf_dir, save_hf_dir

KVCache = list[tuple[jax.Array, jax.Array]]  # per layer: (k, v), each (B, block_size, n_head, head_dim)


def _normal(std: float) -> nnx.Initializer:
    return nnx.initializers.normal(stddev=std)


def _rows_dot_general(x: jax.Array, kernel: jax.Array, dimension_numbers: Any, precision: Any = None,
                      preferred_element_type: Any = None, **kw: Any) -> jax.Array:
    """nnx.Linear's product as one 2-D matmul over all leading dims: (B, T, in) -> (B*T, in) @ (in, out).

    torch's F.linear does the same. Without the reshape, the weight gradient contracts over two
    dims (batch and time); XLA:CPU then copies a transposed activation and falls back from its
    fast matmul library to a slower generic kernel (BENCHMARKS, "GPT step profile"). The reshapes
    are free (bitcasts) on every backend.
    """
    assert dimension_numbers == (((x.ndim - 1,), (0,)), ((), ())), dimension_numbers  # nnx.Linear's layout
    rows = jax.lax.dot_general(x.reshape(-1, x.shape[-1]), kernel, (((1,), (0,)), ((), ())), precision=precision,
                               preferred_element_type=preferred_element_type, **kw)
    return rows.reshape(*x.shape[:-1], kernel.shape[-1])


def _linear(n_in: int, n_out: int, *, bias: bool, std: float, dtype: Any, rngs: nnx.Rngs) -> nnx.Linear:
    # `dtype` is the compute dtype: input and kernel are cast to it for the matmul (fp32 accumulation),
    # the parameters themselves stay fp32 (param_dtype).
    return nnx.Linear(n_in, n_out, use_bias=bias, kernel_init=_normal(std), dtype=dtype,
                      dot_general=_rows_dot_general, rngs=rngs)


def causal_attention(q: jax.Array, k: jax.Array, v: jax.Array, dropout: nnx.Dropout | None = None) -> jax.Array:
    """softmax(q k^T / sqrt(hs), causal) v written out, with dropout on the probabilities.

    q, k, v: (B, T, nh, hs) -> (B, T, nh, hs). The scores and the softmax are fp32 whatever the input
    dtype. Heads go first for the two products, as torch lays them out, so each is a plain batched
    matmul: on the CPU backend this runs faster than jax.nn.dot_product_attention's einsums, forward
    and backward (BENCHMARKS, "GPT step profile"). It is also the training path with dropout, which
    the fused kernels do not have.
    """
    T, hs = q.shape[1], q.shape[3]
    q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))  # (B, nh, T, hs)
    # bf16 inputs: bf16 products with fp32 accumulation in the backward pass too, where the fp32 score
    # gradient would otherwise make two of the four matmuls fp32 (jax.nn.dot_product_attention does this).
    precision = jax.lax.DotAlgorithmPreset.BF16_BF16_F32 if q.dtype == jnp.bfloat16 else None
    att = jnp.matmul(q, k.swapaxes(-1, -2), precision=precision, preferred_element_type=jnp.float32)
    att = att * (1.0 / math.sqrt(hs))
    att = jnp.where(jnp.tril(jnp.ones((T, T), dtype=bool)), att, -jnp.inf)  # (B, nh, T, T): key s <= query t
    att = jax.nn.softmax(att, axis=-1)
    if dropout is not None:
        att = dropout(att)
    y = jnp.matmul(att.astype(v.dtype), v)  # (B, nh, T, hs)
    return y.transpose(0, 2, 1, 3)


class CausalSelfAttention(nnx.Module):
    def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs, dtype: Any = jnp.float32, attn_impl: str | None = None):
        C = config.n_embd
        # Residual projections get std 0.02/sqrt(2*n_layer): each block adds two of them to the
        # residual stream, so this keeps its variance from growing with depth (GPT-2 paper, sec 2.3).
        proj_std = 0.02 / math.sqrt(2 * config.n_layer)
        self.c_attn = _linear(C, 3 * C, bias=config.bias, std=0.02, dtype=dtype, rngs=rngs)
        self.c_proj = _linear(C, C, bias=config.bias, std=proj_std, dtype=dtype, rngs=rngs)
        self.attn_dropout = nnx.Dropout(config.dropout, rngs=rngs)
        self.resid_dropout = nnx.Dropout(config.dropout, rngs=rngs)
        self.n_head = config.n_head
        # None: the backend's best (causal_attention on CPU, jax.nn.dot_product_attention elsewhere);
        # "xla" / "cudnn": jax.nn.dot_product_attention with that implementation (cuDNN: GPU, bf16/fp16).
        self.attn_impl = attn_impl

    def __call__(self, x: jax.Array, cache: tuple[jax.Array, jax.Array] | None = None, pos: Any = 0):
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        q, k, v = jnp.split(self.c_attn(x), 3, axis=-1)  # each (B, T, C)
        # (B, T, nh, hs): jax.nn.dot_product_attention's layout (causal_attention moves heads first itself)
        q, k, v = (t.reshape(B, T, nh, hs) for t in (q, k, v))
        if cache is not None:
            # Write this chunk's keys/values at positions pos..pos+T-1 of the fixed-size cache,
            # then attend over the whole cache with a mask: shapes stay static, so one compiled
            # decode step serves every position.
            k_cache = jax.lax.dynamic_update_slice(cache[0], k.astype(cache[0].dtype), (0, pos, 0, 0))
            v_cache = jax.lax.dynamic_update_slice(cache[1], v.astype(cache[1].dtype), (0, pos, 0, 0))
            S = k_cache.shape[1]
            mask = jnp.arange(S)[None, :] <= (pos + jnp.arange(T))[:, None]  # (T, S): causal + unwritten slots
            y = jax.nn.dot_product_attention(q, k_cache, v_cache, mask=mask[None, None])
            cache = (k_cache, v_cache)
        elif self.attn_dropout.rate > 0 and not self.attn_dropout.deterministic:
            y = causal_attention(q, k, v, self.attn_dropout)  # the fused kernels have no dropout
        elif self.attn_impl is None and jax.default_backend() == "cpu":
            y = causal_attention(q, k, v)
        else:
            y = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation=self.attn_impl)
        y = y.reshape(B, T, C)  # re-assemble the heads side by side
        return self.resid_dropout(self.c_proj(y)), cache


class MLP(nnx.Module):
    def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs, dtype: Any = jnp.float32):
        C = config.n_embd
        proj_std = 0.02 / math.sqrt(2 * config.n_layer)
        self.c_fc = _linear(C, 4 * C, bias=config.bias, std=0.02, dtype=dtype, rngs=rngs)
        self.c_proj = _linear(4 * C, C, bias=config.bias, std=proj_std, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(config.dropout, rngs=rngs)
        self.activation = config.activation

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.c_fc(x)  # (B, T, 4C)
        # GPT-2 used the tanh approximation of GELU; pin it (approximate=True) so torch matches.
        h = jax.nn.gelu(h, approximate=True) if self.activation == "gelu_tanh" else jax.nn.relu(h)
        return self.dropout(self.c_proj(h))


def _layer_norm(config: GPTConfig, rngs: nnx.Rngs) -> nnx.LayerNorm:
    # Computed in fp32 even under bf16 compute, as torch autocast does for layer_norm.
    return nnx.LayerNorm(config.n_embd, epsilon=config.ln_eps, use_bias=config.bias, dtype=jnp.float32, rngs=rngs)


class Block(nnx.Module):
    def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs, dtype: Any = jnp.float32, attn_impl: str | None = None):
        self.ln_1 = _layer_norm(config, rngs)
        self.attn = CausalSelfAttention(config, rngs=rngs, dtype=dtype, attn_impl=attn_impl)
        self.ln_2 = _layer_norm(config, rngs)
        self.mlp = MLP(config, rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array, cache: tuple[jax.Array, jax.Array] | None = None, pos: Any = 0):
        a, cache = self.attn(self.ln_1(x), cache, pos)  # pre-LayerNorm: normalise the branch input,
        x = x + a  # keep the residual stream itself un-normalised; fp32 + bf16 branch -> fp32
        x = x + self.mlp(self.ln_2(x))
        return x, cache


class GPT(nnx.Module):
    """GPT-2-style decoder. `model(idx, targets)` -> (logits (B, T, vocab_size) fp32, loss or None).

    `dtype` is the compute dtype of the matmuls (bf16 for training on GPUs); parameters, embeddings,
    the residual stream, LayerNorm, softmax and the loss stay fp32 (the module docstring).
    """

    def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs, dtype: Any = jnp.float32, attn_impl: str | None = None):
        self.config = config
        V, C = config.n_vocab_rows, config.n_embd
        self.transformer = nnx.Dict(
            # fp32 lookups whatever `dtype`: they start the residual stream, which stays fp32.
            wte=nnx.Embed(V, C, embedding_init=_normal(0.02), dtype=jnp.float32, rngs=rngs),
            wpe=nnx.Embed(config.block_size, C, embedding_init=_normal(0.02), dtype=jnp.float32, rngs=rngs),
            drop=nnx.Dropout(config.dropout, rngs=rngs),
            h=nnx.List([Block(config, rngs=rngs, dtype=dtype, attn_impl=attn_impl) for _ in range(config.n_layer)]),
            ln_f=_layer_norm(config, rngs),
        )
        if not config.tie_embeddings:
            self.lm_head = _linear(C, V, bias=config.lm_head_bias, std=0.02, dtype=dtype, rngs=rngs)
        self.dtype = dtype

    # ---- forward -------------------------------------------------------------------------------
    def _trunk(self, idx: jax.Array, cache: KVCache | None, pos: Any) -> tuple[jax.Array, KVCache | None]:
        """Logits over all n_vocab_rows (padded rows included) in the compute dtype, and the new cache."""
        x, new_cache = self._hidden(idx, cache, pos)
        return self._head(x), new_cache

    def _hidden(self, idx: jax.Array, cache: KVCache | None, pos: Any) -> tuple[jax.Array, KVCache | None]:
        """The final LayerNorm's output (B, T, C) fp32 (what the head reads), and the new cache."""
        T = idx.shape[1]
        cfg = self.config
        if T > cfg.block_size:
            raise ValueError(
                f"sequence length {T} exceeds block_size {cfg.block_size}; crop the input to its last "
                f"{cfg.block_size} tokens (generate() does this) or use a config with a larger block_size"
            )
        _check_token_range(idx, cfg.vocab_size)
        t = self.transformer
        x = t.wte(idx) + t.wpe(pos + jnp.arange(T))  # (B, T, C) token + position embeddings
        x = t.drop(x)
        new_cache = [] if cache is not None else None
        for i, block in enumerate(t.h):
            x, layer_cache = block(x, None if cache is None else cache[i], pos)
            if cache is not None:
                new_cache.append(layer_cache)
        return t.ln_f(x), new_cache  # (B, T, C) fp32

    def _head(self, x: jax.Array) -> jax.Array:
        """(..., C) -> logits (..., n_vocab_rows) in the compute dtype."""
        if self.config.tie_embeddings:
            # x @ wte.T, the head sharing the embedding matrix; its matmul in the compute dtype.
            w = self.transformer.wte.embedding[...].astype(self.dtype)  # (V, C)
            logits = jax.lax.dot_general(x.reshape(-1, x.shape[-1]).astype(self.dtype), w, (((1,), (1,)), ((), ())))
            return logits.reshape(*x.shape[:-1], -1)
        return self.lm_head(x)

    def _visible(self, logits: jax.Array) -> jax.Array:
        # Cut the padded rows: a padded id can never be predicted, scored or sampled.
        return logits[..., : self.config.vocab_size].astype(jnp.float32)  # (B, T, vocab_size) fp32

    def __call__(self, idx: jax.Array, targets: jax.Array | None = None) -> tuple[jax.Array, jax.Array | None]:
        logits, _ = self._trunk(idx, None, 0)
        # The loss reads the padded logits as they are (pad columns masked); the sliced fp32 copy is only
        # made for callers that use the logits (under jit, XLA drops it when only the loss is used).
        loss = None if targets is None else cross_entropy(logits, targets, self.config.vocab_size)
        return self._visible(logits), loss

    def hidden(self, idx: jax.Array) -> jax.Array:
        """The features the head reads (B, T, C) fp32: `head(hidden(idx))` is `model(idx)[0]`. Lets a scorer
        run the vocabulary-wide head only at the positions it needs (HellaSwag: the endings)."""
        return self._hidden(idx, None, 0)[0]

    def head(self, x: jax.Array) -> jax.Array:
        """Features (..., C) -> logits (..., vocab_size) fp32, as `model(idx)` returns them."""
        return self._visible(self._head(x))

    def forward_cached(self, idx: jax.Array, cache: KVCache, pos: Any) -> tuple[jax.Array, KVCache]:
        """Logits for `idx` placed at positions pos..pos+T-1, reading and extending the KV cache."""
        logits, cache = self._trunk(idx, cache, pos)
        return self._visible(logits), cache

    def init_cache(self, batch_size: int) -> KVCache:
        cfg = self.config
        shape = (batch_size, cfg.block_size, cfg.n_head, cfg.head_dim)
        return [(jnp.zeros(shape, self.dtype), jnp.zeros(shape, self.dtype)) for _ in range(cfg.n_layer)]

    # ---- weights -------------------------------------------------------------------------------
    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without position embeddings (nanoGPT's convention)."""
        n = sum(int(np.prod(v.shape)) for v in self.state_numpy().values())
        return n - self.config.block_size * self.config.n_embd if non_embedding else n

    def state_numpy(self) -> dict[str, np.ndarray]:
        """Parameters as {GPT-2/torch name: fp32 numpy array in torch layout}."""
        out = {}
        for path, var in nnx.to_flat_state(nnx.state(self, nnx.Param)):
            name, transpose = _torch_name(path)
            arr = np.asarray(jax.device_get(var.get_value()), dtype=np.float32)
            out[name] = arr.T if transpose else arr
        return out

    def load_numpy(self, weights: dict[str, np.ndarray]) -> None:
        """Set every parameter from {GPT-2/torch name: array}; the key sets and shapes must match exactly."""
        check_weights(weights, self.config)  # the one validation (names and shapes), shared with the torch twin
        flat = dict(nnx.to_flat_state(nnx.state(self, nnx.Param)))
        for path, var in flat.items():
            name, transpose = _torch_name(path)
            arr = np.asarray(weights[name], dtype=np.float32)
            var.set_value(jnp.asarray(arr.T if transpose else arr, dtype=var.get_value().dtype))

    @classmethod
    def from_hf(cls, path: str, *, padded_vocab_size: int | None = None, dtype: Any = jnp.float32,
                attn_impl: str | None = None) -> GPT:
        """Load a Hugging Face GPT-2 directory (config.json + model.safetensors)."""
        config, weights = load_hf_dir(path, padded_vocab_size)
        model = cls(config, rngs=nnx.Rngs(0), dtype=dtype, attn_impl=attn_impl)
        model.load_numpy(weights)
        return model

    def save_hf(self, path: str) -> None:
        """Write a directory that transformers' GPT2LMHeadModel.from_pretrained loads."""
        save_hf_dir(path, self.state_numpy(), self.config)

    # ---- generation ----------------------------------------------------------------------------
    def generate(self, idx: Any, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int = 0, stop_token: int | None = None,
                 use_cache: bool = True, on_token: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
        """Extend idx (B, T0) by up to max_new_tokens; returns numpy (B, T0 + n) int32.

        temperature 0 means greedy. Rows that emit `stop_token` are padded with it until every
        row has stopped, then generation ends. `on_token(ids)` gets each step's (B,) new ids as they
        come (streaming). With use_cache, each new token costs one position of
        attention against the KV cache; once the sequence outgrows block_size, the model is re-run
        on the last block_size tokens (the uncached rule), so both paths give the same tokens.
        """
        cfg = self.config
        idx = np.asarray(idx, dtype=np.int32)
        if idx.ndim != 2 or idx.shape[1] == 0:
            raise ValueError(f"idx must be a non-empty (batch, time) array of token ids, got shape {idx.shape}")
        _check_token_range(idx, cfg.vocab_size)
        check_sampling_args(temperature, top_k, top_p, cfg.vocab_size, max_new_tokens=max_new_tokens,
                            stop_token=stop_token)
        was_training = _set_eval(self)
        graphdef, state = nnx.split(self)
        key = jax.random.key(seed)
        out, cache, logits = idx, None, None
        done = np.zeros(idx.shape[0], dtype=bool)
        try:
            for step in range(max_new_tokens):
                T = out.shape[1]
                if use_cache and T <= cfg.block_size:
                    if cache is None:  # prefill with the whole prompt
                        logits, cache = _jit_cached(graphdef, state, jnp.asarray(out), self.init_cache(out.shape[0]), 0)
                    else:  # one new token at position T-1
                        logits, cache = _jit_cached(graphdef, state, jnp.asarray(out[:, -1:]), cache, jnp.int32(T - 1))
                else:
                    logits = _jit_forward(graphdef, state, jnp.asarray(out[:, -cfg.block_size:]))
                nxt = np.asarray(_sample(logits[:, -1, :], jax.random.fold_in(key, step), temperature, top_k, top_p))
                if stop_token is not None:
                    nxt = np.where(done, stop_token, nxt)
                    done |= nxt == stop_token
                out = np.concatenate([out, nxt[:, None].astype(np.int32)], axis=1)
                if on_token is not None:  # streaming (scripts/sample.py): this step's (B,) ids
                    on_token(out[:, -1])
                if stop_token is not None and done.all():
                    break
        finally:
            if was_training:
                self.train()
        return out


# ---- pure helpers shared by training, evaluation and generation ------------------------------------

def cross_entropy(logits: jax.Array, targets: jax.Array, vocab_size: int | None = None) -> jax.Array:
    """Mean token cross-entropy in fp32; targets < 0 are ignored (torch's ignore_index=-1).

    logits: (..., V) in any float dtype, V >= vocab_size; columns from vocab_size on (the padded rows
    of the head) are masked to -inf for the normaliser, so they take no probability and get an
    exactly zero gradient. The convert and the mask fuse into the logsumexp's reductions: XLA keeps no
    (B, T, V) copy of the logits beyond the logits themselves (tests/test_loss_memory.py).
    """
    logits = logits.astype(jnp.float32)
    masked = logits
    if vocab_size is not None and vocab_size < logits.shape[-1]:
        masked = jnp.where(jnp.arange(logits.shape[-1]) < vocab_size, logits, -jnp.inf)
    valid = targets >= 0
    lse = jax.nn.logsumexp(masked, axis=-1)  # (...)
    return jnp.sum((lse - _target_logit(logits, jnp.where(valid, targets, 0))) * valid) / jnp.maximum(jnp.sum(valid), 1)


def _target_logit(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """logits[..., target] (targets are < vocab_size: a padded column is never read). Two exact forms:

    on CPU a gather, whose gradient scatters B*T values: XLA:CPU does not fuse a one-hot select into
    its reduction and would write a (B, T, V) array for it (BENCHMARKS, "GPT step profile"); on GPUs
    a one-hot compare-and-sum, which XLA fuses into the reduction and, in the backward pass, into
    the softmax gradient, where the gather's scatter would need a (B, T, V) buffer of its own.
    """
    if jax.default_backend() == "cpu":
        return jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(jnp.arange(logits.shape[-1]) == targets[..., None], logits, 0.0), axis=-1)


def _torch_name(path: tuple) -> tuple[str, bool]:
    """NNX state path -> (GPT-2/torch parameter name, whether the array is stored transposed)."""
    *mods, leaf = (str(p) for p in path)
    if leaf == "kernel":  # nnx.Linear (in, out) vs torch nn.Linear (out, in)
        return ".".join(mods + ["weight"]), True
    if leaf in ("scale", "embedding"):  # LayerNorm scale, Embed table -> torch's .weight
        return ".".join(mods + ["weight"]), False
    return ".".join(mods + [leaf]), False


def _check_token_range(idx: Any, vocab_size: int) -> None:
    """Raise on ids outside [0, vocab_size) when idx is concrete (inside jit the values are unknown)."""
    if isinstance(idx, jax.core.Tracer):
        return
    arr = np.asarray(idx)
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        bad = arr[(arr < 0) | (arr >= vocab_size)]
        raise ValueError(
            f"token ids must be in [0, {vocab_size}); got {bad[:5].tolist()}; check that the tokenizer "
            "matches the model's vocab_size"
        )


def _set_eval(model: nnx.Module) -> bool:
    """Switch to eval mode; return whether the model was in training mode (dropout active)."""
    was_training = any(not m.deterministic for _, m in nnx.iter_graph(model) if isinstance(m, nnx.Dropout))
    model.eval()
    return was_training


@partial(jax.jit, static_argnums=0)
def _jit_forward(graphdef: nnx.GraphDef, state: nnx.State, idx: jax.Array) -> jax.Array:
    return nnx.merge(graphdef, state)(idx)[0]


@partial(jax.jit, static_argnums=0)
def _jit_cached(graphdef: nnx.GraphDef, state: nnx.State, idx: jax.Array, cache: KVCache, pos: Any):
    return nnx.merge(graphdef, state).forward_cached(idx, cache, pos)


@partial(jax.jit, static_argnums=(2, 3, 4))
def _sample(logits: jax.Array, key: jax.Array, temperature: float, top_k: int | None, top_p: float | None) -> jax.Array:
    """Sample one id per row from (B, V) logits: greedy at temperature 0, else top-k then top-p."""
    if temperature == 0:
        return jnp.argmax(logits, axis=-1)
    logits = logits / temperature
    if top_k is not None:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]  # (B, 1) k-th largest logit
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p is not None:
        # Keep the smallest set of top tokens whose probability mass reaches top_p (nucleus sampling):
        # a token is kept if the mass strictly before it (in descending order) is below top_p.
        sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        keep = (jnp.cumsum(probs, axis=-1) - probs) < top_p
        cutoff = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < cutoff, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1)
