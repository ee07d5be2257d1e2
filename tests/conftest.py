"""Shared parametrisation of the desc_ops tests: devices, dtypes with their
tolerances, and input makers (contiguous or not)."""
import pytest
import torch

import desc_ops

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]

# Both paths compute in float32 (float64) from the same inputs; results
# differ by accumulation order, and for half types by one rounding step of
# the output.
TOLERANCES = {
    torch.float32: dict(atol=2e-5, rtol=2e-5),
    torch.float64: dict(atol=1e-10, rtol=1e-10),
    torch.float16: dict(atol=2e-3, rtol=2e-3),
    torch.bfloat16: dict(atol=1.6e-2, rtol=1.6e-2),
}


def pytest_make_parametrize_id(config, val, argname):
    """Test ids name dtypes (``[float32]``, not ``[dtype0]``) so that ``-k float32`` selects them."""
    if isinstance(val, torch.dtype):
        return str(val).removeprefix("torch.")
    return None


def tol(dtype):
    return TOLERANCES[dtype]


def assert_close(actual, expected, dtype=None, **kw):
    opts = dict(tol(dtype or expected.dtype))
    opts.update(kw)
    torch.testing.assert_close(actual, expected, equal_nan=True, **opts)


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


def maybe_noncontiguous(t: torch.Tensor, contiguous: bool) -> torch.Tensor:
    """The same values in a non-contiguous layout (a strided view of a larger tensor)."""
    if contiguous or t.dim() == 0:
        return t
    wide = torch.empty(*t.shape[:-1], 2 * t.shape[-1] + 1, dtype=t.dtype, device=t.device)
    wide[..., 1::2] = t
    view = wide[..., 1::2]
    assert not view.is_contiguous() or t.numel() <= 1
    return view


def rand_map(B, H, W, dtype, device, low=0.5, high=10.0, contiguous=True, generator=None):
    t = torch.rand(B, 1, H, W, generator=generator, dtype=torch.float64) * (high - low) + low
    return maybe_noncontiguous(t.to(device=device, dtype=dtype), contiguous)


def leaf(t):
    return t.detach().clone().requires_grad_(True)
