"""makemore: train, evaluate and sample the character-level name models, in JAX or PyTorch.

    python scripts/makemore.py --model mlp --framework jax            # lecture 2's MLP, 200k steps
    python scripts/makemore.py --model wavenet --framework torch --steps 20000 --save runs/wn.npz
    python scripts/makemore.py --load runs/wn.npz --samples 20        # resume / evaluate / sample
    python scripts/makemore.py --ladder                               # every model, both frameworks
    python scripts/makemore.py --model bn-mlp --lecture-rng           # re-run lecture 3's notebook exactly

Models: bigram (counts), bigram-nn, mlp, bn-mlp, bn-mlp-deep, backprop (hand-written backward),
wavenet, rnn, gru, bow, transformer; recipes in jaxgpt/common/makemore/config.py. Data: --data PATH
(one word per line), else makemore's names.txt from the cache / its URL, else the `names`
package's census lists (offline). Checkpoints (.npz) are framework-neutral: a model saved by one
framework loads in the other. Ctrl-C stops training cleanly: it still evaluates, samples and saves,
and --load of that file continues the schedule from the step it reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from jaxgpt.common.makemore import data
from jaxgpt.common.makemore.config import MODELS, PRESETS, ConfigError, ModelConfig, get_preset, lr_at
from jaxgpt.common.makemore.torch_rng import LECTURE_SEEDS, lecture_init

FORMAT = "jaxgpt-makemore-v1"


class UsageError(ValueError):
    """A command line or file the user must fix; printed as one line, exit code 2."""


# ---- checkpoints (numpy .npz: the same arrays and names in both frameworks) -------------------
def save_checkpoint(path: Path, weights: dict[str, np.ndarray], meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, __meta__=np.array(json.dumps(meta)), **weights)
    tmp.replace(path)  # atomic: an interrupted save never destroys the previous checkpoint


def load_checkpoint(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    if not path.is_file():
        raise UsageError(f"checkpoint {path} not found; pass the file written by --save")
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["__meta__"]))
            weights = {k: f[k] for k in f.files if k != "__meta__"}
    except (OSError, ValueError, KeyError) as e:
        raise UsageError(f"{path} is not a makemore checkpoint ({type(e).__name__}: {e}); "
                         "pass a file written by scripts/makemore.py --save") from None
    if meta.get("format") != FORMAT:
        raise UsageError(f"{path} is not a makemore checkpoint (format {meta.get('format')!r}, expected {FORMAT!r})")
    return meta, weights


# ---- one run ----------------------------------------------------------------------------------
def make_trainer(framework: str, mcfg: ModelConfig, tcfg, seed: int):
    if framework == "jax":
        from jaxgpt.makemore.train import Trainer
    else:
        from torchref.makemore.train import Trainer
    return Trainer(mcfg, tcfg, seed)


def load_data(args) -> tuple[list[str], str]:
    if args.data:
        return data.read_words(args.data, args.lowercase, args.strip), str(args.data)
    return data.default_words()


def shorten(tcfg, steps: int | None):
    """Set the schedule's length to `steps`, moving the lr drop and the warm-up proportionally
    (the same shape, shorter or longer; a cosine always ends at `steps`)."""
    if steps is None or tcfg.steps == 0:
        return tcfg
    if steps < 0:
        raise UsageError(f"--steps must be >= 0, got {steps}")
    decay = tcfg.lr_decay_step
    if decay is not None:
        decay = round(decay * steps / tcfg.steps)
    return replace(tcfg, steps=steps, lr_decay_step=decay, warmup_steps=round(tcfg.warmup_steps * steps / tcfg.steps),
                   eval_every=min(tcfg.eval_every, max(steps // 10, 1)))


def run_one(model: str, framework: str, words: list[str], data_desc: str, args, meta_in=None, weights_in=None) -> dict:
    preset = get_preset(model)
    mcfg, tcfg = preset.model, shorten(preset.train, args.steps)
    if args.split:
        tcfg = replace(tcfg, split=args.split)
    train_w, val_w, test_w = data.split_words(words, tcfg.split)
    if meta_in is not None:
        mcfg = ModelConfig.from_dict(meta_in["model"])
        if args.context is not None and args.context != mcfg.block_size:
            raise UsageError(f"--context {args.context} differs from the checkpoint's {mcfg.block_size}")
    elif mcfg.is_window:
        mcfg = replace(mcfg, block_size=args.context if args.context is not None else mcfg.block_size)
    else:  # makemore.py sizes the sequence to the longest word + the start token
        need = max(len(w) for w in words) + 1
        mcfg = replace(mcfg, block_size=args.context if args.context is not None else need)
    build = data.build_windows if mcfg.is_window else data.build_sequences
    (Xtr, Ytr), (Xva, Yva), (Xte, Yte) = (build(w, mcfg.block_size) for w in (train_w, val_w, test_w))

    trainer = make_trainer(framework, mcfg, tcfg, args.seed)
    replay = None  # the notebook's generator, when replaying its run (--lecture-rng)
    if args.lecture_rng and model in LECTURE_SEEDS:
        if tcfg.split != "lecture":
            raise UsageError("--lecture-rng replays the lecture notebooks, which use the lecture split; drop --split")
        init, replay = lecture_init(mcfg)
        if weights_in is None:
            trainer.load_numpy(init)
    if weights_in is not None:
        trainer.load_numpy(weights_in)
        trainer.step_count = int(meta_in["step"])
        if replay is not None:
            replay.skip(trainer.step_count * tcfg.batch_size)  # the batches the saved run already drew
    print(f"[{framework}] {model}: {trainer.num_params():,} parameters, {len(Xtr):,} training examples "
          f"({tcfg.split} split), {tcfg.steps:,} steps, {tcfg.optimizer}"
          + (f", replaying the lecture's random numbers (torch seed {LECTURE_SEEDS[model]})" if replay else ""),
          file=sys.stderr)

    history: list[tuple[int, float]] = []
    train_time, timed_steps, interrupted = 0.0, 0, False
    if model == "bigram":
        if weights_in is None:
            trainer.fit_counts(Xtr, Ytr)
    elif trainer.step_count < tcfg.steps:
        from tqdm import tqdm

        trainer.set_train_data(Xtr, Ytr)
        chunk = 1000 if framework == "jax" else 100  # steps per compiled call / per progress update
        every = tcfg.eval_every or tcfg.steps
        first = True
        bar = tqdm(total=tcfg.steps, initial=trainer.step_count, desc=f"{framework} {model}", unit="step",
                   dynamic_ncols=True, file=sys.stderr)
        try:
            while trainer.step_count < tcfg.steps:
                s = trainer.step_count
                k = min(chunk, tcfg.steps - s, every - s % every)
                # Batches are drawn from (seed, step): a resumed run sees the batches it would have seen
                # (or, replaying a lecture, from its torch generator, one randint(len, (32,)) per step).
                if tcfg.batch_size == 0:
                    idx = None
                elif replay is not None:
                    idx = replay.randint(len(Xtr), (k, tcfg.batch_size)).astype(np.int32)
                else:
                    idx = data.batch_indices(np.random.default_rng((args.seed, s)), len(Xtr), k, tcfg.batch_size)
                t0 = time.perf_counter()
                loss = trainer.train_steps(idx, k)
                dt = time.perf_counter() - t0
                if not first or tcfg.steps - s == k:  # the first call includes compilation: not timed
                    train_time, timed_steps = train_time + dt, timed_steps + k
                first = False
                bar.update(k)
                post = {"loss": f"{loss:.4f}", "lr": f"{lr_at(s, tcfg):g}"}
                if trainer.step_count % every == 0 or trainer.step_count == tcfg.steps:
                    history.append((trainer.step_count, trainer.loss(Xva, Yva)))
                    post["val"] = f"{history[-1][1]:.4f}"
                bar.set_postfix(post)
        except KeyboardInterrupt:
            interrupted = True
            print(f"\ninterrupted at step {trainer.step_count}: evaluating and saving what there is "
                  f"(--load the saved file to continue)", file=sys.stderr)
        finally:
            bar.close()

    res = {"model": model, "framework": framework, "params": trainer.num_params(), "step": trainer.step_count,
           "train": trainer.loss(Xtr, Ytr), "val": trainer.loss(Xva, Yva), "test": trainer.loss(Xte, Yte),
           "s_per_1k": 1000 * train_time / timed_steps if timed_steps else None, "history": history,
           "split": tcfg.split, "target": preset.target, "target_split": preset.target_split,
           "interrupted": interrupted, "lecture_rng": replay is not None}
    if args.save and not args.ladder:
        meta = {"format": FORMAT, "model": mcfg.to_dict(), "step": trainer.step_count, "framework": framework,
                "data": data_desc, "val": res["val"], "lecture_rng": replay is not None}
        save_checkpoint(Path(args.save), trainer.state_numpy(), meta)
        print(f"saved {model} (step {trainer.step_count}) to {args.save}", file=sys.stderr)
    if args.samples:
        train_set = set(train_w)
        rng = np.random.default_rng(args.seed)
        names = data.sample_words(trainer.logits, mcfg.block_size, mcfg.is_window, args.samples, rng,
                                  temperature=args.temperature)
        res["samples"] = [(n, n not in train_set) for n in names]
    return res


def print_result(r: dict) -> None:
    t = f", {r['s_per_1k']:.2f} s per 1k steps" if r["s_per_1k"] else ""
    print(f"{r['framework']} {r['model']} ({r['params']:,} params, step {r['step']:,}{t}): "
          f"train {r['train']:.4f}  val {r['val']:.4f}  test {r['test']:.4f}  ({r['split']} split)")
    if r.get("samples"):
        print("samples (* = new, not in the training set):")
        for name, new in r["samples"]:
            print(f"  {'*' if new else ' '} {name}")


# ---- the ladder -------------------------------------------------------------------------------
def ladder_table(results: list[dict]) -> str:
    rows = ["| model | framework | params | train | val | test | s / 1k steps | reference | met |",
            "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        ref, met = "", ""
        if r["target"] is not None:
            ref = f"{r['target_split']} <= {r['target']}"
            met = "yes" if r[r["target_split"]] <= r["target"] else "no"
        t = f"{r['s_per_1k']:.2f}" if r["s_per_1k"] else "-"
        name = r["model"] + (" (lecture RNG)" if r.get("lecture_rng") else "")
        rows.append(f"| {name} | {r['framework']} | {r['params']:,} | {r['train']:.4f} | {r['val']:.4f} | "
                    f"{r['test']:.4f} | {t} | {ref} | {met} |")
    return "\n".join(rows)


def plot_ladder(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for r in results:
        style = "-" if r["framework"] == "jax" else "--"
        if r["history"]:
            steps, vals = zip(*r["history"])
            ax.plot(steps, vals, style, label=f"{r['model']} ({r['framework']})")
        else:
            ax.axhline(r["val"], ls=":", color="gray")
            ax.annotate(f"{r['model']} ({r['framework']}) {r['val']:.3f}", (0, r["val"]), fontsize=7)
    ax.axhline(np.log(27), color="k", lw=0.5)
    ax.set(xscale="symlog", xlabel="step", ylabel="val loss (nats/char)", title="makemore ladder: val loss",
           ylim=(1.8, 2.8))
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", choices=MODELS, help="the model to train (default: the checkpoint's with --load)")
    p.add_argument("--framework", choices=("jax", "torch"), default="jax")
    p.add_argument("--data", type=Path, help="a text file, one word per line (default: makemore's names.txt)")
    p.add_argument("--lowercase", action="store_true", help="fold A-Z to a-z before checking the vocabulary")
    p.add_argument("--strip", action="store_true", help="drop characters outside a-z instead of failing")
    p.add_argument("--split", choices=("lecture", "makemore"),
                   help="lecture: 80/10/10 (default for window models); makemore: test = min(1000, 10%%)")
    p.add_argument("--context", type=int, help="context length (block_size); WaveNet needs a power of two")
    p.add_argument("--steps", type=int, help="run the schedule over this many steps (its lr drop / warm-up scale with it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lecture-rng", action="store_true",
                   help="replay the lecture notebook's random numbers (initial weights and minibatches) for "
                        f"{', '.join(LECTURE_SEEDS)}: both frameworks then re-run the notebook's exact run")
    p.add_argument("--samples", type=int, default=20, help="names to sample at the end (0: none)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--save", help="write the trained model here (.npz, loads in either framework)")
    p.add_argument("--load", help="start from this checkpoint: continue its schedule, or only evaluate and sample")
    p.add_argument("--ladder", action="store_true", help="train every model (--models) in --frameworks, print a table")
    p.add_argument("--models", default=",".join(m for m in MODELS), help="comma-separated, for --ladder")
    p.add_argument("--frameworks", default="jax,torch", help="comma-separated, for --ladder")
    p.add_argument("--out", type=Path, default=Path("runs/makemore"), help="--ladder: where the table and plot go")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (tiny models run fastest on one; 0 = torch's default)")
    args = p.parse_args(argv)
    try:
        if args.threads:
            os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
        if args.context is not None and args.context < 1:
            raise UsageError(f"--context must be >= 1, got {args.context}")
        if args.samples < 0 or args.temperature <= 0:
            raise UsageError("--samples must be >= 0 and --temperature > 0")
        meta_in = weights_in = None
        if args.load:
            meta_in, weights_in = load_checkpoint(Path(args.load))
            saved = meta_in["model"]["model"]
            if args.model and args.model != saved:
                raise UsageError(f"{args.load} holds a '{saved}' model, not '{args.model}'; "
                                 f"run with --model {saved} (or without --model) to use it")
            args.model = saved
            args.lecture_rng = args.lecture_rng or bool(meta_in.get("lecture_rng"))
        if args.ladder:
            models = [m.strip() for m in args.models.split(",") if m.strip()]
            fws = [f.strip() for f in args.frameworks.split(",") if f.strip()]
            bad = [m for m in models if m not in PRESETS] + [f for f in fws if f not in ("jax", "torch")]
            if bad:
                raise UsageError(f"unknown model or framework {bad}; models: {', '.join(MODELS)}; frameworks: jax, torch")
        elif not args.model:
            raise UsageError("give --model (one of " + ", ".join(MODELS) + "), --load CHECKPOINT or --ladder")
        elif args.lecture_rng and args.model not in LECTURE_SEEDS:
            raise UsageError(f"--lecture-rng replays the notebooks' runs of {', '.join(LECTURE_SEEDS)} only, "
                             f"not {args.model}; drop it (or use --seed)")
        for m in (models if args.ladder else [args.model]):  # bad sizes fail before any data is fetched
            if args.context is not None and meta_in is None:
                replace(get_preset(m).model, block_size=args.context)
        words, desc = load_data(args)
        if "torch" in (args.frameworks.split(",") if args.ladder else [args.framework]) and args.threads:
            import torch

            torch.set_num_threads(args.threads)
        if not args.ladder:
            print_result(run_one(args.model, args.framework, words, desc, args, meta_in, weights_in))
            return 0
        results = []
        for m in models:
            for fw in fws:
                r = run_one(m, fw, words, desc, args)
                print_result(r)
                results.append(r)
                args.out.mkdir(parents=True, exist_ok=True)  # written as it goes: a crash keeps the rows so far
                (args.out / "ladder.json").write_text(json.dumps(results, indent=1))
        table = ladder_table(results)
        print(f"\nmakemore ladder on {desc}\n\n{table}")
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ladder.md").write_text(table + "\n")
        (args.out / "ladder.json").write_text(json.dumps(results, indent=1))
        plot_ladder(results, args.out / "ladder.png")
        print(f"\nwrote {args.out / 'ladder.md'}, ladder.json and the val-loss plot {args.out / 'ladder.png'}")
        return 0
    except (UsageError, ConfigError, data.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
