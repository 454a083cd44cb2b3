"""The mutation check's machinery (jaxgpt/common/mutation.py): snippets apply exactly once or are an error,
the worktree is never touched, caught and surviving mutants are told apart; and the catalogue still
matches the code (so code drift is caught here, in every CI run, not only when the check runs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jaxgpt.common.mutation import MUTANTS, Mutant, MutantError, apply_mutant, check_mutants, run_check, table

ROOT = Path(__file__).resolve().parents[1]


def test_the_catalogue_matches_the_code_and_names_real_tests():
    assert len(MUTANTS) >= 25
    check_mutants(ROOT, MUTANTS)  # every snippet exactly once
    for m in MUTANTS:
        assert m.tests and m.why, m.name
        for t in m.tests:
            file, _, func = t.partition("::")
            assert (ROOT / file).is_file(), f"{m.name}: {file} not found"
            assert not func or re.search(rf"^def {re.escape(func)}\(", (ROOT / file).read_text(), re.MULTILINE), \
                f"{m.name}: no test {func} in {file}"


def _repo(tmp_path: Path) -> Path:
    """A two-file project: a function and the test that pins it (one bug it catches, one it does not)."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "calc.py").write_text("def mean(xs):\n    return sum(xs) / len(xs)\n\n\ndef unused():\n    return 1\n")
    (root / "test_calc.py").write_text("from calc import mean\n\n\ndef test_mean():\n    assert mean([1, 2, 6]) == 3\n")
    return root


def test_a_snippet_that_does_not_match_exactly_once_is_an_error(tmp_path):
    root = _repo(tmp_path)
    before = (root / "calc.py").read_text()
    for old, n in (("return max(xs)", 0), ("    return", 2)):
        with pytest.raises(MutantError, match=rf"occurs {n} times in calc.py .*update the mutant"):
            apply_mutant(root, Mutant("m", "calc.py", old, "return 0", ("test_calc.py",), "?"))
    with pytest.raises(MutantError, match="no bug planted"):
        apply_mutant(root, Mutant("m", "calc.py", "/ len(xs)", "/ len(xs)", ("test_calc.py",), "?"))
    with pytest.raises(MutantError, match="missing.py not found"):
        apply_mutant(root, Mutant("m", "missing.py", "a", "b", ("test_calc.py",), "?"))
    with pytest.raises(MutantError, match=r"2 mutant\(s\) no longer match"):
        check_mutants(root, [Mutant("a", "calc.py", "nope", "x", (), ""), Mutant("b", "calc.py", "return", "x", (), "")])
    with pytest.raises(MutantError, match="names repeated"):
        check_mutants(root, [Mutant("a", "calc.py", "/ len", "* len", (), "")] * 2)
    assert (root / "calc.py").read_text() == before  # a refused mutant writes nothing


def test_mutants_run_in_a_copy_and_caught_is_told_from_survived(tmp_path):
    root = _repo(tmp_path)
    files = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*")}
    mutants = [Mutant("len-off-by-one", "calc.py", "/ len(xs)", "/ (len(xs) + 1)", ("test_calc.py",), "wrong mean"),
               Mutant("dead-code", "calc.py", "return 1", "return 2", ("test_calc.py",), "nothing tests it")]
    seen = []
    out = run_check(root, mutants, timeout=120, report=seen.append, workdir=tmp_path)
    assert [(o.name, o.status) for o in out] == [("len-off-by-one", "caught"), ("dead-code", "SURVIVED")]
    assert seen[0].name == "(baseline)" and seen[0].status == "passed" and seen[1:] == out
    assert "1 failed" in out[0].detail and "1 passed" in out[1].detail
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*")} == files  # the tree untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("jaxgpt-mutants-")]  # the copy removed
    assert "| len-off-by-one | calc.py | test_calc.py | caught |" in table(out)
    # A baseline that fails makes every "caught" meaningless: refused.
    (root / "test_calc.py").write_text("def test_broken():\n    assert False\n")
    with pytest.raises(RuntimeError, match="does not pass the selected tests cleanly"):
        run_check(root, mutants[:1], timeout=120, workdir=tmp_path)
