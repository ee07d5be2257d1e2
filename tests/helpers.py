"""Helpers shared by the tests: dtypes with their tolerances, input makers
(contiguous or not) and stable seeds. Fixtures live in conftest.py."""
import zlib

import torch

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


def tol(dtype):
    return TOLERANCES[dtype]


def assert_close(actual, expected, dtype=None, **kw):
    opts = dict(tol(dtype or expected.dtype))
    opts.update(kw)
    torch.testing.assert_close(actual, expected, equal_nan=True, **opts)


def seed(*parts) -> int:
    """A seed from test parameters that is the same in every process
    (``hash()`` of a string is randomised per process)."""
    return zlib.crc32(repr(parts).encode())


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
    """A copy of `t` that requires grad, in the same layout: a clone of a
    strided view would be contiguous, and hide the kernels' strided paths."""
    copy = t.detach().clone()
    if not t.is_contiguous():
        copy = maybe_noncontiguous(copy, contiguous=False)
    return copy.requires_grad_(True)


def _batch(device, dtype=torch.float32, B=2, C=5, H=6, W=7, K=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(-1, K, (B, H, W), generator=g).to(device)
    return dict(
        depth=rand_map(B, H, W, dtype, device, generator=g),
        depth_sem=rand_map(B, H, W, dtype, device, generator=g),
        weight=rand_map(B, H, W, dtype, device, low=0, high=1, generator=g),
        logits=torch.randn(B, C, H, W, generator=g).to(device=device, dtype=dtype),
        labels=torch.randint(-1, C, (B, H, W), generator=g).to(device),
        image=torch.rand(B, 3, H, W, generator=g).to(device=device, dtype=dtype),
        image_other=torch.rand(B, 3, H, W, generator=g).to(device=device, dtype=dtype),
        focal_baseline=(torch.rand(B, generator=g, dtype=torch.float64) * 20 + 1).to(
            device=device, dtype=torch.float64 if dtype == torch.float64 else torch.float32),
        edges=torch.rand(B, 1, H, W, generator=g).to(device=device, dtype=dtype),
        ids=ids,
        heights=(torch.rand(B, K, generator=g) + 1).to(device=device, dtype=dtype),
        focal=torch.full((B,), 30.0, device=device, dtype=torch.float64 if dtype == torch.float64 else torch.float32),
    )
