"""Training recipes: the one run configuration (`TrainConfig`) and the one registry of presets.

Framework-free (shared with torchref). A run is described by three frozen dataclasses, one per
meaning, each field with a comment:

    GPTConfig    (jaxgpt/common/config.py)    the model: shapes, vocabulary, dropout, activation
    OptimConfig  (jaxgpt/common/schedule.py)  AdamW, clipping and the warm-up + cosine schedule
    TrainConfig  (here)                       data, batch, precision, seeds, cadences, outputs

A preset (`--preset NAME` of scripts/train.py and scripts/compare.py) is a `Recipe`: a model
config plus the train and optimiser defaults that go with it, e.g. `poetry` (the small GPT on
French verse, 32 x 128-token batches, lr 2e-3, 1000 steps) or `gpt2-124m` (build-nanogpt's GPT-2
reproduction: 2**19-token batches, lr 6e-4, 19,073 steps). `configs_for(preset, overrides)`
applies typed `--key=value` overrides through the one router (`config.apply_overrides`): every
key belongs to exactly one of the three dataclasses.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from jaxgpt.common.attention import CHOICES as ATTENTION_CHOICES
from jaxgpt.common.config import PRESETS, GPTConfig, apply_overrides, lookup
from jaxgpt.common.schedule import OptimConfig

DTYPES = ("float32", "bfloat16")  # compute dtypes; parameters and optimiser state are always fp32
BATCH_ORDERS = ("sequential", "random")
COMPILE_CHOICES = ("auto", "true", "false")  # torch.compile: auto = on CUDA only
ATTN_CHOICES = tuple(dict.fromkeys(c for choices in ATTENTION_CHOICES.values() for c in choices))  # either framework


@dataclass(frozen=True)
class TrainConfig:
    """One training run, in either framework. Batch sizes count tokens so they mean the same on any machine."""

    data_dir: str = ""  # uint16 shards + manifest.json made by scripts/prepare_data.py
    out_dir: str = ""  # the run folder (checkpoints/, train_log.csv, ...); "" = out/PRESET-FRAMEWORK
    total_batch_tokens: int = 524288  # tokens per optimiser step, all devices and micro-steps together
    micro_batch: int = 16  # rows per device per micro-step (accumulation makes up the rest); 0 = no accumulation
    seq_len: int = 0  # T, tokens per row; 0 = the model's block_size
    dtype: str = "float32"  # compute dtype ("float32" or "bfloat16"); params and AdamW state stay fp32
    fsdp: bool = False  # JAX: shard parameters + optimiser state over the devices (the 350M-1558M presets)
    compile: str = "auto"  # torch: torch.compile the step's loss; "auto" = on CUDA, off on CPU (resolved at start)
    # JAX's persistent compilation cache: a later start or --resume loads the compiled steps instead of
    # compiling them again. "auto" = ~/.cache/jaxgpt/xla on GPUs/TPUs, off on CPUs; "" = off; else a folder.
    compile_cache: str = "auto"
    # Attention kernel (jaxgpt/common/attention.py): "auto" = cuDNN's fused kernel where the GPU supports it
    # (JAX; torch: SDPA's own choice); JAX "cudnn" | "xla"; torch "cudnn" | "flash" | "efficient" | "math".
    attn: str = "auto"
    seed: int = 0  # parameter init and dropout
    shuffle_seed: int | None = None  # train shard order: None = by name (build-nanogpt), else shuffled per epoch
    # Sequential order: documents permuted inside each train shard, per epoch, from this seed (llm.c shuffles
    # within shards too); None = file order. Exact on resume: each permutation is recomputed from the seed.
    doc_shuffle_seed: int | None = None
    prefetch: int = 2  # train batches read ahead in a background thread; 0 = read in the step's thread
    # How a step's rows are drawn from the train split: "sequential" = consecutive windows of the shard stream
    # (build-nanogpt; right for big batches), "random" = windows at seeded random places (nanoGPT's get_batch:
    # a small batch then spans many documents; the train split is loaded into memory, so small corpora only).
    batch_order: str = "sequential"
    val_every: int = 250  # steps between val-loss evaluations; 0 = only at the end
    val_steps: int = 20  # val batches per evaluation (the first ones of the val split, the same each time)
    final_val_steps: int = 0  # val batches of the final evaluation; 0 = val_steps
    hellaswag_every: int = 250  # steps between HellaSwag evaluations (needs hellaswag_file); 0 = only at the end
    hellaswag_file: str = ""  # hellaswag_val.jsonl; "" = no HellaSwag (GPT-2 vocabulary only)
    hellaswag_limit: int = 0  # score only the first N tasks; 0 = all
    sample_every: int = 250  # steps between printed samples; 0 = never (not even at the end)
    sample_count: int = 4  # samples per sampling
    sample_tokens: int = 32  # new tokens per sample (a sample also stops at the end of its document)
    sample_prompt: str = ""  # text after the document separator: each sample starts a new document
    ckpt_every: int = 1000  # steps between checkpoints; 0 = only at the end and at SIGINT/SIGTERM
    keep: int = 3  # checkpoints kept (older complete ones are deleted)
    keep_every: int = 0  # milestones: checkpoints at steps divisible by N are never pruned; 0 = none
    async_checkpoint: bool = False  # JAX: write checkpoints in the background (orbax async), committed later
    export_hf: bool = True  # write the final model as a Hugging Face GPT-2 directory (OUT_DIR/hf)
    plot: bool = True  # write OUT_DIR/curves.png at each evaluation and at the end
    # Fine-tuning: start from these weights (an HF GPT-2 directory, a cached model name such as gpt2-medium, or a
    # run/checkpoint of either framework; jaxgpt/common/finetune.py) with a fresh optimiser; "" = random init.
    init_from: str = ""
    # What else sees the run (jaxgpt/common/monitor.py): TensorBoard event files in OUT_DIR/tensorboard (when
    # tensorboardX is installed), a Weights & Biases run ("" = none); a profiler trace of steps A..B-1 ("A:B")
    # in OUT_DIR/profile (jaxgpt/common/profile.py).
    tensorboard: bool = True
    wandb_project: str = ""
    profile_steps: str = ""

    def __post_init__(self) -> None:
        problems = [f"--{n}={getattr(self, n)} must be >= 1" for n in
                    ("total_batch_tokens", "val_steps", "keep", "sample_tokens", "sample_count") if getattr(self, n) < 1]
        problems += [f"--{n}={getattr(self, n)} must be >= 0" for n in
                     ("micro_batch", "seq_len", "val_every", "final_val_steps", "hellaswag_every", "hellaswag_limit",
                      "sample_every", "ckpt_every", "keep_every", "prefetch") if getattr(self, n) < 0]
        if self.batch_order not in BATCH_ORDERS:
            problems.append(f"--batch_order={self.batch_order!r} is unknown; use one of {', '.join(BATCH_ORDERS)}")
        if self.doc_shuffle_seed is not None and self.batch_order != "sequential":
            problems.append("--doc_shuffle_seed applies to --batch_order=sequential (random windows already mix "
                            "documents); drop it or use --batch_order=sequential")
        if self.attn not in ATTN_CHOICES:
            problems.append(f"--attn={self.attn!r} is unknown; use one of {', '.join(ATTN_CHOICES)}")
        if self.compile not in COMPILE_CHOICES:
            problems.append(f"--compile={self.compile!r} is unknown; use one of {', '.join(COMPILE_CHOICES)}")
        if self.dtype not in DTYPES:
            problems.append(f"--dtype={self.dtype!r} is unknown; use one of {', '.join(DTYPES)}")
        if problems:
            raise ValueError("; ".join(problems))


# Fields a resumed run must share with its checkpoint: they define what is trained on and how.
# The others (micro_batch, cadences, outputs, fsdp/compile) only change speed or what is reported.
RESUME_FIELDS = ("data_dir", "total_batch_tokens", "seq_len", "dtype", "seed", "shuffle_seed", "doc_shuffle_seed",
                 "batch_order")
# Part of the identity only when set (`--init_from`, the starting weights): checkpoints of runs without it
# record nothing, so they resume as before.
RESUME_FIELDS_IF_SET = ("init_from",)
# What is evaluated, sampled and saved, and how often: recorded in each checkpoint so that a resume that
# changes them says so (jaxgpt/common/resume.py), but free to change.
CADENCE_FIELDS = ("val_every", "val_steps", "final_val_steps", "hellaswag_every", "sample_every", "ckpt_every", "keep",
                  "keep_every")


@dataclass(frozen=True)
class Recipe:
    """A preset: the model and the training/optimiser defaults that go with it."""

    model: GPTConfig
    train: TrainConfig
    optim: OptimConfig
    about: str  # one line for --help


# The poetry recipes keep the original study's batch (32 sequences of 128 tokens at random places of the
# train split, as its get_batch drew them: 4,096 consecutive tokens would hold only ~5 poems) and 1000
# steps, with the shared recipe's warm-up + cosine and clipping. `poetry` trains at twice the original's
# peak lr: without dropout the 2M-parameter model takes it (chosen, not swept). Everything is evaluated
# every 100 steps; the final val loss averages 100 batches (3,200 windows) for a stable figure.
_POETRY = TrainConfig(
    total_batch_tokens=32 * 128, micro_batch=0, batch_order="random", val_every=100, val_steps=20, final_val_steps=100,
    hellaswag_every=0, sample_every=500, sample_count=1, sample_tokens=120, ckpt_every=100, keep=2,
)
# build-nanogpt's GPT-2 reproduction: 2**19-token steps, evals every 250 steps, bf16 compute; documents
# shuffled inside each shard as llm.c does (FineWeb-Edu's shards hold documents in crawl order).
_GPT2_TRAIN = TrainConfig(
    data_dir="data/edu_fineweb10B", total_batch_tokens=524288, micro_batch=16, seq_len=1024, dtype="bfloat16",
    doc_shuffle_seed=1337,
    sample_prompt="Hello, I'm a language model,",
)
_GPT2_OPTIM = OptimConfig(lr=6e-4, min_lr_ratio=0.1, warmup_steps=715, max_steps=19073, weight_decay=0.1)


def _gpt2(name: str, about: str) -> Recipe:
    # 50304 = 128 x 393 embedding rows: tensor-core friendly; the extra rows are never predicted.
    return Recipe(dataclasses.replace(PRESETS[name], padded_vocab_size=50304), _GPT2_TRAIN, _GPT2_OPTIM, about)


RECIPES: dict[str, Recipe] = {
    "poetry": Recipe(
        PRESETS["poetry"], dataclasses.replace(_POETRY, data_dir="data/poetry"),
        OptimConfig(lr=2e-3, warmup_steps=100, max_steps=1000, weight_decay=0.1),
        "small GPT on French verse, vocab 1024 (our BPE), no dropout, GELU, tied head; 1000 steps of 32x128"),
    "poetry-original": Recipe(
        PRESETS["poetry-original"], dataclasses.replace(_POETRY, data_dir="data/poetry-400", export_hf=False),
        OptimConfig(lr=1e-3, warmup_steps=100, max_steps=1000, weight_decay=0.1),
        "the original study's poetry GPT: vocab 400, dropout 0.2, ReLU, untied head with a bias (no HF export)"),
    "gpt2-124m": _gpt2("gpt2-124m", "GPT-2 124M on FineWeb-Edu (build-nanogpt's recipe)"),
    "gpt2-350m": _gpt2("gpt2-350m", "GPT-2 350M, same recipe (use --fsdp=true on several devices)"),
    "gpt2-774m": _gpt2("gpt2-774m", "GPT-2 774M, same recipe (use --fsdp=true)"),
    "gpt2-1558m": _gpt2("gpt2-1558m", "GPT-2 1558M, same recipe (use --fsdp=true)"),
    "gpt2-cpu": Recipe(
        PRESETS["gpt2-cpu"], dataclasses.replace(_GPT2_TRAIN, total_batch_tokens=8 * 256, micro_batch=0, seq_len=256,
                                                 dtype="float32"),
        dataclasses.replace(_GPT2_OPTIM, warmup_steps=10, max_steps=100),
        "GPT-2 shaped (vocab 50257, 4 layers, width 256), small enough for a CPU"),
    # For tests and smoke runs: HF's PT<->Flax test size (hidden 32, vocab 99), seconds per run on a CPU.
    "tiny": Recipe(
        PRESETS["tiny"], TrainConfig(total_batch_tokens=8 * 16, micro_batch=0, val_every=10, val_steps=2,
                                     hellaswag_every=0, sample_every=0, ckpt_every=10),
        OptimConfig(lr=1e-3, warmup_steps=3, max_steps=20), "2 layers, width 32, vocab 99: tests"),
}


def get_recipe(name: str) -> Recipe:
    return lookup(RECIPES, name, "preset")


def configs_for(preset: str, overrides: list[str]) -> tuple[GPTConfig, TrainConfig, OptimConfig]:
    """The preset's three configs with `--key=value` overrides applied and checked against each other.

    `seq_len=0` is resolved to the model's block_size here, so what is saved and compared on resume
    is always the actual sequence length.
    """
    r = get_recipe(preset)
    model, train, optim = apply_overrides([r.model, r.train, r.optim], overrides)
    if train.init_from:  # the architecture is the pretrained model's (before seq_len=0 takes its block_size)
        from jaxgpt.common.finetune import model_config

        model = model_config(model, train.init_from, overrides)
    for c in (model, train, optim):  # nan passes every `x < 0` check: refuse it (and inf) for every number at once
        bad = [f.name for f in dataclasses.fields(c) if isinstance(getattr(c, f.name), float)
               and not math.isfinite(getattr(c, f.name))]
        if bad:
            raise ValueError("; ".join(f"--{n}={getattr(c, n)} must be a finite number" for n in bad))
    if train.seq_len == 0:
        train = dataclasses.replace(train, seq_len=model.block_size)
    if train.seq_len > model.block_size:
        raise ValueError(f"--seq_len={train.seq_len} exceeds the model's block_size {model.block_size}; "
                         f"use --seq_len <= {model.block_size} or a larger --block_size")
    return model, train, optim


def batch_layout(total_batch_tokens: int, micro_batch: int, seq_len: int, n_devices: int) -> tuple[int, int]:
    """(rows per device per micro-step, micro-steps per optimiser step) for a batch of total_batch_tokens.

    micro_batch=0 puts the whole batch in one micro-step (rows per device = total / (seq_len x devices)).
    Raises with the fix when the batch does not divide.
    """
    if micro_batch == 0:
        per_step = seq_len * n_devices
        if total_batch_tokens % per_step:
            raise ValueError(
                f"--total_batch_tokens={total_batch_tokens} does not split into rows of seq_len {seq_len} over "
                f"{n_devices} device(s); use a multiple of seq_len x devices = {per_step}, or set --micro_batch")
        return total_batch_tokens // per_step, 1
    per_micro = micro_batch * seq_len * n_devices  # tokens of one micro-step over all devices
    if total_batch_tokens % per_micro:
        raise ValueError(
            f"--total_batch_tokens={total_batch_tokens} is not divisible by micro_batch x seq_len x devices = "
            f"{micro_batch} x {seq_len} x {n_devices} = {per_micro}; choose a micro_batch (or seq_len) such that "
            f"this divides it, e.g. --total_batch_tokens={max(1, round(total_batch_tokens / per_micro)) * per_micro}")
    return micro_batch, total_batch_tokens // per_micro


def check_trainer_args(grad_accum: int, dtype: str) -> None:
    """The checks both frameworks' Trainer constructors make (one place, so their messages agree)."""
    if grad_accum < 1:
        raise ValueError(f"grad_accum={grad_accum} must be >= 1")
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is unknown; use one of {sorted(DTYPES)}")
