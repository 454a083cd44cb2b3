"""The training-step benchmark (jaxgpt/common/bench.py, scripts/bench.py), the MFU conventions it prints
(jaxgpt/common/metrics.py) and the host-memory setting it applies (jaxgpt/common/hostmem.py).

Speed itself is not asserted here (BRIEF: speed targets live in scripts/bench.py and BENCHMARKS.md);
what is asserted is what the numbers mean: the fields, the repeats' min/median, the tokens per step
with accumulation, the ratios, and the usage errors.
"""

from __future__ import annotations

import io
import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jaxgpt.common.bench import CPU_STEPS, GPU_STEPS, BenchSettings, model_config, resolve, run
from jaxgpt.common.config import PRESETS
from jaxgpt.common.metrics import flops_per_token_llmc, mfu, mfu_llmc, num_params, peak_flops

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench_run():
    """One small side-by-side run: JAX and torch, 2 repeats of 2 steps, 2 accumulation micro-steps.

    torch.compile is left out only for time (its CPU compile takes minutes); it is the torch runner
    with compile=True, exercised by the documented benchmark command.
    """
    out = io.StringIO()
    # recycle_host_memory=False: the allocator setting is process-wide and permanent, so it is tested in a
    # subprocess (below), not applied to the whole test session.
    s = BenchSettings(preset="tiny", frameworks=("jax", "torch"), steps=2, warmup=1, repeats=2, grad_accum=2,
                      recycle_host_memory=False)
    return s, run(s, out=out), out.getvalue()


def test_bench_records_fields_and_repeats(bench_run):
    _, records, printed = bench_run
    assert [json.loads(line) for line in printed.strip().splitlines()] == records  # printed == returned
    jax_rec, torch_rec, ratios = records
    assert [jax_rec["framework"], torch_rec["framework"]] == ["jax", "torch"]
    for r in (jax_rec, torch_rec):
        assert r["preset"] == "tiny" and r["dtype"] == "float32" and r["device"] == "cpu"  # CPU defaults
        assert (r["batch"], r["grad_accum"], r["seq"]) == (4, 2, 16)
        assert r["tokens_per_step"] == 2 * 4 * 16  # accumulation counts every micro-batch
        # repeats: one step time per timed block, then min and median over them
        assert r["repeats"] == 2 and len(r["step_ms_all"]) == 2 and r["steps"] == 2
        assert r["step_ms_min"] == min(r["step_ms_all"])
        assert r["step_ms_median"] == pytest.approx(statistics.median(r["step_ms_all"]), abs=0.01)
        assert r["tokens_per_s"] == pytest.approx(r["tokens_per_step"] / (r["step_ms_median"] / 1e3), rel=1e-3)
        assert r["tokens_per_s_best"] >= r["tokens_per_s"]
        assert r["compile_s"] == pytest.approx(max(r["first_step_s"] - r["step_ms_median"] / 1e3, 0.0), abs=0.02)
        assert r["build_s"] >= 0 and r["first_step_s"] > 0
        assert r["mfu"] is None and r["mfu_llmc"] is None  # no known peak for a CPU
        assert r["peak_mem_gib"] is None  # CPU devices report none
        assert r["host_page_faults_per_step"] >= 0 and r["host_memory_recycled"] is False
    assert ratios["jax/torch"] == pytest.approx(jax_rec["tokens_per_s"] / torch_rec["tokens_per_s"], rel=2e-3)
    assert ratios["jax/torch_best"] == pytest.approx(torch_rec["step_ms_min"] / jax_rec["step_ms_min"], rel=2e-3)


@pytest.mark.parametrize("kw, message", [
    ({"repeats": 0}, "--repeats=0 must be >= 1"),
    ({"grad_accum": 0}, "--grad_accum=0 must be >= 1"),
    ({"warmup": 0}, "--warmup=0 must be >= 1"),
    ({"steps": 0}, "--steps=0 must be >= 1"),
    ({"batch": -1}, "--batch=-1 must be >= 1"),
    ({"dtype": "float16"}, "--dtype='float16' must be one of"),
    ({"frameworks": ("jax", "mxnet")}, "unknown frameworks ['mxnet']"),
    ({"frameworks": ("jax", "jax")}, "repeat a name"),
    ({"frameworks": ()}, "unknown frameworks []"),
])
def test_settings_reject_bad_values(kw, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        BenchSettings(**kw)


def test_model_config_and_device_defaults():
    assert model_config(BenchSettings(preset="gpt2-124m")).padded_vocab_size == 50304  # GPT-2's padding by default
    assert model_config(BenchSettings(preset="gpt2-124m", padded_vocab=0)).padded_vocab_size is None
    assert model_config(BenchSettings(preset="poetry")).padded_vocab_size is None
    with pytest.raises(ValueError, match="below the preset's vocab_size"):
        model_config(BenchSettings(preset="gpt2-124m", padded_vocab=50000))
    with pytest.raises(ValueError, match="--seq=2048 must be in"):
        model_config(BenchSettings(preset="gpt2-124m", seq=2048))
    with pytest.raises(ValueError, match="unknown model preset"):
        model_config(BenchSettings(preset="gpt3"))
    cpu, gpu = resolve(BenchSettings(), gpu=False), resolve(BenchSettings(), gpu=True)
    assert (cpu.batch, cpu.dtype, cpu.steps, cpu.seq) == (4, "float32", CPU_STEPS, 256)
    assert (gpu.batch, gpu.dtype, gpu.steps) == (16, "bfloat16", GPU_STEPS) and GPU_STEPS >= 50
    explicit = resolve(BenchSettings(batch=3, dtype="float32", steps=7, seq=8), gpu=True)
    assert (explicit.batch, explicit.dtype, explicit.steps, explicit.seq) == (3, "float32", 7, 8)


def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, check=False)


def test_script_usage_errors_exit_2_and_bad_input_exits_1():
    for args, message in ((["--repeats", "0"], "--repeats=0 must be >= 1"),
                          (["--grad_accum", "0"], "--grad_accum=0 must be >= 1"),
                          (["--frameworks", "jax,mxnet"], "unknown frameworks ['mxnet']")):
        p = _script(*args)
        assert p.returncode == 2 and p.stdout == "", (args, p.returncode, p.stderr)
        assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    p = _script("--preset", "gpt3", "--frameworks", "jax")
    assert p.returncode == 1 and "unknown model preset 'gpt3'" in p.stderr, p.stderr


# ---- MFU conventions ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 NVL", 835e12),  # not the SXM part's 989
    ("NVIDIA H200 NVL", 835e12),
    ("NVIDIA H100 80GB HBM3", 989e12),
    ("NVIDIA H100 PCIe", 756e12),
    ("NVIDIA H200", 989e12),
])
def test_peak_table(name, peak):
    assert peak_flops(name) == peak


def test_llmc_mfu_convention():
    cfg = PRESETS["tiny"]  # 2 layers, width 32, vocab 99, block 16
    # llm.c: 6 * every parameter (the position table too) + 6 * L * C * T.
    assert flops_per_token_llmc(cfg, 16) == 6 * num_params(cfg, non_embedding=False) + 6 * 2 * 32 * 16
    tps = 1000.0
    a100 = "NVIDIA A100-SXM4-80GB"
    want = tps * flops_per_token_llmc(cfg, 16) / 312e12
    assert mfu_llmc(tps, cfg, 16, a100, "bfloat16") == pytest.approx(want)
    assert mfu_llmc(tps, cfg, 16, a100, "float32") == pytest.approx(2 * want)  # over the TF32 peak, half the bf16 one
    assert mfu_llmc(tps, cfg, 16, a100, "bfloat16", n_devices=4) == pytest.approx(want / 4)
    assert mfu_llmc(tps, cfg, 16, "cpu", "float32") is None
    # the two conventions differ (the position table, the attention term): both are printed
    assert mfu_llmc(tps, cfg, 16, a100, "bfloat16") != pytest.approx(mfu(tps, cfg, 16, a100))
    with pytest.raises(ValueError, match="seq=17"):
        flops_per_token_llmc(cfg, 17)


# ---- host memory ----------------------------------------------------------------------------------------

_FAULTS = textwrap.dedent("""
    import ctypes, resource, sys
    from jaxgpt.common.hostmem import recycle_freed_memory
    applied = recycle_freed_memory() if sys.argv[1] == "recycle" else False
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    n = 96 << 20  # above glibc's 64 MB arena heaps and 32 MB mmap threshold, like an XLA step's buffer
    faults = []
    for _ in range(4):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        p = libc.malloc(n)
        ctypes.memset(p, 1, n)  # touch every page, as a step writes its activations
        libc.free(p)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    print(applied, faults[-1])
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_recycled_memory_is_reused_without_page_faults():
    """Without the setting every 96 MB allocation maps fresh pages (~24,576 faults); with it the freed
    block is reused and later allocations fault (almost) nothing."""
    got = {}
    for mode in ("default", "recycle"):
        p = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, timeout=60, cwd=ROOT,
                           check=False)
        assert p.returncode == 0, p.stderr
        applied, faults = p.stdout.split()
        got[mode] = (applied == "True", int(faults))
    pages = (96 << 20) // 4096
    assert got["default"][1] >= 0.9 * pages, got
    if not got["recycle"][0]:
        pytest.skip("not glibc: recycle_freed_memory() does not apply")
    assert got["recycle"][1] <= 0.01 * pages, got
