"""Time the HellaSwag evaluation a training run makes every --hellaswag_every steps (issue 12, item 7).

    python scripts/bench_hellaswag.py --hellaswag_file=../shared/data/hellaswag_val_sample.jsonl
    python scripts/bench_hellaswag.py --framework=torch --preset=gpt2-124m --repeats=5 --hellaswag_limit=500

Builds the training runtime of --preset (GPT-2's vocabulary; the tiny preset's 2 x 32 model by default, on
8 simulated devices when the backend is a CPU) and calls its `hellaswag` --repeats times on the tasks the run
renders once, exactly as scripts/train.py does. Prints each call's seconds (the first includes compilation),
the median of the others, the predictions' md5 (to show that two versions of the code predict the same), a
markdown row for docs/BENCHMARKS.md and one JSON line. The weights are the preset's random initialisation
(--seed): the evaluation's cost does not depend on them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", choices=("jax", "torch"), default="jax")
    p.add_argument("--preset", default="tiny", help="model preset (its vocabulary is set to GPT-2's)")
    p.add_argument("--hellaswag_file", default="",
                   help="hellaswag_val.jsonl-schema file (default: the official val set, downloaded once)")
    p.add_argument("--hellaswag_limit", type=int, default=0, help="first N tasks (0: all)")
    p.add_argument("--block_size", type=int, default=128, help="context of the model (HellaSwag rows are <= ~125)")
    p.add_argument("--repeats", type=int, default=4, help="evaluations in one process (>= 2)")
    p.add_argument("--cpu_devices", type=int, default=8, help="simulated devices when JAX runs on a CPU")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.hellaswag_file and not os.path.isfile(args.hellaswag_file):
        print(f"error: --hellaswag_file {args.hellaswag_file} not found; pass a hellaswag_val.jsonl-schema file, "
              "or none to download the official val set", file=sys.stderr)
        return 2
    if args.repeats < 2:
        print(f"error: --repeats={args.repeats}: at least 2 (the first includes compilation)", file=sys.stderr)
        return 2
    if args.framework == "jax" and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        # before JAX starts; ignored by GPUs (the flag only multiplies the host platform's devices)
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={args.cpu_devices}").strip()

    import numpy as np

    from jaxgpt.common import frameworks
    from jaxgpt.common.data.hellaswag import hellaswag_file
    from jaxgpt.common.loop import Launch
    from jaxgpt.common.recipes import configs_for
    from jaxgpt.common.training import hellaswag_tasks

    try:
        file = hellaswag_file(args.hellaswag_file or None)  # a missing file: an error; none given: the download
        model_cfg, cfg, optim = configs_for(args.preset, [
            "--vocab_size=50257", "--padded_vocab_size=50304", f"--block_size={args.block_size}",
            f"--hellaswag_file={file}", f"--hellaswag_limit={args.hellaswag_limit}", f"--seed={args.seed}",
            "--compile_cache="])

        class NoManifest:  # GPT-2 tokens, as build-nanogpt's shards
            tokenizer = None

        tasks = hellaswag_tasks(NoManifest, model_cfg, cfg)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    fw = frameworks.runtime(args.framework)
    cluster = fw.connect(Launch())
    rt = fw.make_runtime(model_cfg, cfg, optim, cluster, 1)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        r = rt.hellaswag(tasks)
        times.append(time.perf_counter() - t0)
    res = r["result"]
    digest = hashlib.md5(np.stack([res.pred, res.pred_norm]).tobytes()).hexdigest()
    median = float(np.median(times[1:]))
    out = {"framework": args.framework, "preset": args.preset, "devices": cluster.n_devices, "tasks": r["count"],
           "acc_norm": r["acc_norm"], "seconds": [round(t, 3) for t in times], "median_after_first": round(median, 3),
           "predictions_md5": digest, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print("evaluations (s):", " / ".join(f"{t:.2f}" for t in times))
    print(f"| {out['date']} | {args.framework} {args.preset}, {cluster.n_devices} devices | {r['count']} tasks | "
          f"{times[0]:.2f} s | {median:.2f} s | {digest[:8]}... |")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
