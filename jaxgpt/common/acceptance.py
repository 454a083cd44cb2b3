"""The GPU acceptance run (scripts/gpu_acceptance.py): one command that checks a GPU machine end to end.

On one H100/H200 it takes about 6-8 minutes and writes OUT/acceptance.json plus a markdown row for
docs/BENCHMARKS.md section 9:
1. `bench`: scripts/bench.py for JAX, torch and torch.compile at each micro-batch (tok/s, MFU, peak
   memory, compile time); a batch that does not fit is recorded as such, not fatal;
2. `hlo`: where the compiled data-parallel step all-reduces its gradients, on every GPU present
   (jaxgpt/train/hlo.py: none may sit inside the accumulation loop);
3. `train`: shards of a local text (scripts/prepare_data.py, GPT-2 tokens), then the same short
   recipe in each framework (scripts/train.py), loss curves side by side;
4. `hellaswag`: the time to score N tasks with each framework's trained model (scripts/hellaswag.py).
Every part runs our own entry points in subprocesses, as a user would, so a failure names the
command and keeps the others' results. `--cpu-smoke` runs the same parts at toy sizes on 8
simulated CPU devices, to check the command itself without a GPU.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Plan:
    """The sizes of one acceptance run."""

    preset: str
    model_overrides: tuple[str, ...]  # --key=value for scripts/train.py (model and batch)
    bench_preset: str
    bench_batches: tuple[int, ...]  # micro-batches per device to benchmark
    bench_seq: int
    bench_steps: int
    train_steps: int
    hellaswag_limit: int
    env: dict[str, str] = field(default_factory=dict)  # extra environment of every subprocess
    text_bytes: int = 0  # tokenize only the text's first N bytes (whole documents); 0 = all of it


GPU = Plan("gpt2-124m", ("--total_batch_tokens=131072", "--micro_batch=16", "--warmup_steps=10"), "gpt2-124m",
           (16, 32, 64), 1024, 20, 100, 500)
# block_size 128: HellaSwag endings need room for their context; 16-token rows keep the steps tiny.
CPU_SMOKE = Plan("tiny", ("--vocab_size=50257", "--padded_vocab_size=50304", "--block_size=128", "--total_batch_tokens=512",
                          "--seq_len=16", "--micro_batch=2", "--warmup_steps=2", "--dtype=float32"), "tiny", (4,), 16, 2, 6,
                 8, {"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}, text_bytes=500_000)


def _run(args: list[str], plan: Plan, log: Callable[[str], None], timeout: int) -> tuple[int, str, float]:
    """(exit code, stdout + stderr, seconds) of `python ARGS` in the repository root."""
    log("$ python " + " ".join(args))
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, *args], cwd=ROOT, env={**os.environ, **plan.env}, capture_output=True,
                           text=True, timeout=timeout, check=False)
        code, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        code, out = 124, f"timed out after {timeout} s: {e}"
    return code, out, time.perf_counter() - t0


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{") and line.endswith("}")]


def bench(plan: Plan, log: Callable[[str], None]) -> list[dict]:
    rows = []
    for b in plan.bench_batches:
        code, out, _ = _run(["scripts/bench.py", f"--preset={plan.bench_preset}", f"--batch={b}", f"--seq={plan.bench_seq}",
                             f"--steps={plan.bench_steps}", "--repeats=2"], plan, log, 900)
        found = [r for r in _json_lines(out) if "framework" in r]
        rows += found or [{"batch": b, "error": out.strip().splitlines()[-1] if out.strip() else f"exit {code}"}]
    return rows


HLO_PROBE = """
import json, jax, numpy as np
from jaxgpt.common.recipes import configs_for
from jaxgpt.common.schedule import OptimConfig
from jaxgpt.train.hlo import collectives_in_loops, count_collectives
from jaxgpt.train.sharding import global_batch, make_mesh
from jaxgpt.train.trainer import Trainer
model, train, _ = configs_for({preset!r}, {overrides!r})
mesh = make_mesh()
t = Trainer(model, OptimConfig(), grad_accum=4, dtype=train.dtype, mesh=mesh)
x = np.zeros((4 * mesh.size * 2, train.seq_len), np.int32)
xg = global_batch(x, 4, mesh)
hlo = t._train_step.lower(t.state, xg, xg).compile().as_text()
print(json.dumps({{"devices": mesh.size, "device": jax.devices()[0].device_kind, "reductions": count_collectives(hlo),
                  "inside_loops": collectives_in_loops(hlo)}}))
"""


def hlo(plan: Plan, log: Callable[[str], None]) -> dict:
    code, out, _ = _run(["-c", HLO_PROBE.format(preset=plan.preset, overrides=list(plan.model_overrides))], plan, log, 900)
    found = _json_lines(out)
    return found[-1] if code == 0 and found else {"error": out[-2000:]}


def _losses(run: Path) -> list[tuple[int, float]]:
    with open(run / "train_log.csv", newline="") as f:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f) if r.get("loss")]


def _head(text: Path, n: int, out: Path) -> Path:
    """The first ~n bytes of `text`, cut at a blank line (a document boundary), as a file in `out`."""
    with open(text, "rb") as f:
        head = f.read(n)
    cut = head.rfind(b"\n\n")
    path = out / f"head-{text.name}"
    path.write_bytes(head[: cut if cut > 0 else len(head)].decode("utf-8", "ignore").encode())
    return path


def train(plan: Plan, text: Path, out: Path, log: Callable[[str], None]) -> dict:
    shards = out / "shards"
    if plan.text_bytes:
        text = _head(text, plan.text_bytes, out)
    code, res, secs = _run(["scripts/prepare_data.py", "--files", str(text), "--tokenizer", "gpt2", "--val_fraction=0.05",
                            "--out", str(shards)], plan, log, 1800)
    if code:
        return {"error": f"prepare_data.py exit {code}: {res[-2000:]}"}
    runs: dict[str, Any] = {"prepare_s": round(secs, 1)}
    for fw in ("jax", "torch"):
        run = out / f"train-{fw}"
        code, res, secs = _run(["scripts/train.py", f"--preset={plan.preset}", f"--framework={fw}", *plan.model_overrides,
                                f"--max_steps={plan.train_steps}", f"--data_dir={shards}", f"--out_dir={run}", "--force",
                                "--val_every=0", "--hellaswag_every=0", "--sample_every=0", "--ckpt_every=0", "--plot=false"],
                               plan, log, 1800)
        if code:
            runs[fw] = {"error": f"train.py exit {code}: {res[-2000:]}"}
            continue
        metrics = json.loads((run / "metrics.json").read_text())
        runs[fw] = {"wall_s": round(secs, 1), "losses": _losses(run), "val_loss": metrics.get("val_loss"),
                    "steps_per_s": metrics.get("steps_per_s"), "hf": str(run / "hf"),
                    "setup": [line for line in res.splitlines() if line.startswith(("attention:", "compilation cache",
                                                                                     f"{fw}: "))]}
    return runs


def hellaswag(plan: Plan, runs: dict, data: Path, log: Callable[[str], None]) -> dict:
    found = {}
    for fw in ("jax", "torch"):
        if "hf" not in runs.get(fw, {}):
            continue
        code, res, secs = _run(["scripts/hellaswag.py", "--hf-dir", runs[fw]["hf"], f"--framework={fw}", "--data", str(data),
                                f"--limit={plan.hellaswag_limit}", "--no-progress"], plan, log, 1800)
        found[fw] = {"seconds": round(secs, 1), "tasks": plan.hellaswag_limit} if code == 0 else {"error": res[-2000:]}
    return found


def failed_parts(result: dict) -> list[str]:
    """The parts (bench, hlo, train, hellaswag) that recorded an error anywhere."""
    def failed(v: Any) -> bool:
        if isinstance(v, dict):
            return "error" in v or any(failed(x) for x in v.values())
        return isinstance(v, list) and any(failed(x) for x in v)
    return [part for part in ("bench", "hlo", "train", "hellaswag") if failed(result.get(part))]


def summary_row(result: dict) -> str:
    """One markdown table row for docs/BENCHMARKS.md section 9."""
    best = {}
    for r in result.get("bench", []):
        if "tokens_per_s" in r and r["tokens_per_s"] > best.get(r["framework"], {}).get("tokens_per_s", 0):
            best[r["framework"]] = r
    cells = [result["date"], result.get("hlo", {}).get("device", "?")]
    for fw in ("jax", "torch", "torch-compile"):
        r = best.get(fw)
        mfu = "n/a" if r is None or r.get("mfu") is None else f"{100 * r['mfu']:.1f}%"
        cells.append(f"{r['tokens_per_s']:,.0f} tok/s, MFU {mfu}, B={r['batch']}" if r else "-")
    inside = result.get("hlo", {}).get("inside_loops")
    cells.append("-" if inside is None else ("none in loops" if not inside else f"{len(inside)} IN LOOPS"))
    tr = result.get("train", {})
    cells.append(" / ".join(f"{fw} {tr[fw]['losses'][-1][1]:.3f}" for fw in ("jax", "torch") if "losses" in tr.get(fw, {})))
    return "| " + " | ".join(str(c) for c in cells) + " |"


def run(plan: Plan, text: Path, hellaswag_file: Path, out: Path, log: Callable[[str], None] = print) -> dict:
    """Every part in order; returns (and writes to OUT/acceptance.json) what each part measured."""
    for what, path in (("--text", text), ("--hellaswag", hellaswag_file)):
        if not path.is_file():
            raise FileNotFoundError(f"{what} {path} is not a file; pass a local file (see scripts/gpu_acceptance.py --help)")
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "plan": asdict(plan)}
    result["bench"] = bench(plan, log)
    result["hlo"] = hlo(plan, log)
    result["train"] = train(plan, text, out, log)
    result["hellaswag"] = hellaswag(plan, result["train"], hellaswag_file, log)
    result["row"] = summary_row(result)
    (out / "acceptance.json").write_text(json.dumps(result, indent=1))
    return result
