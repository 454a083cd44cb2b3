"""Mutation check: plant each catalogued bug, one at a time, in a temporary copy of the tree, and run the tests
that must catch it. Run on demand (not in every CI run); docs/TESTING.md records the latest table.

    nice -n 10 python scripts/mutation_check.py --out mutation.jsonl 2>&1 | tee mutation.log   # all, ~20 min
    python scripts/mutation_check.py --list                                       # the catalogue
    python scripts/mutation_check.py --only loader-restore-forgets-epoch --no-baseline   # one mutant again

Prints a progress line per mutant (stderr), then a Markdown table (mutant, file, tests run, result,
seconds). Exit status: 0 when every mutant was caught, 1 when one survived or its tests could not run,
2 on usage errors. Interrupted (Ctrl-C), it prints what it has; --out keeps each result as it comes,
and --resume skips the mutants already recorded there. The machinery and the catalogue:
jaxgpt/common/mutation.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxgpt.common.mutation import MUTANTS, MutantError, Outcome, load_jsonl, run_check, save_jsonl, table
from jaxgpt.common.runlog import EXIT_BAD_INPUT, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="", help="comma-separated mutant names (default: all)")
    p.add_argument("--list", action="store_true", help="print the catalogue and exit")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant's test run (default 300)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the first run of the selected tests on the unmutated copy (they must pass)")
    p.add_argument("--out", type=Path, default=None, help="append each result to this JSON-lines file")
    p.add_argument("--resume", action="store_true", help="skip the mutants already recorded in --out")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    known = {m.name for m in MUTANTS}
    if unknown := [n for n in names if n not in known]:
        print(f"error: unknown mutant(s) {unknown}; see --list", file=sys.stderr)
        return EXIT_USAGE
    if args.timeout <= 0:
        print(f"error: --timeout={args.timeout} must be > 0", file=sys.stderr)
        return EXIT_USAGE
    if args.resume and args.out is None:
        print("error: --resume needs --out (the file of earlier results)", file=sys.stderr)
        return EXIT_USAGE
    mutants = [m for m in MUTANTS if not names or m.name in names]
    if args.list:
        for m in mutants:
            print(f"{m.name:34s} {m.path:40s} {m.why}\n{'':34s} tests: {' '.join(m.tests)}")
        return 0
    earlier = load_jsonl(args.out) if args.resume else []
    done = {o.name for o in earlier}
    mutants = [m for m in mutants if m.name not in done]
    outcomes: list[Outcome] = []

    def report(o: Outcome) -> None:
        print(f"[{len(outcomes) + 1 if o.name != '(baseline)' else 0}/{len(mutants)}] {o.name}: {o.status} "
              f"in {o.seconds:.0f} s ({o.detail})", file=sys.stderr, flush=True)
        if o.name != "(baseline)":
            outcomes.append(o)
            if args.out is not None:
                save_jsonl(args.out, o)

    try:
        run_check(ROOT, mutants, timeout=args.timeout, baseline=not args.no_baseline and bool(mutants), report=report)
    except (MutantError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"interrupted after {len(outcomes)} of {len(mutants)} mutants"
              + ("; rerun with --resume to finish" if args.out else ""), file=sys.stderr)
    results = [o for o in earlier if o.name in {m.name for m in MUTANTS}] + outcomes
    print(table(results))
    caught = sum(o.caught for o in results)
    print(f"\n{caught} of {len(results)} mutants caught; {sum(o.seconds for o in results) / 60:.1f} min of test runs")
    return 0 if caught == len(results) == len(earlier) + len(mutants) else 1


if __name__ == "__main__":
    sys.exit(main())
