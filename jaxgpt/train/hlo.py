"""Where a compiled step communicates: the collectives inside loops of its optimised HLO text.

A data-parallel step with gradient accumulation should all-reduce the gradients once per optimiser
step, after the micro-step loop; an all-reduce inside the loop's body moves the whole gradient over
the interconnect on every micro-step (A times the traffic). XLA decides where collectives go, so
the placement is read back from what it compiled: `compiled = jax.jit(f).lower(...).compile()`,
then `collectives_in_loops(compiled.as_text())`. Used by tests/test_grad_allreduce.py (CPU, 8
simulated devices) and by the GPU acceptance run on real GPUs.
"""

from __future__ import annotations

import re

REDUCTIONS = ("all-reduce", "all-reduce-start", "reduce-scatter")  # what sums gradients across devices
# every op that moves data between devices (the asynchronous forms included)
COLLECTIVES = (*REDUCTIONS, "all-gather", "all-gather-start", "all-to-all", "collective-permute",
               "collective-permute-start")
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")  # "%name (params) -> type {" opens one
_CALLED = re.compile(r"(?:to_apply|calls|body|condition|branch_computations)=\{?([%\w.\-, ]+)\}?")
_WHILE_BODY = re.compile(r"\bwhile\(.*\bbody=%?([\w.\-]+)")


def computations(hlo: str) -> dict[str, list[str]]:
    """Name -> instruction lines of every computation in an HLO module's text."""
    comps: dict[str, list[str]] = {}
    name = None
    for line in hlo.splitlines():
        if name is None:
            m = _COMPUTATION.match(line)
            if m and not line.startswith(("HloModule", " ")):
                name = m.group(1)
                comps[name] = []
        elif line.strip() == "}":
            name = None
        else:
            comps[name].append(line)
    return comps


def _op_pattern(ops: tuple[str, ...]) -> re.Pattern:
    # the op applied ("= f32[96]{0} all-reduce(f32[96]{0} %x), ..."), not an instruction named after it
    return re.compile(r"\s(" + "|".join(re.escape(o) for o in ops) + r")\(")


def _called(line: str) -> list[str]:
    return [c.strip().lstrip("%") for group in _CALLED.findall(line) for c in group.split(",") if c.strip()]


def collectives_in_loops(hlo: str, ops: tuple[str, ...] = REDUCTIONS) -> list[str]:
    """The instructions among `ops` that run inside a while loop's body (or what it calls), as
    'body: instruction' strings; empty when every such collective is outside the loops."""
    comps = computations(hlo)
    bodies = [m.group(1) for lines in comps.values() for line in lines if (m := _WHILE_BODY.search(line))]
    found, seen = [], set()
    pattern = _op_pattern(ops)
    stack = list(bodies)
    while stack:
        name = stack.pop()
        if name in seen or name not in comps:
            continue
        seen.add(name)
        for line in comps[name]:
            if pattern.search(line):
                found.append(f"{name}: {line.strip()[:160]}")
            stack.extend(_called(line))
    return found


def count_collectives(hlo: str, ops: tuple[str, ...] = REDUCTIONS) -> int:
    """How many instructions among `ops` the module holds, inside loops or not."""
    pattern = _op_pattern(ops)
    return sum(1 for line in hlo.splitlines() if pattern.search(line))
