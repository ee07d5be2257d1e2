"""Fixtures of the desc_ops tests: the devices, and the kernels as the
default backend. Shared helpers are in helpers.py."""
import pytest
import torch

import desc_ops

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def pytest_make_parametrize_id(config, val, argname):
    """Test ids name dtypes (``[float32]``, not ``[dtype0]``) so that ``-k float32`` selects them."""
    if isinstance(val, torch.dtype):
        return str(val).removeprefix("torch.")
    return None


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
