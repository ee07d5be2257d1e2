"""smoothness_loss (docs/ops.md §5)."""
import pytest
import torch

import desc_ops
from desc_ops import reference

from helpers import assert_close, leaf


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


def test_nan_image_gives_nan(device, impl):
    """A NaN in the image reaches the loss through the edge weight's exp (which
    must not turn it into a number)."""
    depth = torch.rand(1, 1, 3, 4, device=device) + 1
    image = torch.rand(1, 3, 3, 4, device=device)
    image[0, :, 1, 1] = float("nan")
    assert torch.isnan(desc_ops.smoothness_loss(depth, image))
