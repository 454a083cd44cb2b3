"""Data parallelism with gradient accumulation reduces the gradients ONCE per optimiser step.

Proven on the compiled HLO of the 8-simulated-device step (jaxgpt/train/hlo.py): no all-reduce or
reduce-scatter inside the micro-step loop, exactly the one after it; the detector itself is shown
to find the per-micro-step all-reduce that plain jit places in a scan (the trainer's old step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxgpt.common.config import get_preset
from jaxgpt.common.schedule import OptimConfig
from jaxgpt.train.hlo import collectives_in_loops, computations, count_collectives
from jaxgpt.train.sharding import global_batch, make_mesh
from jaxgpt.train.trainer import Trainer

CFG = get_preset("tiny")
OPT = OptimConfig(lr=1e-3, warmup_steps=2, max_steps=20)


def _compiled_step(trainer: Trainer, rows: int) -> str:
    x = np.zeros((rows, CFG.block_size), np.int32)
    xg = global_batch(x, trainer.grad_accum, trainer.mesh)
    return trainer._train_step.lower(trainer.state, xg, xg).compile().as_text()


def test_the_8_device_step_all_reduces_after_the_accumulation_loop():
    mesh = make_mesh(jax.devices()[:8])
    for dropout in (0.0, 0.1):  # the dropout RNG streams ride through the per-device loop too
        cfg = CFG if not dropout else CFG.__class__(**{**CFG.to_dict(), "dropout": dropout})
        hlo = _compiled_step(Trainer(cfg, OPT, grad_accum=4, mesh=mesh), 4 * 8 * 2)
        assert " while(" in hlo, "the accumulation loop was not compiled as a loop"
        assert collectives_in_loops(hlo) == [], collectives_in_loops(hlo)[:3]
        assert count_collectives(hlo) >= 1, "no gradient reduction at all: the devices would train apart"


def test_the_detector_finds_a_reduction_inside_a_loop():
    """What the trainer's step compiled to before: plain jit of a scan whose body takes the gradient of
    replicated parameters over rows split across devices (XLA all-reduces it in every iteration)."""
    mesh = make_mesh(jax.devices()[:8])
    w = jax.device_put(jnp.ones((16, 16)), NamedSharding(mesh, P()))
    xs = jax.device_put(jnp.ones((4, 32, 16)), NamedSharding(mesh, P(None, "data")))

    def step(w, xs):
        def micro(g, x):
            return g + jax.grad(lambda w: jnp.sum(jnp.tanh(x @ w)))(w), None
        return jax.lax.scan(micro, jnp.zeros_like(w), xs)[0]

    hlo = jax.jit(step, out_shardings=NamedSharding(mesh, P())).lower(w, xs).compile().as_text()
    inside = collectives_in_loops(hlo)
    assert inside and all("all-reduce" in line for line in inside), hlo[-3000:]


def test_hlo_text_parsing():
    hlo = """HloModule m

%body.1 (p: (s32[], f32[4])) -> (s32[], f32[4]) {
  %p = (s32[], f32[4]{0}) parameter(0)
  %c = f32[4]{0} call(f32[4]{0} %x), to_apply=%inner.2
  ROOT %t = (s32[], f32[4]{0}) tuple(s32[] %i, f32[4]{0} %c)
}

%inner.2 (x: f32[4]) -> f32[4] {
  ROOT %all-reduce.7 = f32[4]{0} all-reduce(f32[4]{0} %x), replica_groups={}, to_apply=%add.3
}

ENTRY %main.9 (a: f32[4]) -> f32[4] {
  %w = (s32[], f32[4]{0}) while((s32[], f32[4]{0}) %init), condition=%cond.4, body=%body.1
  ROOT %all-reduce.8 = f32[4]{0} all-reduce(f32[4]{0} %g), replica_groups={}, to_apply=%add.3
}
"""
    assert set(computations(hlo)) == {"body.1", "inner.2", "main.9"}
    assert count_collectives(hlo) == 2
    assert collectives_in_loops(hlo) == [("inner.2: ROOT %all-reduce.7 = f32[4]{0} all-reduce(f32[4]{0} %x), "
                                          "replica_groups={}, to_apply=%add.3")]
