"""The GPT training-step benchmark: JAX, torch (eager) and torch.compile side by side in one process.

`scripts/bench.py` is its command line. Each framework runs the full training step of its trainer
(jaxgpt/train/trainer.py, torchref/train/trainer.py: forward, backward over `grad_accum`
micro-batches, clip, AdamW) on the same random tokens with the same settings. Per framework:

1. build the trainer (`build_s`) and time its first step (tracing + compilation + one step:
   `first_step_s`); the other `warmup - 1` steps run untimed, back to back as the timed ones are
   (with JAX's asynchronous dispatch, steps in flight together take more host memory than one: the
   first time they do, the process grows); then the peak-memory counter is reset (torch; JAX has no
   reset, jax-ml/jax#8096, so its peak covers the warm-up steps too, which are the same step);
2. `repeats` times, in turn with the other frameworks (so a change of machine load hits all of
   them alike): one untimed step (the frameworks share the process's heap, and the other one's
   block may have taken the memory this one had freed: a training process runs one framework), then
   `steps` steps dispatched back to back, synchronised once at the end. The step time of a repeat is
   its wall time / steps; `step_ms_min` and `step_ms_median` are over the repeats.
   `compile_s` = first_step_s - the median step time (the compile's share of the first step).

MFU (jaxgpt/common/metrics.py) is given under our convention (nanoGPT/PaLM: 6N + 12LHQT over the
bf16 peak) and llm.c's (6N_all + 6LCT over the run precision's peak), from the median step time.
Both frameworks use one device (the first), so figures compare per device. Before any framework
starts, the host allocator is set to recycle freed memory (jaxgpt/common/hostmem.py), as a CPU
training run should be (`recycle_host_memory=False` measures without it).

Framework-free at import: each framework is imported inside its own functions.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from jaxgpt.common.config import GPTConfig, get_preset
from jaxgpt.common.hostmem import recycle_freed_memory
from jaxgpt.common.metrics import mfu, mfu_llmc
from jaxgpt.common.schedule import OptimConfig

FRAMEWORKS = ("jax", "torch", "torch-compile")
DTYPES = ("float32", "bfloat16")
GPU_STEPS, CPU_STEPS = 50, 10  # default timed steps per repeat


@dataclass(frozen=True)
class BenchSettings:
    """What to benchmark; None fields take their device default (GPU / CPU) in `resolve`."""

    preset: str = "gpt2-cpu"
    frameworks: tuple[str, ...] = FRAMEWORKS
    batch: int | None = None  # rows per micro-step (16 on a GPU, 4 on a CPU)
    seq: int | None = None  # sequence length (the preset's block_size)
    dtype: str | None = None  # bfloat16 on a GPU, float32 on a CPU
    padded_vocab: int | None = None  # embedding/head rows; None = the preset's (GPT-2: 50304); 0 = none
    grad_accum: int = 1  # micro-steps per optimizer step
    warmup: int = 3  # untimed steps, the first of which compiles
    steps: int | None = None  # timed steps per repeat (50 on a GPU, 10 on a CPU)
    repeats: int = 1  # timed blocks per framework, interleaved across frameworks
    recycle_host_memory: bool = True  # jaxgpt/common/hostmem.py, on hosts without a GPU

    def __post_init__(self) -> None:
        problems = []
        bad = [f for f in self.frameworks if f not in FRAMEWORKS]
        if bad or not self.frameworks:
            problems.append(f"unknown frameworks {bad}; choose from {', '.join(FRAMEWORKS)}")
        if len(set(self.frameworks)) != len(self.frameworks):
            problems.append(f"frameworks {list(self.frameworks)} repeat a name")
        for name in ("batch", "seq", "steps"):
            v = getattr(self, name)
            if v is not None and v < 1:
                problems.append(f"--{name}={v} must be >= 1")
        for name in ("grad_accum", "warmup", "repeats"):
            if getattr(self, name) < 1:
                problems.append(f"--{name}={getattr(self, name)} must be >= 1")
        if self.dtype is not None and self.dtype not in DTYPES:
            problems.append(f"--dtype={self.dtype!r} must be one of {DTYPES}")
        if problems:
            raise ValueError("; ".join(problems))


def model_config(s: BenchSettings) -> GPTConfig:
    """The preset with the benchmark's vocab padding; ValueError on a bad preset or padding."""
    base = get_preset(s.preset)
    pad = s.padded_vocab
    if pad is None:
        pad = base.padded_vocab_size or (50304 if base.vocab_size == 50257 else 0)
    if pad and pad < base.vocab_size:
        raise ValueError(f"--padded_vocab={pad} is below the preset's vocab_size {base.vocab_size}")
    cfg = dataclasses.replace(base, padded_vocab_size=pad or None)
    seq = s.seq or cfg.block_size
    if seq > cfg.block_size:
        raise ValueError(f"--seq={seq} must be in [1, block_size={cfg.block_size}]")
    return cfg


def resolve(s: BenchSettings, gpu: bool) -> BenchSettings:
    """Fill the device defaults: the same concrete settings then go to every framework."""
    cfg = get_preset(s.preset)
    return dataclasses.replace(
        s, batch=s.batch or (16 if gpu else 4), seq=s.seq or cfg.block_size,
        dtype=s.dtype or ("bfloat16" if gpu else "float32"), steps=s.steps or (GPU_STEPS if gpu else CPU_STEPS))


# ---- one framework ------------------------------------------------------------------------------------

@dataclass
class Runner:
    """A built trainer: `step()` dispatches one optimizer step, `sync()` waits for the last one."""

    framework: str
    device: str
    step: Callable[[], Any]
    sync: Callable[[Any], None]
    peak_bytes: Callable[[], int | None]
    reset_peak: Callable[[], None]
    peak_note: str = ""


def _tokens(rows: int, seq: int, vocab: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    t = np.random.default_rng(seed).integers(0, vocab, (rows, seq + 1)).astype(np.int32)
    return t[:, :-1], t[:, 1:]


def jax_runner(cfg: GPTConfig, s: BenchSettings) -> Runner:
    import jax

    from jaxgpt.train.runtime import attention_impl
    from jaxgpt.train.sharding import make_mesh
    from jaxgpt.train.trainer import Trainer, fetch

    dev = jax.local_devices()[0]
    trainer = Trainer(cfg, OptimConfig(), grad_accum=s.grad_accum, dtype=s.dtype, mesh=make_mesh([dev]),
                      attn_impl=attention_impl("auto", s.dtype, cfg)[0])
    x, y = _tokens(s.grad_accum * s.batch, s.seq, cfg.vocab_size)

    def peak() -> int | None:
        stats = dev.memory_stats() or {}
        return stats.get("peak_bytes_in_use")

    return Runner("jax", dev.device_kind, lambda: trainer.dispatch(x, y)[0], lambda loss: fetch(loss), peak,
                  lambda: None, "jax: since the start (no reset API, jax-ml/jax#8096)")


def torch_runner(cfg: GPTConfig, s: BenchSettings, compile: bool) -> Runner:
    import torch

    from torchref.train.trainer import Trainer

    torch.set_float32_matmul_precision("high")  # TF32 on GPUs, as JAX's default precision there
    cuda = torch.cuda.is_available()
    trainer = Trainer(cfg, OptimConfig(), grad_accum=s.grad_accum, dtype=s.dtype, device="cuda" if cuda else "cpu",
                      compile=compile)
    x, y = _tokens(s.grad_accum * s.batch, s.seq, cfg.vocab_size)
    return Runner("torch-compile" if compile else "torch", torch.cuda.get_device_name() if cuda else "cpu",
                  lambda: trainer.dispatch(x, y)[0], lambda loss: float(loss),
                  lambda: torch.cuda.max_memory_allocated() if cuda else None,
                  torch.cuda.reset_peak_memory_stats if cuda else (lambda: None))


def make_runner(framework: str, cfg: GPTConfig, s: BenchSettings) -> Runner:
    return jax_runner(cfg, s) if framework == "jax" else torch_runner(cfg, s, compile=framework == "torch-compile")


def time_steps(r: Runner, steps: int) -> tuple[float, float]:
    """(seconds per step, host page faults per step) over `steps` steps dispatched back to back."""
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    out = None
    for _ in range(steps):
        out = r.step()
    r.sync(out)
    dt = (time.perf_counter() - t0) / steps
    return dt, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / steps


# ---- the run ------------------------------------------------------------------------------------------

def has_gpu(frameworks: tuple[str, ...]) -> bool:
    """A CUDA GPU seen by the frameworks benchmarked (torch's check when torch runs, else JAX's)."""
    if any(f.startswith("torch") for f in frameworks):
        try:
            import torch

            return torch.cuda.is_available()
        except ImportError:
            pass
    try:
        import jax

        return jax.default_backend() == "gpu"
    except ImportError:
        return False


def run(settings: BenchSettings, out: TextIO = sys.stdout) -> list[dict[str, Any]]:
    """Benchmark every framework of `settings`; print one JSON line each, then the JAX/other ratios.

    Returns the per-framework records (the ratio line last). ValueError on a bad preset or size.
    """
    cfg = model_config(settings)
    # Before any framework starts its threads (hostmem's docstring). It matters on CPUs, where the host
    # allocator carries the step's activations; on a GPU host it changes nothing measured here.
    recycled = settings.recycle_host_memory and recycle_freed_memory()
    s = resolve(settings, has_gpu(settings.frameworks))
    runners, build, first = {}, {}, {}
    for fw in s.frameworks:
        t0 = time.perf_counter()
        r = make_runner(fw, cfg, s)
        t1 = time.perf_counter()
        r.sync(r.step())  # trace + compile + one step
        build[fw], first[fw] = t1 - t0, time.perf_counter() - t1
        if s.warmup > 1:
            time_steps(r, s.warmup - 1)
        r.reset_peak()
        runners[fw] = r
    times: dict[str, list[float]] = {fw: [] for fw in s.frameworks}
    faults: dict[str, list[float]] = {fw: [] for fw in s.frameworks}
    for _ in range(s.repeats):
        for fw, r in runners.items():
            r.sync(r.step())
            dt, pf = time_steps(r, s.steps)
            times[fw].append(dt)
            faults[fw].append(pf)
    records = [_record(fw, runners[fw], cfg, s, times[fw], faults[fw], build[fw], first[fw], recycled)
               for fw in s.frameworks]
    for rec in records:
        print(json.dumps(rec), file=out, flush=True)
    if "jax" in times and len(s.frameworks) > 1:
        by = {r["framework"]: r for r in records}
        ratios = {"preset": s.preset}
        for fw in s.frameworks:
            if fw != "jax":
                ratios[f"jax/{fw}"] = round(by["jax"]["tokens_per_s"] / by[fw]["tokens_per_s"], 3)
                ratios[f"jax/{fw}_best"] = round(by[fw]["step_ms_min"] / by["jax"]["step_ms_min"], 3)
        print(json.dumps(ratios), file=out, flush=True)
        records.append(ratios)
    return records


def _record(fw: str, r: Runner, cfg: GPTConfig, s: BenchSettings, times: list[float], faults: list[float],
            build_s: float, first_s: float, recycled: bool) -> dict[str, Any]:
    med, best = statistics.median(times), min(times)
    tokens = s.grad_accum * s.batch * s.seq
    tps = tokens / med
    m, m_llmc = mfu(tps, cfg, s.seq, r.device), mfu_llmc(tps, cfg, s.seq, r.device, s.dtype)
    peak = r.peak_bytes()
    rec = {
        "preset": s.preset, "framework": fw, "device": r.device, "n_devices": 1, "dtype": s.dtype,
        "batch": s.batch, "grad_accum": s.grad_accum, "seq": s.seq, "tokens_per_step": tokens,
        "steps": s.steps, "repeats": s.repeats,
        "step_ms_min": round(best * 1e3, 2), "step_ms_median": round(med * 1e3, 2),
        "step_ms_all": [round(t * 1e3, 2) for t in times],
        "tokens_per_s": round(tps, 1), "tokens_per_s_best": round(tokens / best, 1),
        "build_s": round(build_s, 2), "first_step_s": round(first_s, 2), "compile_s": round(max(first_s - med, 0.0), 2),
        "mfu": None if m is None else round(m, 4), "mfu_llmc": None if m_llmc is None else round(m_llmc, 4),
        "peak_mem_gib": None if peak is None else round(peak / 2**30, 3),
        "host_page_faults_per_step": round(statistics.median(faults)),
        "host_memory_recycled": recycled,
    }
    if peak is not None and r.peak_note:
        rec["peak_mem_note"] = r.peak_note
    return rec
