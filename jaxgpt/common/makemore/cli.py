"""makemore: train, evaluate and sample the character-level name models, in JAX or PyTorch.

    python scripts/makemore.py --model mlp --framework jax            # lecture 2's MLP, 200k steps
    python scripts/makemore.py --model wavenet --framework torch --steps 20000 --save runs/wn.npz
    python scripts/makemore.py --load runs/wn.npz --samples 20        # resume / evaluate / sample
    python scripts/makemore.py --model transformer --n-layer 6 --n-embd 96 --dropout 0.1 --out runs/t6
    python scripts/makemore.py --model bn-mlp --steps 2000 --diagnostics --framework both --out runs/diag
    python scripts/makemore.py --ladder                               # every model, both frameworks
    python scripts/makemore.py --model bn-mlp --lecture-rng           # re-run lecture 3's notebook exactly

Models: bigram (counts), bigram-nn, mlp, bn-mlp, bn-mlp-deep, backprop (hand-written backward),
wavenet, rnn, gru, bow, transformer; recipes in jaxgpt/common/makemore/config.py, the size and
training flags override them. Data: --data PATH (one word per line), else makemore's names.txt from
the cache / its URL, else the `names` package's census lists (offline).

Run folder (--out DIR): log.csv + curves.png, checkpoint.npz (at every evaluation and at the end),
result.json, and with --diagnostics the lecture-3 PNGs. A checkpoint (.npz) loads in either
framework and records the model and the schedule: --load continues that schedule (flags given
with it override the training settings; size flags must match the saved model).

Ctrl-C / SIGTERM: the chunk in flight finishes, the checkpoint is written (--save / --out only) and
the run exits 128 + N (130 / 143). Exit codes: 0 done, 1 a file or folder to fix (data, checkpoint,
run folder), 2 a command-line mistake, 3 the loss diverged (nothing saved; the last good checkpoint
is intact), 128 + N stopped by signal N.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from jaxgpt.common import runlog
from jaxgpt.common.makemore import checkpoint, data
from jaxgpt.common.makemore.config import (
    DIAGNOSTIC_MODELS,
    MODELS,
    PRESETS,
    SIZE_FLAGS,
    ConfigError,
    ModelConfig,
    TrainConfig,
    get_preset,
    rescale,
    with_sizes,
)
from jaxgpt.common.makemore.run import Options, Run, Splits, make_trainer
from jaxgpt.common.makemore.torch_rng import LECTURE_SEEDS, lecture_init
from jaxgpt.common.resume import RunFolderLock

RUN_FILES = ("log.csv", "checkpoint.npz", "result.json", "ladder.json")  # a folder holding one holds a run


class UsageError(ValueError):
    """A command-line mistake: one line, exit code 2."""


class BadInput(ValueError):
    """A file or folder the user must fix: one line, exit code 1."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="makemore.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", choices=MODELS, help="the model to train (default: the checkpoint's with --load)")
    p.add_argument("--framework", choices=("jax", "torch", "both"), default="jax",
                   help="both (with --diagnostics): the two twins on the same weights and batches, curves overlaid")
    p.add_argument("--data", type=Path, help="a text file, one word per line (default: makemore's names.txt)")
    p.add_argument("--lowercase", action="store_true", help="fold A-Z to a-z before checking the vocabulary")
    p.add_argument("--strip", action="store_true", help="drop characters outside a-z instead of failing")
    p.add_argument("--split", choices=("lecture", "makemore"),
                   help="lecture: 80/10/10 (default for window models); makemore: test = min(1000, 10%%)")
    p.add_argument("--val-fraction", type=float,
                   help="makemore split: carve this fraction (0, 0.5] of the training names out as a seeded "
                        "validation set (default: none, val = test as makemore.py)")
    p.add_argument("--no-test", action="store_true", help="do not evaluate the test split (recipe selection on val)")
    g = p.add_argument_group("model size (default: the preset's; checked against the model)")
    g.add_argument("--context", "--block-size", dest="block_size", type=int,
                   help="characters of context; WaveNet: a power of two; sequence models: >= longest word + 1")
    g.add_argument("--n-embd", dest="n_embd", type=int, help="embedding size")
    g.add_argument("--n-embd2", "--n-hidden", dest="n_hidden", type=int, help="hidden width (makemore.py's n_embd2)")
    g.add_argument("--n-layer", dest="n_layer", type=int, help="layers (deep BN-MLP) or transformer blocks")
    g.add_argument("--n-head", dest="n_head", type=int, help="attention heads (transformer; must divide n_embd)")
    g.add_argument("--dropout", type=float, help="dropout rate in [0, 1) (transformer)")
    g = p.add_argument_group("training (default: the preset's, or the checkpoint's with --load)")
    g.add_argument("--steps", "--max-steps", dest="steps", type=int,
                   help="run the schedule over this many steps (its lr drop / warm-up scale with it)")
    g.add_argument("--batch-size", type=int, help="examples per step (>= 1)")
    g.add_argument("--learning-rate", "--lr", dest="learning_rate", type=float, help="(peak) learning rate, > 0")
    g.add_argument("--weight-decay", type=float, help="AdamW weight decay, >= 0 (AdamW models)")
    p.add_argument("--seed", type=int, help="initial weights, batches, dropout and samples (default 0, or the checkpoint's)")
    p.add_argument("--lecture-rng", action="store_true",
                   help=f"replay the lecture notebook's random numbers (initial weights and minibatches) for "
                        f"{', '.join(LECTURE_SEEDS)}: both frameworks then re-run the notebook's exact run")
    g = p.add_argument_group("sampling")
    g.add_argument("--samples", type=int, default=20, help="names to sample at the end (0: none)")
    g.add_argument("--temperature", type=float, default=1.0, help="softmax temperature, >= 0 (0: greedy)")
    g.add_argument("--top-k", type=int, help="sample among the k most likely characters only (1..27)")
    g = p.add_argument_group("files")
    g.add_argument("--save", type=Path, help="also write the checkpoint here (.npz, loads in either framework)")
    g.add_argument("--load", type=Path, help="start from this checkpoint: continue its schedule, or only evaluate")
    g.add_argument("--out", type=Path, help="run folder (--ladder: default runs/makemore)")
    g.add_argument("--force", action="store_true", help="replace the previous run's files in --out")
    p.add_argument("--diagnostics", action="store_true",
                   help=f"lecture 3's health plots into --out ({', '.join(DIAGNOSTIC_MODELS)})")
    p.add_argument("--ladder", action="store_true", help="train every model (--models) in --frameworks, print a table")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated, for --ladder")
    p.add_argument("--frameworks", default="jax,torch", help="comma-separated, for --ladder")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (tiny models run fastest on one; 0 = torch's default)")
    return p


# ---- configuration ------------------------------------------------------------------------------
def check_flags(args: argparse.Namespace) -> None:
    """Command-line values that are wrong whatever the model (exit 2 before anything is read)."""
    positive = {"--batch-size": args.batch_size, "--context": args.block_size, "--n-embd": args.n_embd,
                "--n-embd2": args.n_hidden, "--n-layer": args.n_layer, "--n-head": args.n_head}
    for flag, v in positive.items():
        if v is not None and v < 1:
            raise UsageError(f"{flag} must be an integer >= 1, got {v}")
    if args.steps is not None and args.steps < 0:
        raise UsageError(f"--steps must be >= 0, got {args.steps}")
    if args.learning_rate is not None and not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        raise UsageError(f"--learning-rate must be a finite number > 0, got {args.learning_rate}")
    if args.weight_decay is not None and not (math.isfinite(args.weight_decay) and args.weight_decay >= 0):
        raise UsageError(f"--weight-decay must be a finite number >= 0, got {args.weight_decay}")
    if args.val_fraction is not None and not (math.isfinite(args.val_fraction) and 0 < args.val_fraction <= 0.5):
        raise UsageError(f"--val-fraction must be in (0, 0.5], got {args.val_fraction}")
    if args.samples < 0 or args.threads < 0:
        raise UsageError(f"--samples and --threads must be >= 0, got {args.samples}, {args.threads}")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise UsageError(f"--temperature must be a finite number >= 0 (0: greedy), got {args.temperature}")
    if args.top_k is not None and not 1 <= args.top_k <= 27:
        raise UsageError(f"--top-k must be in [1, 27] (the vocabulary), got {args.top_k}")
    if args.framework == "both" and not args.diagnostics:
        raise UsageError("--framework both trains the two twins side by side for --diagnostics; add --diagnostics "
                         "(for a step-by-step comparison use scripts/compare.py)")
    if args.framework == "both" and (args.save or args.load):
        raise UsageError("--framework both writes diagnostics only: drop --save / --load (or pick one framework)")
    if args.diagnostics and not args.out:
        raise UsageError("--diagnostics writes its PNGs into the run folder: add --out DIR")
    sizes = [SIZE_FLAGS[k] for k in SIZE_FLAGS if getattr(args, k) is not None]
    if args.ladder and (sizes or args.diagnostics or args.save or args.load):
        raise UsageError(f"--ladder trains every preset as it is: drop {', '.join(sizes) or '--diagnostics/--save/--load'}")


def configure(model: str, args: argparse.Namespace, loaded: dict | None) -> tuple[ModelConfig, TrainConfig]:
    """The model and schedule to run: the preset's (or the checkpoint's), then the flags."""
    preset = get_preset(model)
    sizes = {k: getattr(args, k) for k in SIZE_FLAGS}
    if loaded is not None:
        mcfg = ModelConfig.from_dict(loaded["model"])
        for k, v in sizes.items():
            if v is not None and v != getattr(mcfg, k):
                raise UsageError(f"{SIZE_FLAGS[k]} {v} differs from the checkpoint's {getattr(mcfg, k)} (--load rebuilds "
                                 f"the saved model); drop {SIZE_FLAGS[k]}")
        tcfg = TrainConfig.from_dict(loaded["train"]) if "train" in loaded else preset.train
    else:
        mcfg, tcfg = with_sizes(preset.model, **sizes), preset.train
    if args.diagnostics and mcfg.model not in DIAGNOSTIC_MODELS:
        raise UsageError(f"--diagnostics: the {mcfg.model} model has no tanh layers to watch; use one of "
                         f"{', '.join(DIAGNOSTIC_MODELS)}")
    tcfg = rescale(tcfg, args.steps)
    changes = {"split": args.split, "val_fraction": args.val_fraction, "batch_size": args.batch_size,
               "lr": args.learning_rate, "weight_decay": args.weight_decay}
    if args.weight_decay is not None and tcfg.optimizer != "adamw":
        raise UsageError(f"--weight-decay applies to the AdamW models (rnn, gru, bow, transformer); {mcfg.model} "
                         "trains with the lectures' plain SGD: drop it")
    if args.learning_rate is not None:  # the lr drop (step) or the cosine's floor keeps its ratio to the peak
        changes["lr_final"] = tcfg.lr_final * args.learning_rate / tcfg.lr
    return mcfg, replace(tcfg, **{k: v for k, v in changes.items() if v is not None})


def sequence_context(mcfg: ModelConfig, words: list[str], given: int | None) -> ModelConfig:
    """makemore.py sizes a sequence model's context to the longest word + the start token."""
    need = max(len(w) for w in words) + 1
    if mcfg.is_window:
        return mcfg
    if given is not None and given < need:
        raise UsageError(f"--context {given} is too short: the longest word needs {need} (its characters + the start)")
    return mcfg if given is not None else replace(mcfg, block_size=need)


def check_out(out: Path, args: argparse.Namespace) -> None:
    """A fresh run never overwrites an earlier run's files (exit 1), unless --force or continuing it."""
    held = [f for f in RUN_FILES if (out / f).exists()]
    continuing = args.load is not None and Path(args.load).resolve().parent == out.resolve()
    if held and not (args.force or continuing):
        raise BadInput(f"{out} holds an earlier run ({', '.join(held)}); continue it with --load "
                       f"{out / 'checkpoint.npz'}, replace it with --force, or pick another --out")


# ---- one run ----------------------------------------------------------------------------------------
def run_one(model: str, frameworks: list[str], words: list[str], desc: str, args: argparse.Namespace,
            out: Path | None, loaded: tuple | None = None) -> list[dict]:
    meta_in, weights_in, opt_in = loaded if loaded else (None, None, None)
    mcfg, tcfg = configure(model, args, meta_in)
    mcfg = sequence_context(mcfg, words, args.block_size) if meta_in is None else mcfg
    splits = Splits.build(words, mcfg, tcfg)
    seed = args.seed if args.seed is not None else int((meta_in or {}).get("seed", 0))
    lecture = args.lecture_rng or bool((meta_in or {}).get("lecture_rng"))
    trainers = [make_trainer(fw, mcfg, tcfg, seed) for fw in frameworks]
    if len(trainers) == 2:  # the twins start from the same weights
        trainers[0].load_numpy(trainers[1].state_numpy())
    replay = None
    if lecture:
        if model not in LECTURE_SEEDS:
            raise UsageError(f"--lecture-rng replays the notebooks' runs of {', '.join(LECTURE_SEEDS)} only, "
                             f"not {model}; drop it (or use --seed)")
        if tcfg.split != "lecture":
            raise UsageError("--lecture-rng replays the lecture notebooks, which use the lecture split; drop --split")
        init, replay = lecture_init(mcfg)
        for t in trainers:
            t.load_numpy(init)
    if weights_in is not None:
        t = trainers[0]
        try:
            t.load_numpy(weights_in)
            t.load_optimizer_numpy(opt_in)
        except ValueError as e:
            raise BadInput(f"{args.load} does not fit its own model config ({e}); the file was edited") from None
        t.step_count = int(meta_in["step"])
        if replay is not None:
            replay.skip(t.step_count * tcfg.batch_size)  # the batches the saved run already drew
    opts = Options(seed=seed, save=args.save, out=out, diagnostics=args.diagnostics, test=not args.no_test,
                   samples=args.samples, temperature=args.temperature, top_k=args.top_k, data_desc=desc,
                   meta={"lecture_rng": replay is not None})
    print(f"[{'+'.join(frameworks)}] {model}: {trainers[0].num_params():,} parameters, "
          f"{len(splits.arrays['train'][0]):,} training examples ({tcfg.split} split"
          + (f", {len(splits.words['val']):,} validation names carved out" if tcfg.val_fraction else "")
          + f"), {tcfg.steps:,} steps, {tcfg.optimizer} lr {tcfg.lr:g}, batch {tcfg.batch_size}, seed {seed}"
          + (f", replaying the lecture's random numbers (torch seed {LECTURE_SEEDS[model]})" if replay else ""),
          file=sys.stderr)
    lock = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        try:  # held while the run writes: a second run into --out is refused (jaxgpt/common/resume.py)
            lock = RunFolderLock(out, lambda m: print(m, file=sys.stderr), flag="--out")
        except ValueError as e:
            raise BadInput(str(e)) from None
    try:
        run = Run(trainers, splits, opts, replay)
        if weights_in is not None:
            run.loaded_from(args.load, trainers[0].step_count)
        if model == "bigram":
            if weights_in is None:
                trainers[0].fit_counts(*splits.arrays["train"])
            run.save(run.evaluate("val")[0])
        elif trainers[0].step_count < tcfg.steps:
            run.train()
        preset = get_preset(model)
        results = run.results(preset.target, preset.target_split, replay is not None)
        if out is not None:
            (out / "result.json").write_text(json.dumps(results, indent=1))
            if args.diagnostics:
                paths = run.write_diagnostics()
                print(f"diagnostics: {', '.join(str(p) for p in paths)}", file=sys.stderr)
    finally:
        if lock is not None:
            lock.release()
    return results


def print_result(r: dict) -> None:
    t = f", {r['s_per_1k']:.2f} s per 1k steps" if r["s_per_1k"] else ""
    test = f"{r['test']:.4f}" if r["test"] is not None else "(not evaluated)"
    print(f"{r['framework']} {r['model']} ({r['params']:,} params, step {r['step']:,}{t}): "
          f"train {r['train']:.4f}  val {r['val']:.4f}  test {test}  ({r['split']} split)")
    if r.get("samples"):
        print("samples (* = new, not in the training set):")
        for name, new in r["samples"]:
            print(f"  {'*' if new else ' '} {name}")


# ---- the ladder -----------------------------------------------------------------------------------
def ladder_table(results: list[dict]) -> str:
    rows = ["| model | framework | params | train | val | test | s / 1k steps | reference | met |",
            "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        ref, met = "", ""
        if r["target"] is not None and r[r["target_split"]] is not None:
            ref = f"{r['target_split']} <= {r['target']}"
            met = "yes" if r[r["target_split"]] <= r["target"] else "no"
        t = f"{r['s_per_1k']:.2f}" if r["s_per_1k"] else "-"
        test = f"{r['test']:.4f}" if r["test"] is not None else "-"
        name = r["model"] + (" (lecture RNG)" if r.get("lecture_rng") else "")
        rows.append(f"| {name} | {r['framework']} | {r['params']:,} | {r['train']:.4f} | {r['val']:.4f} | "
                    f"{test} | {t} | {ref} | {met} |")
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
    plt.close(fig)


def ladder(args: argparse.Namespace, words: list[str], desc: str) -> None:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    fws = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    results = []
    for m in models:
        for fw in fws:
            r = run_one(m, [fw], words, desc, args, args.out / f"{m}-{fw}")[0]
            print_result(r)
            results.append(r)
            (args.out / "ladder.json").write_text(json.dumps(results, indent=1))  # a crash keeps the rows so far
    table = ladder_table(results)
    print(f"\nmakemore ladder on {desc}\n\n{table}")
    (args.out / "ladder.md").write_text(table + "\n")
    plot_ladder(results, args.out / "ladder.png")
    print(f"\nwrote {args.out / 'ladder.md'}, ladder.json, the val-loss plot {args.out / 'ladder.png'} and a run "
          f"folder per model")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_flags(args)
        if args.threads:
            os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
        loaded = None
        if args.load:
            try:
                loaded = checkpoint.load(args.load)
            except checkpoint.CheckpointError as e:
                raise BadInput(str(e)) from None
            saved = loaded[0]["model"].get("model")
            if args.model and args.model != saved:
                raise UsageError(f"{args.load} holds a '{saved}' model, not '{args.model}'; "
                                 f"run with --model {saved} (or without --model) to use it")
            args.model = saved
        if args.ladder:
            models = [m.strip() for m in args.models.split(",") if m.strip()]
            fws = [f.strip() for f in args.frameworks.split(",") if f.strip()]
            bad = [m for m in models if m not in PRESETS] + [f for f in fws if f not in ("jax", "torch")]
            if bad:
                raise UsageError(f"unknown model or framework {bad}; models: {', '.join(MODELS)}; frameworks: jax, torch")
            args.out = args.out or Path("runs/makemore")
            check_out(args.out, args)
            for m in models:  # bad settings fail before any data is fetched or anything trained
                configure(m, args, None)
        else:
            if not args.model:
                raise UsageError("give --model (one of " + ", ".join(MODELS) + "), --load CHECKPOINT or --ladder")
            configure(args.model, args, loaded[0] if loaded else None)  # bad sizes fail before the data is read
            if args.out:
                check_out(args.out, args)
        try:
            words, desc = (data.read_words(args.data, args.lowercase, args.strip), str(args.data)) if args.data \
                else data.default_words()
        except data.DataError as e:
            raise BadInput(str(e)) from None
        fws = args.frameworks.split(",") if args.ladder else (["jax", "torch"] if args.framework == "both"
                                                              else [args.framework])
        if "torch" in fws and args.threads:
            import torch

            torch.set_num_threads(args.threads)
        if args.ladder:
            args.out.mkdir(parents=True, exist_ok=True)
            ladder(args, words, desc)
            return 0
        for r in run_one(args.model, fws, words, desc, args, args.out, loaded):
            print_result(r)
        return 0
    except (UsageError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return runlog.EXIT_USAGE
    except (BadInput, data.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return runlog.EXIT_BAD_INPUT
    except runlog.Stop as e:
        print(f"\n{'stopped' if e.code != runlog.EXIT_DIVERGED else 'error'}: {e}", file=sys.stderr)
        return e.code
