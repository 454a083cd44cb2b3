"""The test suite's own rules for missing dependencies (conftest.py): a skip on a developer's machine, a
failure in CI (JAXGPT_CI=1), and no error of tiktoken itself ever turned into a skip."""

from __future__ import annotations

import pytest

import conftest

Skipped, Failed = pytest.skip.Exception, pytest.fail.Exception


def outcome(fn, *args) -> tuple[str, str]:
    """("skip" | "fail" | the exception's type name | "ok", message) of fn(*args), caught here: a skip raised
    inside `pytest.raises(Failed)` would escape it and mark this test skipped, hiding the very bug it guards."""
    try:
        fn(*args)
    except Skipped as e:
        return "skip", str(e)
    except Failed as e:
        return "fail", str(e)
    except Exception as e:  # noqa: BLE001 - the type is the result
        return type(e).__name__, str(e)
    return "ok", ""


@pytest.fixture(params=[False, True], ids=["dev", "ci"])
def ci(request, monkeypatch) -> bool:
    monkeypatch.setattr(conftest, "IN_CI", request.param)
    return request.param


def test_a_missing_package_skips_on_a_dev_machine_and_fails_in_ci(ci):
    kind, msg = outcome(conftest.require_module, "no_such_package_xyz")
    assert kind == ("fail" if ci else "skip") and "'no_such_package_xyz' is not installed" in msg, (kind, msg)
    assert conftest.require_module("json").dumps(1) == "1"


def test_missing_data_fails_in_ci_only_when_the_data_folder_exists(ci, tmp_path, monkeypatch):
    monkeypatch.setattr(conftest, "DATA_DIR", tmp_path / "absent")
    # No data folder at all: a skip, in CI too.
    assert outcome(conftest.data_file, "names.txt")[0] == "skip"
    assert outcome(conftest.tiktoken_encoding, "gpt2")[0] == "skip"
    monkeypatch.setattr(conftest, "DATA_DIR", tmp_path)  # a data folder without the files
    kind, msg = outcome(conftest.data_file, "names.txt")
    assert kind == ("fail" if ci else "skip") and "names.txt not found" in msg, (kind, msg)
    kind, msg = outcome(conftest.tiktoken_encoding, "gpt2")
    assert kind == ("fail" if ci else "skip") and "tiktoken_cache/6d1cbeee" in msg, (kind, msg)
    (tmp_path / "names.txt").write_text("emma\n")
    assert conftest.data_file("names.txt") == tmp_path / "names.txt"


@pytest.mark.usefixtures("ci")  # in both modes
def test_an_error_of_tiktoken_itself_is_not_a_skip(tmp_path, monkeypatch):
    import tiktoken.load
    import tiktoken.registry

    cache = tmp_path / "tiktoken_cache"
    cache.mkdir()
    for name in conftest.TIKTOKEN_FILES["r50k_base"]:
        (cache / name).write_bytes(b"not a rank file")  # present, so no skip; wrong hash, so tiktoken fetches
    monkeypatch.setattr(conftest, "DATA_DIR", tmp_path)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # not the encoding loaded earlier in this process

    def offline(url):
        raise ConnectionError(f"no network for {url}")

    monkeypatch.setattr(tiktoken.load, "read_file", offline)
    assert outcome(conftest.tiktoken_encoding, "r50k_base")[0] == "ConnectionError"
    kind, msg = outcome(conftest.tiktoken_encoding, "o200k_base")
    assert kind == "ValueError" and "no offline rank files known" in msg, (kind, msg)


@pytest.mark.xdist_group("test_conftest-grouping")
def test_xdist_groups_are_kept_on_one_worker(request):
    """pyproject's `--dist loadgroup` sends a group's tests to one worker, so the expensive module-scoped runs they
    share are made once. pytest-xdist marks them by appending "@group" to their ids; pytest 9.2 reads ids from
    elsewhere, so with pytest-xdist 3.8 the groups were silently split over the workers and every worker rebuilt
    the shared runs (the poetry runs three times). pyproject's dev extra pins pytest below 9.2 for this."""
    if not getattr(request.config.option, "loadgroup", False):  # not under xdist's --dist loadgroup
        pytest.skip("runs under pytest-xdist with --dist loadgroup (pyproject's addopts)")
    assert request.node.nodeid.endswith("@test_conftest-grouping"), (
        f"pytest {pytest.__version__} with this pytest-xdist does not keep xdist_group tests together; "
        'install the versions pyproject.toml\'s dev extra names: pip install -e ".[dev]"')
