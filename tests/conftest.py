"""Fixtures of the desc_ops tests: the devices, and the kernels as the
default backend. Shared helpers are in helpers.py."""
import json
import os

import pytest
import torch

import desc_ops

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def pytest_make_parametrize_id(config, val, argname):
    """Test ids name dtypes (``[float32]``, not ``[dtype0]``) so that ``-k float32`` selects them."""
    if isinstance(val, torch.dtype):
        return str(val).removeprefix("torch.")
    return None


# Markers of tests in a file that holds tests of several kinds and whose owners
# have yet to put them on as decorators (tests/test_markers.py checks that each
# test named here exists). Every other test carries its markers itself.
MARKED_ELSEWHERE = {
    ("test_train.py", "test_quick_demo_end_to_end"): "slow",
    ("test_train.py", "test_worker_processes_match_the_inline_run"): "subprocess",
}


def pytest_collection_modifyitems(items):
    """Puts on the markers of MARKED_ELSEWHERE. Under mutmut (README, "Mutation
    testing"), which stops at the first failing test, a mutant's tests run
    fastest first, file by file (so a file's fixtures are set up once): most
    mutants are then caught in seconds, not minutes."""
    for item in items:
        marker = MARKED_ELSEWHERE.get((item.path.name, getattr(item, "originalname", item.name)))
        if marker:
            item.add_marker(marker)
    if not os.environ.get("MUTANT_UNDER_TEST") or not os.path.exists("mutmut-stats.json"):
        return
    with open("mutmut-stats.json") as f:
        seconds = json.load(f)["duration_by_test"]
    first = {}
    for item in items:
        first[item.path] = min(first.get(item.path, float("inf")), seconds.get(item.nodeid, 0.0))
    items.sort(key=lambda item: (first[item.path], str(item.path), seconds.get(item.nodeid, 0.0)))


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def extension_backend():
    """The public functions run the kernels unless a test switches."""
    previous = desc_ops.backend()
    desc_ops.set_backend("extension")
    yield
    desc_ops.set_backend(previous)


@pytest.fixture(params=["extension", "reference"])
def impl(request):
    """Runs a test on both backends: values worked out by hand check the
    reference as much as the kernels."""
    desc_ops.set_backend(request.param)
    return request.param
