"""Where a trained model comes from: a Hugging Face directory, a training run, or one of its checkpoints.

Framework-free (the model itself is built in either framework through jaxgpt/common/frameworks.py).
Used by scripts/eval.py, sample.py, hellaswag.py and --init_from; a checkpoint written by either framework is
read in either (jaxgpt/common/resume.py `read_train_state`: its parameters, by name).

`resolve_model(path)` takes, in this order:
- a Hugging Face GPT-2 directory (config.json + model.safetensors, as `save_pretrained`, our
  `save_hf` or a training run's export writes it);
- a run directory of scripts/train.py, whose final export RUN/hf is one;
- one training checkpoint, RUN/checkpoints/step_*/ (meta.json + state);
- a run directory without an export yet, whose newest complete checkpoint is used;
- a model name (`gpt2`, `gpt2-medium`, `openai-community/gpt2-xl`, ...) that is not a path: its files in the
  local Hugging Face cache ($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub), read without
  transformers; absent, the error says how to download them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jaxgpt.common.checkpoint import META, CheckpointDir, check_complete
from jaxgpt.common.config import GPTConfig
from jaxgpt.common.weights import config_from_hf, load_hf_dir

HF_FILES = ("config.json", "model.safetensors")


def is_hf_dir(d: Path) -> bool:
    return all((d / f).is_file() for f in HF_FILES)


@dataclass(frozen=True)
class ModelSource:
    """A Hugging Face directory, or a training checkpoint (with its meta.json)."""

    path: Path
    kind: str  # "hf" or "checkpoint"
    meta: dict | None = None

    def describe(self) -> str:
        if self.kind == "hf":
            return f"{self.path} (Hugging Face directory)"
        return f"{self.path} ({self.meta['framework']} training checkpoint, step {self.meta.get('step', '?')})"

    @property
    def run_dir(self) -> Path | None:
        """The training run the model comes from (RUN for RUN/hf and RUN/checkpoints/step_*), if any."""
        if self.kind == "checkpoint":
            return self.path.parent.parent
        return self.path.parent if (self.path.parent / "checkpoints").is_dir() else None

    def config(self) -> GPTConfig:
        """The model's GPTConfig, read before any framework is imported (so errors come fast)."""
        if self.kind == "checkpoint":
            try:
                return GPTConfig.from_dict(self.meta["config"]["model"])
            except (KeyError, TypeError) as e:
                raise ValueError(f"{self.path}/{META} holds no model config ({e}); not a checkpoint of "
                                 "scripts/train.py") from None
        path = self.path / "config.json"
        try:
            return config_from_hf(json.loads(path.read_text()))
        except (json.JSONDecodeError, KeyError) as e:
            raise ValueError(f"{path} is not a valid GPT-2 config.json ({type(e).__name__}: {e})") from None

    def weights(self) -> dict[str, np.ndarray]:
        """The parameters as the weight table's numpy arrays, whichever framework wrote them."""
        if self.kind == "hf":
            try:
                return load_hf_dir(self.path)[1]
            except (ValueError, FileNotFoundError):
                raise
            except Exception as e:  # noqa: BLE001 - safetensors raises its own types for a truncated/damaged file
                raise ValueError(f"{self.path / 'model.safetensors'} cannot be read ({type(e).__name__}: {e}); it is "
                                 "damaged or cut short: copy or export the model again") from None
        from jaxgpt.common.checkpoint import check_train_state, group
        from jaxgpt.common.resume import read_train_state

        state = read_train_state(self.path, self.meta)
        check_train_state(state, self.config(), str(self.path))
        return group(state, "params")

    def tokenizer_info(self) -> dict | None:
        """The training data's tokenizer record (jaxgpt/common/data/codec.py), if the source has one."""
        if self.kind == "checkpoint":
            return (self.meta.get("config") or {}).get("tokenizer")
        run = self.run_dir
        if run is not None:
            ckpts = CheckpointDir(run / "checkpoints")
            for step in reversed(ckpts.steps()):
                try:
                    return (check_complete(ckpts.path(step)).get("config") or {}).get("tokenizer")
                except ValueError:
                    continue
        return None


# A Hugging Face model id ("gpt2", "openai-community/gpt2-medium"): one or two names of these characters.
_MODEL_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
# GPT-2's original ids now live under openai-community/; the cache may hold either spelling.
_LEGACY_ORG = "openai-community"


def hf_cache_dir() -> Path:
    """Where huggingface_hub keeps downloads (its own precedence: HF_HUB_CACHE, HF_HOME/hub, XDG, home)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "huggingface" / "hub"


def is_model_name(spec: str) -> bool:
    """Whether `spec` can only be a model id: no path of that name exists and it is spelled like an id."""
    return not Path(spec).exists() and not spec.startswith((".", "/", "~")) and bool(_MODEL_ID.fullmatch(spec))


def cached_model_dir(name: str) -> Path | None:
    """The snapshot folder of model `name` in the local Hugging Face cache that holds our two files, or None."""
    ids = [name]
    if "/" not in name:
        ids.append(f"{_LEGACY_ORG}/{name}")
    elif name.startswith(f"{_LEGACY_ORG}/"):
        ids.append(name.split("/", 1)[1])
    cache = hf_cache_dir()
    for repo_id in ids:
        repo = cache / f"models--{repo_id.replace('/', '--')}"
        ref = repo / "refs" / "main"  # the revision a plain download fetched; else any complete snapshot
        revs = [ref.read_text().strip()] if ref.is_file() else []
        revs += sorted(p.name for p in (repo / "snapshots").glob("*")) if (repo / "snapshots").is_dir() else []
        for rev in revs:
            if is_hf_dir(repo / "snapshots" / rev):
                return repo / "snapshots" / rev
    return None


def resolve_name(name: str) -> ModelSource:
    """A model id -> its Hugging Face directory in the local cache, or FileNotFoundError saying how to get it."""
    d = cached_model_dir(name)
    if d is None:
        raise FileNotFoundError(
            f"{name!r} is neither a directory nor a model in the Hugging Face cache {hf_cache_dir()}; download it with "
            f"`huggingface-cli download {name} config.json model.safetensors` (or set HF_HOME), or pass a directory")
    return ModelSource(d, "hf")


def resolve_model(path: str | Path) -> ModelSource:
    """A model path or name (see the module docstring) -> ModelSource, or FileNotFoundError saying what was expected."""
    d = Path(path)
    if not d.is_dir():
        if is_model_name(str(path)):
            return resolve_name(str(path))
        raise FileNotFoundError(f"{d} not found; pass a Hugging Face directory, a training run, a checkpoint or a "
                                "model name (gpt2, gpt2-medium, ...)")
    for candidate in (d, d / "hf"):  # scripts/train.py exports the final model to RUN/hf
        if is_hf_dir(candidate):
            return ModelSource(candidate, "hf")
    if (d / META).exists():
        return ModelSource(d, "checkpoint", check_complete(d, verify=True))  # raises if incomplete or damaged
    ckpts = CheckpointDir(d / "checkpoints")
    for step in reversed(ckpts.steps()):
        try:
            return ModelSource(ckpts.path(step), "checkpoint", check_complete(ckpts.path(step), verify=True))
        except ValueError:
            continue  # an interrupted save or a damaged copy: the previous one is intact
    raise FileNotFoundError(
        f"{d} holds no model: expected a Hugging Face directory (config.json + model.safetensors) in {d} or "
        f"{d / 'hf'}, a training checkpoint ({META} + state), or complete checkpoints under {d / 'checkpoints'}")


def resolve_hf(path: str | Path) -> ModelSource:
    """--hf-dir: exactly a Hugging Face GPT-2 directory."""
    d = Path(path)
    if not d.is_dir():
        raise FileNotFoundError(f"--hf-dir {d} not found")
    if not is_hf_dir(d):
        raise FileNotFoundError(f"--hf-dir {d} lacks {' or '.join(f for f in HF_FILES if not (d / f).is_file())}; "
                                "a Hugging Face GPT-2 directory needs config.json and model.safetensors")
    return ModelSource(d, "hf")


def load_model(framework: str, src: ModelSource, device: Any = None) -> Any:
    """The source's model in `framework` (eval mode), its weights loaded by name."""
    from jaxgpt.common.frameworks import runtime

    return runtime(framework).build_model(src.config(), src.weights(), device)


def codec_for(src: ModelSource, tokenizer: str | None = None) -> Any:
    """The tokenizer of a model: `tokenizer` if given (tiktoken name or .model), else what its run recorded
    (our BPE from RUN/tokenizer.model), else GPT-2's for a 50257-id model."""
    from jaxgpt.common.data.codec import TokenizerInfo, load_codec, open_tokenizer

    vocab = src.config().vocab_size
    if tokenizer:
        codec = open_tokenizer(tokenizer)
    elif (info := src.tokenizer_info()) is not None:
        codec = load_codec(TokenizerInfo.from_dict(info, str(src.path)), src.run_dir or src.path)
    elif vocab == 50257:
        codec = open_tokenizer("gpt2")
    else:
        raise ValueError(f"{src.path}: the model's tokenizer is unknown (vocab {vocab}); pass --tokenizer FILE.model")
    if codec.vocab_size != vocab:
        raise ValueError(f"the tokenizer {codec.info.name!r} has {codec.vocab_size} ids but the model has vocab_size="
                         f"{vocab}; use the tokenizer the model was trained with (its run's tokenizer.model)")
    return codec
