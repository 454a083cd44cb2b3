"""scripts/gpu_acceptance.py's assembly (jaxgpt/common/acceptance.py), without running its parts.

The parts are our own scripts, tested on their own; here: the summary row read from their outputs,
the JSON lines picked out of a log, the head of a text cut at a document boundary, and bad paths.
The command itself: `python scripts/gpu_acceptance.py --cpu-smoke` (docs/BENCHMARKS.md section 9).
"""

from __future__ import annotations

import pytest

from jaxgpt.common import acceptance


def test_the_summary_row_takes_each_frameworks_best_batch_and_flags_loop_reductions():
    result = {
        "date": "2026-11-30 12:00 UTC",
        "bench": [{"framework": "jax", "batch": 16, "tokens_per_s": 100.0, "mfu": 0.41},
                  {"framework": "jax", "batch": 32, "tokens_per_s": 120.0, "mfu": 0.45},
                  {"framework": "torch", "batch": 16, "tokens_per_s": 90.0, "mfu": None},
                  {"batch": 64, "error": "out of memory"}],
        "hlo": {"device": "NVIDIA H100", "inside_loops": ["body: all-reduce"]},
        "train": {"jax": {"losses": [[0, 11.0], [99, 6.25]]}, "torch": {"error": "exit 1"}},
    }
    assert acceptance.failed_parts(result) == ["bench", "train"]
    assert acceptance.summary_row(result) == ("| 2026-11-30 12:00 UTC | NVIDIA H100 | 120 tok/s, MFU 45.0%, B=32 | "
                                              "90 tok/s, MFU n/a, B=16 | - | 1 IN LOOPS | jax 6.250 |")


def test_json_lines_and_the_text_head(tmp_path):
    assert acceptance._json_lines('noise\n{"a": 1}\n{"b": [2]}\nratio 1.2') == [{"a": 1}, {"b": [2]}]
    text = tmp_path / "t.txt"
    text.write_text("un poème\n\ndeux poèmes\n\ntrois", encoding="utf-8")
    head = acceptance._head(text, 27, tmp_path)  # 23 bytes of two poems, the separator, 2 more
    assert head.read_text(encoding="utf-8") == "un poème\n\ndeux poèmes"  # whole documents only


def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--text .*nope\.txt is not a file"):
        acceptance.run(acceptance.CPU_SMOKE, tmp_path / "nope.txt", tmp_path / "h.jsonl", tmp_path / "out")
    assert not (tmp_path / "out").exists()
