"""smoothness_loss (docs/ops.md §5)."""
import pytest
import torch

import desc_ops
from desc_ops import reference

from helpers import DTYPES, assert_close, leaf, maybe_noncontiguous, rand_map


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 7, 9), (1, 1, 1), (3, 17, 33), (1, 1, 6), (2, 6, 1)])
@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_matches_reference(device, dtype, shape, channels, contiguous, reduction):
    g = torch.Generator().manual_seed(sum(shape) * 10 + channels)
    B, H, W = shape
    depth = rand_map(B, H, W, dtype, device, contiguous=contiguous, generator=g)
    image = maybe_noncontiguous(torch.rand(B, channels, H, W, generator=g).to(device=device, dtype=dtype), contiguous)
    # An upstream map (not all equal, so that each term must take its own pixel's) or -0.6.
    upstream = (torch.rand(B, 1, H, W, generator=g) - 0.5).to(device=device, dtype=dtype) if reduction == "none" \
        else torch.tensor(-0.6, dtype=dtype, device=device)
    results = []
    for fn in (desc_ops.smoothness_loss, reference.smoothness_loss):
        d = leaf(depth)
        loss = fn(d, image, reduction=reduction)
        (grad,) = torch.autograd.grad(loss, d, upstream)
        results.append((loss, grad))
    for a, b in zip(*results):
        assert a.dtype == b.dtype == dtype
        assert_close(a, b)


def test_values_by_hand(device, impl):
    depth = torch.tensor([[[[1.0, 3.0], [2.0, 2.0]]]], device=device)
    image = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]], device=device)
    e = torch.exp(torch.tensor(-1.0)).item()
    # x: |1-3| e^-1, |2-2| e^0 over 2 terms; y: |1-2| e^0, |3-2| e^-1 over 2 terms.
    expected = (2 * e + 0) / 2 + (1 + e) / 2
    assert desc_ops.smoothness_loss(depth, image).item() == pytest.approx(expected)
    assert desc_ops.smoothness_loss(depth[..., :1, :1], image[..., :1, :1]).item() == 0.0
    # "none": each pixel's terms to its right and below, 0 past the last column and row.
    want = torch.tensor([[[[2 * e + 1, e], [0.0, 0.0]]]], device=device)
    assert_close(desc_ops.smoothness_loss(depth, image, reduction="none"), want)


def test_equal_neighbours_give_no_gradient(device):
    """sign(0) = 0 (docs/ops.md §0): flat stretches of depth (equal neighbours)
    add nothing to the gradient, as |.| in the reference. 37 columns: the
    vector loop and its tail."""
    g = torch.Generator().manual_seed(9)
    depth = torch.randint(0, 3, (2, 1, 5, 37), generator=g).to(device, torch.float64)
    image = torch.rand(2, 3, 5, 37, generator=g, dtype=torch.float64).to(device)
    assert (depth[..., 1:] == depth[..., :-1]).float().mean() > 0.2
    grads = []
    for fn in (desc_ops.smoothness_loss, reference.smoothness_loss):
        d = leaf(depth)
        grads.append(torch.autograd.grad(fn(d, image), d)[0])
    assert_close(grads[0], grads[1])
    flat = depth.clone()
    flat[..., :, 10:30] = 1.0  # a flat block: its inner pixels see only ties
    d = leaf(flat)
    (grad,) = torch.autograd.grad(desc_ops.smoothness_loss(d, image), d)
    assert (grad[..., 1:-1, 11:29] == 0).all()


@pytest.mark.parametrize("impl", ["extension", "reference"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck(device, impl, reduction):
    desc_ops.set_backend(impl)
    g = torch.Generator().manual_seed(6)
    # Distinct depths far apart: no neighbour difference near the kink at 0.
    depth = torch.randperm(2 * 5 * 6, generator=g).to(device, torch.float64).view(2, 1, 5, 6)
    image = torch.rand(2, 3, 5, 6, generator=g, dtype=torch.float64).to(device)
    assert torch.autograd.gradcheck(lambda d: desc_ops.smoothness_loss(d, image, reduction=reduction), (leaf(depth),))


def test_nan_image_gives_nan(device, impl):
    """A NaN in the image reaches the loss through the edge weight's exp (which
    must not turn it into a number)."""
    depth = torch.rand(1, 1, 3, 4, device=device) + 1
    image = torch.rand(1, 3, 3, 4, device=device)
    image[0, :, 1, 1] = float("nan")
    assert torch.isnan(desc_ops.smoothness_loss(depth, image))
