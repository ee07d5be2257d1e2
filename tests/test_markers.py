"""The markers put on in conftest.py (MARKED_ELSEWHERE) name tests that exist,
so that a renamed test does not silently lose its marker and run where its
kind must not (mutation runs leave slow and multi-process tests out)."""
import importlib
import os

import pytest
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from conftest import MARKED_ELSEWHERE

ROOT = os.path.join(os.path.dirname(__file__), "..")


@pytest.mark.parametrize("file, test", sorted(MARKED_ELSEWHERE))
def test_marked_elsewhere_names_an_existing_test(file, test):
    module = importlib.import_module(file.removesuffix(".py"))
    assert callable(getattr(module, test, None)), f"{file}::{test}"


def test_mutation_runs_select_by_registered_markers():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        config = tomllib.load(f)
    registered = {m.split(":")[0] for m in config["tool"]["pytest"]["ini_options"]["markers"]}
    args = config["tool"]["mutmut"]["pytest_add_cli_args"]
    assert "-k" not in args
    expression = args[args.index("-m") + 1]
    used = {word for word in expression.split() if word not in ("not", "and", "or")}
    assert used and used <= registered
    assert set(MARKED_ELSEWHERE.values()) <= registered
