"""torch's --compile (issue 12, item 10): "auto" turns torch.compile on for CUDA and off for CPU, and the
compiled region returns the loss, not the (B, T, V) fp32 logits."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxgpt.common.config import get_preset
from jaxgpt.common.recipes import configs_for
from jaxgpt.common.schedule import OptimConfig
from torchref.train.runtime import compile_choice
from torchref.train.trainer import Trainer


def test_auto_resolves_per_device_type_and_says_so():
    assert configs_for("tiny", [])[1].compile == "auto"
    on, why = compile_choice("auto", torch.device("cuda", 0))  # a device description: no GPU needed
    assert on and "on" in why and "cuda" in why
    off, why = compile_choice("auto", torch.device("cpu"))
    assert not off and "off" in why and "cpu" in why
    assert compile_choice("true", "cpu")[0] and not compile_choice("false", "cuda")[0]
    with pytest.raises(ValueError, match=r"--compile='yes' is unknown; use one of auto, true, false"):
        configs_for("tiny", ["--compile=yes"])


def test_the_compiled_step_returns_the_loss_not_the_logits(monkeypatch):
    graphs = []

    def record(gm, _example_inputs):  # a torch.compile backend: keep the traced graph, run it as traced
        graphs.append(gm)
        return gm.forward

    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **_kw: compile_(fn, backend=record))
    cfg = get_preset("tiny")
    t = Trainer(cfg, OptimConfig(lr=1e-3, warmup_steps=2, max_steps=5), compile=True)
    x = np.arange(2 * 16).reshape(2, 16) % cfg.vocab_size
    loss, _ = t.step(x, (x + 1) % cfg.vocab_size)
    assert np.isfinite(loss) and graphs, "nothing was compiled"
    for gm in graphs:
        (out,) = [n for n in gm.graph.nodes if n.op == "output"]
        outputs = []
        torch.fx.node.map_arg(out.args[0], outputs.append)  # every Node the graph returns
        shapes = [tuple(v.meta["example_value"].shape) for v in outputs]
        assert shapes == [()], f"the compiled region returns tensors of shapes {shapes}, not the loss alone"
