"""The GPT of the ladder in PyTorch: the mirror of `jaxgpt/gpt.py`, class for class.

References: nanoGPT `model.py` (Karpathy), the GPT-2 paper. Parameter names are the GPT-2 /
Hugging Face names, and `state_numpy()` returns the same keys and layouts as the JAX twin.
Numerics pinned as on the JAX side: LayerNorm eps from the config, tanh GELU, fp32 loss. Under
bf16 autocast only the matmuls run in bf16; embeddings, the residual stream, LayerNorm, softmax
and the loss stay fp32 (autocast's rules, which the JAX twin follows explicitly).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from jaxgpt.common.config import GPTConfig, check_sampling_args
from jaxgpt.common.weights import check_weights, load_hf_dir, save_hf_dir

KVCache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: (k, v), each (B, n_head, block_size, head_dim)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        C = config.n_embd
        self.c_attn = nn.Linear(C, 3 * C, bias=config.bias)
        self.c_proj = nn.Linear(C, C, bias=config.bias)
        self.c_proj.RESIDUAL_SCALE = True  # init std 0.02/sqrt(2*n_layer), see GPT._init_weights
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None, pos: int = 0):
        B, T, C = x.size()
        nh, hs = self.n_head, C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)  # each (B, T, C)
        q, k, v = (t.view(B, T, nh, hs).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if cache is not None:
            # Same fixed-size cache as the JAX twin: write at pos..pos+T-1, attend with a mask.
            k_cache, v_cache = cache[0].clone(), cache[1].clone()
            k_cache[:, :, pos : pos + T] = k
            v_cache[:, :, pos : pos + T] = v
            S = k_cache.size(2)
            mask = torch.arange(S, device=x.device)[None, :] <= (pos + torch.arange(T, device=x.device))[:, None]
            y = F.scaled_dot_product_attention(q, k_cache, v_cache, attn_mask=mask)  # (B, nh, T, hs)
            cache = (k_cache, v_cache)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
            )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return self.resid_dropout(self.c_proj(y)), cache


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        C = config.n_embd
        self.c_fc = nn.Linear(C, 4 * C, bias=config.bias)
        self.c_proj = nn.Linear(4 * C, C, bias=config.bias)
        self.c_proj.RESIDUAL_SCALE = True
        self.dropout = nn.Dropout(config.dropout)
        self.activation = config.activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)  # (B, T, 4C)
        h = F.gelu(h, approximate="tanh") if self.activation == "gelu_tanh" else F.relu(h)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.ln_eps, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.ln_eps, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None, pos: int = 0):
        a, cache = self.attn(self.ln_1(x), cache, pos)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, cache


class GPT(nn.Module):
    """GPT-2-style decoder. `model(idx, targets)` -> (logits (B, T, vocab_size) fp32, loss or None)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        V, C = config.n_vocab_rows, config.n_embd
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(V, C),
            wpe=nn.Embedding(config.block_size, C),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(C, eps=config.ln_eps, bias=config.bias),
        ))
        if not config.tie_embeddings:
            self.lm_head = nn.Linear(C, V, bias=config.lm_head_bias)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            std = 0.02 / math.sqrt(2 * self.config.n_layer) if getattr(module, "RESIDUAL_SCALE", False) else 0.02
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # ---- forward -------------------------------------------------------------------------------
    def _trunk(self, idx: torch.Tensor, cache: KVCache | None, pos: int) -> tuple[torch.Tensor, KVCache | None]:
        """Logits over all n_vocab_rows (padded rows included) in the compute dtype, and the new cache."""
        x, new_cache = self._hidden(idx, cache, pos)
        return self._head(x), new_cache

    def _hidden(self, idx: torch.Tensor, cache: KVCache | None, pos: int) -> tuple[torch.Tensor, KVCache | None]:
        """The final LayerNorm's output (B, T, C) (what the head reads), and the new cache."""
        T = idx.size(1)
        cfg = self.config
        if T > cfg.block_size:
            raise ValueError(
                f"sequence length {T} exceeds block_size {cfg.block_size}; crop the input to its last "
                f"{cfg.block_size} tokens (generate() does this) or use a config with a larger block_size"
            )
        _check_token_range(idx, cfg.vocab_size)
        t = self.transformer
        x = t.wte(idx) + t.wpe(pos + torch.arange(T, device=idx.device))  # (B, T, C)
        x = t.drop(x)
        new_cache = [] if cache is not None else None
        for i, block in enumerate(t.h):
            x, layer_cache = block(x, None if cache is None else cache[i], pos)
            if cache is not None:
                new_cache.append(layer_cache)
        return t.ln_f(x), new_cache

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C) -> logits (..., n_vocab_rows) in the compute dtype."""
        return F.linear(x, self.transformer.wte.weight) if self.config.tie_embeddings else self.lm_head(x)

    def _visible(self, logits: torch.Tensor) -> torch.Tensor:
        # A view without the padded rows (padded ids are never predicted or sampled); fp32.
        return logits[..., : self.config.vocab_size].float()

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        logits, _ = self._trunk(idx, None, 0)
        if targets is None:
            return self._visible(logits), None
        # One fp32 copy under bf16 autocast, none in fp32; the loss reads the padded logits in place and
        # the returned logits are a view of the same tensor (the JAX twin's rule, without its slice copy).
        logits = logits.float()
        loss = cross_entropy(logits, targets, self.config.vocab_size)
        return self._visible(logits), loss

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """The features the head reads (B, T, C): `head(hidden(idx))` is `model(idx)[0]` (the JAX twin's)."""
        return self._hidden(idx, None, 0)[0]

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Features (..., C) -> logits (..., vocab_size) fp32, as `model(idx)` returns them."""
        return self._visible(self._head(x))

    def forward_cached(self, idx: torch.Tensor, cache: KVCache, pos: int) -> tuple[torch.Tensor, KVCache]:
        logits, cache = self._trunk(idx, cache, pos)
        return self._visible(logits), cache

    def init_cache(self, batch_size: int) -> KVCache:
        cfg = self.config
        p = self.transformer.wte.weight
        shape = (batch_size, cfg.n_head, cfg.block_size, cfg.head_dim)
        return [(p.new_zeros(shape), p.new_zeros(shape)) for _ in range(cfg.n_layer)]

    # ---- weights -------------------------------------------------------------------------------
    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def state_numpy(self) -> dict[str, np.ndarray]:
        """Parameters as {GPT-2/torch name: fp32 numpy array} (tied weights appear once, as wte)."""
        return {k: v.detach().cpu().float().numpy().copy() for k, v in self.named_parameters()}

    @torch.no_grad()
    def load_numpy(self, weights: dict[str, np.ndarray]) -> None:
        check_weights(weights, self.config)  # the one validation (names and shapes), shared with the JAX twin
        for name, p in self.named_parameters():
            p.copy_(torch.from_numpy(np.array(weights[name], dtype=np.float32)))

    @classmethod
    def from_hf(cls, path: str, *, padded_vocab_size: int | None = None) -> GPT:
        """Load a Hugging Face GPT-2 directory (config.json + model.safetensors)."""
        config, weights = load_hf_dir(path, padded_vocab_size)
        model = cls(config)
        model.load_numpy(weights)
        return model

    def save_hf(self, path: str) -> None:
        """Write a directory that transformers' GPT2LMHeadModel.from_pretrained loads."""
        save_hf_dir(path, self.state_numpy(), self.config)

    # ---- generation ----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, idx: Any, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int = 0, stop_token: int | None = None,
                 use_cache: bool = True, on_token: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
        """Same contract as the JAX twin; returns numpy (B, T0 + n) int32."""
        cfg = self.config
        device = self.transformer.wte.weight.device
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long, device=device)
        if idx.dim() != 2 or idx.size(1) == 0:
            raise ValueError(f"idx must be a non-empty (batch, time) array of token ids, got shape {tuple(idx.shape)}")
        _check_token_range(idx, cfg.vocab_size)
        check_sampling_args(temperature, top_k, top_p, cfg.vocab_size, max_new_tokens=max_new_tokens,
                            stop_token=stop_token)
        was_training = self.training
        self.eval()
        gen = torch.Generator(device=device).manual_seed(seed)
        out, cache = idx, None
        done = torch.zeros(idx.size(0), dtype=torch.bool, device=device)
        try:
            for _ in range(max_new_tokens):
                T = out.size(1)
                if use_cache and T <= cfg.block_size:
                    if cache is None:
                        logits, cache = self.forward_cached(out, self.init_cache(out.size(0)), 0)
                    else:
                        logits, cache = self.forward_cached(out[:, -1:], cache, T - 1)
                else:
                    logits, _ = self(out[:, -cfg.block_size:])
                nxt = _sample(logits[:, -1, :], gen, temperature, top_k, top_p)
                if stop_token is not None:
                    nxt = torch.where(done, torch.full_like(nxt, stop_token), nxt)
                    done |= nxt == stop_token
                out = torch.cat([out, nxt[:, None]], dim=1)
                if on_token is not None:  # streaming (scripts/sample.py): this step's (B,) ids
                    on_token(nxt.cpu().numpy().astype(np.int32))
                if stop_token is not None and bool(done.all()):
                    break
        finally:
            self.train(was_training)
        return out.cpu().numpy().astype(np.int32)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, vocab_size: int | None = None) -> torch.Tensor:
    """Mean token cross-entropy in fp32; targets < 0 are ignored (the JAX twin's rule).

    logits: (..., V), V >= vocab_size. The columns from vocab_size on (the head's padded rows) are set
    to -inf IN PLACE when logits is fp32 (a copy is made otherwise): they take no probability, so no
    (B, T, V) copy of the logits is needed to leave them out.
    """
    V = logits.size(-1)
    logits = logits.float()  # no-op for fp32 logits
    if vocab_size is not None and vocab_size < V:
        # Written outside autograd: with probability 0 the padded columns' gradient is exactly 0 either
        # way, and a recorded write would make autograd copy the whole (B, T, V) gradient to zero them.
        with torch.no_grad():
            logits[..., vocab_size:] = float("-inf")
    targets = targets.reshape(-1).long().masked_fill(targets.reshape(-1) < 0, -1)
    return F.cross_entropy(logits.reshape(-1, V), targets, ignore_index=-1)


def _check_token_range(idx: torch.Tensor, vocab_size: int) -> None:
    """Raise on ids outside [0, vocab_size) for CPU tensors (on GPU this would sync every step)."""
    if idx.device.type != "cpu" or idx.numel() == 0 or torch.compiler.is_compiling():
        return
    bad = idx[(idx < 0) | (idx >= vocab_size)]
    if bad.numel():
        raise ValueError(
            f"token ids must be in [0, {vocab_size}); got {bad[:5].tolist()}; check that the tokenizer "
            "matches the model's vocab_size"
        )


def _sample(logits: torch.Tensor, gen: torch.Generator, temperature: float, top_k: int | None,
            top_p: float | None) -> torch.Tensor:
    """Sample one id per row from (B, V) logits with the JAX twin's rules (greedy, top-k, top-p)."""
    if temperature == 0:
        return torch.argmax(logits, dim=-1)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits = torch.sort(logits, dim=-1, descending=True).values
        probs = F.softmax(sorted_logits, dim=-1)
        keep = (torch.cumsum(probs, dim=-1) - probs) < top_p
        cutoff = torch.where(keep, sorted_logits, torch.full_like(sorted_logits, float("inf"))).amin(-1, keepdim=True)
        logits = logits.masked_fill(logits < cutoff, float("-inf"))
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=gen)[:, 0]
